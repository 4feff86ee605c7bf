"""PCKh against hand-computed values and the real MPII validation ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataprep import pckh

# Offsets (px) of person 0's predictions from the truth, head size 10, so 5 px is the bound.
# Correct (<= 5): 9 (exactly 5), 12, 13, 11 (4.9), 15, 2, 3, 1. Wrong: 8, 14, 10, 4, 0, 5, 6, 7.
OFFSETS_P0 = {0: 6.0, 1: 0.0, 2: 0.0, 3: 0.0, 4: 8.0, 5: 9.0, 6: 20.0, 7: 20.0, 8: 6.0, 9: 5.0,
              10: 10.0, 11: 4.9, 12: 0.0, 13: 0.0, 14: 7.0, 15: 1.0}


def hand_case():
    """Two people, head size 10. Person 1: ankles (0, 5) missing, only upper neck (8) wrong."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(50, 150, size=(2, 16, 2))
    pred = gt.copy()
    for j, off in OFFSETS_P0.items():
        pred[0, j, 0] += off * 0.6  # a 3-4-5 direction, so |offset| is exactly `off`
        pred[0, j, 1] += off * 0.8
    missing = np.zeros((2, 16), bool)
    missing[1, [0, 5]] = True
    gt[1, [0, 5]] = np.nan
    pred[1, 8, 1] += 7.0
    return pred, gt, missing, np.array([10.0, 10.0])


def test_per_joint_hand_computed():
    got = pckh.pckh_per_joint(*hand_case())
    expected = [0, 100, 100, 100, 50, 0, 50, 50, 0, 100, 50, 100, 100, 100, 50, 100]
    np.testing.assert_allclose(got, expected)


def test_table_hand_computed():
    table = pckh.pckh_table(*hand_case())
    assert table["Head"] == pytest.approx(50.0)  # upper neck 0 %, head top 100 %
    assert table["Shoulder"] == pytest.approx(100.0)
    assert table["Elbow"] == pytest.approx(75.0)
    assert table["Wrist"] == pytest.approx(75.0)
    assert table["Hip"] == pytest.approx(100.0)
    assert table["Knee"] == pytest.approx(75.0)
    assert table["Ankle"] == pytest.approx(0.0)
    assert table["UBody"] == pytest.approx(100 * 10 / 12)  # 4 of 6 + 6 of 6 arm joints
    # Pooled over 26 labelled scored joints (14 + 12), 8 + 11 correct; not the column mean 67.9.
    assert table["Total"] == pytest.approx(100 * 19 / 26)
    assert len(table["per_joint"]) == 16 and table["threshold"] == 0.5


def test_boundary_is_inclusive():
    gt = np.zeros((1, 16, 2))
    pred = gt.copy()
    pred[0, :, 0] = 9.0
    pred[0, :, 1] = 12.0  # 15 px away
    boxes = np.array([[[0.0, 0.0], [30.0, 40.0]]])  # diagonal 50 -> head size 30 -> bound 15
    head = pckh.head_size_from_boxes(boxes)
    assert head[0] == pytest.approx(30.0)
    missing = np.zeros((1, 16), bool)
    assert pckh.pckh_table(pred, gt, missing, head)["Total"] == 100.0
    pred[0, :, 1] = 12.001
    assert pckh.pckh_table(pred, gt, missing, head)["Total"] == 0.0


def test_threshold_scales_the_bound():
    pred, gt, missing, head = hand_case()
    # At threshold 1.0 the bound is 10 px: the 6, 6, 7, 8 and 9 px joints become correct
    # (person 1's 7 px upper neck too). Joint 10 sits at 10 px, a float-rounding boundary here.
    per_joint = pckh.pckh_per_joint(pred, gt, missing, head, threshold=1.0)
    np.testing.assert_allclose(per_joint[[0, 4, 5, 8, 14]], [100, 100, 100, 100, 100])
    np.testing.assert_allclose(per_joint[[6, 7]], [50, 50])  # 20 px still wrong


def test_curve_matches_table_and_is_monotone():
    pred, gt, missing, head = hand_case()
    thresholds = np.linspace(0, 1, 11)
    curve = pckh.pckh_curve(pred, gt, missing, head, thresholds)
    assert set(curve) == {"threshold", *pckh.TABLE_KEYS}
    assert np.all(np.diff(curve["Total"]) >= 0)
    assert curve["Total"][5] == pytest.approx(pckh.pckh_table(pred, gt, missing, head)["Total"])
    # At 0 only the exact predictions count: person 0 joints 1, 2, 3, 12, 13 + person 1's 11.
    assert curve["Total"][0] == pytest.approx(100 * 16 / 26)


def test_never_labelled_joint_is_nan_not_zero():
    pred, gt, missing, head = hand_case()
    missing[:, 9] = True
    per_joint = pckh.pckh_per_joint(pred, gt, missing, head)
    assert math.isnan(per_joint[9])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, g, m, h: (p[:, :15], g, m, h), "shape"),
        (lambda p, g, m, h: (np.where(np.arange(16)[None, :, None] == 3, np.nan, p), g, m, h),
         "non-finite predictions"),
        (lambda p, g, m, h: (p, g, m, np.array([10.0, 0.0])), "head size of row 1"),
        (lambda p, g, m, h: (p, g, np.zeros_like(m), h), "not marked missing"),
    ],
)
def test_bad_inputs_are_named(mutate, message):
    with pytest.raises(ValueError, match=message):
        pckh.pckh_table(*mutate(*hand_case()))


def test_unknown_head_size_skips_that_person():
    """Person 1 without a head size (NaN): only person 0's 14 scored joints count (8 correct)."""
    pred, gt, missing, _ = hand_case()
    table = pckh.pckh_table(pred, gt, missing, np.array([10.0, np.nan]))
    assert table["Total"] == pytest.approx(100 * 8 / 14)
    assert table["Head"] == pytest.approx(50.0)  # person 0: upper neck wrong, head top right
    dist = pckh.normalized_distances(pred, gt, missing, np.array([10.0, np.nan]))
    assert np.isnan(dist[1]).all() and not np.isnan(dist[0]).any()


def test_unknown_head_size_does_not_hide_a_bad_prediction():
    pred, gt, missing, _ = hand_case()
    pred[1, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite predictions"):
        pckh.pckh_table(pred, gt, missing, np.array([10.0, np.nan]))


def test_real_json_people_without_head_joints_score(mpii_dir):
    """The 26 validation people of the PyTorch JSON without upper neck or head top: NaN head
    size; scoring the truth with the JSON's own head sizes skips them and gives 100."""
    from dataprep.mpii import load_annotations

    val = load_annotations(mpii_dir / "mpii_annotations.json.gz", split="val")
    head = np.array([r.head_size for r in val])
    assert np.isnan(head).sum() == 26
    joints = np.stack([r.joints for r in val])
    missing = ~np.stack([r.labelled for r in val])
    table = pckh.pckh_table(np.nan_to_num(joints), joints, missing, head)
    assert table["Total"] == 100.0


def test_nan_prediction_of_missing_joint_is_allowed():
    pred, gt, missing, head = hand_case()
    pred[1, 0] = np.nan  # ground truth missing there: nothing to score
    assert pckh.pckh_table(pred, gt, missing, head)["Ankle"] == 0.0


def test_real_ground_truth_against_itself_is_100(mpii_dir):
    truth = pckh.load_mpii_ground_truth(mpii_dir / "detections_our_format.mat")
    assert truth.joints.shape == (2958, 16, 2) and truth.missing.shape == (2958, 16)
    table = pckh.pckh_table(truth.joints, truth.joints, truth.missing, truth.head_size)
    assert all(table[k] == 100.0 for k in pckh.TABLE_KEYS)


def test_real_reference_predictions(mpii_dir):
    """`pos_pred_src` in the file: coarse (heatmap-grid) predictions; documented result 82.3 Total."""
    truth = pckh.load_mpii_ground_truth(mpii_dir / "detections_our_format.mat")
    table = pckh.pckh_table(truth.predictions, truth.joints, truth.missing, truth.head_size)
    got = {k: round(table[k], 1) for k in pckh.TABLE_KEYS}
    assert got == {"Head": 96.7, "Shoulder": 92.7, "Elbow": 83.4, "Wrist": 76.7, "Hip": 81.9,
                   "Knee": 73.4, "Ankle": 65.4, "UBody": 84.3, "Total": 82.3}


def test_loader_names_the_file_and_the_fix(tmp_path):
    from scipy.io import savemat

    path = tmp_path / "wrong.mat"
    savemat(path, {"something": np.zeros(3)})
    with pytest.raises(ValueError, match="wrong.mat.*pos_gt_src"):
        pckh.load_mpii_ground_truth(path)
