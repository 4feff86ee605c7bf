"""Crop geometry as 2x3 affine matrices (pure numpy).

Frames and units: all points are (x, y) in pixels, 0-based, pixel centres at integers, x right,
y down. A crop of `out_size` pixels therefore covers the continuous square
[-0.5, out_size - 0.5]^2 and its centre is at ((out_size - 1) / 2, (out_size - 1) / 2).
A 2x3 matrix A maps a column (x, y, 1) to A @ (x, y, 1).
"""

from __future__ import annotations

import math

import numpy as np

HEATMAP_STRIDE = 4  # 256 px network input -> 64 px heatmaps


def crop_transform(
    center: tuple[float, float] | np.ndarray,
    scale: float,
    out_size: int,
    rotation_deg: float = 0.0,
    box_scale: float = 1.0,
) -> np.ndarray:
    """The affine that maps image px to crop px for the person box around `center`.

    The box is the square of side `200 * scale * box_scale` image px centred on `center`; it
    fills the whole `out_size x out_size` crop: `center` goes to the crop centre
    ((out_size-1)/2, (out_size-1)/2) and the box's outer edges (center +- side/2) go to the
    crop's outer pixel edges (-0.5 and out_size - 0.5).

    `rotation_deg` rotates the crop content counter-clockwise on screen about the crop centre
    (the convention of cv2.getRotationMatrix2D): at +90 deg an image point to the right of
    `center` lands above the crop centre.

    Returns:
        (2, 3) float64 matrix: crop = A @ (x_img, y_img, 1).
    """
    cx, cy = (float(v) for v in np.asarray(center, dtype=np.float64).reshape(2))
    side = 200.0 * float(scale) * float(box_scale)
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ValueError(f"crop_transform: center must be finite, got {center!r}")
    if not (math.isfinite(side) and side > 0):
        raise ValueError(
            f"crop_transform: scale * box_scale must be finite and > 0, got scale={scale!r}, "
            f"box_scale={box_scale!r}"
        )
    if out_size <= 0:
        raise ValueError(f"crop_transform: out_size must be > 0, got {out_size!r}")
    k = out_size / side  # crop px per image px
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # Rows of k * R with R = [[cos, sin], [-sin, cos]]: counter-clockwise on screen (y down).
    linear = k * np.array([[cos, sin], [-sin, cos]])
    half = (out_size - 1) / 2.0
    offset = np.array([half, half]) - linear @ np.array([cx, cy])
    return np.hstack([linear, offset[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine (as a 2x3 matrix). Raises ValueError when singular."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.shape != (2, 3):
        raise ValueError(f"invert_affine: expected a (2, 3) matrix, got shape {a.shape}")
    linear, offset = a[:, :2], a[:, 2]
    det = linear[0, 0] * linear[1, 1] - linear[0, 1] * linear[1, 0]
    if not math.isfinite(det) or abs(det) < 1e-12:
        raise ValueError(f"invert_affine: matrix is singular (det={det!r})")
    inv = np.array([[linear[1, 1], -linear[0, 1]], [-linear[1, 0], linear[0, 0]]]) / det
    return np.hstack([inv, (-inv @ offset)[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies a 2x3 affine to points of shape (..., 2); returns float64 of the same shape.

    NaN points (unlabelled joints) stay NaN.
    """
    a = np.asarray(matrix, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    if a.shape != (2, 3):
        raise ValueError(f"apply_affine: expected a (2, 3) matrix, got shape {a.shape}")
    if p.shape[-1:] != (2,):
        raise ValueError(f"apply_affine: points must have shape (..., 2), got {p.shape}")
    return p @ a[:, :2].T + a[:, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine of `outer` after `inner` (first inner, then outer)."""
    o = np.vstack([np.asarray(outer, dtype=np.float64), [0.0, 0.0, 1.0]])
    i = np.vstack([np.asarray(inner, dtype=np.float64), [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def input_to_heatmap(points: np.ndarray, stride: int = HEATMAP_STRIDE) -> np.ndarray:
    """Network-input px (..., 2) -> heatmap px, exact pixel-centre mapping.

    Heatmap pixel j covers input pixels [stride*j, stride*j + stride - 1], whose centre is
    input px stride*j + (stride-1)/2: hm = (inp + 0.5) / stride - 0.5.
    """
    return (np.asarray(points, dtype=np.float64) + 0.5) / stride - 0.5


def heatmap_to_input(points: np.ndarray, stride: int = HEATMAP_STRIDE) -> np.ndarray:
    """Heatmap px (..., 2) -> network-input px; inverse of `input_to_heatmap`."""
    return (np.asarray(points, dtype=np.float64) + 0.5) * stride - 0.5
