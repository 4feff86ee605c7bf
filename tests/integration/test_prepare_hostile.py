"""Hostile input to `shg prepare`: every kind is a real file or a real annotation entry, all of
them prepared together in ONE run on a real local Ray cluster; each kind is then its own test
that finds its person in the quarantine with the expected reason. One bad record must never end
the job, and `rows_in = rows + quarantined` must hold.

The README's "Hostile input" table is this list.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from dataprep import quarantine
from dataprep.mpii import read_annotations
from dataprep.prepare import PrepareConfig, PrepareConfigError, run_prepare

W, H = 160, 120  # every real test image is this size
MAX_BYTES = 256 * 1024  # the byte limit of the shared run (small, so one case can exceed it)


def _jpeg(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (9, 9), 3)
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 header says `width x height` (a decompression bomb)."""
    data = bytearray(_jpeg())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def _png_claiming(width: int, height: int) -> bytes:
    """A real small PNG whose IHDR (with a correct CRC) says `width x height`."""
    data = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 8] = width.to_bytes(4, "big")
    data[ihdr + 8:ihdr + 12] = height.to_bytes(4, "big")
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17]))
    data[ihdr + 17:ihdr + 21] = crc.to_bytes(4, "big")
    return bytes(data)


def _person(image: str, person: int, **changes: Any) -> dict:
    """An MPII JSON entry (1-based raw objpos/scale) of a person well inside a W x H image;
    its person_id is f"{person}_1"."""
    joints = [[40.0 + 5 * j, 30.0 + 4 * j, 1.0] for j in range(16)]
    entry = {
        "img_paths": image, "objpos": [80.0, 55.0], "scale_provided": 0.4,
        "joint_self": joints, "isValidation": 1.0, "annolist_index": person, "people_index": 1,
        "head_box": [70.0, 20.0, 90.0, 40.0],
    }
    return {**entry, **changes}


@dataclass(frozen=True)
class Case:
    """One hostile kind: what it writes, the reason it must be quarantined with."""

    kind: str
    reason: str | None  # None: the record is fine and must be prepared (a control)
    entry: Callable[[int], Any]  # person number -> the annotation entry
    files: Callable[[Path, Path], None] = lambda images, outside: None  # writes its files
    person_id: Callable[[int, int], str] = field(default=lambda person, row: f"{person}_1")


def _write(name: str, data: bytes) -> Callable[[Path, Path], None]:
    return lambda images, outside: (images / name).write_bytes(data)


def _good(name: str) -> Callable[[Path, Path], None]:
    return _write(name, _jpeg())


def _with(name: str, **changes: Any) -> Callable[[int], dict]:
    return lambda person: _person(name, person, **changes)


def _joints_with(row: int, value: list[float]) -> list[list[float]]:
    joints = _person("x", 0)["joint_self"]
    return [value if j == row else v for j, v in enumerate(joints)]


CASES = [
    Case("good_person", None, _with("good.jpg"), _good("good.jpg")),
    Case("symlink_inside_root", None, _with("inside_link.jpg"),
         lambda images, outside: (images / "inside_link.jpg").symlink_to("good.jpg")),
    Case("missing_image", quarantine.MISSING_IMAGE, _with("missing.jpg")),
    Case("empty_image_file", quarantine.CORRUPT_IMAGE, _with("empty.jpg"), _write("empty.jpg", b"")),
    Case("truncated_jpeg", quarantine.CORRUPT_IMAGE, _with("truncated.jpg"),
         _write("truncated.jpg", _jpeg()[: len(_jpeg()) // 2])),
    Case("non_image_bytes", quarantine.CORRUPT_IMAGE, _with("text.jpg"),
         _write("text.jpg", b"these bytes are not a picture\n" * 20)),
    Case("jpeg_header_declares_30000x30000", quarantine.IMAGE_TOO_LARGE, _with("bomb.jpg"),
         _write("bomb.jpg", _jpeg_claiming(30000, 30000))),
    Case("png_header_over_pixel_limit", quarantine.IMAGE_TOO_LARGE, _with("bomb.png"),
         _write("bomb.png", _png_claiming(8000, 6000))),  # 48 MP: over 40 MP, under Pillow's own
    Case("file_over_byte_limit", quarantine.IMAGE_TOO_LARGE, _with("huge.jpg"),
         lambda images, outside: os.truncate(_touch(images / "huge.jpg"), MAX_BYTES + 1)),
    Case("directory_where_image_should_be", quarantine.NOT_A_FILE, _with("folder.jpg"),
         lambda images, outside: (images / "folder.jpg").mkdir()),
    Case("named_pipe_where_image_should_be", quarantine.NOT_A_FILE, _with("pipe.jpg"),
         lambda images, outside: os.mkfifo(images / "pipe.jpg")),  # reading it would block forever
    Case("nul_byte_in_image_name", quarantine.INVALID_IMAGE_NAME, _with("good\x00.jpg")),
    Case("unencodable_image_name", quarantine.INVALID_IMAGE_NAME, _with("bad\udcff.jpg")),
    Case("dotdot_path", quarantine.PATH_ESCAPES_ROOT, _with("../outside.jpg")),
    Case("absolute_path", quarantine.PATH_ESCAPES_ROOT, _with("/etc/hostname")),
    Case("symlink_out_of_root", quarantine.PATH_ESCAPES_ROOT, _with("link_out.jpg"),
         lambda images, outside: (images / "link_out.jpg").symlink_to(outside / "outside.jpg")),
    Case("symlink_loop", quarantine.MISSING_IMAGE, _with("loop.jpg"),
         lambda images, outside: (images / "loop.jpg").symlink_to("loop.jpg")),
    Case("wrong_type_in_a_field", quarantine.MALFORMED_ENTRY, _with("good.jpg", scale_provided="big")),
    Case("wrong_joint_count", quarantine.MALFORMED_ENTRY,
         lambda person: _person("good.jpg", person, joint_self=_person("x", 0)["joint_self"][:15])),
    Case("image_name_not_a_string", quarantine.MALFORMED_ENTRY, _with("good.jpg", img_paths=["good.jpg"])),
    Case("entry_not_an_object", quarantine.MALFORMED_ENTRY, lambda person: 42,
         person_id=lambda person, row: f"entry{row}"),
    Case("joint_1e308", quarantine.NON_FINITE, _with("good.jpg", joint_self=_joints_with(3, [1e308, 50.0, 1.0]))),
    Case("joint_1e39_overflows_float32", quarantine.NON_FINITE,
         _with("good.jpg", joint_self=_joints_with(3, [1e39, 50.0, 1.0]))),
    Case("joint_3e38_overflows_float32_in_crop_px", quarantine.NON_FINITE,  # finite in image px
         _with("good.jpg", joint_self=_joints_with(3, [3e38, 50.0, 1.0]))),
    Case("head_size_1e300", quarantine.NON_FINITE, _with("good.jpg", head_box=[0.0, 0.0, 1e300, 1e300])),
    Case("nan_center", quarantine.NON_FINITE, _with("good.jpg", objpos=[float("nan"), 55.0])),
    Case("infinite_scale", quarantine.NON_FINITE, _with("good.jpg", scale_provided=float("inf"))),
    Case("negative_scale", quarantine.NON_FINITE, _with("good.jpg", scale_provided=-1.0)),
    Case("scale_1e-50_underflows_float32", quarantine.NON_FINITE, _with("good.jpg", scale_provided=1e-50)),
    Case("no_labelled_joints", quarantine.INVALID_RECORD,
         _with("good.jpg", joint_self=[[0.0, 0.0, 0.0]] * 16)),
    Case("image_width_1e30", quarantine.INVALID_RECORD, _with("good.jpg", img_width=1e30, img_height=120.0)),
    Case("size_disagrees_with_annotation", quarantine.SIZE_MISMATCH,
         _with("good.jpg", img_width=640.0, img_height=480.0)),
    Case("box_outside_image", quarantine.BOX_OUTSIDE_IMAGE, _with("good.jpg", objpos=[50_000.0, 55.0])),
    Case("duplicate_person_id", quarantine.DUPLICATE_PERSON_ID,
         lambda person: _person("good.jpg", 1), person_id=lambda person, row: "1_1"),  # the first case's id
]
CASE_IDS = [case.kind for case in CASES]


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


@pytest.fixture(scope="module")
def hostile_run(ray_local, tmp_path_factory):
    """Writes every case's files and entries and runs `run_prepare` once over all of them."""
    root = tmp_path_factory.mktemp("hostile")
    images, outside = root / "images", root
    images.mkdir()
    (outside / "outside.jpg").write_bytes(_jpeg(1))  # readable, but not under --images
    entries, ids = [], {}
    for row, case in enumerate(CASES):
        person = row + 1
        case.files(images, outside)
        entries.append(case.entry(person))
        ids[case.kind] = case.person_id(person, row)
    annotations = root / "hostile.json"
    annotations.write_text(json.dumps(entries))  # ensure_ascii: NUL and lone surrogates survive
    cfg = PrepareConfig(
        annotations=str(annotations), images=str(images), out=str(root / "out"),
        max_image_bytes=MAX_BYTES, batch_size=4, block_rows=8,
    )
    manifest = run_prepare(cfg, log=lambda line: None)
    out = root / "out"
    quarantined = pq.read_table(out / "quarantine").to_pylist()
    prepared = pq.read_table(out / "val").to_pylist() + pq.read_table(out / "train").to_pylist()
    return manifest, ids, quarantined, prepared


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hostile_input_is_quarantined_with_its_reason(hostile_run, case):
    _, ids, quarantined, prepared = hostile_run
    person_id = ids[case.kind]
    rows = [r for r in quarantined if r["person_id"] == person_id]
    if case.reason is None:  # prepared once; its id may only be quarantined as a later duplicate
        assert [r["person_id"] for r in prepared].count(person_id) == 1
        assert all(r["reason"] == quarantine.DUPLICATE_PERSON_ID for r in rows)
        return
    if case.reason == quarantine.DUPLICATE_PERSON_ID:  # the first "1_1" is the good person
        assert [r["person_id"] for r in prepared].count(person_id) == 1
    assert [r["reason"] for r in rows] == [case.reason], rows
    assert rows[0]["detail"]  # a human-readable why, always


def test_one_run_prepares_the_good_and_counts_every_row(hostile_run):
    manifest, _, quarantined, prepared = hostile_run
    expected_quarantined = sum(case.reason is not None for case in CASES)
    assert manifest.rows_in == len(CASES)
    assert manifest.rows_in == manifest.rows["train"] + manifest.rows["val"] + manifest.quarantined
    assert manifest.quarantined == len(quarantined) == expected_quarantined
    assert len(prepared) == len(CASES) - expected_quarantined
    assert sum(manifest.quarantined_by_reason.values()) == manifest.quarantined
    assert set(manifest.quarantined_by_reason) <= set(quarantine.REASONS)
    for row in prepared:  # what was kept is finite where the contract says so
        assert np.isfinite(row["head_size"]) and row["head_size"] > 0
        assert np.isfinite(row["crop_to_image"]).all()


def test_quarantine_keeps_unstorable_names_escaped(hostile_run):
    _, ids, quarantined, _ = hostile_run
    images = {r["person_id"]: r["image"] for r in quarantined}
    assert images[ids["nul_byte_in_image_name"]] == "good\\x00.jpg"
    assert images[ids["unencodable_image_name"]] == "bad\\udcff.jpg"


def test_a_file_with_no_readable_person_is_a_config_error(tmp_path):
    annotations = tmp_path / "all_bad.json"
    annotations.write_text(json.dumps([_person("a.jpg", 1, joint_self="nope"), _person("b.jpg", 2, objpos=None)]))
    (tmp_path / "images").mkdir()
    cfg = PrepareConfig(annotations=str(annotations), images=str(tmp_path / "images"), out=str(tmp_path / "out"))
    with pytest.raises(PrepareConfigError, match=r"none of its 2 entries is a readable person.*entry 0"):
        run_prepare(cfg, log=lambda line: None)
    assert not (tmp_path / "out").exists()


def test_hrnet_wrong_type_in_one_entry_leaves_the_others(tmp_path):
    good = {"image": "a.jpg", "center": [80.0, 55.0], "scale": 0.4,
            "joints": [[40.0 + j, 30.0 + j] for j in range(16)], "joints_vis": [1] * 16}
    path = tmp_path / "hrnet.json"
    path.write_text(json.dumps([good, {**good, "center": "middle"}, {**good, "image": 7}, good]))
    loaded = read_annotations(path)
    assert [r.person_id for r in loaded.records] == ["a_1", "a_2"]
    assert [m.person_id for m in loaded.malformed] == ["entry1", "entry2"]
    assert "entry 1 is not an HRNet MPII person" in loaded.malformed[0].detail


def test_h5_row_with_an_unusable_id_leaves_the_others(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "valid.h5"
    with h5py.File(path, "w") as f:
        f["imgname"] = np.array([b"a.jpg", b"b\xff.jpg", b"c.jpg"])
        f["center"] = np.full((3, 2), 50.0)
        f["scale"] = np.ones(3)
        f["part"] = np.full((3, 16, 2), 20.0)
        f["normalize"] = np.full(3, 10.0)
        f["index"] = np.array([0.0, 1.0, np.nan])  # int(nan) fails: that row only
        f["person"] = np.zeros(3)
    loaded = read_annotations(path)
    assert [r.person_id for r in loaded.records] == ["1_1", "2_1"]
    assert loaded.records[1].image == "b\udcff.jpg"  # kept undecoded; prepare quarantines it
    assert quarantine.check_record(loaded.records[1]).reason == quarantine.INVALID_IMAGE_NAME
    assert [m.person_id for m in loaded.malformed] == ["row2"]


def test_cli_pixel_limit_reaches_the_job(ray_local, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli.app import build_app

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "good.jpg").write_bytes(_jpeg())
    annotations = tmp_path / "one.json"
    annotations.write_text(json.dumps([_person("good.jpg", 1)]))
    out = tmp_path / "out"
    result = CliRunner().invoke(build_app(), [
        "prepare", "--annotations", str(annotations), "--images", str(tmp_path / "images"), "--out", str(out),
        "--max-image-pixels", str(W * H - 1),
    ])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quarantined_by_reason"] == {quarantine.IMAGE_TOO_LARGE: 1}
    assert manifest["config"]["max_image_pixels"] == W * H - 1
