"""The pure parts of `shg prepare`, no Ray: checks, decode, crops, the batch function, the writer."""

from __future__ import annotations


import cv2
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dataprep import quarantine
from dataprep.crops import ImageDecodeError, crop_person, decode_image
from dataprep.geometry import apply_affine
from dataprep.joints import NUM_JOINTS
from dataprep.prepare import (
    PrepareConfig,
    PrepareConfigError,
    check_config,
    load_records,
    records_table,
    screen_records,
)
from dataprep.prepare_batch import WORK_SCHEMA, prepare_batch
from dataprep.prepared_writer import PreparedDatasetWriter, fingerprint
from dataprep.records import PersonRecord
from dataprep.schema import CROP_SIZE, PREPARED_SCHEMA, QUARANTINE_SCHEMA


def _record(**changes) -> PersonRecord:
    fields = dict(
        person_id="a_1", image="a.jpg", width=0, height=0, center=(50.0, 40.0), scale=0.4,
        joints=np.tile([50.0, 40.0], (NUM_JOINTS, 1)), labelled=np.ones(NUM_JOINTS, bool),
        head_size=float("nan"), split="val",
    )
    fields.update(changes)
    return PersonRecord(**fields)


@pytest.mark.parametrize("path", ["../escape.jpg", "a/../../b.jpg", "/etc/passwd", "C:\\x.jpg", ""])
def test_paths_that_leave_the_root_are_rejected(path):
    assert quarantine.check_image_path(path).reason == quarantine.PATH_ESCAPES_ROOT


@pytest.mark.parametrize("path", ["a.jpg", "sub/dir/a.jpg", "a..b.jpg"])
def test_paths_under_the_root_pass(path):
    assert quarantine.check_image_path(path) is None


def test_geometry_checks():
    joints, lab = np.zeros((NUM_JOINTS, 2)), np.ones(NUM_JOINTS, bool)
    assert quarantine.check_geometry(np.array([1.0, 2.0]), 1.0, joints, lab, float("nan")) is None
    assert quarantine.check_geometry(np.array([np.nan, 2.0]), 1.0, joints, lab, 1.0).reason == quarantine.NON_FINITE
    assert quarantine.check_geometry(np.array([1.0, 2.0]), 0.0, joints, lab, 1.0).reason == quarantine.NON_FINITE
    joints[3] = np.inf
    assert "[3]" in quarantine.check_geometry(np.array([1.0, 2.0]), 1.0, joints, lab, 1.0).detail
    lab[3] = False  # an unlabelled joint may be anything
    assert quarantine.check_geometry(np.array([1.0, 2.0]), 1.0, joints, lab, 1.0) is None


def test_box_in_image_by_hand():
    # scale 0.5: box side 100, half 50. Image 200 x 100 covers [-0.5, 199.5] x [-0.5, 99.5].
    assert quarantine.check_box_in_image(np.array([100.0, 50.0]), 0.5, 200, 100) is None
    assert quarantine.check_box_in_image(np.array([249.0, 50.0]), 0.5, 200, 100) is None  # 199 < 199.5
    assert quarantine.check_box_in_image(np.array([249.5, 50.0]), 0.5, 200, 100).reason == quarantine.BOX_OUTSIDE_IMAGE
    assert quarantine.check_box_in_image(np.array([100.0, -50.5]), 0.5, 200, 100).reason == quarantine.BOX_OUTSIDE_IMAGE


def test_screen_records_quarantines_duplicates_and_invalid_records():
    records = [_record(), _record(), _record(person_id="b", labelled=np.zeros(NUM_JOINTS, bool)),
               _record(person_id="c", image="../x.jpg")]
    accepted, rejected = screen_records(records)
    assert [r.person_id for r in accepted] == ["a_1"]
    assert [(r["person_id"], r["reason"]) for r in rejected] == [
        ("a_1", quarantine.DUPLICATE_PERSON_ID),
        ("b", quarantine.INVALID_RECORD),
        ("c", quarantine.PATH_ESCAPES_ROOT),
    ]


def test_decode_rejects_truncated_and_garbage_bytes():
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = buf.tobytes()
    assert decode_image(data).shape == (16, 16, 3)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError):
        decode_image(b"not an image at all")


def test_crop_person_keypoints_and_targets_share_one_frame():
    # A white dot at image px (70, 30); the person box (scale 0.5 -> side 100) is centred there.
    image = np.zeros((100, 200, 3), np.uint8)
    image[30, 70] = 255
    joints = np.full((NUM_JOINTS, 2), np.nan)
    joints[0] = (70.0, 30.0)
    labelled = np.zeros(NUM_JOINTS, bool)
    labelled[0] = True
    crop = crop_person(image, np.array([70.0, 30.0]), 0.5, joints, labelled)
    c = (CROP_SIZE - 1) / 2
    assert np.allclose(crop.keypoints[0], (c, c))
    assert np.isnan(crop.keypoints[1:]).all()
    # the brightest crop pixel is the dot's image (2.56 crop px per image px, bilinear blur)
    y, x = np.unravel_index(crop.crop[..., 0].argmax(), crop.crop.shape[:2])
    assert abs(x - c) <= 1 and abs(y - c) <= 1
    assert np.allclose(apply_affine(crop.crop_to_image, crop.keypoints[0]), (70.0, 30.0))
    # standard crop centre 127.5 input px -> heatmap px (127.5 + 0.5) / 4 - 0.5 = 31.5: the peak
    # window is centred on the nearest pixel (32, 32) and the 4 pixels around 31.5 tie.
    hm = crop.heatmaps[0].astype(int)
    assert hm.max() == hm[31, 31] == hm[32, 32] == hm[31, 32] == hm[32, 31]
    assert hm[31, 31] == round(255 * np.exp(-0.25))
    assert crop.heatmaps[1:].max() == 0


def _write_jpeg(path, shape=(120, 160)):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 255, (*shape, 3), dtype=np.uint8))


def test_prepare_batch_reasons_and_row_content(tmp_path):
    _write_jpeg(tmp_path / "good.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    records = [
        _record(person_id="good", image="good.jpg", center=(80.0, 60.0), width=160, height=120),
        _record(person_id="missing", image="nowhere.jpg"),
        _record(person_id="corrupt", image="corrupt.jpg"),
        _record(person_id="outside", image="good.jpg", center=(1000.0, 60.0)),
        _record(person_id="size", image="good.jpg", width=640, height=480),
        _record(person_id="tiny", image="good.jpg", center=(80.0, 60.0), scale=1e-320),
    ]
    out = prepare_batch(records_table(records), str(tmp_path), 90)
    assert out.schema == WORK_SCHEMA
    reasons = dict(zip(out.column("person_id").to_pylist(), out.column("reason").to_pylist()))
    assert reasons == {
        "good": None,
        "missing": quarantine.MISSING_IMAGE,
        "corrupt": quarantine.CORRUPT_IMAGE,
        "outside": quarantine.BOX_OUTSIDE_IMAGE,
        "size": quarantine.SIZE_MISMATCH,
        "tiny": quarantine.CROP_FAILED,  # a subnormal scale: the box has no size
    }
    good = out.filter(pc.is_null(out.column("reason"))).to_pylist()[0]
    assert good["crop_size"] == CROP_SIZE
    assert decode_image(good["crop_jpeg"]).shape == (CROP_SIZE, CROP_SIZE, 3)
    assert len(good["heatmaps"]) == NUM_JOINTS * 64 * 64


def test_writer_routes_counts_and_keeps_schemas(tmp_path):
    _write_jpeg(tmp_path / "good.jpg")
    records = [_record(person_id=f"p{i}", image="good.jpg", center=(80.0, 60.0), split=s)
               for i, s in enumerate(["train", "val", "val"])]
    records.append(_record(person_id="gone", image="nowhere.jpg"))
    batch = prepare_batch(records_table(records), str(tmp_path), 90)
    writer = PreparedDatasetWriter(tmp_path / "out", rows_per_file=1, row_group_rows=1)
    writer.write(batch)
    assert writer.close() == {"train": 1, "val": 2, "quarantine": 1}
    assert len(writer.files("val")) == 2  # one row per file
    assert pq.read_schema(writer.files("val")[0]).remove_metadata() == PREPARED_SCHEMA.remove_metadata()
    assert pq.read_table(tmp_path / "out" / "quarantine").schema.remove_metadata() == QUARANTINE_SCHEMA
    assert pq.read_table(tmp_path / "out" / "quarantine").column("reason").to_pylist() == [quarantine.MISSING_IMAGE]
    jpeg = pq.ParquetFile(writer.files("train")[0]).metadata.row_group(0)
    compression = {jpeg.column(i).path_in_schema: jpeg.column(i).compression for i in range(jpeg.num_columns)}
    assert compression["crop_jpeg"] == "UNCOMPRESSED"
    assert compression["heatmaps"] == compression["keypoints.list.element"] == "ZSTD"


def test_fingerprint_ignores_order_but_not_content():
    pairs = [("a", b"1"), ("b", b"2"), ("c", b"3")]
    assert fingerprint(pairs) == fingerprint(pairs[::-1])
    assert fingerprint(pairs) != fingerprint([("a", b"1"), ("b", b"2"), ("c", b"4")])


def test_config_errors_name_the_problem_and_the_fix(tmp_path):
    annotations = tmp_path / "a.json"
    annotations.write_text("[]")
    images = tmp_path / "images"
    images.mkdir()
    ok = dict(annotations=str(annotations), images=str(images), out=str(tmp_path / "out"))
    check_config(PrepareConfig(**ok))
    cases = [
        (dict(annotations=str(tmp_path / "nope.json")), r"annotations file not found.*--annotations"),
        (dict(format="csv"), r"unknown annotation format 'csv'.*--format"),
        (dict(split="test"), r"--split train or --split val"),
        (dict(images=str(tmp_path / "no_images")), r"images folder not found.*--images"),
        (dict(jpeg_quality=0), r"--jpeg-quality must be between 1 and 100"),
    ]
    for change, message in cases:
        with pytest.raises(PrepareConfigError, match=message):
            check_config(PrepareConfig(**{**ok, **change}))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(PrepareConfigError, match="not a prepared dataset"):
        check_config(PrepareConfig(**ok))
    with pytest.raises(PrepareConfigError, match=r"a\.json: JSON, but neither.*--format"):
        load_records(PrepareConfig(**{**ok, "out": str(tmp_path / "out2")}))  # "[]": no entries
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PrepareConfigError, match="bad.json"):
        load_records(PrepareConfig(**{**ok, "annotations": str(tmp_path / "bad.json")}))
