"""`shg prepare` end to end on a real local Ray cluster: the 5 real MPII images, every quarantine
reason, determinism across parallelism, atomic replacement, config errors and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dataprep import quarantine
from dataprep.augment import AugmentConfig, center_batch
from dataprep.geometry import apply_affine, heatmap_to_input, input_to_heatmap
from dataprep.joints import NUM_JOINTS
from dataprep.prepare import PrepareConfig, run_prepare
from dataprep.schema import CROP_MARGIN, PREPARED_SCHEMA, describe
from pipelines.cli.app import build_app


@pytest.fixture(scope="module")
def real_images(mpii_dir) -> Path:
    return mpii_dir / "images"


@pytest.fixture(scope="module")
def real_annotation(real_images) -> list[dict]:
    return json.loads((real_images / "annotations_hrnet_format.json").read_text())


@pytest.fixture(scope="module")
def prepared(ray_local, real_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "out"
    cfg = PrepareConfig(
        annotations=str(real_images / "annotations_hrnet_format.json"), images=str(real_images), out=str(out)
    )
    lines: list[str] = []
    manifest = run_prepare(cfg, log=lines.append)
    return manifest, out, lines


def _rows(out: Path, split: str = "val") -> dict[str, dict]:
    return {r["person_id"]: r for r in pq.read_table(out / split).to_pylist()}


def test_real_images_keypoints_map_back_to_the_annotation(prepared, real_annotation):
    manifest, out, _ = prepared
    rows = _rows(out)
    assert len(rows) == len(real_annotation) == 5
    by_image = {r["image"]: r for r in rows.values()}
    for entry in real_annotation:
        row = by_image[entry["image"]]
        labelled = np.asarray(entry["joints_vis"]) > 0
        expected = np.asarray(entry["joints"], float)[labelled] - 1.0  # the file is 1-based
        crop_to_image = np.asarray(row["crop_to_image"], float).reshape(2, 3)
        keypoints = np.asarray(row["keypoints"], float).reshape(NUM_JOINTS, 2)
        assert np.asarray(row["labelled"], bool).tolist() == labelled.tolist()
        assert np.abs(apply_affine(crop_to_image, keypoints[labelled]) - expected).max() < 0.5
        assert np.abs(np.asarray(row["joints_image"]).reshape(NUM_JOINTS, 2)[labelled] - expected).max() < 1e-3


def test_stored_heatmaps_peak_at_the_keypoints(prepared):
    _, out, _ = prepared
    for row in _rows(out).values():
        heatmaps = np.frombuffer(row["heatmaps"], np.uint8).reshape(NUM_JOINTS, 64, 64)
        keypoints = np.asarray(row["keypoints"], float).reshape(NUM_JOINTS, 2)
        on_map = input_to_heatmap(keypoints - CROP_MARGIN)
        for j in range(NUM_JOINTS):
            x, y = np.floor(np.nan_to_num(on_map[j], nan=-1.0) + 0.5).astype(int)
            if row["labelled"][j] and 0 <= x < 64 and 0 <= y < 64:
                assert heatmaps[j, y, x] == heatmaps[j].max() > 200
            else:
                assert heatmaps[j].max() == 0


def test_manifest_and_files(prepared):
    manifest, out, lines = prepared
    assert json.loads((out / "manifest.json").read_text()) == manifest.to_json()
    assert manifest.rows_in == 5 and manifest.rows == {"train": 0, "val": 5}
    assert manifest.quarantined == 0 and manifest.quarantined_by_reason == {}
    assert manifest.fingerprint.startswith("sha256:")
    assert manifest.schema == describe(PREPARED_SCHEMA)
    assert manifest.config["out"] == str(out)
    assert 5_000 < manifest.bytes_per_row < 100_000
    assert pq.read_schema(out / "val" / manifest.files["val"][0]) == PREPARED_SCHEMA
    assert len(pq.read_table(out / "train")) == 0  # an empty split still has its schema
    assert any("rows/s" in line and "quarantined" in line for line in lines)
    assert not list(out.parent.glob(".out.*"))  # no temporary folders left behind


def test_ray_data_reads_the_output_into_center_batch(prepared, ray_local):
    _, out, _ = prepared
    ds = ray_local.data.read_parquet(str(out / "val")).map_batches(
        center_batch, fn_kwargs={"cfg": AugmentConfig()}, batch_size=2, batch_format="numpy"
    )
    rows = ds.take_all()
    assert len(rows) == 5
    for row in rows:
        assert row["image"].shape == (256, 256, 3) and row["image"].dtype == np.uint8
        assert row["heatmaps"].shape == (NUM_JOINTS, 64, 64)
        # heatmap peak -> input px -> image px lands within half a heatmap pixel of the joint
        px_per_input = row["input_to_image"][0, 0]  # no rotation: a pure zoom + shift
        for j in np.flatnonzero(row["weight"]):
            y, x = np.unravel_index(row["heatmaps"][j].argmax(), (64, 64))
            in_image = apply_affine(row["input_to_image"], heatmap_to_input(np.array([x, y], float)))
            error = np.abs(in_image - row["joints_image"][j])
            assert (error <= 2.0 * px_per_input + 1e-3).all(), (row["person_id"], j, error)


def test_same_inputs_any_parallelism_same_fingerprint_and_bytes(prepared, real_images, tmp_path):
    manifest, out, _ = prepared
    cfg = PrepareConfig(
        annotations=str(real_images / "annotations_hrnet_format.json"), images=str(real_images),
        out=str(tmp_path / "again"), batch_size=1, block_rows=1,
    )
    again = run_prepare(cfg, log=lambda line: None)
    assert again.fingerprint == manifest.fingerprint
    first, second = _rows(out), _rows(tmp_path / "again")
    assert first.keys() == second.keys()
    for person_id, row in first.items():
        for column in ("heatmaps", "crop_jpeg"):
            assert row[column] == second[person_id][column], (person_id, column)
        for column in ("keypoints", "crop_to_image", "joints_image"):  # NaN where unlabelled
            np.testing.assert_array_equal(row[column], second[person_id][column], err_msg=person_id)


def _tiny_dataset(tmp_path: Path, real_images: Path, real_annotation: list[dict]) -> tuple[Path, Path]:
    """An HRNet-form file with one good person and one of each bad kind, and its image folder."""
    images = tmp_path / "images"
    images.mkdir()
    good = real_annotation[1]
    shutil.copy(real_images / good["image"], images / "good.jpg")
    shutil.copy(real_images / good["image"], tmp_path / "escape.jpg")  # readable, but outside
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 these bytes are not a picture")
    data = (real_images / good["image"]).read_bytes()
    (images / "truncated.jpg").write_bytes(data[: len(data) // 2])

    def person(image, **changes):
        return {**good, "image": image, **changes}

    entries = [
        person("good.jpg"),
        person("missing.jpg"),
        person("corrupt.jpg"),
        person("truncated.jpg"),
        person("good.jpg", center=[50_000.0, 200.0]),
        person("good.jpg", center=[float("nan"), 200.0]),
        person("../escape.jpg"),
    ]
    annotations = tmp_path / "tiny.json"
    annotations.write_text(json.dumps(entries))  # json writes NaN, and reads it back
    return annotations, images


EXPECTED_REASONS = {
    quarantine.MISSING_IMAGE: 1,
    quarantine.CORRUPT_IMAGE: 2,
    quarantine.BOX_OUTSIDE_IMAGE: 1,
    quarantine.NON_FINITE: 1,
    quarantine.PATH_ESCAPES_ROOT: 1,
}


def test_cli_quarantines_every_bad_kind(ray_local, real_images, real_annotation, tmp_path):
    annotations, images = _tiny_dataset(tmp_path, real_images, real_annotation)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        build_app(), ["prepare", "--annotations", str(annotations), "--images", str(images), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "quarantined=6" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_in"] == 7 == manifest["rows"]["val"] + manifest["rows"]["train"] + manifest["quarantined"]
    assert manifest["rows"] == {"train": 0, "val": 1}
    assert manifest["quarantined_by_reason"] == EXPECTED_REASONS
    table = pq.read_table(out / "quarantine").to_pylist()
    reasons = {(r["image"], r["reason"]) for r in table}
    assert reasons == {
        ("missing.jpg", quarantine.MISSING_IMAGE),
        ("corrupt.jpg", quarantine.CORRUPT_IMAGE),
        ("truncated.jpg", quarantine.CORRUPT_IMAGE),
        ("good.jpg", quarantine.BOX_OUTSIDE_IMAGE),
        ("good.jpg", quarantine.NON_FINITE),
        ("../escape.jpg", quarantine.PATH_ESCAPES_ROOT),
    }
    assert all(r["detail"] for r in table)


def test_interrupted_run_keeps_the_previous_output(ray_local, real_images, real_annotation, tmp_path):
    annotations, images = _tiny_dataset(tmp_path, real_images, real_annotation)
    out = tmp_path / "out"
    cfg = PrepareConfig(annotations=str(annotations), images=str(images), out=str(out), progress_every=1)
    first = run_prepare(cfg, log=lambda line: None)

    def interrupt(line: str) -> None:
        if "rows/s" in line:
            raise RuntimeError("interrupted")

    (images / "good.jpg").unlink()  # the next run would differ
    with pytest.raises(RuntimeError, match="interrupted"):
        run_prepare(cfg, log=interrupt)
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] == first.fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["escape.jpg", "images", "out", "tiny.json"]

    second = run_prepare(cfg, log=lambda line: None)  # a complete run replaces it
    assert second.fingerprint != first.fingerprint
    # good.jpg is gone: its person and the box-outside one (the image is read first) now miss it
    assert second.quarantined_by_reason[quarantine.MISSING_IMAGE] == 3
    assert json.loads((out / "manifest.json").read_text()) == second.to_json()


def test_cli_config_error_stops_before_any_work(tmp_path):
    annotations = tmp_path / "a.json"
    annotations.write_text("[]")
    result = CliRunner().invoke(
        build_app(),
        ["prepare", "--annotations", str(annotations), "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 2
    assert "images folder not found" in result.output and "--images" in result.output
    assert not (tmp_path / "out").exists()
