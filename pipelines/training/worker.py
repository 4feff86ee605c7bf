"""The per-worker training function run by Ray Train (`TorchTrainer(train_worker, ...)`).

Every worker builds the model, resumes from `ray.train.get_checkpoint()` when there is one,
wraps the model for DDP (`ray.train.torch.prepare_model`: NCCL on GPU, gloo on CPU) and streams
its shard of each epoch's dataset (`pipelines.training.data_stream`). Rank 0 alone validates, writes the
checkpoint and logs to MLflow; every rank calls `ray.train.report` once per epoch (a barrier).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dataprep.joints import FLIP_PERMUTATION
from pipelines.training.checkpoints import load_state, restore_rng_state, rng_state, save_state
from pipelines.config.experiment import ExperimentConfig, TrainConfig
from pipelines.training.data_stream import TRAIN_DATASET
from pipelines.training.precision import resolve
from pipelines.training.progress import Poster, Update
from pipelines.inference.keypoints import PIXEL_MEAN
from shg_model import StackedHourglass, heatmap_loss

# Ray Train V2 patches print() into its logger *and* tees it to the wrapped stdout, so a print
# shows twice on the driver; a logger line shows once.
log = logging.getLogger("shg.train")


@dataclass
class LrSchedule:
    """RMSprop learning rate: ×`factor` at each epoch in `drop_epochs`, and after `patience`
    validations without a new best PCKh (0 disables plateau drops). State is plain numbers."""

    lr: float
    factor: float
    drop_epochs: tuple[int, ...] = ()
    patience: int = 0
    best: float = float("-inf")
    bad_epochs: int = 0

    def after_epoch(self, epoch: int, val_total: float | None) -> float:
        """Updates after finishing 0-based `epoch`; returns the lr for the next epoch."""
        drop = (epoch + 1) in self.drop_epochs
        if val_total is not None and self.patience > 0:
            if val_total > self.best:
                self.best, self.bad_epochs = val_total, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs >= self.patience:
                    drop, self.bad_epochs = True, 0
        if drop:
            self.lr *= self.factor
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.best, self.bad_epochs = state["lr"], state["best"], state["bad_epochs"]


def autocast_dtype(train: TrainConfig, on_gpu: bool) -> torch.dtype | None:
    """The autocast dtype without measuring (`auto`: bf16 on GPU, fp32 on CPU); for tools that
    run one process (the recipe probe). Training resolves `auto` by measurement
    (`pipelines.training.precision`)."""
    return amp_dtype(train.amp if train.amp != "auto" else ("bf16" if on_gpu else "off"))


def amp_dtype(mode: str) -> torch.dtype | None:
    """`off` | `bf16` | `fp16` → the autocast dtype, None for plain fp32."""
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def cpu_threads(node_cpus: int, local_workers: int) -> int:
    """Torch threads of a CPU worker: its share of the node's CPUs (at least 1). Ray's own
    default is one thread per worker whatever the share, which leaves a lone worker on a
    2-core machine using half of it."""
    return max(1, node_cpus // max(1, local_workers))


def _agree(world: int):
    """`agree(obj)`: rank 0's `obj` on every rank (identity for one worker)."""
    def agree(obj):
        if world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]
    return agree


def build_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """`train.optimizer` over the model's parameters: RMSprop (the paper's) or Adam."""
    if train.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.RMSprop(model.parameters(), lr=train.lr, alpha=train.rmsprop_alpha,
                               weight_decay=train.weight_decay)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB → float (B, 3, H, W) in [-0.5, 0.5] (`x / 255 - 0.5`, the card's)."""
    return images.permute(0, 3, 1, 2).float().div_(255.0).sub_(PIXEL_MEAN)


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. `loop_config`: `cfg` (ExperimentConfig), `data` (prepared dataset
    folder), `tracking_uri`, `run_id` (MLflow), `baseline` (mean-pose PCKh table or None),
    `clock_name` (the run's `EpochClock` actor, see pipelines.training.data_stream)."""
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
        bf16_supported=on_gpu and torch.cuda.is_bf16_supported(), agree=_agree(world),
        log=log.info if rank == 0 else (lambda _: None))
    channels_last = choice.path.layout == "channels_last"
    optimizer = build_optimizer(model, train)
    schedule = LrSchedule(train.lr, train.lr_drop_factor, train.lr_drop_epochs, train.lr_plateau_patience)
    start_epoch, global_step = 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_state(folder, expected=cfg.model)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        restore_rng_state(state["rng"])
        start_epoch, global_step = state["epoch"] + 1, state["global_step"]
        if state.get("stopped_at_max_steps"):
            start_epoch = train.epochs  # the run already ended at its step cap

    ddp_model = ray.train.torch.prepare_model(model)  # moves to device; DDP when world > 1
    amp = amp_dtype(choice.path.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    forward = ddp_model
    reporter = _Rank0Reporter(loop_config, cfg) if rank == 0 else None
    if reporter is not None:
        reporter.speed(choice, global_step)
    shown = dataclasses.replace(shown, note=f"{choice.path.name}, {torch.get_num_threads()} threads/worker",
                                step=global_step,
                                images=global_step * train.batch_size * world)
    shard = ray.train.get_dataset_shard(TRAIN_DATASET)
    clock = ray.get_actor(loop_config["clock_name"])

    for epoch in range(start_epoch, train.epochs):
        _set_lr(optimizer, schedule.lr)
        if rank == 0:
            ray.get(clock.set.remote(epoch))
        if world > 1:  # nobody starts the pass before the clock shows this epoch
            torch.distributed.barrier()
        sums = torch.zeros(2 + cfg.model.stacks, dtype=torch.float64)  # images, loss, per stack
        wait_s = compute_s = 0.0
        epoch_start = tick = time.perf_counter()
        window = {"images": 0, "start": tick, "wait": 0.0}
        stopped = False
        batches = shard.iter_torch_batches(
            batch_size=train.batch_size, device=device, prefetch_batches=2,
            drop_last=choice.path.compiled,  # a smaller last batch would recompile
            local_shuffle_buffer_size=max(4 * train.batch_size, 64), local_shuffle_seed=train.seed + epoch,
        )
        for batch in batches:
            got = time.perf_counter()
            wait_s += got - tick
            window["wait"] += got - tick
            if len(batch["image"]) < 2:
                # A one-image remainder cannot train BatchNorm where the hourglass bottom is 1x1
                # (tiny inputs). Shards are split equally, so every rank skips the same batch.
                tick = time.perf_counter()
                continue
            images = normalise(batch["image"])  # (B, 3, H, W)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
                pred = forward(images)  # (B, S, J, h, w)
            loss, per_stack = heatmap_loss(pred, batch["heatmaps"], batch["weight"])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            global_step += 1
            n = len(images)
            sums += torch.cat([torch.tensor([n, loss.item() * n]), per_stack.detach().cpu().double() * n])
            window["images"] += n
            tick = time.perf_counter()
            compute_s += tick - got
            if reporter is not None and global_step % train.log_every == 0:
                elapsed = tick - window["start"]
                reporter.step(global_step, loss.item(), per_stack.detach().cpu().numpy(), schedule.lr,
                              images_per_s=window["images"] * world / max(elapsed, 1e-9),
                              data_wait_s=window["wait"])
                window = {"images": 0, "start": tick, "wait": 0.0}
            if poster is not None:
                local = max(float(sums[0]), 1.0)
                shown = dataclasses.replace(
                    shown, phase="train", epoch=epoch, step=global_step,
                    images=global_step * train.batch_size * world,
                    images_per_s=float(sums[0]) * world / max(tick - epoch_start, 1e-9),
                    loss_per_stack=tuple(float(v) / local for v in sums[2:]))
                poster.post(shown)
            if train.max_steps and global_step >= train.max_steps:
                stopped = True
                break
        if world > 1:  # epoch means over every worker's images
            reduced = sums.to(device)
            torch.distributed.all_reduce(reduced)
            sums = reduced.cpu()
        last = stopped or epoch == train.epochs - 1
        metrics = {"epoch": epoch, "global_step": global_step, "lr": schedule.lr}
        val_total = None
        if reporter is not None:
            seconds = time.perf_counter() - epoch_start
            images_seen = max(float(sums[0]), 1.0)
            epoch_metrics = {
                "epoch/loss": float(sums[1]) / images_seen,
                **{f"epoch/loss/stack_{s}": float(sums[2 + s]) / images_seen for s in range(cfg.model.stacks)},
                "epoch/images_per_s": float(sums[0]) / max(seconds, 1e-9),
                "epoch/data_wait_s": wait_s,
                "epoch/data_wait_fraction": wait_s / max(wait_s + compute_s, 1e-9),
                "epoch/seconds": seconds,
                "lr": schedule.lr,
            }
            result = None
            if last or (epoch + 1) % train.val_every == 0:
                if poster is not None:
                    poster.post(dataclasses.replace(shown, phase="validating", epoch=epoch), force=True)
                result = reporter.validate(model, epoch, epoch_metrics, amp)
                val_total = float(result.table["Total"])
                if poster is not None:
                    shown = dataclasses.replace(shown, val_total=val_total)
                    poster.post(dataclasses.replace(shown, phase="validated"), force=True)
            reporter.tracker.log_metrics(epoch_metrics, epoch)
            if last and result is not None:
                reporter.artifacts(result)
            metrics.update(epoch_metrics)
        if world > 1 and train.lr_plateau_patience > 0:  # only rank 0 validated: share its score
            shared = torch.tensor([float("nan") if val_total is None else val_total], device=device)
            torch.distributed.broadcast(shared, src=0)
            val_total = None if torch.isnan(shared).item() else float(shared.item())
        schedule.after_epoch(epoch, val_total)  # identical on every rank
        _report(metrics, model, optimizer, schedule, cfg, epoch, global_step, stopped, rank)
        if stopped:
            break
    if poster is not None:
        poster.post(dataclasses.replace(shown, phase="done"), force=True)
    if reporter is not None:
        reporter.tracker.close()  # deliver what an MLflow outage held back


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _report(metrics, model, optimizer, schedule, cfg, epoch, global_step, stopped, rank) -> None:
    """Every rank reports (a barrier); rank 0 attaches the checkpoint."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="shg-ckpt-") as folder:
        checkpoint = None
        if rank == 0:
            from pipelines.inference.model_dir import plain_state_dict

            save_state(folder, {
                "model_config": dataclasses.asdict(cfg.model),
                "model": plain_state_dict(model),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "epoch": epoch,
                "global_step": global_step,
                "stopped_at_max_steps": stopped,
                "rng": rng_state(),
                "metrics": {k: float(v) for k, v in metrics.items()},
            })
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{epoch:04d}")


class _Rank0Reporter:
    """Rank 0's side effects: MLflow metrics, validation on the held-in-memory val split, and
    the end-of-run artifacts (loss plot, PCKh curve, skeleton grid, per-joint table)."""

    def __init__(self, loop_config: dict[str, Any], cfg: ExperimentConfig) -> None:
        from pipelines.training.data_stream import load_validation
        from pipelines.tracking.buffered import BufferedTracker

        self.cfg = cfg
        # MLflow writes go through a background queue: a tracking outage never stalls or kills
        # training (the writes are retried until the store is back, memory bounded).
        self.tracker = BufferedTracker(loop_config["tracking_uri"], loop_config["run_id"])
        self.val = load_validation(loop_config["data"], dataclasses.replace(cfg.data, enabled=False),
                                   cfg.train.val_max_people)
        self.baseline = loop_config.get("baseline")
        self.compiled = False
        self.val_threads = len(os.sched_getaffinity(0))  # this node's CPUs
        self.eager_copy = None  # validation model when training runs compiled (see validate)

    def speed(self, choice, step: int) -> None:
        """Records the chosen precision/layout/compile path and the measured rates."""
        from pipelines.tracking.store import log_speed_choice

        self.compiled = choice.path.compiled
        log_speed_choice(self.tracker, choice, step)
        log.info("speed: %s", choice.summary())

    def step(self, step: int, loss: float, per_stack: np.ndarray, lr: float, *,
             images_per_s: float, data_wait_s: float) -> None:
        metrics = {"loss": loss, "lr": lr, "throughput/images_per_s": images_per_s,
                   "data_wait_s": data_wait_s}
        metrics.update({f"loss/stack_{s}": float(v) for s, v in enumerate(per_stack)})
        self.tracker.log_metrics(metrics, step)

    def validate(self, model, epoch: int, epoch_metrics: dict, amp):
        """Validates, adds `pckh/*` and `val/*` to `epoch_metrics`; returns the ValidationResult."""
        from pipelines.evaluation.pckh import TABLE_KEYS
        from pipelines.training.validation import validate

        start = time.perf_counter()
        if self.compiled:
            # An eager NCHW copy: the compiled blocks would compile again for eval mode and for
            # the validation batch size, costing more than validation itself on a small CPU.
            if self.eager_copy is None:
                device = next(model.parameters()).device
                self.eager_copy = StackedHourglass(dataclasses.replace(self.cfg.model, channels_last=False)).to(device)
            self.eager_copy.load_state_dict(model.state_dict())
            model = self.eager_copy
        threads = torch.get_num_threads()
        torch.set_num_threads(self.val_threads)  # the other ranks wait at the epoch's barrier
        try:
            result = validate(model, self.val, FLIP_PERMUTATION, flip=self.cfg.train.val_flip,
                              batch_size=self.cfg.train.val_batch_size, autocast_dtype=amp)
        finally:
            torch.set_num_threads(threads)
        epoch_metrics.update({f"pckh/{k}": result.table[k] for k in TABLE_KEYS})
        epoch_metrics.update({f"val/loss/stack_{s}": float(v) for s, v in enumerate(result.loss_per_stack)})
        epoch_metrics["val/loss"] = float(np.mean(result.loss_per_stack))
        epoch_metrics["val/seconds"] = time.perf_counter() - start
        log.info("epoch %d: train loss %.3g, val PCKh@0.5 Total %.1f %%, %.1f images/s", epoch,
                 epoch_metrics["epoch/loss"], result.table["Total"], epoch_metrics["epoch/images_per_s"])
        return result

    def artifacts(self, result) -> None:
        """End-of-run plots and tables (the epoch metrics of this epoch are already logged)."""
        from dataprep.geometry import apply_affine, invert_affine
        from pipelines.evaluation import plots

        per_stack, xs = {}, {}
        try:  # the whole run's curves, resumed attempts included, are in the store
            for split, prefix in (("train", "epoch/loss"), ("val", "val/loss")):
                series = [dict(self.tracker.metric_history(f"{prefix}/stack_{s}")) for s in range(self.cfg.model.stacks)]
                epochs = sorted(set.intersection(*(set(h) for h in series)))
                if epochs:
                    per_stack[split] = np.array([[h[e] for h in series] for e in epochs])
                    xs[split] = np.array(epochs) + 1
            self.tracker.log_figure(plots.loss_curves_figure(per_stack, xs), "plots/loss_per_stack.png")
        except Exception as err:  # the store is down: the plot is lost, the run is not
            log.warning("loss plot skipped: the tracking store could not be read (%s)", err)
        self.tracker.log_figure(plots.pckh_curve_figure(result.curve), "plots/pckh_curve.png")
        count = min(self.cfg.train.val_grid_people, len(self.val))
        if count:
            to_input = [invert_affine(a) for a in self.val.input_to_image[:count]]
            pred = np.stack([apply_affine(a, p) for a, p in zip(to_input, result.pred[:count])])
            true = np.stack([apply_affine(a, p) for a, p in zip(to_input, self.val.joints_image[:count])])
            grid = plots.skeleton_grid_figure(self.val.images[:count], pred, true, self.val.labelled[:count],
                                              titles=list(self.val.person_id[:count]))
            self.tracker.log_figure(grid, "plots/val_skeletons.png")
        table = {k: v for k, v in result.table.items()}
        self.tracker.log_text(plots.pckh_markdown(table), "pckh/per_joint.md")
        self.tracker.log_text(plots.pckh_csv(table), "pckh/per_joint.csv")
        self.tracker.log_dict({"model": table, "mean_pose_baseline": self.baseline}, "pckh/tables.json")
