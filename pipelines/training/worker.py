"""The per-worker training function run by Ray Train (`TorchTrainer(train_worker, ...)`).

Every worker builds the model, resumes from `ray.train.get_checkpoint()` when there is one
(`pipelines.training.resume`, mid-epoch checkpoints included), wraps the model for DDP
(`ray.train.torch.prepare_model`: NCCL on GPU, gloo on CPU) and streams its shard of each epoch's
dataset (`pipelines.training.data_stream`) through `pipelines.training.loop.TrainLoop`. Rank 0
alone validates, writes checkpoints and logs to MLflow; every rank calls `ray.train.report` at
each checkpoint (a barrier).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import torch

from pipelines.config.experiment import ExperimentConfig
from pipelines.training.data_stream import TRAIN_DATASET
from pipelines.training.device import amp_dtype, cpu_threads
from pipelines.training.loop import Cadence, TrainLoop
from pipelines.training.optim import LrSchedule, build_optimizer
from pipelines.training.precision import cuda_bf16_native, resolve
from pipelines.training.progress import Poster, Update
from pipelines.training.resume import EpochProgress, restore_placed

# Ray Train V2 patches print() into its logger *and* tees it to the wrapped stdout, so a print
# shows twice on the driver; a logger line shows once.
log = logging.getLogger("shg.train")


def _agree(world: int):
    """`agree(obj)`: rank 0's `obj` on every rank (identity for one worker)."""
    def agree(obj):
        if world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]
    return agree


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. `loop_config`: `cfg` (ExperimentConfig), `data` (prepared dataset
    folder), `tracking_uri`, `run_id` (MLflow), `baseline` (mean-pose PCKh table or None),
    `clock_name` (the run's `EpochClock` actor, see pipelines.training.data_stream),
    `train_rows` (rows of the training split), `progress_name` (the live display's board)."""
    import ray
    import ray.train
    import ray.train.torch

    cfg: ExperimentConfig = loop_config["cfg"]
    train = cfg.train
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    on_gpu = device.type == "cuda"
    if not on_gpu:
        torch.set_num_threads(cpu_threads(len(os.sched_getaffinity(0)), context.get_local_world_size()))
    torch.manual_seed(train.seed)  # same initial weights on every rank (DDP also broadcasts)
    if train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif on_gpu:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: cuDNN picks its fastest kernels once

    images_per_worker = loop_config.get("train_rows", 0) // world * train.epochs
    if train.max_steps:
        images_per_worker = min(images_per_worker, train.max_steps * train.batch_size)
    poster = Poster(loop_config["progress_name"]) if rank == 0 and loop_config.get("progress_name") else None
    shown = Update(epochs=train.epochs, images_total=images_per_worker * world)
    if poster is not None:
        poster.post(dataclasses.replace(shown, phase="choosing the speed path (measuring)"), force=True)
    choice, model = resolve(
        cfg.model, train.amp, train.layout, train.compile, batch_size=train.batch_size,
        input_size=cfg.data.input_size, images_per_worker=images_per_worker,
        make_optimizer=lambda m: build_optimizer(m, train), on_gpu=on_gpu,
        bf16_supported=on_gpu and cuda_bf16_native(), agree=_agree(world),
        log=log.info if rank == 0 else (lambda _: None))
    optimizer = build_optimizer(model, train)
    schedule = LrSchedule(train.lr, train.lr_drop_factor, train.lr_drop_epochs, train.lr_plateau_patience)
    # placed first, restored after: the optimiser state lands on the parameters' device
    forward, position = restore_placed(ray.train.get_checkpoint(), cfg, model, optimizer, schedule,
                                       place=ray.train.torch.prepare_model)  # to device; DDP when world > 1

    reporter = None
    if rank == 0:
        from pipelines.training.reporter import Rank0Reporter

        reporter = Rank0Reporter(loop_config, cfg)
        reporter.speed(choice, position.global_step)
        if position.global_step:  # a restart: say where from in the run
            where = position.in_epoch
            reporter.tracker.set_tags({
                "train.resumed_at_step": position.global_step,
                "train.resumed_in_epoch": "" if where is None else
                f"epoch {where.epoch}, {len(where.keys)} of {loop_config.get('train_rows', '?')} samples done"})
    amp = amp_dtype(choice.path.amp)
    loop = TrainLoop(
        cfg=cfg, rank=rank, world=world, device=device, model=model,
        forward=forward,
        optimizer=optimizer, scaler=torch.amp.GradScaler("cuda", enabled=amp is torch.float16),
        amp=amp, channels_last=choice.path.layout == "channels_last", drop_last=choice.path.compiled,
        schedule=schedule, shard=ray.train.get_dataset_shard(TRAIN_DATASET),
        clock=ray.get_actor(loop_config["clock_name"]), reporter=reporter,
        train_rows=int(loop_config.get("train_rows", 0)), global_step=position.global_step,
        trained_s=position.train_seconds,
        cadence=Cadence(train.checkpoint_every_steps, train.checkpoint_every_minutes))
    budget = f", stops after {train.max_minutes:g} min of training" if train.max_minutes else ""
    shown = dataclasses.replace(shown, note=f"{choice.path.name}, {torch.get_num_threads()} threads/worker{budget}",
                                step=position.global_step,
                                images=position.global_step * train.batch_size * world)

    if poster is not None:
        full_total = shown.images_total

        def on_step(epoch: int, images_per_s: float, loss_per_stack: tuple[float, ...]) -> None:
            nonlocal shown
            images, total, left = loop.global_step * train.batch_size * world, full_total, loop.budget_left_s()
            if left is not None:  # a time budget ends the run where this rate gets in the time left
                total = min(full_total, images + int(images_per_s * left))
            shown = dataclasses.replace(
                shown, phase="train", epoch=epoch, step=loop.global_step, images=images,
                images_total=total, images_per_s=images_per_s, loss_per_stack=loss_per_stack)
            poster.post(shown)
        loop.on_step = on_step

    for epoch in range(position.start_epoch, train.epochs):
        before = position.in_epoch if position.in_epoch and position.in_epoch.epoch == epoch else \
            EpochProgress(epoch, cfg.model.stacks)
        progress, stopped = loop.run_epoch(epoch, before)
        if poster is not None and loop.validates(epoch, stopped):
            poster.post(dataclasses.replace(shown, phase="validating", epoch=epoch), force=True)
        last = loop.end_epoch(epoch, progress, stopped)
        if poster is not None and loop.val_total is not None:
            shown = dataclasses.replace(shown, val_total=loop.val_total)
            poster.post(dataclasses.replace(shown, phase="validated"), force=True)
        if last:
            break
    if poster is not None:
        poster.post(dataclasses.replace(shown, phase="done"), force=True)
    if reporter is not None:
        reporter.tracker.close()  # deliver what an MLflow outage held back
