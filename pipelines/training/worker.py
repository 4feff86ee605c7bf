"""The per-worker training function run by Ray Train (`TorchTrainer(train_worker, ...)`).

Every worker builds the model, resumes from `ray.train.get_checkpoint()` when there is one
(`pipelines.training.resume`, mid-epoch checkpoints included), wraps the model for DDP
(`ray.train.torch.prepare_model`: NCCL on GPU, gloo on CPU) and streams its shard of each epoch's
dataset (`pipelines.training.data_stream`) through `pipelines.training.loop.TrainLoop`. Rank 0
alone validates, writes checkpoints and logs to MLflow; every rank calls `ray.train.report` at
each checkpoint (a barrier).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time

import torch

from pipelines.tracking.buffered import BufferedTracker
from pipelines.tracking.system import system_metrics
from pipelines.training.data_stream import TRAIN_DATASET, EpochClockClient, load_validation
from pipelines.training.device import amp_dtype, cpu_threads
from pipelines.training.loop import Cadence, LoopParts, LoopState, TrainLoop
from pipelines.training.optim import LrSchedule, build_optimizer
from pipelines.training.precision import cuda_bf16_native, resolve
from pipelines.training.progress import Poster, SmoothedRate, Update, validation_label
from pipelines.training.reporter import Rank0Reporter
from pipelines.training.resume import EpochProgress, restore_placed
from pipelines.training.worker_args import WorkerArgs

# Imported where used: ray (Ray Train loads in seconds, and only ever inside a Ray worker)

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


def train_worker(args: WorkerArgs) -> None:
    """Ray Train entry point (the driver passes `functools.partial(train_worker, args)`)."""
    import ray  # heavy, and only ever imported inside a Ray worker
    import ray.train
    import ray.train.torch

    cfg = args.cfg
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

    images_per_worker = args.train_rows // world * train.epochs
    if train.max_steps:
        images_per_worker = min(images_per_worker, train.max_steps * train.batch_size)
    poster = Poster(args.progress_name) if rank == 0 and args.progress_name else None
    shown = Update(epochs=train.epochs, images_total=images_per_worker * world,
                   budget_s=60.0 * train.max_minutes)
    if poster is not None:
        poster.post(dataclasses.replace(shown, phase="choosing the speed path (measuring)"), force=True)
    choice, model = resolve(
        cfg.model, train.amp, train.layout, train.compile, batch_size=train.batch_size,
        input_size=cfg.data.input_size, images_per_worker=images_per_worker,
        make_optimizer=lambda m: build_optimizer(m, train), on_gpu=on_gpu,
        bf16_supported=on_gpu and cuda_bf16_native(), agree=_agree(world),
        log=log.info if rank == 0 else (lambda _: None))
    optimizer = build_optimizer(model, train)
    schedule = LrSchedule(train.lr, train.lr_drop_factor, train.lr_drop_epochs, train.lr_plateau_patience,
                          budget_fraction=train.lr_drop_budget_fraction if train.max_minutes else 0.0,
                          drop_step=train.lr_drop_at_step)
    # placed first, restored after: the optimiser state lands on the parameters' device
    forward, position = restore_placed(ray.train.get_checkpoint(), cfg, model, optimizer, schedule,
                                       place=ray.train.torch.prepare_model)  # to device; DDP when world > 1

    reporter = None
    if rank == 0:
        # MLflow writes go through a background queue: a tracking outage never stalls or kills
        # training (the writes are retried until the store is back, memory bounded).
        tracker = BufferedTracker(args.tracking_uri, args.run_id)
        val = load_validation(args.data, dataclasses.replace(cfg.data, enabled=False), train.val_max_people)
        reporter = Rank0Reporter(cfg, tracker, val, baseline=args.baseline)
        reporter.speed(choice, position.global_step)
        if position.global_step:  # a restart: say where from in the run
            where = position.in_epoch
            reporter.set_tags({
                "train.resumed_at_step": position.global_step,
                "train.resumed_in_epoch": "" if where is None else
                f"epoch {where.epoch}, {len(where.keys)} of {args.train_rows} samples done"})
    amp = amp_dtype(choice.path.amp)
    parts = LoopParts(
        cfg=cfg, rank=rank, world=world, device=device, model=model,
        forward=forward,
        optimizer=optimizer, scaler=torch.amp.GradScaler("cuda", enabled=amp is torch.float16),
        amp=amp, channels_last=choice.path.layout == "channels_last", drop_last=choice.path.compiled,
        schedule=schedule, shard=ray.train.get_dataset_shard(TRAIN_DATASET), train_rows=args.train_rows)
    loop = TrainLoop(
        parts, clock=EpochClockClient(ray.get_actor(args.clock_name)), reporter=reporter,
        state=LoopState(global_step=position.global_step, trained_s=position.train_seconds),
        cadence=Cadence(train.checkpoint_every_steps, train.checkpoint_every_minutes))
    budget = f", stops after {train.max_minutes:g} min of training" if train.max_minutes else ""
    shown = dataclasses.replace(shown, note=f"{choice.path.name}, {torch.get_num_threads()} threads/worker{budget}",
                                step=position.global_step,
                                images=position.global_step * train.batch_size * world)

    rate = SmoothedRate()
    if poster is not None:

        def on_step(epoch: int, images_per_s: float, loss_per_stack: tuple[float, ...]) -> None:
            # The total stays the recipe's; the budget shows as its own clock (`training_eta`
            # picks whichever ends training first), and the rate is smoothed over steps.
            nonlocal shown
            images, left = loop.global_step * train.batch_size * world, loop.budget_left_s()
            shown = dataclasses.replace(
                shown, phase="train", epoch=epoch, step=loop.global_step, images=images,
                images_per_s=rate.update(images, time.perf_counter()), loss_per_stack=loss_per_stack,
                trained_s=0.0 if left is None else shown.budget_s - left)
            poster.post(shown)
        loop.on_step = on_step

        def on_validation(done: int, people: int, seconds: float) -> None:
            poster.post(dataclasses.replace(shown, phase="validating", val_done=done, val_people=people,
                                            val_per_s=done / seconds if seconds > 0 else 0.0), force=done == 0)
        reporter.on_validation = on_validation

    with _node_metrics(args, rank, reporter):  # the node that trains, not the driver's
        for epoch in range(position.start_epoch, train.epochs):
            before = position.in_epoch if position.in_epoch and position.in_epoch.epoch == epoch else \
                EpochProgress(epoch, cfg.model.stacks)
            rate.pause()  # the time between passes (validation, checkpoints) is not training
            progress, stopped = loop.run_epoch(epoch, before)
            last = loop.end_epoch(epoch, progress, stopped)
            if poster is not None and loop.val_total is not None:
                shown = dataclasses.replace(shown, val_total=loop.val_total, val_label=validation_label(
                    flip=train.val_flip, precision=choice.path.amp if choice.path.amp != "off" else "fp32",
                    people=len(reporter.val), subset=bool(train.val_max_people)))
                poster.post(dataclasses.replace(shown, phase="validated"), force=True)
            if last:
                break
    if poster is not None:
        poster.post(dataclasses.replace(shown, phase="done"), force=True)
    if reporter is not None:
        reporter.tracker.close(timeout_s=train.tracking_flush_s)  # deliver what an outage held back


def _node_metrics(args: WorkerArgs, rank: int, reporter):
    """MLflow's system metrics (CPU, memory, disk, network, GPU) of this node while the epochs
    run, on rank 0 only: the node that trains and its GPU, not the driver's (a CPU-only head on
    a cluster). A restarted worker continues the run's steps."""
    every = args.cfg.train.system_metrics_s
    if rank != 0 or not every:
        return contextlib.nullcontext()
    reporter.set_tags({"train.system_metrics_node": os.uname().nodename})
    return system_metrics(args.tracking_uri, args.run_id, resumed=True, sampling_interval_s=every,
                          log=log.info)
