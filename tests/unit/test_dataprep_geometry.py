"""Crop geometry against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from dataprep.geometry import (
    apply_affine,
    compose_affine,
    crop_transform,
    heatmap_to_input,
    input_to_heatmap,
    invert_affine,
)


def test_center_maps_to_crop_centre():
    a = crop_transform((300.0, 200.0), 1.0, 256)
    np.testing.assert_allclose(apply_affine(a, np.array([300.0, 200.0])), [127.5, 127.5])


def test_box_edges_map_to_crop_edges():
    # scale 1 -> 200 px box around (300, 200): x in [200, 400], y in [100, 300]; the crop's
    # outer pixel edges are -0.5 and 255.5 (pixel centres at integers).
    a = crop_transform((300.0, 200.0), 1.0, 256)
    corners = np.array([[200.0, 100.0], [400.0, 100.0], [400.0, 300.0], [200.0, 300.0]])
    expected = [[-0.5, -0.5], [255.5, -0.5], [255.5, 255.5], [-0.5, 255.5]]
    np.testing.assert_allclose(apply_affine(a, corners), expected, atol=1e-12)


def test_box_scale_widens_the_box():
    # box_scale 1.25 with scale 0.8 is again a 200 px box.
    a = crop_transform((50.0, 60.0), 0.8, 64, box_scale=1.25)
    np.testing.assert_allclose(a, [[0.32, 0.0, 31.5 - 16.0], [0.0, 0.32, 31.5 - 19.2]])


def test_rotation_90_is_counter_clockwise_on_screen():
    a = crop_transform((100.0, 100.0), 1.0, 200, rotation_deg=90.0)  # 1 crop px per image px
    pts = np.array([[110.0, 100.0], [100.0, 110.0], [100.0, 100.0]])  # right of, below, centre
    # right of centre -> above the crop centre; below the centre -> right of it.
    expected = [[99.5, 89.5], [109.5, 99.5], [99.5, 99.5]]
    np.testing.assert_allclose(apply_affine(a, pts), expected, atol=1e-12)


def test_matches_opencv_rotation_convention():
    cv2 = pytest.importorskip("cv2")
    a = crop_transform((40.0, 30.0), 0.5, 100, rotation_deg=30.0)  # 1 crop px per image px
    m = cv2.getRotationMatrix2D((40.0, 30.0), 30.0, 1.0)
    m[:, 2] += [49.5 - 40.0, 49.5 - 30.0]  # then move the centre to the crop centre
    np.testing.assert_allclose(a, m, atol=1e-12)


def test_round_trip_below_a_hundredth_of_a_pixel():
    rng = np.random.default_rng(0)
    for _ in range(50):
        center = rng.uniform(0, 1000, 2)
        a = crop_transform(center, rng.uniform(0.3, 5), 256, rng.uniform(-40, 40), rng.uniform(0.7, 1.4))
        pts = rng.uniform(-100, 1100, (16, 2))
        back = apply_affine(invert_affine(a), apply_affine(a, pts))
        assert np.abs(back - pts).max() < 0.01
        np.testing.assert_allclose(compose_affine(invert_affine(a), a), [[1, 0, 0], [0, 1, 0]], atol=1e-9)


def test_apply_affine_keeps_shape_and_nan():
    a = crop_transform((0.0, 0.0), 1.0, 64)
    pts = np.zeros((3, 16, 2))
    pts[1, 4] = np.nan
    out = apply_affine(a, pts)
    assert out.shape == (3, 16, 2)
    assert np.isnan(out[1, 4]).all() and np.isfinite(np.delete(out.reshape(-1, 2), 20, 0)).all()


def test_input_heatmap_pixel_centres():
    # heatmap pixel 0 covers input pixels 0..3, centre 1.5; pixel 63 covers 252..255.
    np.testing.assert_allclose(input_to_heatmap(np.array([[1.5, 253.5]])), [[0.0, 63.0]])
    np.testing.assert_allclose(input_to_heatmap(np.array([-0.5, 255.5])), [-0.5, 63.5])
    np.testing.assert_allclose(heatmap_to_input(np.array([31.5, 0.0])), [127.5, 1.5])
    pts = np.random.default_rng(1).uniform(-10, 300, (5, 2))
    np.testing.assert_allclose(heatmap_to_input(input_to_heatmap(pts)), pts)


def test_crop_then_heatmap_agrees_with_a_64_px_crop():
    a256 = crop_transform((320.0, 240.0), 1.3, 256, rotation_deg=12.0)
    a64 = crop_transform((320.0, 240.0), 1.3, 64, rotation_deg=12.0)
    pts = np.array([[300.0, 200.0], [400.0, 330.0]])
    np.testing.assert_allclose(input_to_heatmap(apply_affine(a256, pts)), apply_affine(a64, pts), atol=1e-9)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_scale_is_a_clear_error(scale):
    with pytest.raises(ValueError, match="scale"):
        crop_transform((0.0, 0.0), scale, 256)


def test_singular_matrix_is_a_clear_error():
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.zeros((2, 3)))
