"""Speed paths for training and inference on CPU (and GPU), as the benchmarks build them: how to
run the same network faster. Training chooses among them by measurement (`pipelines.training.precision`).

None of these changes what the network computes beyond float rounding, and none changes the
state dict's keys, so weights move freely between a plain and a sped-up model:

- ``HourglassConfig(channels_last=True)``: NHWC activations and weights, the layout oneDNN's
  convolutions want on CPU (no reorders around every convolution). Use it *with* compilation
  on CPU: eager PyTorch's channels-last BatchNorm sums its statistics less accurately (on
  8x64x128x128 its output error against float64 is ~65x the NCHW kernel's, and after one
  RMSprop step a 2-stack model's loss is 3x further from a float64 run than the plain NCHW
  model's), whereas Inductor generates its own, accurate reductions.
- :func:`shg_model.compile.compile_blocks`: ``torch.compile`` (Inductor) of the stem and of each stack, in place.
  Inductor fuses the memory-bound BatchNorm/ReLU/add chains between the convolutions into a
  few loops. Compiling per block rather than the whole model lets all stacks share one
  compiled graph (they are the same code on the same shapes), so compilation costs about the
  same for 8 stacks as for 2.
- ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward (the caller's choice): on
  a CPU with AVX512-BF16 the convolutions run at about twice the fp32 rate. It is a different
  precision, not a faster fp32; ``heatmap_loss`` still computes in fp32.

:class:`SpeedConfig` names the choice; its defaults are the fastest fp32 setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from shg_model.compile import compile_blocks
from shg_model.hourglass import HourglassConfig, StackedHourglass


@dataclass(frozen=True)
class SpeedConfig:
    """How to run a :class:`StackedHourglass` fast.

    Args:
        channels_last: build the model in ``torch.channels_last`` memory format (on CPU only
            together with ``compile``; see the module docstring).
        compile: compile the stem and each stack with ``torch.compile`` (Inductor; on CPU it
            needs a C++ compiler). The first call of each new input shape or mode (train/eval,
            grad/no-grad) pays the compilation, tens of seconds on a small CPU.
        autocast_bf16: run the forward under bfloat16 autocast (weights and loss stay fp32).
            Off by default: it changes the numbers at the 1e-3 level, not just the speed.
    """

    channels_last: bool = True
    compile: bool = True
    autocast_bf16: bool = False

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, bool):
                raise ValueError(f"SpeedConfig.{field.name} must be a bool, got {value!r}")



def build_fast(cfg: HourglassConfig, speed: SpeedConfig = SpeedConfig()) -> nn.Module:
    """``StackedHourglass`` built with ``speed``'s memory format and compiled blocks.

    ``cfg.channels_last`` is overridden by ``speed.channels_last``. Autocast is not applied
    here: wrap the forward in ``torch.autocast`` when ``speed.autocast_bf16`` (see
    :func:`autocast`).
    """
    model = StackedHourglass(dataclasses.replace(cfg, channels_last=speed.channels_last))
    if speed.compile:
        compile_blocks(model)
    return model


def autocast(speed: SpeedConfig, device_type: str = "cpu") -> torch.autocast:
    """The autocast context ``speed`` asks for (a disabled one when ``autocast_bf16`` is off)."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=speed.autocast_bf16)
