"""Training-step and forward-only speed of ``shg_model`` against the plain-PyTorch baseline.

A training step is forward + ``shg_model.heatmap_loss`` (every stack against the same target) +
backward + ``torch.optim.RMSprop`` step, on a batch of normalised 256x256 images with rendered
Gaussian targets. The fast model starts from the baseline's weights (``copy_weights``), both
take the same first two steps, and the loss after one step must agree within ``1e-3``
relative (reported as ``*_loss_rel_diff``); then both are timed interleaved.

Fraction of peak: 3 x the forward FLOPs (``torch.utils.flop_counter.FlopCounterMode``, a
multiply-add counted as 2) per step, over the step's time, over the fp32 matmul FLOP/s measured
in the same run (``benchmarks.peak``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmarks.reference import (
    ReferenceStackedHourglass,
    copy_weights,
    parameter_total,
)
from benchmarks.speed import SpeedConfig, autocast, build_fast
from benchmarks.timing import interleaved_medians
from dataprep.heatmaps import render_heatmaps
from shg_model import HourglassConfig, heatmap_loss, parameter_count

LOSS_TOLERANCE = 1e-3  # relative, after one step, fp32 fast path against the baseline


@dataclass(frozen=True)
class StepShape:
    """The benchmarked problem: model size and batch."""

    stacks: int = 2
    channels: int = 256
    depth: int = 4
    batch: int = 8
    size: int = 256  # input side, px; heatmaps are size // 4
    joints: int = 16

    @property
    def model_config(self) -> HourglassConfig:
        return HourglassConfig(
            stacks=self.stacks, channels=self.channels, joints=self.joints, depth=self.depth
        )


def make_batch(shape: StepShape, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (B, 3, H, W) in [-0.5, 0.5), targets (B, J, h, w) Gaussians, weight (B, J)).

    Targets are rendered by ``dataprep.heatmaps`` at random keypoints with ~10 % unlabelled
    joints, so the loss sees realistic sparse targets and a real mask.
    """
    rng = np.random.default_rng(seed)
    side = shape.size // 4
    images = rng.random((shape.batch, 3, shape.size, shape.size), dtype=np.float32) - 0.5
    keypoints = rng.uniform(0, side - 1, (shape.batch, shape.joints, 2))
    labelled = rng.random((shape.batch, shape.joints)) > 0.1
    targets = render_heatmaps(keypoints, labelled, size=side)
    return (
        torch.from_numpy(images),
        torch.from_numpy(targets),
        torch.from_numpy(labelled.astype(np.float32)),
    )


def build_pair(shape: StepShape, speed: SpeedConfig, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(baseline, fast model) with the fast model holding the baseline's initial weights.

    Raises RuntimeError when the two do not have the same parameter count (they must be the
    same architecture), or when it differs from ``shg_model.parameter_count``.
    """
    with torch.random.fork_rng():  # module init draws from torch's global RNG; keep it local
        torch.manual_seed(seed)
        baseline = ReferenceStackedHourglass(shape.stacks, shape.channels, shape.joints, shape.depth)
    fast = build_fast(shape.model_config, speed)
    counts = {
        "baseline": parameter_total(baseline),
        "shg_model": parameter_total(fast),
        "parameter_count": parameter_count(shape.model_config),
    }
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"parameter counts differ: {counts}; the baseline must be the same model")
    copy_weights(baseline, fast)
    return baseline.train(), fast.train()


class TrainStep:
    """One training step of ``model`` on a fixed batch; calling it returns the loss (float)."""

    def __init__(self, model: nn.Module, batch, speed: SpeedConfig | None = None, lr: float = 2.5e-4):
        self.model = model
        self.images, self.target, self.weight = batch
        if speed is not None and speed.channels_last:
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.speed = speed or SpeedConfig(channels_last=False, compile=False)
        self.optimiser = torch.optim.RMSprop(model.parameters(), lr=lr)

    def __call__(self) -> float:
        self.optimiser.zero_grad(set_to_none=True)
        with autocast(self.speed):
            pred = self.model(self.images)  # (B, S, J, h, w)
        loss, _ = heatmap_loss(pred, self.target, self.weight)
        loss.backward()
        self.optimiser.step()
        return loss.item()


def forward_gflop(shape: StepShape) -> float:
    """Forward GFLOP of one batch (multiply-add = 2 FLOPs), counted on the baseline model."""
    from torch.utils.flop_counter import FlopCounterMode

    model = ReferenceStackedHourglass(shape.stacks, shape.channels, shape.joints, shape.depth)
    images = torch.zeros(shape.batch, 3, shape.size, shape.size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    return counter.get_total_flops() / 1e9


def measure_training(
    shape: StepShape = StepShape(),
    speed: SpeedConfig = SpeedConfig(),
    rounds: int = 3,
    matmul_gflop_s: float | None = None,
    inference: bool = True,
    prefix: str | None = None,
    float64_check: bool = True,
) -> dict[str, float]:
    """Images/s of the fast training step and the baseline's, side by side, and their ratio.

    Figures (``p`` = ``prefix``, by default ``train_<S>stack``): ``p_img_s``,
    ``p_baseline_img_s``, ``p_speedup``; numerics: ``p_loss_rel_diff`` (fast against
    baseline, the loss after one step), ``p_loss_err64`` and ``p_baseline_loss_err64`` (each
    against a float64 run of the baseline; with ``float64_check``), ``p_loss0_rel_diff`` (the
    first loss, before any step), ``p_grad_rel_diff`` (the first step's gradients, relative L2
    norm over all parameters); ``p_first_call_s`` (the fast model's first step, compilation
    included), ``p_gflop`` (per step), ``p_peak_fraction`` and ``p_baseline_peak_fraction``
    (when ``matmul_gflop_s`` is given); with ``inference``, forward-only (eval mode, no grad)
    ``infer_<S>stack_img_s``, ``..._baseline_img_s`` and ``..._speedup``.
    """
    prefix = prefix or f"train_{shape.stacks}stack"
    batch = make_batch(shape)
    baseline, fast = build_pair(shape, speed)
    base_step, fast_step = TrainStep(baseline, batch), TrainStep(fast, batch, speed)

    # Before the baseline takes its first step; float64 convolutions are slow and big (skip
    # them for large models).
    truth = _float64_losses(baseline, batch) if float64_check else None
    base_losses = [base_step()]
    started = time.perf_counter()
    fast_losses = [fast_step()]
    first_call = time.perf_counter() - started
    grad_diff = _relative_grad_diff(baseline, fast)
    base_losses.append(base_step())
    fast_losses.append(fast_step())

    medians = interleaved_medians({"fast": fast_step, "baseline": base_step}, rounds, warmup=0)
    figures = {
        f"{prefix}_img_s": shape.batch / medians["fast"],
        f"{prefix}_baseline_img_s": shape.batch / medians["baseline"],
        f"{prefix}_speedup": medians["baseline"] / medians["fast"],
        f"{prefix}_loss_rel_diff": _rel(fast_losses[1], base_losses[1]),
        f"{prefix}_loss0_rel_diff": _rel(fast_losses[0], base_losses[0]),
        f"{prefix}_grad_rel_diff": grad_diff,
        f"{prefix}_first_call_s": first_call,
    }
    if truth is not None:
        figures[f"{prefix}_loss_err64"] = _rel(fast_losses[1], truth[1])
        figures[f"{prefix}_baseline_loss_err64"] = _rel(base_losses[1], truth[1])
    gflop = 3 * forward_gflop(shape)
    figures[f"{prefix}_gflop"] = gflop
    if matmul_gflop_s:
        figures[f"{prefix}_peak_fraction"] = gflop / medians["fast"] / matmul_gflop_s
        figures[f"{prefix}_baseline_peak_fraction"] = gflop / medians["baseline"] / matmul_gflop_s
    if inference:
        figures.update(_measure_inference(shape, speed, baseline, fast, batch[0], rounds))
    return figures


def _rel(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


def _relative_grad_diff(baseline: nn.Module, fast: nn.Module) -> float:
    """||g_fast - g_base|| / ||g_base|| over all parameters (gradients of the last step)."""
    fast_grads = dict(fast.named_parameters())
    diff = total = 0.0
    for name, param in baseline.named_parameters():
        reference = param.grad.double()
        diff += (fast_grads[name].grad.double() - reference).square().sum().item()
        total += reference.square().sum().item()
    return (diff / total) ** 0.5


def _float64_losses(baseline: nn.Module, batch) -> list[float]:
    """Losses of the first two steps of a float64 copy of ``baseline`` (the rounding-free
    yardstick): the RMSprop step moves every weight by about 10 x lr whatever its gradient's
    size, so the loss after one step is sensitive to rounding, and the fp32 baseline's own
    error against float64 shows how close "the same numerics" can be."""
    import copy

    model = copy.deepcopy(baseline).double()
    step = TrainStep(model, tuple(t.double() for t in batch))
    losses = [step(), step()]
    del model, step
    return losses


def _measure_inference(shape, speed, baseline, fast, images, rounds) -> dict[str, float]:
    baseline.eval()
    fast.eval()
    fast_images = images.contiguous(memory_format=torch.channels_last) if speed.channels_last else images

    def run_baseline() -> None:
        with torch.no_grad():
            baseline(images)

    def run_fast() -> None:
        with torch.no_grad(), autocast(speed):
            fast(fast_images)

    medians = interleaved_medians({"fast": run_fast, "baseline": run_baseline}, rounds, warmup=1)
    prefix = f"infer_{shape.stacks}stack"
    return {
        f"{prefix}_img_s": shape.batch / medians["fast"],
        f"{prefix}_baseline_img_s": shape.batch / medians["baseline"],
        f"{prefix}_speedup": medians["baseline"] / medians["fast"],
    }
