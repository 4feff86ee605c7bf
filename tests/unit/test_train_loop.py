"""One rank's pass over an epoch (`TrainLoop.run_epoch`) with its side effects handed in: the
epoch clock, rank 0's reporter and the time source. A real tiny model trains on real batches;
what the loop tells the clock and the reporter, and where the caps stop it, is checked."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.config.experiment import load_config
from pipelines.training.loop import LoopParts, LoopState, TrainLoop
from pipelines.training.optim import LrSchedule, build_optimizer
from pipelines.training.resume import EpochProgress
from shg_model import StackedHourglass


class Batches:
    """A shard of `n` batches of 2 samples (keys 0, 1, 2, ...), 64 px images, keypoints in 16 px
    heatmap px (the loop draws the targets)."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.batches = [{
            "key": torch.tensor([2 * i, 2 * i + 1]),
            "image": torch.from_numpy(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)),
            "keypoints": torch.from_numpy(16 * rng.random((2, 16, 2), dtype=np.float32)),
            "weight": torch.ones(2, 16),
        } for i in range(n)]

    def iter_torch_batches(self, **options):
        return iter(self.batches)


class EpochClock:
    def __init__(self) -> None:
        self.set = []

    def set_epoch(self, epoch, done) -> None:
        self.set.append((epoch, list(done)))


class Reporter:
    def __init__(self) -> None:
        self.steps = []

    def step(self, step, loss, per_stack, lr, *, images_per_s, data_wait_s) -> None:
        self.steps.append(step)


class Ticks:
    """A time source that advances `step` seconds at every reading."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def _loop(*overrides: str, batches: int = 5, now=None):
    cfg = load_config(None, ["model.stacks=1", "model.channels=8", "data.input_size=64",
                             "train.batch_size=2", "train.log_every=1", *overrides])
    torch.manual_seed(0)
    model = StackedHourglass(cfg.model)
    parts = LoopParts(cfg=cfg, rank=0, world=1, device=torch.device("cpu"), model=model, forward=model,
                      optimizer=build_optimizer(model, cfg.train), scaler=torch.amp.GradScaler("cpu", enabled=False),
                      amp=None, channels_last=False, drop_last=False, schedule=LrSchedule(cfg.train.lr, 0.1),
                      shard=Batches(batches), train_rows=2 * batches)
    clock, reporter = EpochClock(), Reporter()
    loop = TrainLoop(parts, clock=clock, reporter=reporter, state=LoopState(global_step=10),
                     now=now or Ticks(0.1))
    return loop, clock, reporter


def test_max_steps_stops_the_pass_and_every_step_is_reported():
    loop, clock, reporter = _loop("train.max_steps=13")
    progress, stopped = loop.run_epoch(0, EpochProgress(0, 1))
    assert stopped and loop.state.stopped_by == "max_steps"
    assert loop.global_step == 13 and reporter.steps == [11, 12, 13]  # restarted at step 10
    assert clock.set == [(0, [])]  # rank 0 set the clock once, before the pass
    assert progress.keys.tolist() == [0, 1, 2, 3, 4, 5] and float(progress.sums[0]) == 6


def test_the_time_budget_counts_the_injected_clock():
    # 1 s per reading, budget 4.8 s (0.08 min). The pass starts at reading 2; a step takes 3
    # readings (arrival, after the step, the budget check): 3 s spent after the first step,
    # 6 s after the second, which ends the pass
    loop, _, reporter = _loop("train.max_minutes=0.08", now=Ticks(1.0))
    _, stopped = loop.run_epoch(0, EpochProgress(0, 1))
    assert stopped and loop.state.stopped_by == "max_minutes"
    assert reporter.steps == [11, 12]
    assert loop.budget_left_s() == 0.0


def test_a_full_pass_is_not_stopped():
    loop, _, reporter = _loop(batches=3)
    progress, stopped = loop.run_epoch(0, EpochProgress(0, 1))
    assert not stopped and loop.state.stopped_by == "" and reporter.steps == [11, 12, 13]
    assert len(progress.keys) == 6 and loop.budget_left_s() is None
