"""The pre-activation bottleneck residual of Newell et al. (the Torch ``Residual`` module)."""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1-BN-ReLU-3x3-BN-ReLU-1x1 plus a skip.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output; the bottleneck has ``out_channels // 2``
            (as in the original Torch code, the middle width follows the *output*).

    The skip is the identity when the channel counts agree, otherwise a 1x1 convolution
    (with bias, like the original). Spatial size is preserved: (B, Cin, H, W) -> (B, Cout, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.block = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            # In place is safe: BN's backward needs its input, not its output, and the skip
            # below reads the untouched input tensor.
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, mid, kernel_size=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel_size=3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=1),
        )
        self.skip: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, kernel_size=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, Cin, H, W) -> (B, Cout, H, W)
        return self.block(x) + self.skip(x)


def residual_parameter_count(in_channels: int, out_channels: int) -> int:
    """Number of learnable parameters of ``Residual(in_channels, out_channels)``.

    Closed form, so configurations can be sized without building them.
    """
    mid = out_channels // 2
    bn = 2 * (in_channels + mid + mid)  # weight + bias of the three BatchNorms
    convs = (in_channels * mid + mid) + (mid * mid * 9 + mid) + (mid * out_channels + out_channels)
    skip = 0 if in_channels == out_channels else in_channels * out_channels + out_channels
    return bn + convs + skip
