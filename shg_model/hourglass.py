"""The stacked hourglass network (Newell et al., ECCV 2016) and its frozen config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shg_model.layers import Residual, residual_parameter_count

STEM_STRIDE = 4  # 7x7 stride-2 conv, then a 2x2 max-pool: heatmaps are 1/4 of the input


@dataclass(frozen=True)
class HourglassConfig:
    """Hyper-parameters that rebuild a :class:`StackedHourglass` exactly.

    Args:
        stacks: number of hourglasses, each with its own heatmap output (S).
        channels: feature width inside the hourglasses (the original ``nFeats``); even.
        joints: number of heatmaps per stack (J); 16 for MPII.
        depth: number of 2x down-samplings inside each hourglass (4: 64 px -> 4 px).
        stem_channels: width of the stem's bottleneck stage at half and quarter input
            resolution; its 7x7 convolution has half of it. 128 is the paper's stem (a 7x7
            convolution to 64 channels, then 64 -> 128 -> 128 -> ``channels``), whatever
            ``channels`` is; a narrower network can narrow its stem with it, e.g. 64 for
            ``channels=64`` (7x7 to 32, then 32 -> 64 -> 64 -> 64): the stem works at 4x and 16x
            the hourglass's pixel count, so at reduced widths it costs most of the step.
        channels_last: run in ``torch.channels_last`` memory format (weights converted at
            construction, inputs in ``forward``). A speed knob: it changes no numbers beyond
            float rounding, and state dicts are interchangeable between the two settings.
    """

    stacks: int = 2
    channels: int = 256
    joints: int = 16
    depth: int = 4
    channels_last: bool = False
    stem_channels: int = 128

    def __post_init__(self) -> None:
        for name in ("stacks", "channels", "joints", "depth", "stem_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"HourglassConfig.{name} must be an int, got {value!r} ({type(value).__name__})"
                )
            if value < 1:
                raise ValueError(f"HourglassConfig.{name} must be >= 1, got {value}")
        if self.channels % 2 or self.channels < 2:
            raise ValueError(
                f"HourglassConfig.channels must be even (the bottleneck halves it), got {self.channels}"
            )
        if self.stem_channels % 4:
            raise ValueError(
                "HourglassConfig.stem_channels must be a multiple of 4 (its 7x7 convolution has "
                f"half of it, and each bottleneck halves that), got {self.stem_channels}"
            )
        if not isinstance(self.channels_last, bool):
            raise ValueError(
                f"HourglassConfig.channels_last must be a bool, got {self.channels_last!r}"
            )

    @property
    def input_multiple(self) -> int:
        """Input height and width must be multiples of this: 4 (stem) x 2**depth."""
        return STEM_STRIDE * 2**self.depth

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HourglassConfig:
        """Inverse of ``dataclasses.asdict``; an unknown key is an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown HourglassConfig keys {unknown}; known keys are {sorted(known)}"
            )
        return cls(**values)


class Hourglass(nn.Module):
    """One hourglass, built recursively: (B, C, H, W) -> (B, C, H, W), H and W divisible by 2**depth.

    At each scale: an upper branch (Residual) at full resolution, and a lower branch that
    max-pools, applies Residual, the next-smaller hourglass (a Residual at the bottom), and a
    Residual, then is nearest-upsampled and added to the upper branch.
    """

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.upper = Residual(channels, channels)
        self.lower_in = Residual(channels, channels)
        self.inner: nn.Module = (
            Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        )
        self.lower_out = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upper = self.upper(x)  # (B, C, H, W)
        lower = F.max_pool2d(x, kernel_size=2, stride=2)  # (B, C, H/2, W/2)
        lower = self.lower_out(self.inner(self.lower_in(lower)))  # (B, C, H/2, W/2)
        return upper + F.interpolate(lower, scale_factor=2.0, mode="nearest")  # (B, C, H, W)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """The original ``lin``: 1x1 convolution, BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Stem(nn.Module):
    """Initial processing: (B, 3, H, W) -> (B, C, H/4, W/4).

    Args:
        channels: output width C (the hourglass width).
        stem_channels: bottleneck width T (the paper: 128); the 7x7 convolution gives T/2.
    """

    def __init__(self, channels: int, stem_channels: int = 128) -> None:
        super().__init__()
        half = stem_channels // 2
        self.conv = nn.Conv2d(3, half, kernel_size=7, stride=2, padding=3)
        self.bn = nn.BatchNorm2d(half)
        self.res1 = Residual(half, stem_channels)
        self.res2 = Residual(stem_channels, stem_channels)
        self.res3 = Residual(stem_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))  # (B, T/2, H/2, W/2)
        x = F.max_pool2d(self.res1(x), kernel_size=2, stride=2)  # (B, T, H/4, W/4)
        return self.res3(self.res2(x))  # (B, C, H/4, W/4)


class Stack(nn.Module):
    """One stack: hourglass, Residual, 1x1 conv-BN-ReLU, 1x1 conv to heatmaps.

    (B, C, h, w) -> features (B, C, h, w), heatmaps (B, J, h, w).
    """

    def __init__(self, depth: int, channels: int, joints: int) -> None:
        super().__init__()
        self.hourglass = Hourglass(depth, channels)
        self.residual = Residual(channels, channels)
        self.features = _conv_bn_relu(channels, channels)
        self.heatmaps = nn.Conv2d(channels, joints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.residual(self.hourglass(x)))  # (B, C, h, w)
        return features, self.heatmaps(features)  # (B, C, h, w), (B, J, h, w)


class StackedHourglass(nn.Module):
    """Stacked hourglass network with intermediate supervision.

    Input: float images (B, 3, H, W), H and W multiples of ``cfg.input_multiple`` (64 for
    depth 4), normalised by the caller. Output: (B, S, J, H/4, W/4), the heatmaps of every
    stack in order (the last is the final prediction), in train and eval mode alike. Heatmap
    pixel centres relate to input pixel centres by ``hm = (inp + 0.5) / 4 - 0.5``.
    """

    def __init__(self, cfg: HourglassConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = Stem(cfg.channels, cfg.stem_channels)
        self.stacks = nn.ModuleList(
            Stack(cfg.depth, cfg.channels, cfg.joints) for _ in range(cfg.stacks)
        )
        # Between stacks the next input is x + 1x1(features) + 1x1(heatmaps).
        self.merge_features = nn.ModuleList(
            nn.Conv2d(cfg.channels, cfg.channels, kernel_size=1) for _ in range(cfg.stacks - 1)
        )
        self.merge_heatmaps = nn.ModuleList(
            nn.Conv2d(cfg.joints, cfg.channels, kernel_size=1) for _ in range(cfg.stacks - 1)
        )
        if cfg.channels_last:
            self.to(memory_format=torch.channels_last)

    def _check_input(self, images: torch.Tensor) -> None:
        # Shape checks only (no data-dependent branches), so torch.compile turns them into guards.
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"StackedHourglass expects images of shape (B, 3, H, W), got {got}")
        if images.shape[1] != 3:
            raise ValueError(
                f"StackedHourglass expects 3 input channels (B, 3, H, W), got shape "
                f"{tuple(images.shape)}; images in (B, H, W, 3) need .permute(0, 3, 1, 2)"
            )
        if not images.is_floating_point():
            raise ValueError(
                f"StackedHourglass expects float images, got {images.dtype}; convert and "
                "normalise them first"
            )
        multiple = self.cfg.input_multiple
        height, width = images.shape[-2:]
        if height % multiple or width % multiple:
            raise ValueError(
                f"input height and width must be multiples of {multiple} (4 x 2**depth, "
                f"depth={self.cfg.depth}), got {height}x{width}; resize or pad, e.g. to 256x256"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check_input(images)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        x = self.stem(images)  # (B, C, h, w), h = H/4, w = W/4
        preds = []
        for i, stack in enumerate(self.stacks):
            features, heatmaps = stack(x)  # (B, C, h, w), (B, J, h, w)
            preds.append(heatmaps)
            if i < len(self.merge_features):
                x = x + self.merge_features[i](features) + self.merge_heatmaps[i](heatmaps)
        return torch.stack(preds, 1)  # (B, S, J, h, w)


def parameter_count(cfg: HourglassConfig) -> int:
    """Learnable parameters of ``StackedHourglass(cfg)``, in closed form (nothing is built).

    For channels=256, joints=16, depth=4: 1 stack 3.43 M, 2 stacks 6.57 M, 4 stacks 12.86 M,
    8 stacks 25.43 M, as in the original Torch model.
    """
    c, j, t = cfg.channels, cfg.joints, cfg.stem_channels
    res = residual_parameter_count(c, c)
    stem = (
        (3 * (t // 2) * 49 + t // 2)
        + 2 * (t // 2)
        + residual_parameter_count(t // 2, t)
        + residual_parameter_count(t, t)
        + residual_parameter_count(t, c)
    )
    hourglass = (3 * cfg.depth + 1) * res
    stack = hourglass + res + (c * c + c + 2 * c) + (c * j + j)
    merge = (c * c + c) + (j * c + c)
    return stem + cfg.stacks * stack + (cfg.stacks - 1) * merge
