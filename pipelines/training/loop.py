"""The parts of a worker's training loop: one pass over an epoch (with mid-epoch checkpoints)
and the end of an epoch (metrics, validation, learning-rate schedule, checkpoint).

`TrainLoop` holds what `pipelines.training.worker.train_worker` set up; every rank runs the same
calls in the same order, so the collectives (barriers, reductions, `ray.train.report`) line up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipelines.config.experiment import ExperimentConfig
from shg_model.pixels import normalise
from pipelines.training.optim import LrSchedule, set_lr
from pipelines.training.resume import EpochProgress, checkpoint_state, report
from shg_model import heatmap_loss
from shg_model.targets import render_heatmaps

SCORE_METRIC = "pckh/Total"
# On a GPU, ranks agree on the clock-based decisions (checkpoint due, time budget spent) every
# this many steps: the broadcast's read waits for the device; a cap then stops <= 9 steps late.
AGREE_EVERY_GPU_STEPS = 10  # Ray keeps the best checkpoints by it; NaN where not validated


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
    device: torch.device = torch.device("cpu")
    keys: list[np.ndarray] = field(default_factory=list)
    images: int = 0
    loss_sums: torch.Tensor | None = None  # (1 + stacks,) float64: loss·images, per-stack loss·images
    start: float = field(default_factory=time.perf_counter)
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


@dataclass
class TrainLoop:
    """What one rank trains with. `forward` is the (DDP-wrapped) model, `model` the plain one."""

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
    shard: Any  # ray.data.DataIterator
    clock: Any  # the EpochClock actor
    reporter: Any  # Rank0Reporter on rank 0, else None
    train_rows: int
    global_step: int = 0
    trained_s: float = 0.0  # seconds spent in training passes, restarts included (`max_minutes`)
    cadence: Cadence = field(default_factory=Cadence)
    on_step: Any = None  # rank 0: on_step(epoch, images/s, loss per stack) for the live display
    val_total: float | None = None  # rank 0: the PCKh Total of the last end_epoch, if it validated
    stopped_by: str = ""  # "max_steps" or "max_minutes" once a cap ended the run early
    pass_start: float = 0.0  # perf_counter() when the pass under way began

    def budget_left_s(self) -> float | None:
        """Seconds of `train.max_minutes` left during a pass; None without a time budget."""
        if not self.cfg.train.max_minutes:
            return None
        spent = self.trained_s + time.perf_counter() - self.pass_start
        return max(60.0 * self.cfg.train.max_minutes - spent, 0.0)

    # --- one pass ------------------------------------------------------------------------------

    def run_epoch(self, epoch: int, before: EpochProgress) -> tuple[EpochProgress, bool]:
        """Trains on `epoch`'s samples not in `before` (all of them on a fresh epoch); returns the
        epoch's progress over every rank, and whether `train.max_steps` or `train.max_minutes`
        stopped the pass."""
        import ray

        train = self.cfg.train
        set_lr(self.optimizer, self.schedule.lr)
        if self.rank == 0:
            ray.get(self.clock.set.remote(epoch, before.keys))
        if self.world > 1:  # nobody starts the pass before the clock shows this epoch
            torch.distributed.barrier()
        self.cadence.restart(self.global_step, time.perf_counter())
        progress, stretch, stopped = before, _Stretch(self.cfg.model.stacks, self.device), False
        self.pass_start = stretch.start
        window = {"images": 0, "start": stretch.start, "wait": 0.0}
        tick = shown = stretch.start
        on_gpu = self.device.type == "cuda"
        batches = self.shard.iter_torch_batches(
            # on the host (pinned where a GPU trains): the keys stay here, the rest moves below
            batch_size=train.batch_size, device="cpu", pin_memory=on_gpu, prefetch_batches=2,
            drop_last=self.drop_last,  # a compiled model would recompile for a smaller last batch
            local_shuffle_buffer_size=max(4 * train.batch_size, 64), local_shuffle_seed=train.seed + epoch,
        )
        for batch in batches:
            got = time.perf_counter()
            stretch.wait_s += got - tick
            window["wait"] += got - tick
            stretch.keys.append(batch["key"].numpy())
            if len(batch["key"]) < 2:
                # A one-image remainder cannot train BatchNorm where the hourglass bottom is 1x1
                # (tiny inputs). Shards are split equally, so every rank skips the same batch.
                tick = time.perf_counter()
                continue
            loss, per_stack = self._step(batch)  # on the device: no wait for it here
            n = len(batch["key"])
            stretch.add(n, loss, per_stack)
            window["images"] += n
            tick = time.perf_counter()
            stretch.compute_s += tick - got
            if self.reporter is not None and self.global_step % train.log_every == 0:
                elapsed = tick - window["start"]
                self.reporter.step(self.global_step, float(loss), per_stack.detach().cpu().numpy(), self.schedule.lr,
                                   images_per_s=window["images"] * self.world / max(elapsed, 1e-9),
                                   data_wait_s=window["wait"])
                window = {"images": 0, "start": tick, "wait": 0.0}
            if self.on_step is not None and (not on_gpu or tick - shown >= 1.0):  # the display posts ~1/s
                shown, sums = tick, stretch.sums()
                local = max(float(sums[0]), 1.0)
                self.on_step(epoch, float(sums[0]) * self.world / max(tick - stretch.start, 1e-9),
                             tuple(float(v) / local for v in sums[2:]))
            due, spent = self._agree(self.cadence.due(self.global_step, tick), self.budget_left_s() == 0.0)
            if spent or (train.max_steps and self.global_step >= train.max_steps):
                stopped, self.stopped_by = True, "max_minutes" if spent else "max_steps"
                break
            if due:
                progress = self._combine(progress, stretch)
                if len(np.unique(progress.keys)) < self.train_rows:  # else the epoch's own follows
                    self._checkpoint_mid_epoch(epoch, progress, self.trained_s + tick - self.pass_start)
                stretch = _Stretch(self.cfg.model.stacks, self.device)
                tick = stretch.start
                self.cadence.restart(self.global_step, tick)
        self.trained_s += time.perf_counter() - self.pass_start
        return self._combine(progress, stretch), stopped

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on a host batch; returns the loss () and the per-stack losses
        (S,), on the device (reading them waits for the device)."""
        data = self.cfg.data
        # uint8 pixels and keypoints travel; normalising and drawing the targets happen here
        image = batch["image"].to(self.device, non_blocking=True)  # (B, S, S, 3) uint8
        weight = batch["weight"].to(self.device, non_blocking=True)  # (B, J)
        keypoints = batch["keypoints"].to(self.device, non_blocking=True)  # (B, J, 2) heatmap px
        targets = render_heatmaps(keypoints, weight > 0, data.heatmap_size, data.sigma)  # (B, J, H, H)
        images = normalise(image)  # (B, 3, S, S)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext():
            pred = self.forward(images)  # (B, S, J, h, w)
        loss, per_stack = heatmap_loss(pred, targets, weight)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        return loss.detach(), per_stack.detach()

    # --- checkpoints and the end of an epoch ---------------------------------------------------

    def _checkpoint_mid_epoch(self, epoch: int, progress: EpochProgress, trained_s: float) -> None:
        metrics = {"epoch": epoch, "global_step": self.global_step, "lr": self.schedule.lr,
                   "in_epoch_samples": len(progress.keys), SCORE_METRIC: float("nan")}
        state = None
        if self.rank == 0:
            state = checkpoint_state(self.cfg, self.model, self.optimizer, self.schedule,
                                     epochs_done=epoch, global_step=self.global_step, metrics=metrics,
                                     in_epoch=progress, train_seconds=trained_s)
        report(metrics, state, f"epoch_{epoch:04d}_step_{self.global_step:08d}")

    def end_epoch(self, epoch: int, progress: EpochProgress, stopped: bool) -> bool:
        """Validates (rank 0, when due), logs the epoch, steps the schedule and writes the
        epoch's checkpoint; returns whether the run is over."""
        train = self.cfg.train
        last = stopped or epoch == train.epochs - 1
        epoch_metrics = epoch_summary(progress, self.train_rows, stopped)
        metrics = {"epoch": epoch, "global_step": self.global_step, "lr": self.schedule.lr,
                   SCORE_METRIC: float("nan")}
        val_total = self.val_total = None
        if self.reporter is not None:
            if self.validates(epoch, stopped):
                result = self.reporter.validate(self.model, epoch, epoch_metrics, self.amp)
                val_total = self.val_total = float(result.table["Total"])
            self.reporter.epoch(epoch, epoch_metrics)
            if last and val_total is not None:
                self.reporter.artifacts(result)
            if stopped:
                self.reporter.tracker.set_tags({"train.stopped_by": self.stopped_by,
                                                "train.stopped_at_step": self.global_step,
                                                "train.trained_minutes": round(self.trained_s / 60, 2)})
            metrics.update(epoch_metrics)
        if self.world > 1 and train.lr_plateau_patience > 0:  # only rank 0 validated: share its score
            shared = torch.tensor([float("nan") if val_total is None else val_total], device=self.device)
            torch.distributed.broadcast(shared, src=0)
            val_total = None if torch.isnan(shared).item() else float(shared.item())
        self.schedule.after_epoch(epoch, val_total)  # identical on every rank
        state = None
        if self.rank == 0:
            state = checkpoint_state(self.cfg, self.model, self.optimizer, self.schedule,
                                     epochs_done=epoch + 1, global_step=self.global_step,
                                     metrics=metrics, stopped_by=self.stopped_by if stopped else "",
                                     train_seconds=self.trained_s)
        report(metrics, state, f"epoch_{epoch:04d}")
        return last

    def validates(self, epoch: int, stopped: bool) -> bool:
        """Whether rank 0 validates at the end of `epoch` (every `val_every` epochs and last)."""
        train = self.cfg.train
        return stopped or epoch == train.epochs - 1 or (epoch + 1) % train.val_every == 0

    # --- collectives ---------------------------------------------------------------------------

    def _agree(self, due: bool, spent: bool) -> tuple[bool, bool]:
        """Rank 0's (checkpoint due, time budget spent) on every rank: both may come from clocks,
        and clocks differ between ranks."""
        train = self.cfg.train
        if self.world == 1 or not (train.checkpoint_every_minutes or train.max_minutes):
            return due, spent
        if self.device.type == "cuda" and self.global_step % AGREE_EVERY_GPU_STEPS:
            return False, False  # every rank skips the same steps: reading the box waits for the GPU
        box = torch.tensor([int(due), int(spent)], device=self.device)
        torch.distributed.broadcast(box, src=0)
        return bool(box[0].item()), bool(box[1].item())

    def _combine(self, progress: EpochProgress, stretch: _Stretch) -> EpochProgress:
        """`progress` plus every rank's `stretch` (keys gathered, sums reduced)."""
        keys = np.concatenate(stretch.keys) if stretch.keys else np.empty(0, np.int64)
        sums = stretch.sums()
        if self.world > 1:
            reduced = sums.to(self.device)
            torch.distributed.all_reduce(reduced)
            sums = reduced.cpu()
            gathered: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(gathered, keys)
            keys = np.concatenate(gathered)
        seconds = time.perf_counter() - stretch.start
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
