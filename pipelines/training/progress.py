"""Training progress a person can follow on the driver's terminal.

Rank 0 posts small updates (:class:`Update`: phase, epoch, step, images/s, per-stack loss, last
validation PCKh) to a named Ray actor (:class:`ProgressBoard`) at most once a second; the driver
polls it while `trainer.fit()` runs and shows it with :class:`ProgressDisplay`: a rich progress
bar on a terminal, a plain line every `every_s` seconds otherwise (a log file, CI).

The text and the ETA are pure functions (:func:`format_update`, :func:`eta_s`).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.runtime.progress_lines import eta_s, format_duration


@dataclass(frozen=True)
class Update:
    """What rank 0 last reported. `images` counts images trained on so far in this run (all
    workers), `images_total` the run's total; `images_per_s` is over the last second or so."""

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


def format_update(update: Update, elapsed_s: float) -> str:
    """One line, e.g. ``train epoch 3/9 step 1320 | 2,640/31,680 images (8 %) | 47.1 img/s |
    loss 0.0044/0.0039 | val PCKh 81.9 % | 0m56s elapsed, ETA 10m26s``."""
    parts = [f"{update.phase} epoch {update.epoch + 1}/{update.epochs} step {update.step}"]
    if update.images_total:
        share = 100.0 * update.images / update.images_total
        parts.append(f"{update.images:,}/{update.images_total:,} images ({share:.0f} %)")
    if update.images_per_s > 0:
        parts.append(f"{update.images_per_s:.1f} img/s")
    if update.loss_per_stack:
        parts.append("loss " + "/".join(f"{v:.4f}" for v in update.loss_per_stack))
    if update.val_total is not None:
        parts.append(f"val PCKh {update.val_total:.1f} %")
    parts.append(f"{format_duration(elapsed_s)} elapsed, "
                 f"ETA {format_duration(eta_s(update.images, update.images_total, update.images_per_s))}")
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
            from rich.progress import BarColumn, Progress, TextColumn

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
                done = update.images / update.images_total if update.images_total else 0.0
                self._bar.update(self._task, completed=done, description=line)
                if key != last_key and update.phase in ("validated", "done"):
                    self._bar.console.print(line)  # stays above the bar
                last_key = key
                continue
            if update.posted_at and (key != last_key or time.time() - last_line >= self.every_s):
                self.write(line)
                last_line, last_key = time.time(), key
