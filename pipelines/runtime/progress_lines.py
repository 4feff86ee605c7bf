"""Progress of a long step as plain lines a person can follow in a terminal or a log:
count of total, rate, elapsed time and ETA, at most one line every `every_s` seconds.

`eta_s` and `format_duration` are pure; the live training display
(`pipelines.training.progress`) uses them too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def eta_s(done: int, total: int, per_s: float) -> float | None:
    """Seconds left at `per_s` (None while the rate is unknown or the total is)."""
    if per_s <= 0 or total <= 0:
        return None
    return max(total - done, 0) / per_s


def format_duration(seconds: float | None) -> str:
    """`95` → `1m35s`, `3725` → `1h02m`, None → `?`."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(label: str, done: int, total: int, unit: str, elapsed_s: float) -> str:
    """E.g. ``evaluate: 1,200/2,958 people (41 %), 35.1 people/s, 34s elapsed, ETA 50s``."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    share = f" ({100.0 * done / total:.0f} %)" if total > 0 else ""
    of = f"/{total:,}" if total > 0 else ""
    return (f"{label}: {done:,}{of} {unit}{share}, {rate:.1f} {unit}/s, "
            f"{format_duration(elapsed_s)} elapsed, ETA {format_duration(eta_s(done, total, rate))}")


class ProgressLines:
    """Counts work done and logs a `progress_line` at most every `every_s` seconds (and always
    at `finish`)."""

    def __init__(self, label: str, total: int, unit: str, log: Callable[[str], None], *,
                 every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit, self.log = label, total, unit, log
        self.every_s, self.clock = every_s, clock
        self.done = 0
        self.start = self.last = clock()

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            self.log(progress_line(self.label, self.done, self.total, self.unit, now - self.start))

    def finish(self) -> None:
        self.log(progress_line(self.label, self.done, self.total, self.unit, self.clock() - self.start))
