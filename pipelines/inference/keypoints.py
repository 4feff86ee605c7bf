"""Keypoints from a StackedHourglass: normalise, (flip-)average, decode, map back to pixels.

Frames (docs/ARCHITECTURE.md): *input px* are pixels of the network input (the 256x256
standard person box); *image px* of the original image. Both 0-based, pixel centres at
integers. For prepared rows `dataprep.augment.center_batch` gives the input -> image affine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dataprep.geometry import heatmap_to_input
from shg_model import decode, flip_average
from shg_model.pixels import PIXEL_MEAN


def normalise_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Model-ready float32 (B, 3, H, W) from images.

    Accepts:
        numpy uint8 (B, H, W, 3) RGB in 0..255 -> x / 255 - 0.5;
        numpy float (B, H, W, 3) RGB in [0, 1] -> x - 0.5;
        torch float (B, 3, H, W), already normalised: returned as is.
    """
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"a tensor input must be normalised float (B, 3, H, W), got {images.dtype} "
                f"{tuple(images.shape)}; pass numpy (B, H, W, 3) uint8 images to have them normalised"
            )
        return images
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3) RGB, got shape {array.shape}")
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(
                f"float images must lie in [0, 1], got [{array.min():.3g}, {array.max():.3g}]; "
                "pass uint8 images for 0..255 data"
            )
        scaled = array.astype(np.float32)
    else:
        raise ValueError(f"images must be uint8 or float, got {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)) - PIXEL_MEAN)


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def predict_keypoints(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    flip_pairs: Sequence[int],
    flip: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of one person per image, in input px.

    Args:
        model: a StackedHourglass (B, 3, H, W) -> (B, S, J, H/4, W/4), on any device; it runs
            in eval mode here and gets its previous mode back afterwards.
        images: see `normalise_images`; moved to the model's device.
        flip_pairs: the length-J left/right permutation (`dataprep.joints.FLIP_PERMUTATION`).
        flip: average the last stack's heatmaps with those of the mirrored images.
    Returns:
        coords (B, J, 2) float64 [x, y] input px, confidence (B, J) float32 (heatmap peak value).
    """
    x = normalise_images(images).to(_device_of(model))  # (B, 3, H, W)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if flip:
                heatmaps = flip_average(model, x, flip_pairs)  # (B, J, h, w)
            else:
                heatmaps = model(x)[:, -1]  # (B, J, h, w)
    finally:
        model.train(was_training)
    return keypoints_from_heatmaps(heatmaps, stride=x.shape[-1] // heatmaps.shape[-1])


def keypoints_from_heatmaps(heatmaps: torch.Tensor, stride: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Decoded peaks of (B, J, h, w) heatmaps -> coords (B, J, 2) float64 input px, confidence
    (B, J) float32 (`shg_model.decode`, then `hm -> (hm + 0.5) * stride - 0.5`)."""
    coords_hm, confidence = decode(heatmaps)  # (B, J, 2), (B, J)
    coords = heatmap_to_input(coords_hm.cpu().numpy(), stride=stride)
    return coords, confidence.cpu().numpy().astype(np.float32)


def to_image_px(coords: np.ndarray, input_to_image: np.ndarray) -> np.ndarray:
    """Maps keypoints from input px to original image px, one affine per row.

    Args:
        coords: (B, J, 2) input px.
        input_to_image: (B, 2, 3) affines, input px -> image px (`dataprep.augment.center_batch`
            returns them for prepared rows: stored-crop shift composed with `crop_to_image`).
    Returns:
        (B, J, 2) float64 image px.
    """
    coords = np.asarray(coords, dtype=np.float64)
    affines = np.asarray(input_to_image, dtype=np.float64)
    if affines.shape != (len(coords), 2, 3):
        raise ValueError(f"input_to_image must be ({len(coords)}, 2, 3), got {affines.shape}")
    # (B, J, 2) @ (B, 2, 2)^T + (B, 1, 2)
    return np.einsum("bjk,bik->bji", coords, affines[:, :, :2]) + affines[:, None, :, 2]
