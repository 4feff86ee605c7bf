"""The plain-PyTorch baseline the training benchmark compares ``shg_model`` against.

The stacked hourglass of Newell et al. written the straightforward way: NCHW float32, eager,
``nn.BatchNorm2d`` and ``nn.ReLU`` modules (not in place), ``nn.MaxPool2d`` and
``nn.Upsample``, no fusion, no memory-format or compiler tricks. It is the same architecture as
``shg_model.StackedHourglass`` with the same parameter and buffer names, so a state dict loads
from one into the other with ``strict=True`` (see :func:`copy_weights`), which is how the
benchmark checks that the fast path computes the same numbers.

Imports only torch: the benchmark may build it on any machine ``shg_model`` runs on.
"""

from __future__ import annotations

import torch
from torch import nn


class ReferenceResidual(nn.Module):
    """BN-ReLU-1x1-BN-ReLU-3x3-BN-ReLU-1x1 plus a skip (identity, or 1x1 conv when widths differ).

    (B, Cin, H, W) -> (B, Cout, H, W); the bottleneck is ``out_channels // 2`` wide.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.block = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, mid, kernel_size=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, mid, kernel_size=3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, out_channels, kernel_size=1),
        )
        self.skip: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, kernel_size=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + self.skip(x)  # (B, Cout, H, W)


class ReferenceHourglass(nn.Module):
    """One recursive hourglass: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.upper = ReferenceResidual(channels, channels)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.lower_in = ReferenceResidual(channels, channels)
        self.inner: nn.Module = (
            ReferenceHourglass(depth - 1, channels)
            if depth > 1
            else ReferenceResidual(channels, channels)
        )
        self.lower_out = ReferenceResidual(channels, channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upper = self.upper(x)  # (B, C, H, W)
        lower = self.lower_out(self.inner(self.lower_in(self.pool(x))))  # (B, C, H/2, W/2)
        return upper + self.upsample(lower)  # (B, C, H, W)


class ReferenceStem(nn.Module):
    """7x7/2 conv-BN-ReLU, Residual(64->128), max-pool, Residual(128->128), Residual(128->C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.res1 = ReferenceResidual(64, 128)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.res2 = ReferenceResidual(128, 128)
        self.res3 = ReferenceResidual(128, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))  # (B, 64, H/2, W/2)
        x = self.pool(self.res1(x))  # (B, 128, H/4, W/4)
        return self.res3(self.res2(x))  # (B, C, H/4, W/4)


class ReferenceStack(nn.Module):
    """Hourglass, Residual, 1x1 conv-BN-ReLU, 1x1 conv to J heatmaps."""

    def __init__(self, depth: int, channels: int, joints: int) -> None:
        super().__init__()
        self.hourglass = ReferenceHourglass(depth, channels)
        self.residual = ReferenceResidual(channels, channels)
        self.features = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        self.heatmaps = nn.Conv2d(channels, joints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.residual(self.hourglass(x)))  # (B, C, h, w)
        return features, self.heatmaps(features)  # (B, C, h, w), (B, J, h, w)


class ReferenceStackedHourglass(nn.Module):
    """(B, 3, H, W) float32 NCHW -> (B, S, J, H/4, W/4), every stack's heatmaps in order."""

    def __init__(self, stacks: int, channels: int = 256, joints: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.stem = ReferenceStem(channels)
        self.stacks = nn.ModuleList(ReferenceStack(depth, channels, joints) for _ in range(stacks))
        self.merge_features = nn.ModuleList(
            nn.Conv2d(channels, channels, kernel_size=1) for _ in range(stacks - 1)
        )
        self.merge_heatmaps = nn.ModuleList(
            nn.Conv2d(joints, channels, kernel_size=1) for _ in range(stacks - 1)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)  # (B, C, h, w)
        preds = []
        for i, stack in enumerate(self.stacks):
            features, heatmaps = stack(x)  # (B, C, h, w), (B, J, h, w)
            preds.append(heatmaps)
            if i < len(self.merge_features):
                x = x + self.merge_features[i](features) + self.merge_heatmaps[i](heatmaps)
        return torch.stack(preds, 1)  # (B, S, J, h, w)


def parameter_total(model: nn.Module) -> int:
    """Number of learnable parameters (elements) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Load ``source``'s parameters and buffers into ``target`` (``strict=True``).

    Raises ValueError naming the mismatched keys or shapes when the two models are not the
    same architecture under the same names.
    """
    src = source.state_dict()
    dst = target.state_dict()
    missing, unexpected = sorted(set(dst) - set(src)), sorted(set(src) - set(dst))
    if missing or unexpected:
        raise ValueError(
            f"state dicts differ: target lacks {unexpected[:5]}..., source lacks {missing[:5]}..."
            " — the reference and shg_model must use the same module names"
        )
    wrong = [k for k in src if src[k].shape != dst[k].shape]
    if wrong:
        raise ValueError(f"shape mismatch for {wrong[:5]}: not the same architecture")
    target.load_state_dict(src, strict=True)
