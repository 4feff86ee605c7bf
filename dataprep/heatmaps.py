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
    product) and all joints of all people are pasted with one scatter, so the cost is close to
    that of writing the zeroed output once.

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
    total = n_maps * size * size
    radius = math.ceil(3 * sigma)

    ok = renderable(kp, lab, size).reshape(n_maps)
    # Joints with no map are moved off the grid so every window pixel of theirs is dropped
    # (this also keeps NaN and huge values away from the integer cast below).
    xy = np.where(ok, kp.reshape(n_maps, 2).T, -(radius + 1.0))  # (2, N)
    # Window layout (2, w, N): the long joint axis last keeps numpy's inner loops long.
    pix = np.floor(xy + 0.5)[:, None, :] + np.arange(-radius, radius + 1)[None, :, None]
    d = pix - xy[:, None, :]
    g = np.exp(d * d * (-0.5 / sigma**2)).astype(np.float32)  # (2, w, N) 1-D Gaussians

    # Flat output index of each window pixel; anything off the map goes to one spare slot at
    # index `total` that is cut off at the end (cheaper than boolean masking).
    idx = pix.astype(np.int64)
    off_map = (pix < 0) | (pix > size - 1)
    idx[1] *= size
    idx[1] += np.arange(0, total, size * size, dtype=np.int64)
    idx[off_map] = total
    flat = idx[1][:, None, :] + idx[0][None, :, :]  # (w, w, N)
    np.minimum(flat, total, out=flat)  # a spare row or column alone may overshoot `total`

    out = np.zeros(total + 1, dtype=np.float32)
    out[flat] = g[1][:, None, :] * g[0][None, :, :]
    return out[:total].reshape(*lead, size, size)


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
