"""Where a training run stands: what a checkpoint saves, and where a restarted worker goes on.

A checkpoint is written after every epoch and, with `train.checkpoint_every_steps/minutes`,
inside an epoch too. A mid-epoch checkpoint adds `in_epoch` (`EpochProgress`): the epoch in
progress, the keys of the samples every rank trained on in it, and the running sums of its
metrics. A worker restarted from it finishes that epoch on the samples not yet seen (the data
stream drops the others, see `pipelines.training.data_stream`) and goes on.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipelines.config.experiment import ExperimentConfig
from pipelines.inference.model_dir import plain_state_dict
from pipelines.training.checkpoints import load_state, restore_rng_state, rng_state, save_state
from pipelines.training.optim import LrSchedule

# Imported where used: ray (Ray Train loads in seconds: only a training worker reports)


@dataclass
class EpochProgress:
    """How far the pass over one epoch got, over every rank.

    Attributes:
        epoch: 0-based epoch.
        keys: (N,) int64 keys (`data_stream.sample_keys`) of the samples trained on, in order of
            arrival per rank; a key twice means a sample was trained on twice.
        sums: (2 + stacks,) float64: images, loss·images, per-stack loss·images.
        seconds, wait_s, compute_s: wall time of the pass, time waiting for data, computing.
    """

    epoch: int
    stacks: dataclasses.InitVar[int] = 0
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    sums: torch.Tensor | None = None
    seconds: float = 0.0
    wait_s: float = 0.0
    compute_s: float = 0.0

    def __post_init__(self, stacks: int) -> None:
        if self.sums is None:
            self.sums = torch.zeros(2 + stacks, dtype=torch.float64)

    def plus(self, keys: np.ndarray, sums: torch.Tensor, seconds: float, wait_s: float,
             compute_s: float) -> "EpochProgress":
        """This progress followed by another stretch of the same pass."""
        return EpochProgress(self.epoch, keys=np.concatenate([self.keys, keys.astype(np.int64)]),
                             sums=self.sums + sums, seconds=self.seconds + seconds,
                             wait_s=self.wait_s + wait_s, compute_s=self.compute_s + compute_s)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "keys": torch.from_numpy(self.keys.astype(np.int64)),
                "sums": self.sums.clone(), "seconds": self.seconds, "wait_s": self.wait_s,
                "compute_s": self.compute_s}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "EpochProgress":
        return cls(int(state["epoch"]), keys=state["keys"].numpy().astype(np.int64),
                   sums=state["sums"].double(), seconds=float(state["seconds"]),
                   wait_s=float(state["wait_s"]), compute_s=float(state["compute_s"]))


@dataclass(frozen=True)
class Position:
    """Where the loop starts: the first epoch to run, the optimiser steps already taken, and the
    progress of that first epoch when the checkpoint was written inside it."""

    start_epoch: int = 0
    global_step: int = 0
    in_epoch: EpochProgress | None = None
    train_seconds: float = 0.0  # time already spent in training passes (`train.max_minutes`)


def resume(checkpoint, cfg: ExperimentConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           schedule: LrSchedule) -> Position:
    """Loads `checkpoint` (a `ray.train.Checkpoint`, or None for a fresh start) into the model,
    optimiser, schedule and RNGs; returns where to go on from."""
    if checkpoint is None:
        return Position()
    with checkpoint.as_directory() as folder:
        state = load_state(folder, expected=cfg.model)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    restore_rng_state(state["rng"])
    step, seconds = int(state["global_step"]), float(state.get("train_seconds", 0.0))
    if state.get("stopped_at_max_steps"):
        return Position(cfg.train.epochs, step, None, seconds)  # already ended at its step or time cap
    if state.get("in_epoch"):
        progress = EpochProgress.from_state(state["in_epoch"])
        return Position(progress.epoch, step, progress, seconds)
    return Position(int(state["epoch"]) + 1, step, None, seconds)


def restore_placed(checkpoint, cfg: ExperimentConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   schedule: LrSchedule, place: Callable[[torch.nn.Module], torch.nn.Module]
                   ) -> tuple[torch.nn.Module, Position]:
    """`place(model)` (device placement, e.g. `ray.train.torch.prepare_model`: the parameters
    move in place), *then* :func:`resume`: returns (what `place` returned, the position).

    The order matters on a GPU: `Optimizer.load_state_dict` puts each state tensor (RMSprop's
    `square_avg`, Adam's moments) on its parameter's device *at load time*, and moving the model
    afterwards leaves them behind on the CPU, so the first step after a restore would fail with a
    device mismatch."""
    placed = place(model)
    position = resume(checkpoint, cfg, model, optimizer, schedule)
    state_to_parameters(optimizer)
    return placed, position


def state_to_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Moves every tensor of the optimiser's per-parameter state to its parameter's device (a
    scalar `step` stays where the optimiser keeps it: on the CPU unless `capturable`/`fused`)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.device != param.device and not (
                        name == "step" and value.dim() == 0):
                    optimizer.state[param][name] = value.to(param.device)


def report(metrics: dict[str, Any], state: dict[str, Any] | None, name: str) -> None:
    """`ray.train.report` on every rank (a barrier); the rank passing `state` (rank 0) attaches
    it as the checkpoint `name`."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="shg-ckpt-") as folder:
        checkpoint = None
        if state is not None:
            save_state(folder, state)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


def checkpoint_state(cfg: ExperimentConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     schedule: LrSchedule, *, epochs_done: int, global_step: int, metrics: dict[str, float],
                     stopped_by: str = "", in_epoch: EpochProgress | None = None,
                     train_seconds: float = 0.0) -> dict[str, Any]:
    """What a checkpoint holds. `epochs_done`: completed epochs (`epoch` is the last one, -1 for
    none); `stopped_by`: "max_steps" or "max_minutes" when that cap ended the run here; `in_epoch`: the progress
    of the epoch under way (mid-epoch checkpoints only); `train_seconds`: time spent in training
    passes so far."""
    return {
        "model_config": dataclasses.asdict(cfg.model),
        "model": plain_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "epoch": epochs_done - 1,
        "global_step": global_step,
        "stopped_at_max_steps": bool(stopped_by),  # the name predates max_minutes, which sets it too
        "stopped_by": stopped_by,
        "train_seconds": float(train_seconds),
        "rng": rng_state(),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "in_epoch": None if in_epoch is None else in_epoch.state_dict(),
    }
