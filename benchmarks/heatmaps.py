"""Benchmark of `dataprep.heatmaps.render_heatmaps` (targets from the dataprep brief).

Targets, for a batch of 64 people x 16 joints at 64x64, sigma 1:
- at least 20x faster than the naive renderer (a full-grid exp per joint);
- at most 2x the memory-write bound: allocating and zero-filling the (64, 16, 64, 64) float32
  output once, which any renderer has to do.
Timings are best-of-N with the contenders interleaved, so load on a shared machine hits them
alike. Exits 1 when a target is missed.

    .venv/bin/python benchmarks/heatmaps.py [--people 64] [--repeats 40]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dataprep.heatmaps import render_heatmaps


def dense_heatmaps(keypoints: np.ndarray, labelled: np.ndarray, size: int = 64, sigma: float = 1.0) -> np.ndarray:
    """The naive way: exp over the whole grid for each joint (no window, no truncation)."""
    ys, xs = np.mgrid[0:size, 0:size]
    out = np.zeros((*labelled.shape, size, size), np.float32)
    for idx in np.ndindex(*labelled.shape):
        if labelled[idx]:
            x, y = keypoints[idx]
            out[idx] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return out


def write_bound(shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, np.float32)
    out.fill(0.0)
    return out


def measure_heatmaps(people: int = 64, rounds: int = 40, seed: int = 0) -> dict[str, float]:
    """Microseconds per person (16 joints, 64x64, sigma 1), contenders interleaved, medians.

    Figures: ``heatmap_us_per_person`` (one `render_heatmaps` call per person, as
    `dataprep.augment` calls it), ``heatmap_batch_us_per_person`` (one call for `people`
    people), ``heatmap_dense_us_per_person`` (exp over the whole grid per joint),
    ``heatmap_write_us_per_person`` (allocate + zero-fill one person's (16, 64, 64) float32
    output, the memory-write bound), ``heatmap_batch_write_us_per_person`` (the same for the
    whole batch's output, per person), and the ratios ``heatmap_speedup`` (dense over
    per-person calls), ``heatmap_batch_speedup``, ``heatmap_over_write_bound`` (per-person
    call over its write bound) and ``heatmap_batch_over_write_bound``.
    """
    from benchmarks.timing import interleaved_medians

    rng = np.random.default_rng(seed)
    kp = rng.uniform(0, 63, (people, 16, 2))
    lab = np.ones((people, 16), bool)
    ours = render_heatmaps(kp, lab)
    if not np.allclose(ours[0][ours[0] > 0], dense_heatmaps(kp[:1], lab[:1])[0][ours[0] > 0], rtol=1e-6):
        raise RuntimeError("render_heatmaps and the dense renderer disagree inside the window")
    # Dense runs for a few people only (it is slow and churns memory), separately.
    few = min(people, 4)
    dense = interleaved_medians({"dense": lambda: dense_heatmaps(kp[:few], lab[:few])}, 3)["dense"] / few
    one = min(16, people)  # per-person calls timed in runs of up to 16 people
    medians = interleaved_medians(
        {
            "single": lambda: [render_heatmaps(kp[i], lab[i]) for i in range(one)],
            "write": lambda: [write_bound(ours.shape[1:]) for _ in range(one)],
            "batch": lambda: render_heatmaps(kp, lab),
            "batch_write": lambda: write_bound(ours.shape),
        },
        rounds,
    )
    us = {k: 1e6 * v / (one if k in ("single", "write") else people) for k, v in medians.items()}
    return {
        "heatmap_us_per_person": us["single"],
        "heatmap_batch_us_per_person": us["batch"],
        "heatmap_dense_us_per_person": 1e6 * dense,
        "heatmap_write_us_per_person": us["write"],
        "heatmap_batch_write_us_per_person": us["batch_write"],
        "heatmap_speedup": 1e6 * dense / us["single"],
        "heatmap_batch_speedup": 1e6 * dense / us["batch"],
        "heatmap_over_write_bound": us["single"] / us["write"],
        "heatmap_batch_over_write_bound": us["batch"] / us["batch_write"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 63, (args.people, 16, 2))
    lab = np.ones((args.people, 16), bool)
    ours = render_heatmaps(kp, lab)
    dense = dense_heatmaps(kp[:4], lab[:4])
    inside = ours[:4] > 0
    assert np.allclose(ours[:4][inside], dense[inside], rtol=1e-6), "renderers disagree"

    # The dense renderer runs apart: it churns memory and would slow whatever follows it.
    best = {"dense": min(_time(lambda: dense_heatmaps(kp[:4], lab[:4]), 1) for _ in range(3))}
    contenders = {
        "render_heatmaps": lambda: render_heatmaps(kp, lab),
        "write_bound": lambda: write_bound(ours.shape),
    }
    best.update({name: float("inf") for name in contenders})
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            best[name] = min(best[name], _time(fn, 5))
    best["dense"] *= args.people / 4
    joints = args.people * 16
    t_one = min(
        _time(lambda: render_heatmaps(kp[0], lab[0]), 200) for _ in range(args.repeats)
    )
    speedup = best["dense"] / best["render_heatmaps"]
    ratio = best["render_heatmaps"] / best["write_bound"]
    print(f"render_heatmaps {args.people}x16: {best['render_heatmaps'] * 1e6:.0f} us "
          f"({best['render_heatmaps'] * 1e6 / joints:.2f} us/joint)")
    print(f"dense:           {best['dense'] * 1e6:.0f} us -> {speedup:.0f}x faster (target >= 20x)")
    print(f"write bound:     {best['write_bound'] * 1e6:.0f} us -> {ratio:.2f}x the bound (target <= 2x)")
    print(f"one person (16 joints): {t_one * 1e6:.1f} us ({t_one * 1e6 / 16:.2f} us/joint)")
    return 0 if speedup >= 20 and ratio <= 2.0 else 1


def _time(fn, number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - started) / number


if __name__ == "__main__":
    sys.exit(main())
