"""Gaussian heatmap targets and their uint8 storage form (pure numpy).

Frame: heatmap px, 0-based, pixel centres at integers (see `dataprep.geometry`); a keypoint at
(x, y) lights up row y, column x.
"""

from __future__ import annotations

import math

import numpy as np


def renderable(keypoints: np.ndarray, labelled: np.ndarray, size: int = 64) -> np.ndarray:
    """Which joints get a non-zero map: labelled, finite, and the pixel nearest to the keypoint
    (round half up) lies inside the `size x size` map, i.e. -0.5 <= x, y < size - 0.5.

    Args:
        keypoints: (..., J, 2) heatmap px.
        labelled: (..., J) bool.
    Returns:
        (..., J) bool. Use it as the training mask so mask and maps always agree.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    nearest = np.floor(kp + 0.5)
    inside = ((nearest >= 0) & (nearest <= size - 1)).all(-1)  # False for NaN
    return np.asarray(labelled, dtype=bool) & inside


def render_heatmaps(
    keypoints: np.ndarray, labelled: np.ndarray, size: int = 64, sigma: float = 1.0
) -> np.ndarray:
    """Renders one Gaussian map per joint.

    Map j holds exp(-((u - x)^2 + (v - y)^2) / (2 sigma^2)) at pixel (row v, column u), with
    (x, y) the *exact* sub-pixel keypoint, evaluated only over the (2r+1)^2 window, r =
    ceil(3 sigma), centred on the keypoint's nearest pixel, clipped at the map borders, and 0
    elsewhere. So an integer keypoint has peak exactly 1 at its pixel; a sub-pixel one has its
    largest value (< 1) at its nearest pixel. For sigma=1 at (x=10, y=20): hm[20, 10] = 1,
    hm[20, 11] = e^-0.5, hm[21, 11] = e^-1. Joints that are not `renderable` (unlabelled,
    non-finite or nearest pixel outside the map) give an all-zero map.

    Only the window is evaluated (2 x (2r+1) exps per joint, the 2-D patch is their outer
    product) and all joints of all people are pasted with one scatter, so the cost is within
    2x of writing the zeroed output once (`benchmarks/heatmaps.py`).

    Args:
        keypoints: (..., J, 2) heatmap px (x, y); any leading batch shape.
        labelled: (..., J) bool.
        size: side of the square maps.
        sigma: Gaussian standard deviation in heatmap px.
    Returns:
        (..., J, size, size) float32, C-contiguous.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    lab = np.asarray(labelled, dtype=bool)
    if kp.ndim < 2 or kp.shape[-1] != 2:
        raise ValueError(f"render_heatmaps: keypoints must have shape (..., J, 2), got {kp.shape}")
    if lab.shape != kp.shape[:-1]:
        raise ValueError(
            f"render_heatmaps: labelled must have shape {kp.shape[:-1]}, got {lab.shape}"
        )
    if not (size > 0 and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"render_heatmaps: need size > 0 and sigma > 0, got {size}, {sigma}")
    lead = kp.shape[:-1]
    n_maps = math.prod(lead)
    radius = math.ceil(3 * sigma)
    width = min(2 * radius + 1, size)

    ok = renderable(kp, lab, size).reshape(n_maps)
    xy = np.where(ok, kp.reshape(n_maps, 2).T, 0.0)  # (2, N); NaN/huge values never reach the casts
    nearest = np.floor(xy + 0.5)
    # Each joint writes a width x width block whose start is clipped so the block lies inside
    # its map: every write lands in the joint's own map at a distinct pixel, so one scatter
    # with no bounds masks does all joints. Block pixels farther than `radius` from the nearest
    # pixel (only at borders) get 0, which is what the map holds there anyway.
    start = np.clip(nearest - radius, 0, size - width)
    # Layout (2, width, N): the long joint axis last keeps numpy's inner loops long.
    pix = start[:, None, :] + np.arange(width, dtype=np.float64)[:, None]
    d = pix - xy[:, None, :]
    g = np.exp(d * d * (-0.5 / sigma**2))  # 1-D Gaussians along x and y
    g *= np.abs(pix - nearest[:, None, :]) <= radius
    g[1] *= ok  # joints without a map write zeros
    g = g.astype(np.float32)

    rows = pix[1].astype(np.intp) * size + np.arange(0, n_maps * size * size, size * size, dtype=np.intp)
    flat = rows[:, None, :] + pix[0].astype(np.intp)[None, :, :]  # (width, width, N)
    out = np.zeros(n_maps * size * size, dtype=np.float32)
    out[flat] = g[1][:, None, :] * g[0][None, :, :]
    return out.reshape(*lead, size, size)


def quantize_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    """float heatmaps in [0, 1] -> uint8 = round(x * 255) (values clipped to [0, 1] first)."""
    h = np.asarray(heatmaps, dtype=np.float32)
    return np.rint(np.clip(h, 0.0, 1.0) * 255.0).astype(np.uint8)


def dequantize_heatmaps(quantized: np.ndarray) -> np.ndarray:
    """uint8 heatmaps -> float32 = q / 255 (error <= 1/510 against the original)."""
    q = np.asarray(quantized)
    if q.dtype != np.uint8:
        raise ValueError(f"dequantize_heatmaps: expected uint8, got {q.dtype}")
    return q.astype(np.float32) / np.float32(255.0)
