"""Training progress a person can follow on the driver's terminal.

Rank 0 posts small updates (:class:`Update`: phase, epoch, step, images/s, per-stack loss, last
validation PCKh) to a named Ray actor (:class:`ProgressBoard`) at most once a second; the driver
polls it while `trainer.fit()` runs and shows it with :class:`ProgressDisplay`: a rich progress
bar on a terminal, a plain line every `every_s` seconds otherwise (a log file, CI).

The text and the ETA are pure functions (:func:`format_update`, :func:`eta_s`,
:func:`training_eta`); the rate shown is smoothed (:class:`SmoothedRate`), the total is fixed
(the recipe's images, capped by `train.max_steps`; `train.max_minutes` shows as its own clock),
and the ETA is that of whichever limit ends training first.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.progress import BarColumn, Progress, TextColumn

from pipelines.runtime.progress_lines import eta_s, format_duration

# Imported where used: ray (only the board's actor and rank 0's poster need it; the display itself
# does not)


@dataclass(frozen=True)
class Update:
    """What rank 0 last reported. `images` counts images trained on so far in this run (all
    workers), `images_total` the recipe's total (fixed for the run); `images_per_s` is
    smoothed (`SmoothedRate`). `budget_s` is `train.max_minutes` in seconds (0: none) and
    `trained_s` the seconds of training passes so far, both as of `posted_at`. While
    validating, `val_done` of `val_people` people are scored, at `val_per_s`. `val_label`
    says what `val_total` is (`validation_label`)."""

    phase: str = "starting"  # starting | choosing speed path | train | validating | done
    epoch: int = 0  # 0-based epoch in progress
    epochs: int = 1
    step: int = 0
    images: int = 0
    images_total: int = 0
    images_per_s: float = 0.0
    loss_per_stack: tuple[float, ...] = ()
    val_total: float | None = None  # last validation PCKh@0.5 Total, %
    note: str = ""  # e.g. the chosen speed path
    posted_at: float = field(default=0.0)
    budget_s: float = 0.0
    trained_s: float = 0.0
    val_label: str = ""
    val_done: int = 0
    val_people: int = 0
    val_per_s: float = 0.0


class SmoothedRate:
    """Items per second, smoothed exponentially over time (time constant `tau_s`).

    Each `update(count, now)` adds the rate since the previous one, weighted by
    1 - exp(-dt / tau_s), so a slow step (an epoch's first batch) moves the figure by its share
    of the time, not to its own value. `pause()` forgets the previous point: the time until the
    next update (validation, a checkpoint) is not counted as training.
    """

    def __init__(self, tau_s: float = 20.0) -> None:
        if not tau_s > 0:
            raise ValueError(f"tau_s must be > 0, got {tau_s}")
        self.tau_s = tau_s
        self.rate = 0.0
        self._last: tuple[float, float] | None = None
        self._seen = False

    def update(self, count: float, now: float) -> float:
        if self._last is not None and now > self._last[1]:
            dt = now - self._last[1]
            sample = (count - self._last[0]) / dt
            if not self._seen:
                self.rate, self._seen = sample, True
            else:
                self.rate += (1.0 - math.exp(-dt / self.tau_s)) * (sample - self.rate)
        self._last = (count, now)
        return self.rate

    def pause(self) -> None:
        self._last = None


def training_eta(update: Update) -> tuple[float | None, str]:
    """(seconds of training left, which limit ends it): the recipe's images at the current
    rate, or the time budget left, whichever comes first ("recipe" / "time budget")."""
    by_images = eta_s(update.images, update.images_total, update.images_per_s)
    if update.budget_s > 0:
        by_budget = max(update.budget_s - update.trained_s, 0.0)
        if by_images is None or by_budget < by_images:
            return by_budget, "time budget"
    return by_images, "recipe"


def validation_label(*, flip: bool, precision: str, people: int, subset: bool) -> str:
    """What an in-training validation score is, e.g. ``flip, bf16, 480 people``."""
    return f"{'flip' if flip else 'no flip'}, {precision}, {people:,} people{' (first by id)' if subset else ''}"


def evaluation_label(*, flip: bool, people: int | None) -> str:
    """What the evaluate step's score is: the best checkpoint, in fp32, on the whole val split.
    It differs from the last in-training figure where training validates in bf16 (autocast) or
    on a subset, or where the best checkpoint is not the last one."""
    count = f": {people:,} people" if people else ""
    return f"{'flip test' if flip else 'no flip'}, fp32, best checkpoint, whole val split{count}"


def format_update(update: Update, elapsed_s: float) -> str:
    """One line, e.g. ``train epoch 3/9 step 1320 | 2,640/31,680 images (8 %) | 47.1 img/s |
    2m40s of 9m00s budget | loss 0.0044/0.0039 | val PCKh (flip, bf16, 480 people) 81.9 % |
    0m56s elapsed, ETA 6m20s (time budget)``; while validating, ``validating epoch 3/9 step 1320 |
    224/480 people (47 %) | 9.5 people/s | ... ETA 27s``."""
    parts = [f"{update.phase} epoch {update.epoch + 1}/{update.epochs} step {update.step}"]
    if update.phase == "validating" and update.val_people:
        share = 100.0 * update.val_done / update.val_people
        parts.append(f"{update.val_done:,}/{update.val_people:,} people ({share:.0f} %)")
        if update.val_per_s > 0:
            parts.append(f"{update.val_per_s:.1f} people/s")
        eta = eta_s(update.val_done, update.val_people, update.val_per_s)
        parts.append(f"{format_duration(elapsed_s)} elapsed, validation ETA {format_duration(eta)}")
        return " | ".join(parts)
    if update.images_total:
        share = 100.0 * update.images / update.images_total
        parts.append(f"{update.images:,}/{update.images_total:,} images ({share:.0f} %)")
    if update.images_per_s > 0:
        parts.append(f"{update.images_per_s:.1f} img/s")
    if update.budget_s > 0:
        parts.append(f"{format_duration(update.trained_s)} of {format_duration(update.budget_s)} budget")
    if update.loss_per_stack:
        parts.append("loss " + "/".join(f"{v:.4f}" for v in update.loss_per_stack))
    if update.val_total is not None:
        label = f" ({update.val_label})" if update.val_label else ""
        parts.append(f"val PCKh{label} {update.val_total:.1f} %")
    eta, limit = training_eta(update)
    which = f" ({limit})" if update.budget_s > 0 else ""
    parts.append(f"{format_duration(elapsed_s)} elapsed, ETA {format_duration(eta)}{which}")
    if update.note:
        parts.append(update.note)
    return " | ".join(parts)


class ProgressBoard:
    """The named actor between rank 0 (`post`) and the driver (`latest`)."""

    def __init__(self) -> None:
        self.update = Update()

    def post(self, update: Update) -> None:
        self.update = update

    def latest(self) -> Update:
        return self.update


def start_progress_board(name: str):
    """Creates (or finds) the named `ProgressBoard` actor on this (the driver's) node; returns
    its handle. Like the epoch clock (`data_stream.start_epoch_clock`), it outlives a lost node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(ProgressBoard).options(name=name, get_if_exists=True,
                                                        scheduling_strategy=here).remote()


class Poster:
    """Rank 0's side: posts to the board at most every `min_interval_s` (forced posts always)."""

    def __init__(self, board_name: str, min_interval_s: float = 1.0) -> None:
        import ray

        self.board = ray.get_actor(board_name)
        self.min_interval_s = min_interval_s
        self.last = 0.0

    def post(self, update: Update, *, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last >= self.min_interval_s:
            self.board.post.remote(dataclasses.replace(update, posted_at=now))  # fire and forget
            self.last = now


class ProgressDisplay:
    """Shows the board's updates until closed: a rich bar on a TTY, plain lines otherwise.

    Use as a context manager around the blocking call; `fetch()` returns the latest Update
    (e.g. ``lambda: ray.get(board.latest.remote())``). `write(line)` prints a plain line.
    """

    def __init__(self, fetch: Callable[[], Update], *, every_s: float = 30.0, poll_s: float = 1.0,
                 tty: bool | None = None, write: Callable[[str], None] = print) -> None:
        self.fetch, self.every_s, self.poll_s, self.write = fetch, every_s, poll_s, write
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shg-progress", daemon=True)
        self._bar = None

    def __enter__(self) -> "ProgressDisplay":
        if self.tty:
            self._bar = Progress(BarColumn(bar_width=30), TextColumn("{task.description}"),
                                 transient=False, refresh_per_second=2)
            self._task = self._bar.add_task("starting", total=1.0)
            self._bar.start()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._bar is not None:
            self._bar.stop()

    def _loop(self) -> None:
        last_line, last_key = 0.0, None
        while not self._stop.wait(self.poll_s):
            try:
                update = self.fetch()
            except Exception:  # the actor may be gone while the run ends; nothing to show
                continue
            line = format_update(update, time.time() - self.started)
            key = (update.phase, update.epoch, update.val_total)
            if self._bar is not None:
                if update.phase == "validating" and update.val_people:
                    done = update.val_done / update.val_people
                else:
                    done = update.images / update.images_total if update.images_total else 0.0
                self._bar.update(self._task, completed=done, description=line)
                if key != last_key and update.phase in ("validated", "done"):
                    self._bar.console.print(line)  # stays above the bar
                last_key = key
                continue
            if update.posted_at and (key != last_key or time.time() - last_line >= self.every_s):
                self.write(line)
                last_line, last_key = time.time(), key
