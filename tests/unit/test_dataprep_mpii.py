"""MPII loaders: hand-made files in every form, then the real shared annotation files."""

from __future__ import annotations

import gzip
import json
import math
import time

import numpy as np
import pytest

from dataprep.formats.common import HEAD_SEGMENT_TO_HEAD_SIZE
from dataprep.mpii import AnnotationFormatError, detect_format, load_annotations, read_annotations


def json_entry(**overrides) -> dict:
    joints = [[100.0 + 10 * k, 200.0 + 5 * k, 1.0] for k in range(16)]
    joints[0] = [0.0, 0.0, 0.0]  # unlabelled, stored as (0, 0)
    joints[5] = [-1.0, -1.0, 0.0]  # unlabelled, stored negative
    joints[9] = [-4.0, 30.0, 1.0]  # labelled, just left of the image
    entry = dict(
        dataset="MPI", isValidation=1.0, img_paths="000000001.jpg", img_width=640.0,
        img_height=480.0, objpos=[321.0, 241.0], scale_provided=2.0, joint_self=joints,
        annolist_index=4.0, people_index=2.0,
    )
    entry.update(overrides)
    return entry


def test_mpii_json_by_hand(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([json_entry(), json_entry(isValidation=0.0, people_index=3.0)]))
    assert detect_format(path) == "mpii_json"
    val, train = load_annotations(path)
    assert (val.split, train.split) == ("val", "train")
    assert (val.person_id, val.image, val.width, val.height) == ("4_2", "000000001.jpg", 640, 480)
    # raw objpos (321, 241), s 2 -> y += 30, s *= 1.25, then 1-based -> 0-based
    assert val.center == (320.0, 270.0) and val.scale == 2.5
    assert val.joints[1].tolist() == [109.0, 204.0]
    assert val.labelled.tolist() == [False] + [True] * 4 + [False] + [True] * 10
    assert np.isnan(val.joints[[0, 5]]).all()
    assert val.joints[9].tolist() == [-5.0, 29.0]
    # no head box -> 0.75 x |head_top - upper_neck| (both labelled here)
    neck = np.array([179.0, 239.0])
    assert val.head_size == pytest.approx(0.75 * np.hypot(*(val.joints[9] - neck)))
    assert val.head_size_source == "head_segment"
    assert val.visible_flag.tolist() == val.labelled.tolist()
    assert val.validate() == []
    assert [r.split for r in load_annotations(path, split="train")] == ["train"]


def test_mpii_json_root_wrapper_gzip_head_box_and_fallback_ids(tmp_path):
    entry = json_entry(head_box=[11.0, 21.0, 41.0, 61.0])  # 30 x 40 px -> diagonal 50
    del entry["annolist_index"], entry["people_index"]
    path = tmp_path / "b.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"root": [entry, entry]}, f)
    a, b = load_annotations(path)
    assert a.head_size == pytest.approx(30.0) and a.head_size_source == "head_box"
    assert (a.person_id, b.person_id) == ("000000001_1", "000000001_2")


def test_unknown_head_size_is_nan(tmp_path):
    entry = json_entry()
    entry["joint_self"][8] = [0.0, 0.0, 0.0]
    path = tmp_path / "c.json"
    path.write_text(json.dumps([entry]))
    (r,) = load_annotations(path)
    assert math.isnan(r.head_size) and r.head_size_source == ""


def hrnet_entry(**overrides) -> dict:
    entry = dict(
        image="x.jpg", center=[101.0, 51.0], scale=1.0,
        joints=[[-1.0, -1.0]] + [[11.0 + k, 21.0 + k] for k in range(15)],
        joints_vis=[0] + [1] * 15,
    )
    entry.update(overrides)
    return entry


def test_hrnet_json_by_hand(tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps([hrnet_entry(), hrnet_entry()]))
    assert detect_format(path) == "hrnet_json"
    a, b = load_annotations(path)
    assert a.center == (100.0, 65.0) and a.scale == 1.25  # raw: adjusted once, then 0-based
    assert a.joints[1].tolist() == [10.0, 20.0] and not a.labelled[0] and np.isnan(a.joints[0]).all()
    assert (a.split, a.person_id, b.person_id, a.width) == ("val", "x_1", "x_2", 0)
    assert load_annotations(path, split="train")[0].split == "train"


# --- the official release .mat, in its structure, made by hand -----------------------------


def struct_array(items: list[dict]) -> np.ndarray:
    """A 1xN MATLAB struct array; fields missing from an item become [] as in MATLAB."""
    keys = sorted({k for item in items for k in item})
    arr = np.empty((1, len(items)), dtype=[(k, object) for k in keys])
    for i, item in enumerate(items):
        for k in keys:
            arr[0, i][k] = item.get(k, np.zeros((0, 0)))
    return arr


def write_release(path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    points = [dict(id=k, x=float(11 + k), y=float(101 + 2 * k), is_visible=vis)
              for k, vis in zip(range(16), [1, 0, "1", "0", np.zeros((0, 0))] + [1] * 11) if k != 6]
    person = dict(x1=50.0, y1=60.0, x2=80.0, y2=100.0, objpos=dict(x=41.0, y=71.0), scale=2.0,
                  annopoints=dict(point=struct_array(points)))
    no_joints = dict(objpos=dict(x=5.0, y=5.0), scale=1.0)
    annolist = struct_array([
        dict(image=dict(name="train_a.jpg"), annorect=struct_array([person, no_joints])),
        dict(image=dict(name="test_b.jpg"), annorect=struct_array([no_joints, no_joints])),
        dict(image=dict(name="train_c.jpg"),  # one rect, one point: scipy squeezes both
             annorect=dict(objpos=dict(x=10.0, y=20.0), scale=1.0,
                           annopoints=dict(point=dict(id=9, x=3.0, y=4.0, is_visible=1)))),
    ])
    release = dict(annolist=annolist, img_train=np.array([[1, 0, 1]]), version="12")
    scipy_io.savemat(str(path), {"RELEASE": release})


def test_mat_release_by_hand(tmp_path):
    path = tmp_path / "mpii_human_pose_v1_u12_1.mat"
    write_release(path)
    assert detect_format(path) == "mat"
    loaded = read_annotations(path)
    assert loaded.format == "mat" and dict(loaded.skipped) == {"test_image": 2, "no_joints": 1}
    a, c = loaded.records
    assert (a.person_id, a.image, a.split, c.person_id) == ("1_1", "train_a.jpg", "train", "3_1")
    assert a.center == (40.0, 100.0) and a.scale == 2.5  # y 71 + 15*2 = 101, then 0-based
    assert a.joints[3].tolist() == [13.0, 106.0]
    assert a.labelled.tolist() == [True] * 6 + [False] + [True] * 9
    assert a.visible_flag[:6].tolist() == [True, False, True, False, False, True]
    assert a.head_size == pytest.approx(0.6 * 50.0) and a.head_size_source == "head_box"
    assert c.labelled.sum() == 1 and c.joints[9].tolist() == [2.0, 3.0]
    assert math.isnan(c.head_size)
    assert a.validate() == [] and c.validate() == []
    with pytest.raises(AnnotationFormatError, match="no 'val' split"):
        load_annotations(path, split="val")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.json", b"[{\"img_paths\": ", "not valid JSON"),
        ("other.json", b"[{\"a\": 1}]", "neither the MPII JSON form"),
        ("empty.json", b"[]", "neither the MPII JSON form"),
        ("junk.txt", b"hello", "unknown annotation file"),
        ("bad.h5", b"\x89HDF\r\n\x1a\nnot really", "not a readable HDF5"),
        ("bad.mat", b"MATLAB 5.0 MAT-file, garbage" + b"\0" * 200, "not a readable MATLAB v5"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AnnotationFormatError, match=message) as err:
        load_annotations(path)
    assert str(path) in str(err.value)


def test_mat_that_is_not_the_release(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "other.mat"
    scipy_io.savemat(str(path), {"x": 1})
    with pytest.raises(AnnotationFormatError, match=r"other.mat: expected the official MPII release.*\['x'\]"):
        load_annotations(path)


def test_bad_entry_names_the_row(tmp_path):
    path = tmp_path / "rows.json"
    bad = json_entry()
    bad["joint_self"] = bad["joint_self"][:15]
    path.write_text(json.dumps([json_entry(), bad]))
    with pytest.raises(AnnotationFormatError, match=r"rows.json: entry 1 .*joint_self has shape \(15, 3\)"):
        load_annotations(path)
    missing = json_entry()
    del missing["objpos"]
    path.write_text(json.dumps([missing]))
    with pytest.raises(AnnotationFormatError, match=r"entry 0 .*objpos"):
        load_annotations(path)


def test_h5_missing_dataset_and_wrong_format(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f["imgname"] = np.array([b"a.jpg"])
        f["center"] = np.zeros((1, 2))
    with pytest.raises(AnnotationFormatError, match=r"v.h5: .*missing \['scale', 'part', 'normalize'\]"):
        load_annotations(path)
    with pytest.raises(AnnotationFormatError, match="format='mat' was asked for"):
        load_annotations(path, format="mat")
    with pytest.raises(AnnotationFormatError, match="unknown annotation format"):
        load_annotations(path, format="coco")
    with pytest.raises(AnnotationFormatError, match="not found"):
        load_annotations(tmp_path / "nope.json")


# --- the real files in /work/shared/data/mpii ----------------------------------------------


@pytest.fixture(scope="module")
def mpii_json_records(mpii_dir):
    started = time.perf_counter()
    records = load_annotations(mpii_dir / "mpii_annotations.json.gz")
    return records, time.perf_counter() - started


@pytest.fixture(scope="module")
def h5_records(mpii_dir):
    return load_annotations(mpii_dir / "valid.h5")


def test_real_json_counts_and_speed(mpii_json_records):
    records, seconds = mpii_json_records
    print(f"loaded {len(records)} people from the MPII JSON in {seconds:.2f} s")
    assert sum(r.split == "train" for r in records) == 22246
    assert sum(r.split == "val" for r in records) == 2958
    assert seconds < 15  # ~2.5 s alone on the 2-core dev machine
    assert len({r.person_id for r in records}) == len(records)
    assert all(not r.validate() for r in records)
    # 366 joints with one negative coordinate are real annotations outside the image
    outside = sum(int(((r.joints < -1) & r.labelled[:, None]).any(1).sum()) for r in records)
    assert outside == 366


def test_real_h5_matches_the_json_validation_people(mpii_json_records, h5_records):
    val = [r for r in mpii_json_records[0] if r.split == "val"]
    assert len(h5_records) == 2958
    assert all(r.head_size > 0 and r.head_size_source == "h5_normalize" for r in h5_records)
    assert [r.person_id for r in h5_records] == [r.person_id for r in val]
    assert all((a.labelled == b.labelled).all() for a, b in zip(val, h5_records))
    # The JSON (raw, adjusted by its loader) and valid.h5 (stored adjusted) agree, so each was
    # adjusted exactly once (the JSON's scale has 3 decimals, hence the tolerance).
    centers = np.array([a.center for a in val]) - np.array([b.center for b in h5_records])
    scales = np.array([a.scale for a in val]) - np.array([b.scale for b in h5_records])
    assert np.abs(centers).max() < 0.01 and np.abs(scales).max() < 0.001
    # h5 parts are the JSON joints in whole pixels
    diff = np.concatenate([(a.joints - b.joints)[a.labelled] for a, b in zip(val, h5_records)])
    assert np.abs(diff).max() <= 1.0


def test_head_segment_factor_refits_on_real_data(mpii_json_records, h5_records):
    val = [r for r in mpii_json_records[0] if r.split == "val"]
    seg = np.array([np.hypot(*(r.joints[9] - r.joints[8])) for r in val])
    normalize = np.array([r.head_size for r in h5_records])
    ok = np.isfinite(seg) & (seg > 0)
    assert ok.sum() == 2932
    k = np.median(normalize[ok] / seg[ok])
    assert k == pytest.approx(HEAD_SEGMENT_TO_HEAD_SIZE, abs=1e-4)
    rel = np.array([a.head_size for a in val])[ok] / normalize[ok] - 1
    assert np.median(np.abs(rel)) < 1e-4 and np.abs(rel).mean() < 2e-3


def test_real_hrnet_json(mpii_dir, h5_records):
    cv2 = pytest.importorskip("cv2")
    records = load_annotations(mpii_dir / "images" / "annotations_hrnet_format.json")
    assert len(records) == 5 and {r.split for r in records} == {"val"}
    by_image = {r.image: r for r in h5_records}
    for r in records:
        h, w = cv2.imread(str(mpii_dir / "images" / r.image)).shape[:2]
        assert (r.width, r.height) == (w, h)
        inside = r.joints[r.labelled]
        assert ((inside >= -1) & (inside <= [w, h])).all()
        # the file's center/scale are raw: adjusted here once, they equal valid.h5's
        ref = by_image[r.image]
        assert np.allclose(r.center, ref.center, atol=1e-3) and r.scale == pytest.approx(ref.scale, abs=1e-5)
        assert np.abs(r.joints - ref.joints)[r.labelled].max() < 1.0
        assert r.head_size == pytest.approx(ref.head_size, rel=1e-4)
