"""Which network the embedded default can afford: training-step images/s and model FLOP
utilisation for a few widths, stem widths and input sizes, at a fixed thread count.

A training step is forward + ``heatmap_loss`` + backward + Adam on a batch of random images
with rendered targets (``benchmarks.training.make_batch``), eager NCHW fp32 (the path ``auto``
takes on a CPU without native bf16) or, with ``bf16``, bf16 autocast + channels_last (the path
it takes on a CPU with native bf16). FLOPs per step are counted by
``torch.utils.flop_counter.FlopCounterMode`` over the forward and the backward (a multiply-add
counts 2; the optimiser's element-wise work is not counted). Model FLOP utilisation (MFU) =
FLOPs per step / step seconds / the fp32 peak, the peak being the best of large square fp32
matmuls timed at the same thread count (``benchmarks.peak``).

Figures, per candidate ``NAME`` (``s{stacks}_c{channels}_t{stem}_{size}px``):
``frontier_NAME_img_s``, ``frontier_NAME_gflop_per_img`` (training step, per image) and
``frontier_NAME_mfu``; once: ``frontier_peak_gflop_s`` and ``frontier_threads``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmarks.peak import measure_matmul_peak
from benchmarks.timing import interleaved_medians
from benchmarks.training import StepShape, make_batch
from shg_model import HourglassConfig, StackedHourglass, heatmap_loss


@dataclass(frozen=True)
class Candidate:
    """One network and input size to measure."""

    stacks: int = 2
    channels: int = 64
    stem_channels: int = 128
    size: int = 128
    depth: int = 4

    @property
    def name(self) -> str:
        return f"s{self.stacks}_c{self.channels}_t{self.stem_channels}_{self.size}px"

    def model_config(self, channels_last: bool = False) -> HourglassConfig:
        return HourglassConfig(stacks=self.stacks, channels=self.channels, depth=self.depth,
                               stem_channels=self.stem_channels, channels_last=channels_last)


# Before: the `synthetic` profile's network until now (the paper's stem under a 64-wide
# hourglass). After: stems scaled with the width, and smaller inputs.
CANDIDATES = (
    Candidate(2, 64, 128, 128),
    Candidate(2, 64, 64, 128),
    Candidate(2, 64, 32, 128),
    Candidate(1, 64, 64, 128),
    Candidate(2, 96, 64, 128),
    Candidate(2, 64, 64, 64, depth=3),
)


def step_gflop(model: torch.nn.Module, batch, bf16: bool = False) -> float:
    """GFLOP of one training step's forward and backward (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    images, target, weight = batch
    with FlopCounterMode(display=False) as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(images)
        loss, _ = heatmap_loss(pred, target, weight)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def measure_candidate(candidate: Candidate, *, batch: int, rounds: int, bf16: bool = False) -> dict[str, float]:
    """(images/s, GFLOP per image) of one candidate's training step at the current threads."""
    torch.manual_seed(0)
    model = StackedHourglass(candidate.model_config(channels_last=bf16)).train()
    shape = StepShape(stacks=candidate.stacks, channels=candidate.channels, depth=candidate.depth,
                      batch=batch, size=candidate.size)
    images, target, weight = make_batch(shape)
    if bf16:
        images = images.contiguous(memory_format=torch.channels_last)
    gflop = step_gflop(model, (images, target, weight), bf16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(images)  # (B, S, J, h, w)
        loss, _ = heatmap_loss(pred, target, weight)
        loss.backward()
        optimizer.step()

    seconds = interleaved_medians({"step": step}, rounds, warmup=1)["step"]
    return {"img_s": batch / seconds, "gflop_per_img": gflop / batch, "gflop_s": gflop / seconds}


def measure_frontier(candidates: tuple[Candidate, ...] = CANDIDATES, *, threads: int = 2, batch: int = 8,
                     rounds: int = 5, bf16: bool = False, peak_sizes: tuple[int, ...] = (1024, 2048)) -> dict[str, float]:
    """The figures above for every candidate, at `threads` torch threads (restored after)."""
    if threads < 1 or batch < 2:
        raise ValueError(f"threads must be >= 1 and batch >= 2 (BatchNorm), got {threads}, {batch}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        peak = measure_matmul_peak(sizes=peak_sizes, rounds=rounds)["matmul_fp32_gflop_s"]
        figures = {"frontier_threads": float(threads), "frontier_peak_gflop_s": peak}
        for candidate in candidates:
            got = measure_candidate(candidate, batch=batch, rounds=rounds, bf16=bf16)
            figures[f"frontier_{candidate.name}_img_s"] = got["img_s"]
            figures[f"frontier_{candidate.name}_gflop_per_img"] = got["gflop_per_img"]
            figures[f"frontier_{candidate.name}_mfu"] = got["gflop_s"] / peak
        return figures
    finally:
        torch.set_num_threads(before)
