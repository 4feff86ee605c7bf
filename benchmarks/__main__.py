"""`python -m benchmarks [--quick | --tiny] [--json FILE] [--only NAME ...]`: run the suite, print a table.

Run it alone on the machine: ``flock /tmp/shg-heavy.lock .venv/bin/python -m benchmarks``.
``--quick`` measures everything at 2 stacks with fewer repetitions (a few minutes). ``--tiny``
runs every section on toy sizes with one repetition: its figures mean nothing, it only proves
that each section still runs end to end (the test suite runs it, section by section).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# figure -> (comparison, target); printed beside the figure, never asserted.
TARGETS: dict[str, tuple[str, float]] = {
    "train_2stack_speedup": (">=", 2.0),
    "train_8stack_speedup": (">=", 2.0),
    "train_2stack_loss_rel_diff": ("<=", 1e-3),
    "train_8stack_loss_rel_diff": ("<=", 1e-3),
    "train_2stack_bf16_speedup": (">=", 2.0),
    "train_8stack_bf16_speedup": (">=", 2.0),
    "train_2stack_bf16_loss_rel_diff": ("<=", 1e-3),
    "train_8stack_bf16_loss_rel_diff": ("<=", 1e-3),
    "heatmap_speedup": (">=", 20.0),
    "heatmap_batch_speedup": (">=", 20.0),
    "heatmap_over_write_bound": ("<=", 2.0),
    "heatmap_batch_over_write_bound": ("<=", 2.0),
    "stream_over_train": (">=", 2.0),
    "ingest_over_fn": (">=", 0.5),
    "ingest_bytes_per_sample": ("<=", 200_000.0),
}
SECTIONS = ("peak", "speedpath", "training", "published", "memory", "heatmaps", "data", "frontier", "ingest", "gpu")


def machine() -> dict[str, str | float]:
    """CPU model name and vector extensions (from /proc/cpuinfo), torch version and threads."""
    import torch

    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {
        "machine_cpu": model,
        "machine_cpus": float(os.cpu_count() or 0),
        "machine_avx2": float("avx2" in flags),
        "machine_avx512f": float("avx512f" in flags),
        "machine_avx512_bf16": float("avx512_bf16" in flags),
        "torch_version": torch.__version__,
        "torch_threads": float(torch.get_num_threads()),
    }


def plan(quick: bool, tiny: bool = False, device: str = "auto") -> list[tuple[str, str, Callable[[dict], dict]]]:
    """(section, label, function of the figures so far) in the order they run; `tiny` shrinks
    every problem to toy size (see the module docstring); `device` is the gpu section's."""
    if tiny:
        return tiny_plan()
    from benchmarks.data_pipeline import measure_data_pipeline
    from benchmarks.frontier import measure_frontier
    from benchmarks.gpu import measure_gpu
    from benchmarks.heatmaps import measure_heatmaps
    from benchmarks.ingest import measure_ingest
    from benchmarks.memory import measure_memory
    from benchmarks.peak import measure_matmul_peak, measure_write_bandwidth
    from benchmarks.published import measure_published
    from benchmarks.speed import SpeedConfig
    from benchmarks.speed_path import measure_speed_path
    from benchmarks.training import StepShape, measure_training

    rounds = 3 if quick else 5
    stack_counts = (2,) if quick else (2, 8)
    bf16 = SpeedConfig(compile=False, autocast_bf16=True)
    steps: list[tuple[str, str, Callable[[dict], dict]]] = [
        # first: the ingest section sizes its cores-per-GPU figure by the GPU's measured rate
        ("gpu", f"the GPU check (device {device})", lambda f: measure_gpu(device)),
        ("peak", "fp32 matmul peak", lambda f: measure_matmul_peak(rounds=rounds)),
        ("peak", "write bandwidth", lambda f: measure_write_bandwidth(rounds=rounds)),
        ("speedpath", "train.amp/layout/compile=auto on the main job", lambda f: measure_speed_path()),
    ]
    for stacks in stack_counts:
        shape = StepShape(stacks=stacks)
        steps.append((
            "training", f"{stacks}-stack fp32 fast path",
            lambda f, shape=shape: measure_training(
                shape, SpeedConfig(), rounds=rounds if shape.stacks == 2 else 3,
                matmul_gflop_s=f.get("matmul_fp32_gflop_s"), float64_check=shape.stacks <= 2),
        ))
        steps.append((
            "training", f"{stacks}-stack bf16 autocast",
            lambda f, shape=shape: measure_training(
                shape, bf16, rounds=rounds if shape.stacks == 2 else 3, inference=False,
                matmul_gflop_s=f.get("matmul_fp32_gflop_s"), float64_check=shape.stacks <= 2,
                prefix=f"train_{shape.stacks}stack_bf16"),
        ))
    steps.append(("published", "vs pytorch-stacked-hourglass (extra `bench`)",
                  lambda f: measure_published(stack_counts, steps=2 if quick else 3)))
    for stacks in stack_counts:
        steps.append(("memory", f"{stacks}-stack peak RSS", lambda f, s=stacks: measure_memory(stacks=s)))
    steps.append(("heatmaps", "render_heatmaps", lambda f: measure_heatmaps(rounds=10 if quick else 40)))
    steps.append((
        "data", "prepare + stream",
        lambda f: measure_data_pipeline(people=300 if quick else None, stream_epochs=1 if quick else 2),
    ))
    steps.append((
        "frontier", "training step images/s and MFU by width, stem and input size (2 threads)",
        lambda f: measure_frontier(rounds=rounds),
    ))
    steps.append((
        "ingest", "the mpii stream, parquet to the loop's batch (steady state)",
        lambda f: measure_ingest(people=768 if quick else 1536, epochs=2 if quick else 3,
                                 gpu_samples_per_s=f.get("gpu_bf16_b32_images_per_s")),
    ))
    return steps


def tiny_plan() -> list[tuple[str, str, Callable[[dict], dict]]]:
    """Every section of `plan` on toy sizes, one repetition, nothing compiled."""
    from benchmarks.data_pipeline import measure_data_pipeline
    from benchmarks.frontier import Candidate, measure_frontier
    from benchmarks.gpu import measure_gpu
    from benchmarks.heatmaps import measure_heatmaps
    from benchmarks.ingest import measure_ingest
    from benchmarks.memory import measure_memory
    from benchmarks.peak import measure_matmul_peak, measure_write_bandwidth
    from benchmarks.published import measure_published
    from benchmarks.speed import SpeedConfig
    from benchmarks.speed_path import measure_speed_path
    from benchmarks.training import StepShape, measure_training

    shape = StepShape(stacks=2, channels=16, depth=2, batch=2, size=64)
    toy_networks = (Candidate(1, 16, 8, 32, depth=2),)
    eager = SpeedConfig(compile=False)
    return [
        ("peak", "fp32 matmul peak", lambda f: measure_matmul_peak(sizes=(256,), rounds=1)),
        ("peak", "write bandwidth", lambda f: measure_write_bandwidth(nbytes=4 << 20, rounds=1)),
        ("speedpath", "train.amp/layout/compile=auto on the main job", lambda f: measure_speed_path(images_per_worker=64)),
        ("training", "tiny eager fp32", lambda f: measure_training(
            shape, eager, rounds=1, matmul_gflop_s=f.get("matmul_fp32_gflop_s"), float64_check=False)),
        ("published", "vs pytorch-stacked-hourglass (extra `bench`)",
         lambda f: measure_published((1,), batch=2, size=64, steps=1)),
        ("memory", "tiny peak RSS", lambda f: measure_memory(stacks=1, channels=16, depth=2, batch=1, size=64, compile=False)),
        ("heatmaps", "render_heatmaps", lambda f: measure_heatmaps(rounds=2)),
        ("data", "prepare + stream", lambda f: measure_data_pipeline(people=40, stream_epochs=1, rounds=1)),
        ("frontier", "toy network", lambda f: measure_frontier(toy_networks, threads=1, batch=2, rounds=1, peak_sizes=(64,))),
        ("ingest", "the mpii stream, a few batches", lambda f: measure_ingest(people=64, epochs=1, warm_batches=1)),
        ("gpu", "the GPU check's CPU form (tiny model)", lambda f: measure_gpu("cpu", budget_s=60.0)),
    ]


def format_value(value) -> str:
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "nan"
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def format_table(figures: dict) -> str:
    lines = [f"{'figure':<42} {'value':>12}  target"]
    for name, value in figures.items():
        target = ""
        if name in TARGETS and isinstance(value, float):
            op, goal = TARGETS[name]
            met = value >= goal if op == ">=" else value <= goal
            target = f"{op} {goal:g}  {'met' if met else 'MISSED'}"
        lines.append(f"{name:<42} {format_value(value):>12}  {target}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2 stacks only, fewer repetitions")
    size.add_argument("--tiny", action="store_true", help="toy sizes, one repetition: checks that every section runs")
    parser.add_argument("--json", type=Path, help="write the figures to this file (flat JSON object)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                        help="the gpu section's device (auto: CUDA when there is one; cpu: its tiny CPU form)")
    args = parser.parse_args(argv)

    figures: dict = machine()
    failed: list[str] = []
    started = time.perf_counter()
    for section, label, measure in plan(args.quick, args.tiny, args.device):
        if args.only and section not in args.only:
            continue
        began = time.perf_counter()
        print(f"[{time.perf_counter() - started:6.0f} s] {section}: {label} ...", flush=True)
        try:
            figures.update({k: v if isinstance(v, str) else float(v) for k, v in measure(figures).items()})
        except Exception:  # one broken measurement must not cost the others' figures
            traceback.print_exc()
            failed.append(f"{section}: {label}")
        print(f"         done in {time.perf_counter() - began:.0f} s", flush=True)
        if args.json:  # written as we go, so an interrupted run still leaves its figures
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    figures["suite_seconds"] = time.perf_counter() - started
    print(format_table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    if failed:
        print(f"FAILED measurements (tracebacks above): {'; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
