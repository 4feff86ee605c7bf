"""Peak memory of a training step, each model measured alone in a fresh subprocess.

``tracemalloc`` does not see torch's allocations, so this reads the kernel's resident-set
high-water mark (``VmHWM`` in ``/proc/self/status``). The child builds one model, runs two
warm-up steps (allocation, lazy init, compilation), resets the high-water mark to the current
RSS (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0), runs one more step and reports:

- ``peak_rss_mib``: the process's peak RSS during that steady-state step (interpreter, torch,
  model, optimiser state and the step's activations; what a training process needs);
- ``step_rss_mib``: that peak minus the RSS just before the step (the step's own working
  set on top of what stays resident; a lower bound, since memory freed by the warm-up steps
  may be reused without raising RSS);
- ``state_mib``: weights + gradients + RMSprop state (3 x 4 bytes per parameter).

Where ``clear_refs`` is not writable the peak falls back to ``ru_maxrss`` (whole-process
lifetime, warm-up included) and ``step_rss_mib`` is NaN.

    .venv/bin/python -m benchmarks.memory --stacks 2 --variant fast
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
from pathlib import Path

VARIANTS = ("baseline", "fast")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_child(
    stacks: int, channels: int, depth: int, batch: int, size: int, variant: str, compile: bool = True
) -> dict:
    """Measures one model in this process (call it in a fresh one: see :func:`measure_memory`)."""
    from benchmarks.speed import SpeedConfig
    from benchmarks.training import StepShape, TrainStep, build_pair, make_batch

    shape = StepShape(stacks=stacks, channels=channels, depth=depth, batch=batch, size=size)
    speed = SpeedConfig(compile=compile)
    baseline, fast = build_pair(shape, speed)
    if variant == "baseline":
        step, model = TrainStep(baseline, make_batch(shape)), baseline
        del fast
    else:
        step, model = TrainStep(fast, make_batch(shape), speed), fast
        del baseline
    step()
    step()
    before = _status_kib("VmRSS")
    reset = _reset_peak()
    step()
    if reset:
        peak = _status_kib("VmHWM")
        step_kib = peak - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step_kib = math.nan
    params = sum(p.numel() for p in model.parameters())
    return {
        "peak_rss_mib": peak / 1024,
        "step_rss_mib": step_kib / 1024,
        "state_mib": 3 * 4 * params / 2**20,
        "peak_source": "VmHWM after clear_refs" if reset else "ru_maxrss",
    }


def measure_memory(
    stacks: int = 2, channels: int = 256, depth: int = 4, batch: int = 8, size: int = 256,
    compile: bool = True,
) -> dict[str, float]:
    """Figures ``mem_<S>stack_<variant>_{peak_rss,step_rss,state}_mib`` for both variants.

    The fast variant is ``benchmarks.speed.SpeedConfig(compile=compile)`` (fp32).
    """
    figures: dict[str, float] = {}
    for variant in VARIANTS:
        command = [
            sys.executable, "-m", "benchmarks.memory", "--stacks", str(stacks),
            "--channels", str(channels), "--depth", str(depth), "--batch", str(batch),
            "--size", str(size), "--variant", variant,
        ] + ([] if compile else ["--no-compile"])
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for key in ("peak_rss_mib", "step_rss_mib", "state_mib"):
            figures[f"mem_{stacks}stack_{variant}_{key}"] = result[key]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Peak RSS of one training step (one model).")
    parser.add_argument("--stacks", type=int, default=2)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--variant", choices=VARIANTS, default="fast")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="fast variant without torch.compile (channels_last only)")
    args = parser.parse_args(argv)
    result = run_child(args.stacks, args.channels, args.depth, args.batch, args.size, args.variant,
                       args.compile)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
