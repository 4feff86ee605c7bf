"""The network's input contract: RGB pixels scaled to [0, 1], minus 0.5 on every channel."""

from __future__ import annotations

import torch

PIXEL_MEAN = 0.5  # input normalisation: x / 255 - 0.5, every channel


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB → float (B, 3, H, W) in [-0.5, 0.5] (`x / 255 - 0.5`)."""
    return images.permute(0, 3, 1, 2).float().div_(255.0).sub_(PIXEL_MEAN)
