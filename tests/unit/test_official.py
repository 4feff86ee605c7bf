"""Official validation head sizes (detections_our_format.mat, valid.h5) and matching people to them."""

from __future__ import annotations

import numpy as np
import pytest

from dataprep.mpii import load_annotations
from dataprep.official import (
    SOURCE_H5,
    SOURCE_MAT,
    apply_official_head_sizes,
    head_size_sources,
    match_by_joints,
    official_rows,
    read_official,
)


def _people(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 500, size=(n, 16, 2)).astype(np.float64), np.ones((n, 16), bool)


def test_match_by_joints_by_hand():
    ref, ref_lab = _people(4)
    ref[0] += 0.5  # half-pixel annotations: exactly on the whole-pixel rounding boundary
    query = ref[[2, 0, 3]].copy()
    lab = ref_lab[[2, 0, 3]].copy()
    query[0, 5] = [0.0, 0.0]  # one joint disagrees (as the real .mat's x = 0): 15 of 16 agree
    query[1] += 4e-4  # the .mat's float noise
    lab[2, :10] = False  # fewer labelled joints: the 6 left still agree
    query[2, :10] = np.nan
    np.testing.assert_array_equal(match_by_joints(ref, ref_lab, query, lab), [2, 0, 3])


def test_match_by_joints_needs_half_the_joints():
    ref, ref_lab = _people(2)
    query = ref[:1].copy()
    query[0, :9] += 7.0  # 9 of 16 disagree: 7 agreeing joints are less than half
    assert match_by_joints(ref, ref_lab, query, ref_lab[:1]).tolist() == [-1]
    query[0, 8] -= 7.0  # 8 of 16 agree: half is enough
    assert match_by_joints(ref, ref_lab, query, ref_lab[:1]).tolist() == [0]


@pytest.fixture(scope="module")
def json_people(mpii_dir):
    return load_annotations(mpii_dir / "mpii_annotations.json.gz")


@pytest.mark.parametrize("name, source", [("detections_our_format.mat", SOURCE_MAT), ("valid.h5", SOURCE_H5)])
def test_real_files_give_every_validation_person_its_official_head_size(mpii_dir, json_people, name, source):
    official = read_official(mpii_dir / name)
    rows = official_rows(json_people, official)
    val = np.array([r.split == "val" for r in json_people])
    assert (rows[~val] == -1).all()
    assert rows[val].tolist() == list(range(2958))  # the JSON's validation order is the file's
    records, report = apply_official_head_sizes(json_people, mpii_dir / name)
    assert report["matched"] == 2958 and report["val_records_not_in_file"] == 0
    assert head_size_sources(records)["val"] == {source: 2958}  # the 26 NaN ones included
    assert head_size_sources(records)["train"] == {"head_segment": 22099, "unknown": 147}
    head = np.array([r.head_size for r in records])[val]
    np.testing.assert_allclose(head, official.head_size)


def test_the_two_official_files_agree(mpii_dir):
    mat = read_official(mpii_dir / "detections_our_format.mat")
    h5 = read_official(mpii_dir / "valid.h5")
    np.testing.assert_allclose(mat.head_size, h5.head_size, atol=1e-4)
    np.testing.assert_array_equal(mat.labelled, h5.labelled)
