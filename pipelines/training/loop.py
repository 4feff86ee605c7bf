"""The parts of a worker's training loop: one pass over an epoch (with mid-epoch checkpoints)
and the end of an epoch (metrics, validation, learning-rate schedule, checkpoint).

`TrainLoop` is what `pipelines.training.worker.train_worker` set up (`LoopParts`, fixed), the
typed state that changes as the rank trains (`LoopState`), and what it is handed: the run's
epoch clock, rank 0's reporter and a time source. Every rank runs the same calls in the same
order, so the collectives (barriers, reductions, `ray.train.report`) line up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from pipelines.config.experiment import ExperimentConfig
from pipelines.training.data_stream import shuffle_buffer_rows
from pipelines.training.optim import LrSchedule, set_lr
from pipelines.training.resume import EpochProgress, checkpoint_state, report
from pipelines.training.validation import ValidationResult
from shg_model import heatmap_loss
from shg_model.pixels import normalise
from shg_model.targets import render_heatmaps

SCORE_METRIC = "pckh/Total"  # Ray keeps the best checkpoints by it; NaN where not validated
# On a GPU, ranks agree on the clock-based decisions (checkpoint due, time budget spent) every
# this many steps: the broadcast's read waits for the device; a cap then stops <= 9 steps late.
AGREE_EVERY_GPU_STEPS = 10


@dataclass
class Cadence:
    """When a mid-epoch checkpoint is due: `steps` optimiser steps or `minutes` of training
    after the last checkpoint (0 turns either off)."""

    steps: int = 0
    minutes: float = 0.0
    last_step: int = 0
    last_time: float = 0.0

    def due(self, step: int, now: float) -> bool:
        by_steps = self.steps > 0 and step - self.last_step >= self.steps
        by_time = self.minutes > 0 and now - self.last_time >= 60.0 * self.minutes
        return by_steps or by_time

    def restart(self, step: int, now: float) -> None:
        self.last_step, self.last_time = step, now


@dataclass
class _Stretch:
    """This rank's part of a pass since the pass began or the last mid-epoch checkpoint.

    The losses add up on the training device (`loss_sums`) and the image count on the host, so
    a step does not wait for the device; `sums()` reads them back (one sync) where needed."""

    stacks: int
    start: float  # the loop's clock when the stretch began
    device: torch.device = torch.device("cpu")
    keys: list[np.ndarray] = field(default_factory=list)
    images: int = 0
    loss_sums: torch.Tensor | None = None  # (1 + stacks,) float64: loss·images, per-stack loss·images
    wait_s: float = 0.0
    compute_s: float = 0.0

    def __post_init__(self) -> None:
        self.loss_sums = torch.zeros(1 + self.stacks, dtype=torch.float64, device=self.device)

    def add(self, n: int, loss: torch.Tensor, per_stack: torch.Tensor) -> None:
        self.images += n
        # loss·images in float32 (as the host sums always were), the per-stack terms in float64
        self.loss_sums += torch.cat([(loss.detach().float() * n).double().reshape(1), per_stack.detach().double() * n])

    def sums(self) -> torch.Tensor:
        """(2 + stacks,) float64 on the CPU: images, loss·images, per-stack loss·images."""
        return torch.cat([torch.tensor([float(self.images)], dtype=torch.float64), self.loss_sums.cpu()])


class EpochClockHandle(Protocol):
    """The run's epoch clock as the loop sees it (`pipelines.training.data_stream.EpochClockClient`
    over the `EpochClock` actor): tells the data tasks which epoch is under way and which of its
    samples were trained on before a restart."""

    def set_epoch(self, epoch: int, done: np.ndarray) -> None: ...


class LoopReporter(Protocol):
    """Rank 0's side effects as the loop calls them (`pipelines.training.reporter.Rank0Reporter`)."""

    def step(self, step: int, loss: float, per_stack: np.ndarray, lr: float, *, images_per_s: float,
             data_wait_s: float) -> None: ...

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def validate(self, model: torch.nn.Module, epoch: int, epoch_metrics: dict,
                 amp: torch.dtype | None) -> ValidationResult: ...

    def artifacts(self, result: ValidationResult) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


class BatchSource(Protocol):
    """A rank's shard of the training dataset (`ray.data.DataIterator`)."""

    def iter_torch_batches(self, **options: Any) -> Iterable[dict[str, torch.Tensor]]: ...


# on_step(epoch, images/s over every rank, mean loss per stack): rank 0's live display
StepCallback = Callable[[int, float, tuple[float, ...]], None]


@dataclass(frozen=True)
class LoopParts:
    """What one rank trains with, set up once by the worker. `forward` is the (DDP-wrapped)
    model, `model` the plain one."""

    cfg: ExperimentConfig
    rank: int
    world: int
    device: torch.device
    model: torch.nn.Module
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    channels_last: bool
    drop_last: bool
    schedule: LrSchedule
    shard: BatchSource
    train_rows: int


@dataclass
class LoopState:
    """What changes as the rank trains."""

    global_step: int = 0
    trained_s: float = 0.0  # seconds spent in training passes, restarts included (`max_minutes`)
    val_total: float | None = None  # rank 0: the PCKh Total of the last end_epoch, if it validated
    stopped_by: str = ""  # "max_steps" or "max_minutes" once a cap ended the run early
    pass_start: float = 0.0  # the clock's time when the pass under way began


class TrainLoop:
    """One rank's training: `run_epoch`, then `end_epoch`, for each epoch."""

    def __init__(self, parts: LoopParts, *, clock: EpochClockHandle, reporter: LoopReporter | None,
                 state: LoopState | None = None, cadence: Cadence | None = None,
                 now: Callable[[], float] = time.perf_counter, on_step: StepCallback | None = None) -> None:
        """Args:
            parts: the model, optimiser, data shard and settings of this rank.
            clock: the run's epoch clock (rank 0 sets it at the start of each pass).
            reporter: rank 0's reporter; None on the other ranks.
            state: where a restart goes on (global step, training seconds so far).
            cadence: when mid-epoch checkpoints are due.
            now: the time source (seconds, monotonic) for rates, cadence and the time budget.
            on_step: rank 0's live display, called after every step.
        """
        self.parts = parts
        self.clock = clock
        self.reporter = reporter
        self.state = state or LoopState()
        self.cadence = cadence or Cadence()
        self.now = now
        self.on_step = on_step

    @property
    def global_step(self) -> int:
        return self.state.global_step

    @property
    def val_total(self) -> float | None:
        return self.state.val_total

    def budget_left_s(self) -> float | None:
        """Seconds of `train.max_minutes` left during a pass; None without a time budget."""
        cfg, state = self.parts.cfg, self.state
        if not cfg.train.max_minutes:
            return None
        spent = state.trained_s + self.now() - state.pass_start
        return max(60.0 * cfg.train.max_minutes - spent, 0.0)

    # --- one pass ------------------------------------------------------------------------------

    def run_epoch(self, epoch: int, before: EpochProgress) -> tuple[EpochProgress, bool]:
        """Trains on `epoch`'s samples not in `before` (all of them on a fresh epoch); returns the
        epoch's progress over every rank, and whether `train.max_steps` or `train.max_minutes`
        stopped the pass."""
        p, state = self.parts, self.state
        train = p.cfg.train
        set_lr(p.optimizer, p.schedule.lr)
        if p.rank == 0:
            self.clock.set_epoch(epoch, before.keys)
        if p.world > 1:  # nobody starts the pass before the clock shows this epoch
            torch.distributed.barrier()
        self.cadence.restart(state.global_step, self.now())
        progress, stretch, stopped = before, _Stretch(p.cfg.model.stacks, start=self.now(), device=p.device), False
        state.pass_start = stretch.start
        window = {"images": 0, "start": stretch.start, "wait": 0.0}
        tick = shown = stretch.start
        on_gpu = p.device.type == "cuda"
        batches = p.shard.iter_torch_batches(
            # on the host (pinned where a GPU trains): the keys stay here, the rest moves in _step
            batch_size=train.batch_size, device="cpu", pin_memory=on_gpu, prefetch_batches=2,
            drop_last=p.drop_last,  # a compiled model would recompile for a smaller last batch
            local_shuffle_buffer_size=shuffle_buffer_rows(train.batch_size),
            local_shuffle_seed=train.seed + epoch,
        )
        for batch in batches:
            got = self.now()
            stretch.wait_s += got - tick
            window["wait"] += got - tick
            stretch.keys.append(batch["key"].numpy())
            if len(batch["key"]) < 2:
                # A one-image remainder cannot train BatchNorm where the hourglass bottom is 1x1
                # (tiny inputs). Shards are split equally, so every rank skips the same batch.
                tick = self.now()
                continue
            loss, per_stack = self._step(batch)  # on the device: no wait for it here
            n = len(batch["key"])
            stretch.add(n, loss, per_stack)
            window["images"] += n
            tick = self.now()
            stretch.compute_s += tick - got
            if self.reporter is not None and state.global_step % train.log_every == 0:
                elapsed = tick - window["start"]
                self.reporter.step(state.global_step, float(loss), per_stack.cpu().numpy(), p.schedule.lr,
                                   images_per_s=window["images"] * p.world / max(elapsed, 1e-9),
                                   data_wait_s=window["wait"])
                window = {"images": 0, "start": tick, "wait": 0.0}
            if self.on_step is not None and (not on_gpu or tick - shown >= 1.0):  # the display posts ~1/s
                shown, sums = tick, stretch.sums()
                local = max(float(sums[0]), 1.0)
                self.on_step(epoch, float(sums[0]) * p.world / max(tick - stretch.start, 1e-9),
                             tuple(float(v) / local for v in sums[2:]))
            left = self.budget_left_s()
            late = p.schedule.early_drop_due(
                epoch, spent_fraction=0.0 if left is None else 1.0 - left / (60.0 * train.max_minutes),
                step=state.global_step)
            due, spent, late = self._agree(self.cadence.due(state.global_step, tick), left == 0.0, late)
            if late:  # the budget will end training before the listed drop: take it now
                set_lr(p.optimizer, p.schedule.take_early_drop())
                if self.reporter is not None:  # `shg rerun` repeats it at this step
                    self.reporter.set_tags({"train.lr_dropped_early_at_step": state.global_step})
            if spent or (train.max_steps and state.global_step >= train.max_steps):
                stopped, state.stopped_by = True, "max_minutes" if spent else "max_steps"
                break
            if due:
                progress = self._combine(progress, stretch)
                if len(np.unique(progress.keys)) < p.train_rows:  # else the epoch's own follows
                    self._checkpoint_mid_epoch(epoch, progress, state.trained_s + tick - state.pass_start)
                stretch = _Stretch(p.cfg.model.stacks, start=self.now(), device=p.device)
                tick = stretch.start
                self.cadence.restart(state.global_step, tick)
        state.trained_s += self.now() - state.pass_start
        return self._combine(progress, stretch), stopped

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on a host batch; returns the loss () and the per-stack losses
        (S,), on the device (reading them waits for the device)."""
        p = self.parts
        data = p.cfg.data
        # uint8 pixels and keypoints travel; normalising and drawing the targets happen here
        image = batch["image"].to(p.device, non_blocking=True)  # (B, S, S, 3) uint8
        weight = batch["weight"].to(p.device, non_blocking=True)  # (B, J)
        keypoints = batch["keypoints"].to(p.device, non_blocking=True)  # (B, J, 2) heatmap px
        targets = render_heatmaps(keypoints, weight > 0, data.heatmap_size, data.sigma)  # (B, J, H, H)
        images = normalise(image)  # (B, 3, S, S)
        if p.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(p.device.type, dtype=p.amp) if p.amp else contextlib.nullcontext():
            pred = p.forward(images)  # (B, S, J, h, w)
        loss, per_stack = heatmap_loss(pred, targets, weight)
        p.optimizer.zero_grad(set_to_none=True)
        p.scaler.scale(loss).backward()
        p.scaler.step(p.optimizer)
        p.scaler.update()
        self.state.global_step += 1
        return loss.detach(), per_stack.detach()

    # --- checkpoints and the end of an epoch ---------------------------------------------------

    def _checkpoint_mid_epoch(self, epoch: int, progress: EpochProgress, trained_s: float) -> None:
        p, step = self.parts, self.state.global_step
        metrics = {"epoch": epoch, "global_step": step, "lr": p.schedule.lr,
                   "in_epoch_samples": len(progress.keys), SCORE_METRIC: float("nan")}
        state = None
        if p.rank == 0:
            state = checkpoint_state(p.cfg, p.model, p.optimizer, p.schedule,
                                     epochs_done=epoch, global_step=step, metrics=metrics,
                                     in_epoch=progress, train_seconds=trained_s)
        report(metrics, state, f"epoch_{epoch:04d}_step_{step:08d}")

    def end_epoch(self, epoch: int, progress: EpochProgress, stopped: bool) -> bool:
        """Validates (rank 0, when due), logs the epoch, steps the schedule and writes the
        epoch's checkpoint; returns whether the run is over."""
        p, state = self.parts, self.state
        train = p.cfg.train
        last = stopped or epoch == train.epochs - 1
        epoch_metrics = epoch_summary(progress, p.train_rows, stopped)
        metrics = {"epoch": epoch, "global_step": state.global_step, "lr": p.schedule.lr,
                   SCORE_METRIC: float("nan")}
        val_total = state.val_total = None
        if self.reporter is not None:
            if self.validates(epoch, stopped):
                result = self.reporter.validate(p.model, epoch, epoch_metrics, p.amp)
                val_total = state.val_total = float(result.table["Total"])
            self.reporter.epoch(epoch, epoch_metrics)
            if last and val_total is not None:
                self.reporter.artifacts(result)
            if stopped:
                self.reporter.set_tags({"train.stopped_by": state.stopped_by,
                                        "train.stopped_at_step": state.global_step,
                                        "train.trained_minutes": round(state.trained_s / 60, 2)})
            metrics.update(epoch_metrics)
        if p.world > 1 and train.lr_plateau_patience > 0:  # only rank 0 validated: share its score
            shared = torch.tensor([float("nan") if val_total is None else val_total], device=p.device)
            torch.distributed.broadcast(shared, src=0)
            val_total = None if torch.isnan(shared).item() else float(shared.item())
        p.schedule.after_epoch(epoch, val_total)  # identical on every rank
        checkpoint = None
        if p.rank == 0:
            checkpoint = checkpoint_state(p.cfg, p.model, p.optimizer, p.schedule,
                                          epochs_done=epoch + 1, global_step=state.global_step,
                                          metrics=metrics, stopped_by=state.stopped_by if stopped else "",
                                          train_seconds=state.trained_s)
        report(metrics, checkpoint, f"epoch_{epoch:04d}")
        return last

    def validates(self, epoch: int, stopped: bool) -> bool:
        """Whether rank 0 validates at the end of `epoch` (every `val_every` epochs and last)."""
        train = self.parts.cfg.train
        return stopped or epoch == train.epochs - 1 or (epoch + 1) % train.val_every == 0

    # --- collectives ---------------------------------------------------------------------------

    def _agree(self, due: bool, spent: bool, late: bool) -> tuple[bool, bool, bool]:
        """Rank 0's (checkpoint due, time budget spent, budget's lr drop due) on every rank: they
        come from clocks, and clocks differ between ranks."""
        p = self.parts
        train = p.cfg.train
        if p.world == 1 or not (train.checkpoint_every_minutes or train.max_minutes):
            return due, spent, late
        if p.device.type == "cuda" and self.state.global_step % AGREE_EVERY_GPU_STEPS:
            return False, False, False  # every rank skips the same steps: reading the box waits for the GPU
        box = torch.tensor([int(due), int(spent), int(late)], device=p.device)
        torch.distributed.broadcast(box, src=0)
        return bool(box[0].item()), bool(box[1].item()), bool(box[2].item())

    def _combine(self, progress: EpochProgress, stretch: _Stretch) -> EpochProgress:
        """`progress` plus every rank's `stretch` (keys gathered, sums reduced)."""
        p = self.parts
        keys = np.concatenate(stretch.keys) if stretch.keys else np.empty(0, np.int64)
        sums = stretch.sums()
        if p.world > 1:
            reduced = sums.to(p.device)
            torch.distributed.all_reduce(reduced)
            sums = reduced.cpu()
            gathered: list[Any] = [None] * p.world
            torch.distributed.all_gather_object(gathered, keys)
            keys = np.concatenate(gathered)
        seconds = self.now() - stretch.start
        return progress.plus(keys, sums, seconds, stretch.wait_s, stretch.compute_s)


def epoch_summary(progress: EpochProgress, train_rows: int, stopped: bool) -> dict[str, float]:
    """The epoch's metrics: mean losses (overall and per stack), throughput, data wait, and the
    sample accounting (`samples_repeated` > 0 or `samples_missed` > 0 means the pass did not
    see every training sample exactly once; `missed` counts the rows an equal split across
    workers or a compiled model's dropped last batch left out, and is not logged for a pass that
    `max_steps` or `max_minutes` cut short)."""
    images = max(float(progress.sums[0]), 1.0)
    stacks = len(progress.sums) - 2
    unique = len(np.unique(progress.keys))
    out = {
        "epoch/loss": float(progress.sums[1]) / images,
        **{f"epoch/loss/stack_{s}": float(progress.sums[2 + s]) / images for s in range(stacks)},
        "epoch/images_per_s": float(progress.sums[0]) / max(progress.seconds, 1e-9),
        "epoch/data_wait_s": progress.wait_s,
        "epoch/data_wait_fraction": progress.wait_s / max(progress.wait_s + progress.compute_s, 1e-9),
        "epoch/seconds": progress.seconds,
        "epoch/samples": float(len(progress.keys)),
        "epoch/samples_repeated": float(len(progress.keys) - unique),
    }
    if not stopped:
        out["epoch/samples_missed"] = float(max(train_rows - unique, 0))
    return out
