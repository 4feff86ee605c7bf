"""Training precision, memory layout and compilation chosen for the machine, not hard-coded.

`train.amp` (auto | off | bf16 | fp16), `train.layout` (auto | nchw | channels_last) and
`train.compile` (off | on | auto; off by default) state intent; `auto` is resolved when training
starts:

- **GPU**: bf16 autocast where the GPU supports it, else fp16 (with a GradScaler); channels_last
  (cuDNN's preferred layout under autocast); no compilation. Nothing is measured.
- **CPU**: the workers time a few training steps of the actual model and batch, after a
  warm-up step, for each candidate path (:func:`measure_path`), and rank 0 keeps the one that
  finishes the run soonest (:func:`choose`). The candidates, in order:

  1. fp32, NCHW, eager: the baseline. It is always measured and it wins unless another path is
     faster by at least ``min_gain`` (5 %), so `auto` is never slower than plain fp32 beyond
     the measurement's own cost.
  2. bf16 autocast, channels_last, eager: the fast path on CPUs with native bf16
     (AVX512-BF16 / AMX; :func:`native_bf16`), measured only there: on an AVX2-only CPU
     oneDNN emulates bf16, ~5x *slower* than fp32, and the measurement alone would cost a
     minute (seconds per step at one thread).
  3. with `train.compile=auto` only: compiled (:func:`shg_model.compile.compile_blocks`,
     Inductor), channels_last, in the precision that won 1-2. Compiling costs minutes on 2 cores, so it is only tried when
     the eager winner's projected training time is at least ``compile_payback`` (4x) the
     expected compile time (:func:`worth_compiling`); once compiled, it is kept only if it is
     faster than the eager winner.

  Eager channels_last in fp32 is deliberately *not* a candidate: eager PyTorch's channels_last
  BatchNorm sums its statistics less accurately (see `benchmarks.speed`), so it would
  be a faster path with worse numbers than the fp32 baseline. Compiled channels_last is
  accurate (Inductor generates its own reductions), and bf16 is an explicit precision change
  the measurement only keeps where it pays (the eager bf16 + channels_last recipe reached the
  same PCKh as fp32 in docs/RECIPES.md).

A fixed value (`train.amp=off`, `train.layout=nchw`, `train.compile=off`, ...) removes the
other options from the candidates; with all three fixed nothing is measured.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Imported where used: torch, shg_model (torch loads in seconds: choosing a path by its name and
# the GPU capability rule need neither)

AMP_MODES = ("auto", "off", "bf16", "fp16")
LAYOUTS = ("auto", "nchw", "channels_last")
COMPILE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Path:
    """One way to run the training step: autocast precision, memory layout, compiled or not."""

    amp: str  # off | bf16 | fp16
    layout: str  # nchw | channels_last
    compiled: bool = False

    @property
    def name(self) -> str:
        """Short label, e.g. ``fp32-nchw`` or ``bf16-channels_last-compiled``."""
        precision = "fp32" if self.amp == "off" else self.amp
        return f"{precision}-{self.layout}" + ("-compiled" if self.compiled else "")


@dataclass(frozen=True)
class Timing:
    """A measured path: steady-state training images/s of one worker, and the seconds its
    first step took (for a compiled path: the compilation)."""

    path: Path
    images_per_s: float
    first_step_s: float = 0.0


@dataclass(frozen=True)
class SpeedChoice:
    """The resolved path, why, and every timing behind it (empty when nothing was measured)."""

    path: Path
    reason: str
    timings: tuple[Timing, ...] = field(default=())
    measure_s: float = 0.0

    def tags(self) -> dict[str, str]:
        """MLflow tags: the chosen amp/layout/compile and the reason."""
        return {"shg.speed.amp": self.path.amp, "shg.speed.layout": self.path.layout,
                "shg.speed.compile": str(self.path.compiled).lower(), "shg.speed.path": self.path.name,
                "shg.speed.reason": self.reason}

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: measured images/s per worker of each path, its first step, the cost."""
        out = {"speed/measure_s": self.measure_s}
        for t in self.timings:
            out[f"speed/images_per_s/{t.path.name}"] = t.images_per_s
            out[f"speed/first_step_s/{t.path.name}"] = t.first_step_s
        return out

    def summary(self) -> str:
        """One line for a person: the choice and the measured rates."""
        rates = ", ".join(f"{t.path.name} {t.images_per_s:.1f}" for t in self.timings)
        return f"{self.path.name} ({self.reason})" + (f"; measured images/s per worker: {rates}" if rates else "")


def check_mode(name: str, value: str, allowed: Sequence[str]) -> None:
    """Raises ValueError unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"train.{name}={value!r}: expected one of {' | '.join(allowed)}")


def gpu_choice(amp: str, layout: str, compile_mode: str, *, bf16_supported: bool) -> SpeedChoice:
    """The GPU path: `auto` amp is bf16 where supported else fp16; `auto` layout channels_last;
    `auto` compile off (unmeasured: GPUs are not what this project tunes on)."""
    chosen_amp = amp if amp != "auto" else ("bf16" if bf16_supported else "fp16")
    chosen_layout = layout if layout != "auto" else "channels_last"
    return SpeedChoice(Path(chosen_amp, chosen_layout, compile_mode == "on"),
                       reason="GPU: autocast where supported, no measurement")


def bf16_native_on_gpu(capability: tuple[int, int], *, rocm: bool = False) -> bool:
    """Whether a GPU of compute `capability` (major, minor) computes bf16 natively: Ampere (8.0)
    and later, or any ROCm GPU. Older NVIDIA GPUs (V100 7.0, T4 7.5) only *emulate* bf16 (slow,
    no tensor cores), so `amp=auto` takes fp16 with a GradScaler there."""
    return rocm or tuple(capability) >= (8, 0)


def cuda_bf16_native(device: int | None = None) -> bool:
    """:func:`bf16_native_on_gpu` for this process's CUDA device (False without CUDA).
    `torch.cuda.is_bf16_supported()` counts emulation by default: asked with
    `including_emulation=False`, and the capability is checked here as well."""
    import torch

    if not torch.cuda.is_available():
        return False
    index = torch.cuda.current_device() if device is None else device
    capability = torch.cuda.get_device_capability(index)
    return bool(torch.cuda.is_bf16_supported(including_emulation=False)) and bf16_native_on_gpu(
        capability, rocm=bool(torch.version.hip))


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Without it oneDNN emulates
    bf16 and autocast is several times slower than fp32 (the issue's AVX2 CPU: 0.5 vs 6.3
    images/s), so `auto` does not spend a measurement on it."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def eager_candidates(amp: str, layout: str, *, bf16_native: bool = True) -> list[Path]:
    """The eager CPU paths to measure for the user's `amp`/`layout` (see the module docstring);
    the first is the baseline. A fixed amp or layout leaves one path, or the fixed pair. `auto`
    amp only measures bf16 where the CPU has native bf16 (`bf16_native`)."""
    paths = [Path("off", "nchw")] + ([Path("bf16", "channels_last")] if bf16_native or amp == "bf16" else [])
    paths = [p for p in paths if amp in ("auto", p.amp) and layout in ("auto", p.layout)]
    if not paths:  # a fixed combination outside the candidate list (e.g. fp32 + channels_last)
        paths = [Path("off" if amp == "auto" else amp, "nchw" if layout == "auto" else layout)]
    return paths


def fastest(timings: Sequence[Timing], *, min_gain: float = 0.05) -> Timing:
    """The fastest timing; the first (the baseline) keeps its place unless beaten by `min_gain`."""
    if not timings:
        raise ValueError("fastest() needs at least one timing")
    base = timings[0]
    best = max(timings, key=lambda t: t.images_per_s)
    return best if best.images_per_s >= base.images_per_s * (1 + min_gain) else base


def worth_compiling(eager: Timing, images_per_worker: int, *, compile_s_estimate: float = 150.0,
                    compile_payback: float = 4.0) -> bool:
    """Try compiling only when the eager path's projected training time is at least
    `compile_payback` times the expected compile time (a lost bet then costs at most 1/payback)."""
    projected_s = images_per_worker / max(eager.images_per_s, 1e-9)
    return projected_s >= compile_payback * compile_s_estimate


def choose(eager: Sequence[Timing], compiled: Timing | None = None, *, min_gain: float = 0.05) -> SpeedChoice:
    """The decision from measured timings: the fastest eager path (baseline first, see
    :func:`fastest`), replaced by the compiled path when that is faster by `min_gain`."""
    best = fastest(eager, min_gain=min_gain)
    timings = tuple(eager) + ((compiled,) if compiled is not None else ())
    if compiled is not None and compiled.images_per_s >= best.images_per_s * (1 + min_gain):
        return SpeedChoice(compiled.path, f"compiled: {compiled.images_per_s / best.images_per_s:.2f}x "
                           f"{best.path.name}, compile {compiled.first_step_s:.0f} s", timings)
    if best is eager[0]:
        reason = "baseline: no candidate faster by ≥ 5 %" if len(timings) > 1 else "the only candidate"
    else:
        reason = f"{best.images_per_s / eager[0].images_per_s:.2f}x {eager[0].path.name}"
    if compiled is not None:
        reason += f"; compiled only {compiled.images_per_s:.1f} images/s"
    return SpeedChoice(best.path, reason, timings)


def measure_path(step: Callable[[], object], path: Path, *, steps: int = 3, batch_size: int,
                 max_s: float = 20.0) -> Timing:
    """Times `step()` (one full training step on a fixed batch): one warm-up step, then up to
    `steps` timed steps, stopping early once `max_s` seconds are spent (a hopeless path such as
    bf16 on a CPU without bf16 costs seconds per step)."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    done, timed_start = 0, time.perf_counter()
    while done < steps:
        step()
        done += 1
        if time.perf_counter() - timed_start > max_s:
            break
    rate = done * batch_size / max(time.perf_counter() - timed_start, 1e-9)
    return Timing(path, rate, first)


def resolve(model_cfg, amp: str, layout: str, compile_mode: str, *, batch_size: int, input_size: int,
            images_per_worker: int, make_optimizer: Callable, on_gpu: bool = False,
            bf16_supported: bool = False, agree: Callable[[object], object] = lambda x: x,
            compile_s_estimate: float = 150.0, log: Callable[[str], None] = lambda _: None):
    """Resolves `auto` and builds the model for the chosen path: ``(SpeedChoice, model)``.

    `model_cfg` is the `HourglassConfig` (its `channels_last`, if true, fixes the layout);
    `make_optimizer(model)` builds the run's optimiser. On CPU, each candidate trains a few
    steps on one synthetic batch of `batch_size` images from the same initial weights (a
    throw-away optimiser; the returned model has the initial weights, compiled when chosen).
    `agree(obj)` returns rank 0's `obj` on every rank (a broadcast in a worker group), so all
    ranks take rank 0's decision while measuring side by side as they will train.
    """
    import torch

    from shg_model import StackedHourglass, heatmap_loss
    from shg_model.compile import compile_blocks

    if model_cfg.channels_last and layout == "auto":
        layout = "channels_last"
    check_mode("amp", amp, AMP_MODES)
    check_mode("layout", layout, LAYOUTS)
    check_mode("compile", compile_mode, COMPILE_MODES)
    initial = StackedHourglass(dataclasses.replace(model_cfg, channels_last=False)).state_dict()
    torch_rng_state = torch.random.get_rng_state()  # as after building the model: measuring draws nothing

    def build(path: Path) -> torch.nn.Module:
        model = StackedHourglass(dataclasses.replace(model_cfg, channels_last=path.layout == "channels_last"))
        model.load_state_dict(initial)
        if path.compiled:
            compile_blocks(model)
        return model

    if on_gpu:
        choice = gpu_choice(amp, layout, compile_mode, bf16_supported=bf16_supported)
        torch.random.set_rng_state(torch_rng_state)
        return choice, build(choice.path)

    started = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    heat = input_size // 4
    images = torch.rand(batch_size, 3, input_size, input_size, generator=g) - 0.5  # (B, 3, S, S)
    target = torch.rand(batch_size, model_cfg.joints, heat, heat, generator=g) * 0.1  # (B, J, S/4, S/4)
    weight = torch.ones(batch_size, model_cfg.joints)

    def timing_of(path: Path, model: torch.nn.Module | None = None) -> Timing:
        model = model if model is not None else build(path)
        optimizer = make_optimizer(model)
        dtype = None if path.amp == "off" else getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[path.amp])
        batch = images.contiguous(memory_format=torch.channels_last) if path.layout == "channels_last" else images

        def step() -> None:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                pred = model(batch)  # (B, S, J, h, w)
            loss, _ = heatmap_loss(pred, target, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        timing = measure_path(step, path, batch_size=batch_size)
        log(f"speed: {path.name}: {timing.images_per_s:.1f} images/s per worker "
            f"(first step {timing.first_step_s:.1f} s)")
        return agree(timing)

    bf16_native = native_bf16()
    candidates = eager_candidates(amp, layout, bf16_native=bf16_native)
    # measured whenever anything is `auto` (a few seconds), so the run records its rate
    eager = [timing_of(p) for p in candidates] if "auto" in (amp, layout, compile_mode) else []
    if not eager:
        fixed = Path(candidates[0].amp, candidates[0].layout, compile_mode == "on")
        torch.random.set_rng_state(torch_rng_state)
        return SpeedChoice(fixed, "fixed by config"), build(fixed)
    best = fastest(eager)
    compiled_timing, compiled_model = None, None
    if compile_mode == "on" or (compile_mode == "auto" and agree(worth_compiling(
            best, images_per_worker, compile_s_estimate=compile_s_estimate))):
        layout_c = "channels_last" if layout in ("auto", "channels_last") else "nchw"
        path_c = Path(best.path.amp, layout_c, compiled=True)
        compiled_model = build(path_c)
        compiled_timing = timing_of(path_c, compiled_model)
        compiled_model.load_state_dict(initial)  # undo the measurement's steps (BN buffers too)
    choice = choose(eager, compiled_timing)
    if amp == "auto" and not bf16_native:
        choice = dataclasses.replace(choice, reason=choice.reason + "; bf16 not measured: no native bf16 on this CPU")
    if compile_mode == "on" and compiled_timing is not None:
        choice = SpeedChoice(compiled_timing.path, "compile fixed by config", choice.timings)
    choice = dataclasses.replace(choice, measure_s=time.perf_counter() - started)
    torch.random.set_rng_state(torch_rng_state)
    model = compiled_model if choice.path.compiled else build(choice.path)
    return choice, model
