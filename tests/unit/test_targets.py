"""Targets drawn on the training device (shg_model.targets) equal the numpy reference renderer
(dataprep.heatmaps) on hand-made keypoints: inside, sub-pixel, at and beyond every border,
unlabelled and non-finite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dataprep import heatmaps as reference
from shg_model.targets import render_heatmaps, renderable

# (x, y) in heatmap px of a 64 px map: centre, sub-pixel, half-pixel ties, near each border
# (window clipped), exactly on the last pixel, just outside (nearest pixel -1 or 64: no map),
# far outside, and non-finite.
POINTS = [
    (10.0, 20.0), (10.25, 19.625), (31.5, 31.5), (0.0, 0.0), (63.0, 63.0), (1.3, 62.7),
    (-0.49, 5.0), (-0.5, 5.0), (-0.51, 5.0), (5.0, 63.49), (5.0, 63.5), (63.4999, 0.2),
    (2.9, 60.1), (-3.0, 30.0), (70.0, 70.0), (1e9, -1e9), (float("nan"), 3.0), (4.0, float("inf")),
]


def hand_made(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(2, 18, 2) keypoints and (2, 18) labelled: POINTS labelled, and again with every third
    unlabelled, plus random points around the map."""
    kp = np.array(POINTS, dtype=np.float64)
    labelled = np.ones(len(POINTS), dtype=bool)
    second = kp.copy()
    second[: len(POINTS) // 2] = rng.uniform(-4.0, 68.0, size=(len(POINTS) // 2, 2))
    lab2 = labelled.copy()
    lab2[::3] = False
    return np.stack([kp, second]), np.stack([labelled, lab2])


@pytest.mark.parametrize("size, sigma", [(64, 1.0), (16, 1.0), (64, 2.0), (5, 1.0), (64, 0.7)])
def test_device_targets_equal_the_numpy_renderer(size, sigma):
    kp, labelled = hand_made(np.random.default_rng(3))
    kp = kp * size / 64.0
    want = reference.render_heatmaps(kp, labelled, size, sigma)
    got = render_heatmaps(torch.from_numpy(kp), torch.from_numpy(labelled), size, sigma)
    assert got.dtype == torch.float32 and tuple(got.shape) == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-6)
    assert (got.numpy() == want).mean() > 0.999  # nearly all bit for bit
    np.testing.assert_array_equal(renderable(torch.from_numpy(kp), torch.from_numpy(labelled), size).numpy(),
                                  reference.renderable(kp, labelled, size))


def test_hand_computed_values_and_empty_maps():
    kp = torch.tensor([[10.0, 20.0], [-0.51, 5.0], [float("nan"), 1.0], [3.0, 3.0]], dtype=torch.float64)
    hm = render_heatmaps(kp, torch.tensor([True, True, True, False]))
    assert hm[0, 20, 10] == 1.0
    assert hm[0, 20, 11].item() == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert hm[0, 21, 11].item() == pytest.approx(math.exp(-1.0), rel=1e-6)
    assert hm[0, 16, 10] == 0.0 and torch.count_nonzero(hm[0]) == 49
    assert torch.count_nonzero(hm[1:]) == 0  # outside, non-finite, unlabelled: all-zero maps


def test_weights_as_labelled_and_a_batch_shape():
    """The stream ships the 0/1 weights (`renderable` already applied) as float32; they serve
    as `labelled` here. Leading batch dims are kept."""
    kp = torch.tensor([[[10.0, 20.0], [70.0, 1.0]]] * 3, dtype=torch.float64)  # (3, 2, 2)
    weight = torch.tensor([[1.0, 0.0]] * 3)
    hm = render_heatmaps(kp, weight, 64)
    assert tuple(hm.shape) == (3, 2, 64, 64) and hm[:, 0].amax().item() == 1.0 and hm[:, 1].abs().sum() == 0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="keypoints must have shape"):
        render_heatmaps(torch.zeros(4, 3), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="labelled must have shape"):
        render_heatmaps(torch.zeros(4, 2), torch.ones(5, dtype=torch.bool))
