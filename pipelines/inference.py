"""Keypoints from a StackedHourglass: normalise, (flip-)average, decode, map back to pixels.

Frames (docs/ARCHITECTURE.md): *input px* are pixels of the network input (the 256x256
standard person box); *crop px* of a prepared row's stored crop (`crop_size` px covering
`box_scale` = 1.25 x the standard box); *image px* of the original image. All 0-based with
pixel centres at integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dataprep.geometry import apply_affine, compose_affine, heatmap_to_input
from dataprep.schema import CROP_BOX_SCALE
from shg_model import decode, flip_average

PIXEL_MEAN = 0.5  # input normalisation: x / 255 - 0.5, every channel
STORED_BOX_SCALE = CROP_BOX_SCALE  # a prepared row's stored crop covers 1.25 x the standard box


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


def input_to_crop_affine(crop_size: int, input_size: int = 256,
                         box_scale: float = STORED_BOX_SCALE) -> np.ndarray:
    """(2, 3) affine, input px -> stored-crop px.

    Both frames are centred on the person centre; the input covers the standard box, the crop
    `box_scale` times it, so one input px is `crop_size / (box_scale * input_size)` crop px
    (1.0 for the 320 px crop and 256 px input: a pure shift of 32 px).
    """
    k = crop_size / (box_scale * input_size)
    offset = (crop_size - 1) / 2.0 - k * (input_size - 1) / 2.0
    return np.array([[k, 0.0, offset], [0.0, k, offset]])


def input_to_image_affine(crop_to_image: np.ndarray, crop_size: int, input_size: int = 256,
                          box_scale: float = STORED_BOX_SCALE) -> np.ndarray:
    """(2, 3) affine, input px -> original image px, for a prepared row.

    Args:
        crop_to_image: the row's `crop_to_image` column, 6 values or (2, 3).
        crop_size: the row's `crop_size` column.
    """
    crop_to_image = np.asarray(crop_to_image, dtype=np.float64).reshape(2, 3)
    return compose_affine(crop_to_image, input_to_crop_affine(crop_size, input_size, box_scale))


def input_to_image(coords: np.ndarray, crop_to_image: np.ndarray, crop_size: np.ndarray,
                   input_size: int = 256, box_scale: float = STORED_BOX_SCALE) -> np.ndarray:
    """Maps a batch of keypoints from input px to original image px.

    Args:
        coords: (B, J, 2) input px.
        crop_to_image: (B, 6) or (B, 2, 3), one affine per row.
        crop_size: (B,) or a scalar.
    Returns:
        (B, J, 2) float64 image px.
    """
    coords = np.asarray(coords, dtype=np.float64)
    affines = np.asarray(crop_to_image, dtype=np.float64).reshape(len(coords), 2, 3)
    sizes = np.broadcast_to(np.asarray(crop_size), (len(coords),))
    return np.stack([
        apply_affine(input_to_image_affine(a, int(s), input_size, box_scale), c)
        for c, a, s in zip(coords, affines, sizes)
    ]) if len(coords) else coords.copy()
