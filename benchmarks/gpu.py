"""The GPU check in one command: `python -m benchmarks --only gpu [--device cuda|cpu]`.

On one GPU (at most ~6 minutes; `scripts/gpu_check.sh` runs it as it is), for the `mpii`
profile's 8-stack, 256-channel model at 256 px:

1. **Step speed**: a training step (forward, `heatmap_loss`, backward, RMSprop) at batch 6, 16
   and 32 in fp32 (cuDNN convolutions in TF32, PyTorch's default) and bf16 autocast with
   channels_last, plus bf16 compiled (`shg_model.compile.compile_blocks`) at batch 32 when the
   time allows: images/s and model FLOP utilisation (MFU: the step's counted FLOPs,
   `torch.utils.flop_counter`, per second over the GPU's dense peak from `benchmarks.gpu_peaks`
   by device name, and over the matmul peak measured here).
2. **bf16 vs fp32**: the same weights and 30 batches through both; the losses' largest relative
   difference.
3. **Checkpoint, kill, restore**: a child process trains 2 steps, writes a checkpoint
   (`pipelines.training.resume.checkpoint_state`), computes the next step's loss and is killed
   (SIGKILL); a new process restores it (`restore_placed`, as a replaced worker does) and trains
   that step: the loss must agree and the optimiser state must be on the GPU.
4. **Data wait**: the real Ray Data stream of the profile (`train_dataset`, the machine's
   cores) feeding bf16 steps at batch 32: the share of step time spent waiting for data.

`--device cpu` runs the same four parts with a tiny model (2 stacks, 16 channels, 64 px) so
the test suite runs them (tests/integration/test_benchmarks.py) and they cannot rot.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.gpu_peaks import dense_peak

REPO = Path(__file__).resolve().parents[1]

@dataclass(frozen=True)
class CheckShape:
    """What the check runs: the model, input size, batches and step counts."""

    stacks: int = 8
    channels: int = 256
    depth: int = 4
    size: int = 256
    batches: tuple[int, ...] = (6, 16, 32)
    timed_steps: int = 10
    agreement_steps: int = 30
    agreement_batch: int = 6
    stream_batch: int = 32
    stream_steps: int = 40
    compile_batch: int = 32  # 0: never compile

    @classmethod
    def for_device(cls, device: str) -> "CheckShape":
        if device == "cuda":
            return cls()
        return cls(stacks=2, channels=16, depth=2, size=64, batches=(2, 4), timed_steps=2,
                   agreement_batch=2, stream_batch=4, stream_steps=6, compile_batch=0)

    def overrides(self) -> list[str]:
        """`section.field=value` overrides of the `mpii` profile for this shape."""
        return [f"model.stacks={self.stacks}", f"model.channels={self.channels}", f"model.depth={self.depth}",
                f"data.input_size={self.size}", f"data.heatmap_size={self.size // 4}"]


def experiment(shape: CheckShape):
    """The `mpii` profile's ExperimentConfig at this shape."""
    from pipelines.config.run import resolve_run_config

    return resolve_run_config("mpii", values=shape.overrides()).experiment()


def synthetic_batch(shape: CheckShape, batch: int, seed: int, device: torch.device):
    """(uint8 images (B, S, S, 3), keypoints (B, J, 2) heatmap px float64, weight (B, J)) on `device`."""
    g = torch.Generator().manual_seed(seed)
    heat = shape.size // 4
    images = torch.randint(0, 256, (batch, shape.size, shape.size, 3), generator=g, dtype=torch.uint8)
    keypoints = torch.rand(batch, 16, 2, generator=g, dtype=torch.float64) * (heat - 1)
    weight = (torch.rand(batch, 16, generator=g) > 0.1).float()
    return images.to(device), keypoints.to(device), weight.to(device)


class Trainer:
    """One model + RMSprop on `device`, stepping on (images, keypoints, weight) batches as the
    training loop does (targets drawn on the device, pixels normalised there)."""

    def __init__(self, cfg, device: torch.device, *, amp: torch.dtype | None, channels_last: bool,
                 compiled: bool = False, state: dict | None = None) -> None:
        from pipelines.training.optim import build_optimizer
        from shg_model import StackedHourglass
        from shg_model.compile import compile_blocks

        self.cfg, self.device, self.amp, self.channels_last = cfg, device, amp, channels_last
        torch.manual_seed(0)
        self.model = StackedHourglass(dataclasses.replace(cfg.model, channels_last=channels_last))
        if state is not None:
            self.model.load_state_dict(state)
        self.model.to(device).train()
        if compiled:
            compile_blocks(self.model)
        self.optimizer = build_optimizer(self.model, cfg.train)

    def loss(self, images, keypoints, weight) -> torch.Tensor:
        from shg_model import heatmap_loss
        from shg_model.pixels import normalise
        from shg_model.targets import render_heatmaps

        targets = render_heatmaps(keypoints, weight > 0, self.cfg.data.heatmap_size, self.cfg.data.sigma)
        x = normalise(images)  # (B, 3, S, S)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            pred = self.model(x)  # (B, stacks, J, S/4, S/4)
        return heatmap_loss(pred, targets, weight)[0]

    def step(self, images, keypoints, weight) -> torch.Tensor:
        loss = self.loss(images, keypoints, weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(cfg, shape: CheckShape, device: torch.device) -> float:
    """FLOPs of one training step per sample (forward + backward, counted at batch 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    trainer = Trainer(cfg, device, amp=None, channels_last=False)
    images, keypoints, weight = synthetic_batch(shape, 2, 0, device)
    with FlopCounterMode(display=False) as counter:
        trainer.loss(images, keypoints, weight).backward()
    return counter.get_total_flops() / 2


def matmul_peak(device: torch.device) -> dict[str, float]:
    """Measured square-matmul TFLOP/s in fp32 (TF32 off), TF32 and bf16."""
    n = 8192 if device.type == "cuda" else 1024
    out = {}
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)):
        if device.type == "cpu" and name == "tf32":
            continue
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            torch.mm(a, b)
            sync(device)
            reps = 20 if device.type == "cuda" else 3
            started = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            sync(device)
            out[f"gpu_matmul_{name}_tflops"] = 2 * n**3 * reps / (time.perf_counter() - started) / 1e12
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
    return out


def time_steps(trainer: Trainer, shape: CheckShape, batch: int) -> tuple[float, float]:
    """(images/s over `timed_steps` steps after 3 warm-up steps, seconds of the first step)."""
    data = [synthetic_batch(shape, batch, seed, trainer.device) for seed in range(2)]
    started = time.perf_counter()
    trainer.step(*data[0])
    sync(trainer.device)
    first = time.perf_counter() - started
    for i in range(2):
        trainer.step(*data[i % 2])
    sync(trainer.device)
    started = time.perf_counter()
    for i in range(shape.timed_steps):
        trainer.step(*data[i % 2])
    sync(trainer.device)
    return shape.timed_steps * batch / (time.perf_counter() - started), first


def measure_steps(cfg, shape: CheckShape, device: torch.device, flops: float, peaks: dict[str, float],
                  measured: dict[str, float], deadline: float, log) -> dict[str, float]:
    """Images/s and MFU for each batch and path (see the module docstring)."""
    out: dict[str, float] = {}
    paths = [("fp32", None, False, False), ("bf16", torch.bfloat16, True, False)]
    for batch in shape.batches:
        for name, amp, channels_last, compiled in paths:
            trainer = Trainer(cfg, device, amp=amp, channels_last=channels_last, compiled=compiled)
            rate, first = time_steps(trainer, shape, batch)
            key = f"gpu_{name}_b{batch}"
            out[f"{key}_images_per_s"] = rate
            achieved = rate * flops / 1e12  # TFLOP/s
            peak = peaks.get("tf32" if name == "fp32" else "bf16", 0.0)  # cuDNN convs run fp32 in TF32
            if peak:
                out[f"{key}_mfu"] = achieved / peak
            matmul = measured.get(f"gpu_matmul_{'tf32' if name == 'fp32' and device.type == 'cuda' else name}_tflops")
            if matmul:
                out[f"{key}_of_matmul_peak"] = achieved / matmul
            log(f"gpu: {key}: {rate:.1f} images/s, {achieved:.2f} TFLOP/s, first step {first:.2f} s")
            del trainer
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if shape.compile_batch and time.perf_counter() < deadline - 180:  # compiling costs a minute or two
        trainer = Trainer(cfg, device, amp=torch.bfloat16, channels_last=True, compiled=True)
        rate, first = time_steps(trainer, shape, shape.compile_batch)
        key = f"gpu_bf16_compiled_b{shape.compile_batch}"
        out[f"{key}_images_per_s"], out[f"{key}_compile_s"] = rate, first
        if peaks.get("bf16"):
            out[f"{key}_mfu"] = rate * flops / 1e12 / peaks["bf16"]
        log(f"gpu: {key}: {rate:.1f} images/s (first step, compiling: {first:.0f} s)")
    return out


def measure_agreement(cfg, shape: CheckShape, device: torch.device) -> dict[str, float]:
    """Largest relative difference of bf16's losses from fp32's over `agreement_steps` steps
    from the same weights on the same batches."""
    losses = {}
    for name, amp, channels_last in (("fp32", None, False), ("bf16", torch.bfloat16, True)):
        trainer = Trainer(cfg, device, amp=amp, channels_last=channels_last)
        losses[name] = torch.stack([trainer.step(*synthetic_batch(shape, shape.agreement_batch, 100 + i, device))
                                    for i in range(shape.agreement_steps)]).double().cpu()
    rel = ((losses["bf16"] - losses["fp32"]).abs() / losses["fp32"].abs().clamp_min(1e-12))
    return {"gpu_bf16_loss_max_rel_diff": float(rel.max()), "gpu_bf16_loss_last_rel_diff": float(rel[-1]),
            "gpu_fp32_loss_first": float(losses["fp32"][0]), "gpu_fp32_loss_last": float(losses["fp32"][-1]),
            "gpu_bf16_loss_last": float(losses["bf16"][-1])}


_CHILD = r"""
import json, os, signal, sys
from benchmarks.gpu import checkpoint_child
print(json.dumps(checkpoint_child(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))), flush=True)
if sys.argv[1] == "write":
    os.kill(os.getpid(), signal.SIGKILL)  # killed, as a preempted node: no clean shutdown
"""


def checkpoint_child(mode: str, folder: str, device_name: str, shape_fields: dict) -> dict:
    """In a child process: `write` trains 2 steps, checkpoints, reports the third step's loss
    (then the caller kills the process); `restore` restores into a fresh model placed on the
    device first and reports the same step's loss and where the optimiser state is."""
    import ray.train

    from pipelines.training.checkpoints import save_state
    from pipelines.training.optim import LrSchedule
    from pipelines.training.resume import checkpoint_state, restore_placed

    shape = CheckShape(**{k: tuple(v) if isinstance(v, list) else v for k, v in shape_fields.items()})
    cfg, device = experiment(shape), torch.device(device_name)
    batches = [synthetic_batch(shape, shape.agreement_batch, 200 + i, device) for i in range(3)]
    schedule = LrSchedule(cfg.train.lr, cfg.train.lr_drop_factor)
    if mode == "write":
        trainer = Trainer(cfg, device, amp=None, channels_last=False)
        for batch in batches[:2]:
            trainer.step(*batch)
        started = time.perf_counter()
        save_state(folder, checkpoint_state(cfg, trainer.model, trainer.optimizer, schedule, epochs_done=1,
                                            global_step=2, metrics={}))
        saved_s = time.perf_counter() - started
        size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
        return {"loss": float(trainer.loss(*batches[2])), "saved_s": saved_s, "bytes": size}
    from pipelines.training.optim import build_optimizer
    from shg_model import StackedHourglass

    torch.manual_seed(1)  # other initial weights: the restore must bring the saved ones
    model = StackedHourglass(cfg.model)
    optimizer = build_optimizer(model, cfg.train)
    started = time.perf_counter()
    _, position = restore_placed(ray.train.Checkpoint.from_directory(folder), cfg, model, optimizer,
                                 schedule, place=lambda m: m.to(device))
    restored_s = time.perf_counter() - started
    trainer = Trainer.__new__(Trainer)
    trainer.cfg, trainer.device, trainer.amp, trainer.channels_last = cfg, device, None, False
    trainer.model, trainer.optimizer = model.train(), optimizer
    loss = float(trainer.step(*batches[2]))
    places = {str(v.device) for s in optimizer.state.values() for k, v in s.items()
              if isinstance(v, torch.Tensor) and k != "step"}
    return {"loss": loss, "restored_s": restored_s, "global_step": position.global_step,
            "state_devices": sorted(places), "param_device": str(next(model.parameters()).device)}


def measure_checkpoint(shape: CheckShape, device: torch.device) -> dict[str, float]:
    """Write in one process (then SIGKILL it), restore in another, train one more step."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    fields = json.dumps(dataclasses.asdict(shape))
    with tempfile.TemporaryDirectory(prefix="shg-gpu-ckpt-") as folder:
        results = {}
        for mode in ("write", "restore"):
            run = subprocess.run([sys.executable, "-c", _CHILD, mode, folder, str(device), fields], cwd=REPO,
                                 env=env, capture_output=True, text=True, timeout=300)
            expected = -signal.SIGKILL if mode == "write" else 0
            if run.returncode != expected:
                raise RuntimeError(f"checkpoint {mode} child ended with {run.returncode}: {run.stderr[-3000:]}")
            results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    written, restored = results["write"], results["restore"]
    rel = abs(restored["loss"] - written["loss"]) / max(abs(written["loss"]), 1e-12)
    on_device = restored["state_devices"] == [restored["param_device"]] and \
        restored["param_device"].split(":")[0] == device.type
    return {"gpu_ckpt_loss_rel_diff": rel, "gpu_ckpt_state_on_device": float(on_device),
            "gpu_ckpt_resumed_step": float(restored["global_step"]), "gpu_ckpt_mb": written["bytes"] / 1e6,
            "gpu_ckpt_save_s": written["saved_s"], "gpu_ckpt_restore_s": restored["restored_s"],
            "gpu_ckpt_ok": float(on_device and rel < 1e-3 and restored["global_step"] == 2)}


def measure_data_wait(cfg, shape: CheckShape, device: torch.device, log) -> dict[str, float]:
    """bf16 steps at `stream_batch` fed by the real stream: the share of time waiting for data."""
    import uuid

    import ray

    from benchmarks.ingest import prepared_rows, write_prepared
    from pipelines.runtime.ray_cluster import connect
    from pipelines.training.data_stream import start_epoch_clock, train_dataset

    batch = shape.stream_batch
    people = batch * (shape.stream_steps + 4)
    trainer = Trainer(cfg, device, amp=torch.bfloat16 if device.type == "cuda" else None,
                      channels_last=device.type == "cuda")
    started_ray = not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="shg-gpu-stream-") as tmp:
        rows, source = prepared_rows(people, Path(tmp))
        prepared = write_prepared(rows, Path(tmp) / "prepared")
        connect(num_cpus=os.cpu_count())
        try:
            clock_name = f"shg-gpu-clock-{uuid.uuid4().hex[:8]}"
            clock = start_epoch_clock(clock_name)
            ray.get(clock.set.remote(0))
            dataset = train_dataset(prepared, cfg.data, clock_name, shuffle_seed=0)
            wait = compute = 0.0
            steps = images = 0
            tick = time.perf_counter()
            on_gpu = device.type == "cuda"
            for host in dataset.iter_torch_batches(batch_size=batch, device="cpu", pin_memory=on_gpu,
                                                   prefetch_batches=2, drop_last=True,
                                                   local_shuffle_buffer_size=max(4 * batch, 64), local_shuffle_seed=0):
                got = time.perf_counter()
                moved = [host[k].to(device, non_blocking=True) for k in ("image", "keypoints", "weight")]
                trainer.step(*moved)
                sync(device)
                done = time.perf_counter()
                if steps >= 3:  # the first steps wait for the pass to start and for cuDNN's choice
                    wait, compute, images = wait + got - tick, compute + done - got, images + batch
                steps, tick = steps + 1, done
                if steps >= shape.stream_steps:
                    break
            del clock
        finally:
            if started_ray:
                ray.shutdown()
    share = wait / max(wait + compute, 1e-9)
    log(f"gpu: stream ({source}): {images / max(wait + compute, 1e-9):.1f} images/s, data wait {100 * share:.1f} %")
    return {"gpu_stream_images_per_s": images / max(wait + compute, 1e-9), "gpu_stream_data_wait_share": share,
            "gpu_stream_batch": float(batch), "gpu_stream_cpus": float(os.cpu_count() or 0)}


def measure_gpu(device: str = "auto", *, budget_s: float = 330.0, log=print) -> dict[str, float]:
    """All parts of the check on `device` ("auto": CUDA when there is one)."""
    name = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    dev = torch.device(name)
    shape = CheckShape.for_device(dev.type)
    deadline = time.perf_counter() + budget_s
    cfg = experiment(shape)
    figures: dict[str, float] = {"gpu_on_cuda": float(dev.type == "cuda"), "gpu_stacks": float(shape.stacks),
                                 "gpu_input_size": float(shape.size)}
    peaks: dict[str, float] = {}
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        gpu_name = torch.cuda.get_device_name(dev)
        peaks = dense_peak(gpu_name)
        major, minor = torch.cuda.get_device_capability(dev)
        log(f"gpu: {gpu_name}, capability {major}.{minor}, dense peaks {peaks or 'not in the table'}")
        figures.update({"gpu_capability": major + minor / 10, "gpu_memory_gb": torch.cuda.get_device_properties(dev).total_memory / 1e9})
        figures.update({f"gpu_peak_{k}_tflops": v for k, v in peaks.items()})
    else:
        log(f"gpu: on the CPU ({torch.backends.cpu.get_cpu_capability()}), tiny model: the check's CPU form")
    figures.update(matmul_peak(dev))
    flops = step_flops(cfg, shape, dev)
    figures["gpu_step_gflop_per_sample"] = flops / 1e9
    figures.update(measure_steps(cfg, shape, dev, flops, peaks, figures, deadline, log))
    figures.update(measure_agreement(cfg, shape, dev))
    figures.update(measure_checkpoint(shape, dev))
    figures.update(measure_data_wait(cfg, shape, dev, log))
    return figures
