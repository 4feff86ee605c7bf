"""Side-by-side timing: contenders interleaved round-robin, medians compared."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def seconds(fn: Callable[[], object], number: int = 1) -> float:
    """Wall seconds per call of ``fn``, averaged over ``number`` back-to-back calls."""
    started = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - started) / number


def interleaved_medians(
    contenders: dict[str, Callable[[], object]], rounds: int, number: int = 1, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each contender, timed A, B, A, B, ... for ``rounds`` rounds.

    Each round times ``number`` back-to-back calls of every contender in turn, so a burst of
    load from elsewhere lands on all of them rather than on one. ``warmup`` untimed rounds run
    first (first calls pay for allocation, lazy initialisation and compilation).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name].append(seconds(fn, number))
    return {name: statistics.median(values) for name, values in samples.items()}
