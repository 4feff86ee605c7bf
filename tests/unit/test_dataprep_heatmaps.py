"""Heatmap rendering and quantisation against hand-computed values (speed: benchmarks/heatmaps.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataprep.heatmaps import (
    dequantize_heatmaps,
    quantize_heatmaps,
    render_heatmaps,
    renderable,
)


def one(x: float, y: float, size: int = 64, sigma: float = 1.0) -> np.ndarray:
    return render_heatmaps(np.array([[x, y]]), np.array([True]), size, sigma)[0]


def test_hand_computed_values_at_an_integer_keypoint():
    hm = one(10.0, 20.0)
    assert hm.dtype == np.float32 and hm.shape == (64, 64)
    assert hm[20, 10] == 1.0
    assert hm[20, 11] == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert hm[21, 11] == pytest.approx(math.exp(-1.0), rel=1e-6)
    assert hm[17, 10] == pytest.approx(math.exp(-4.5), rel=1e-6)  # window edge, r = 3
    assert hm[16, 10] == 0.0 and hm[20, 14] == 0.0  # outside the window
    assert np.count_nonzero(hm) == 49
    np.testing.assert_array_equal(hm, hm.T.T)
    np.testing.assert_allclose(hm[20, 7:14], hm[17:24, 10])  # isotropic


def test_sub_pixel_centre():
    hm = one(10.25, 19.625)  # nearest pixel (10, 20): window rows 17..23, columns 7..13
    assert np.unravel_index(hm.argmax(), hm.shape) == (20, 10)
    assert hm[20, 10] == pytest.approx(math.exp(-(0.25**2 + 0.375**2) / 2), rel=1e-6)
    assert hm[19, 11] == pytest.approx(math.exp(-(0.75**2 + 0.625**2) / 2), rel=1e-6)
    assert hm[23, 7] == pytest.approx(math.exp(-(3.25**2 + 3.375**2) / 2), rel=1e-6)
    assert hm[17, 10] > 0 and hm[16, 10] == 0.0 and hm[24, 10] == 0.0
    assert hm[20, 6] == 0.0 and hm[20, 13] > 0 and hm[20, 14] == 0.0


def test_sigma_two_window():
    hm = one(30.0, 30.0, sigma=2.0)
    assert hm[30, 36] == pytest.approx(math.exp(-36 / 8), rel=1e-6)
    assert hm[30, 37] == 0.0
    assert np.count_nonzero(hm) == 13 * 13


def test_clipping_at_borders():
    hm = one(0.0, 63.0)
    assert hm[63, 0] == 1.0
    assert hm[62, 1] == pytest.approx(math.exp(-1.0), rel=1e-6)
    assert np.count_nonzero(hm) == 16  # the 4x4 quarter of the window inside the map
    assert hm[:59].sum() == 0 and hm[:, 4:].sum() == 0


def test_out_of_frame_and_unlabelled_give_zero_maps():
    kp = np.array([[-0.6, 5.0], [5.0, 63.5], [np.nan, 3.0], [10.0, 10.0], [-0.5, 63.49], [1e300, 0.0]])
    lab = np.array([True, True, True, False, True, True])
    hm = render_heatmaps(kp, lab)
    assert hm.shape == (6, 64, 64)
    assert [float(h.max()) for h in hm] == [0.0, 0.0, 0.0, 0.0, hm[4].max(), 0.0]
    assert hm[4, 63, 0] == pytest.approx(math.exp(-(0.5**2 + 0.49**2) / 2), rel=1e-6)
    np.testing.assert_array_equal(renderable(kp, lab), [False, False, False, False, True, False])


def test_joints_do_not_leak_into_each_other():
    kp = np.array([[0.0, 0.0], [63.0, 63.0], [63.0, 0.0]])
    hm = render_heatmaps(kp, np.ones(3, bool))
    for j, (x, y) in enumerate(kp.astype(int)):
        np.testing.assert_array_equal(hm[j], one(x, y))


def test_batch_shape_equals_per_person_rendering_and_is_deterministic():
    rng = np.random.default_rng(0)
    kp = rng.uniform(-3, 66, (5, 16, 2))
    lab = rng.uniform(size=(5, 16)) > 0.2
    batch = render_heatmaps(kp, lab, sigma=1.5)
    assert batch.shape == (5, 16, 64, 64) and batch.flags.c_contiguous
    for b in range(5):
        np.testing.assert_array_equal(batch[b], render_heatmaps(kp[b], lab[b], sigma=1.5))
    np.testing.assert_array_equal(batch, render_heatmaps(kp, lab, sigma=1.5))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="labelled"):
        render_heatmaps(np.zeros((16, 2)), np.ones(15, bool))
    with pytest.raises(ValueError, match="keypoints"):
        render_heatmaps(np.zeros((16, 3)), np.ones(16, bool))


def test_quantize_round_trip():
    hm = one(10.3, 20.7)
    q = quantize_heatmaps(hm)
    assert q.dtype == np.uint8
    assert q[21, 10] == round(float(hm[21, 10]) * 255)
    np.testing.assert_array_equal(quantize_heatmaps(np.array([0.0, 1.0, 0.5, 1.2, -0.1, 1 / 255])), [0, 255, 128, 255, 0, 1])
    back = dequantize_heatmaps(q)
    assert back.dtype == np.float32
    assert np.abs(back - hm).max() <= 0.5 / 255 + 1e-7
    with pytest.raises(ValueError, match="uint8"):
        dequantize_heatmaps(hm)


def _dense_reference(kp, lab, size=64, sigma=1.0):
    """The naive way: a full-grid exp per joint (what the windowed renderer must beat)."""
    ys, xs = np.mgrid[0:size, 0:size]
    out = np.zeros((*lab.shape, size, size), np.float32)
    for idx in np.ndindex(*lab.shape):
        if lab[idx]:
            x, y = kp[idx]
            out[idx] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return out


def test_window_matches_the_dense_gaussian():
    """Inside the window the values are the full Gaussian's; outside it only a tail < e^-4.5."""
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 63, (8, 16, 2))
    lab = np.ones((8, 16), bool)
    dense = _dense_reference(kp, lab)
    ours = render_heatmaps(kp, lab)
    inside = ours > 0
    np.testing.assert_allclose(ours[inside], dense[inside], rtol=1e-6)
    assert dense[~inside].max() < math.exp(-4.5)
