"""Gaussian heatmap targets rendered where the model trains (torch; any device).

The data stream ships each sample's keypoints (heatmap px) and joint weights, ~0.3 KB, instead
of its 16 float32 64x64 maps (262 KB); the training device draws the maps per batch. The result
equals `dataprep.heatmaps.render_heatmaps` (the numpy renderer, the reference) to float32
rounding: the same window rule, the 1-D Gaussians in float64 and their outer product in float32
(tests/unit/test_targets.py compares the two).

Frame: heatmap px, 0-based, pixel centres at integers; a keypoint at (x, y) lights up row y,
column x.
"""

from __future__ import annotations

import math

import torch


def renderable(keypoints: torch.Tensor, labelled: torch.Tensor, size: int) -> torch.Tensor:
    """(..., J) bool: labelled, finite, and the nearest pixel (round half up) inside the
    `size x size` map (`dataprep.heatmaps.renderable`). `keypoints`: (..., J, 2) heatmap px."""
    nearest = torch.floor(keypoints.double() + 0.5)
    inside = ((nearest >= 0) & (nearest <= size - 1)).all(-1)  # False for NaN
    return labelled.bool() & inside


def render_heatmaps(keypoints: torch.Tensor, labelled: torch.Tensor, size: int = 64,
                    sigma: float = 1.0) -> torch.Tensor:
    """One Gaussian map per joint, on the inputs' device.

    Map j holds exp(-((u - x)^2 + (v - y)^2) / (2 sigma^2)) at pixel (row v, column u) for the
    pixels within r = ceil(3 sigma) of the keypoint's nearest pixel (per axis), 0 elsewhere;
    all-zero for a joint that is not :func:`renderable`.

    Args:
        keypoints: (..., J, 2) heatmap px (x, y), float64 for results equal to the numpy
            renderer's (float32 keypoints are off by up to ~1e-5 at 64 px).
        labelled: (..., J) bool (or the 0/1 joint weights).
        size: side of the square maps. sigma: standard deviation in heatmap px.
    Returns:
        (..., J, size, size) float32.
    """
    if keypoints.dim() < 2 or keypoints.shape[-1] != 2:
        raise ValueError(f"render_heatmaps: keypoints must have shape (..., J, 2), got {tuple(keypoints.shape)}")
    if labelled.shape != keypoints.shape[:-1]:
        raise ValueError(f"render_heatmaps: labelled must have shape {tuple(keypoints.shape[:-1])}, "
                         f"got {tuple(labelled.shape)}")
    if not (size > 0 and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"render_heatmaps: need size > 0 and sigma > 0, got {size}, {sigma}")
    radius = math.ceil(3 * sigma)
    ok = renderable(keypoints, labelled, size)  # (..., J)
    xy = torch.where(ok[..., None], keypoints.double(), torch.zeros((), dtype=torch.float64,
                                                                     device=keypoints.device))
    nearest = torch.floor(xy + 0.5)  # (..., J, 2)
    pix = torch.arange(size, dtype=torch.float64, device=keypoints.device)  # (size,)
    d = pix - xy[..., None]  # (..., J, 2, size)
    g = torch.exp(d * d * (-0.5 / sigma**2))  # 1-D Gaussians along x and y, as the numpy renderer
    g = g * ((pix - nearest[..., None]).abs() <= radius) * ok[..., None, None]
    g = g.float()
    return g[..., 1, :, None] * g[..., 0, None, :]  # (..., J, size, size): rows y, columns x
