"""What bounds the training step: a torch.profiler table and a convolution-only bound.

    flock /tmp/shg-heavy.lock .venv/bin/python -m benchmarks.profile_step [--stacks 2]
        [--variant fast|baseline|bf16] [--rows 15]

Prints the profiler's op table (self CPU time) for one steady-state training step, then splits
the step into convolution kernels (forward ``mkldnn_convolution`` / ``convolution``, backward
``convolution_backward``) and everything else, and the best the step could do if everything
but the convolutions cost nothing: ``batch / conv seconds`` images/s.
"""

from __future__ import annotations

import argparse
import sys

CONV_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution_pointwise",
            "mkldnn::_convolution_pointwise", "aten::thnn_conv2d", "aten::_slow_conv2d_forward",
            "aten::_slow_conv2d_backward")


def profile_step(
    stacks: int = 2, variant: str = "fast", rows: int = 15, *, channels: int = 256, depth: int = 4,
    batch: int = 8, size: int = 256,
) -> dict[str, float]:
    """Profiles one training step after two warm-up steps; prints the table; returns the split."""
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.speed import SpeedConfig
    from benchmarks.training import (
        StepShape,
        TrainStep,
        build_pair,
        forward_gflop,
        make_batch,
    )

    shape = StepShape(stacks=stacks, channels=channels, depth=depth, batch=batch, size=size)
    speed = {"bf16": SpeedConfig(compile=False, autocast_bf16=True)}.get(variant, SpeedConfig())
    baseline, fast = build_pair(shape, speed)
    batch = make_batch(shape)
    step = TrainStep(baseline, batch) if variant == "baseline" else TrainStep(fast, batch, speed)
    step()
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS) / 1e6
    gflop = 3 * forward_gflop(shape)
    split = {
        "step_s": total,
        "conv_s": conv,
        "conv_share": conv / total,
        "conv_gflop_s": gflop / conv,
        "step_img_s": shape.batch / total,
        "conv_only_img_s": shape.batch / conv,
    }
    print(f"{variant}, {stacks} stacks: step {total:.2f} s (profiled), convolutions {conv:.2f} s "
          f"({100 * conv / total:.0f} %) at {gflop / conv:.0f} GFLOP/s; if nothing but the "
          f"convolutions cost time: {shape.batch / conv:.2f} images/s")
    return split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=2)
    parser.add_argument("--variant", choices=("fast", "baseline", "bf16"), default="fast")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args(argv)
    profile_step(args.stacks, args.variant, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
