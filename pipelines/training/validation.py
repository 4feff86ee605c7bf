"""Per-epoch validation during training, and the mean-pose baseline it is compared with.

Validation runs the model once per batch on the images and their mirrors (flip testing,
`shg_model.flip_average`); the unflipped half of the same forward pass gives the per-stack
validation loss, so the flip costs no extra pass. Predictions map back to original image px
(`pipelines.inference.keypoints`) and are scored with the official MPII PCKh (`dataprep.pckh`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dataprep.pckh import pckh_curve, pckh_table
from pipelines.inference.keypoints import (
    keypoints_from_heatmaps,
    normalise_images,
    to_image_px,
)
from pipelines.training.data_stream import ValidationSet
from shg_model import flip_average, heatmap_loss

CURVE_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 41), 3)


@dataclass(frozen=True)
class ValidationResult:
    """table: official PCKh@0.5 (`pckh_table`); curve: `pckh_curve` over CURVE_THRESHOLDS;
    loss_per_stack: (S,) heatmap loss of the unflipped pass; pred: (N, J, 2) image px."""

    table: dict
    curve: dict
    loss_per_stack: np.ndarray
    pred: np.ndarray


def validate(model: nn.Module, val: ValidationSet, flip_pairs: Sequence[int], *,
             flip: bool = True, batch_size: int = 32,
             autocast_dtype: torch.dtype | None = None,
             on_batch: Callable[[int, int], None] | None = None) -> ValidationResult:
    """Scores `model` on `val`. The model runs in eval mode and gets its mode back afterwards.
    `on_batch(people done, people in all)` is called before the first batch and after each.

    `model` maps (B, 3, H, W) to (B, S, J, H/4, W/4); pass the plain module, not its DDP
    wrapper (validation runs on one rank only and must not wait for the others).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    coords, loss_sums, weight_total = [], None, 0.0
    try:
        autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            if on_batch is not None:
                on_batch(0, len(val))
            for start in range(0, len(val), batch_size):
                part = slice(start, start + batch_size)
                x = normalise_images(val.images[part]).to(device)  # (B, 3, H, W)
                seen: dict[str, torch.Tensor] = {}

                def forward(images: torch.Tensor) -> torch.Tensor:
                    seen["out"] = model(images)  # (2B or B, S, J, h, w)
                    return seen["out"]

                heatmaps = flip_average(forward, x, flip_pairs) if flip else forward(x)[:, -1]
                plain = seen["out"][: len(x)]  # (B, S, J, h, w), the unflipped images
                target = torch.from_numpy(val.heatmaps[part]).to(device)  # (B, J, h, w)
                weight = torch.from_numpy(val.weight[part]).to(device)  # (B, J)
                _, per_stack = heatmap_loss(plain, target, weight)
                batch_weight = float(weight.sum())
                sums = per_stack.float().cpu().numpy() * batch_weight
                loss_sums = sums if loss_sums is None else loss_sums + sums
                weight_total += batch_weight
                xy, _ = keypoints_from_heatmaps(heatmaps.float(), stride=x.shape[-1] // heatmaps.shape[-1])
                coords.append(xy)
                if on_batch is not None:
                    on_batch(min(start + batch_size, len(val)), len(val))
    finally:
        model.train(was_training)
    pred = to_image_px(np.concatenate(coords), val.input_to_image)  # (N, J, 2) image px
    missing = ~val.labelled
    return ValidationResult(
        table=pckh_table(pred, val.joints_image, missing, val.head_size),
        curve=pckh_curve(pred, val.joints_image, missing, val.head_size, CURVE_THRESHOLDS),
        loss_per_stack=loss_sums / max(weight_total, 1e-12),
        pred=pred,
    )


def mean_pose(keypoints: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """The mean training pose: per joint, the mean of its labelled positions.

    Args:
        keypoints: (N, J, 2) positions in network-input px of the standard crop.
        labelled: (N, J) bool.
    Returns:
        (J, 2) float64; a joint never labelled sits at the mean of all labelled joints.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=bool) & np.isfinite(keypoints).all(-1)
    counts = labelled.sum(0)  # (J,)
    sums = np.where(labelled[..., None], keypoints, 0.0).sum(0)  # (J, 2)
    fallback = sums.sum(0) / max(counts.sum(), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pose = sums / counts[:, None]
    return np.where(counts[:, None] > 0, pose, fallback)


def mean_pose_baseline(pose: np.ndarray, val: ValidationSet) -> dict:
    """PCKh table of the trivial predictor that outputs `pose` (J, 2 input px) for everyone."""
    pred = to_image_px(np.broadcast_to(pose, (len(val), *pose.shape)), val.input_to_image)
    return pckh_table(pred, val.joints_image, ~val.labelled, val.head_size)
