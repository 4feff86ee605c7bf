"""A Tracker whose writes never stall or fail training: sent from a background thread.

Rank 0 logs through `BufferedTracker`. Each write (metrics, params, tags, artifacts) is queued
and returns at once; one daemon thread sends the queue in order, and when the store does not
answer (a tracking server restarting, a network hiccup, a refused upload) it keeps the item and
retries with backoff until the store is back: nothing is lost and training never waits on
MLflow. Memory is bounded: past `max_pending` queued writes the oldest *metric* batch is dropped
(and counted); parameters, tags and artifacts are never dropped. `close()` sends what is left
and records the outage on the run (`shg.tracking_outage_s`, `shg.tracking_dropped`).
"""

from __future__ import annotations

import collections
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines.tracking.tracker import Tracker

log = logging.getLogger(__name__)


class _Write:
    """One queued write: the call that performs it, and whether it may be dropped under pressure."""

    __slots__ = ("send", "droppable")

    def __init__(self, send: Callable[[], None], droppable: bool) -> None:
        self.send, self.droppable = send, droppable


class BufferedTracker:
    """`Tracker`'s write methods, queued and sent in order from one background thread.

    Args:
        max_pending: queued writes kept at most (beyond it the oldest metric batch is dropped).
        retry_s: (first, longest) wait between attempts while the store does not answer.
    """

    def __init__(self, tracking_uri: str, run_id: str, *, max_pending: int = 5000,
                 retry_s: tuple[float, float] = (1.0, 30.0)) -> None:
        self.tracker = Tracker(tracking_uri, run_id)
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self.max_pending, self.retry_s = max_pending, retry_s
        self.dropped = 0
        self.failed_attempts = 0
        self.outage_s = 0.0
        self._queue: collections.deque[_Write] = collections.deque()
        self._cv = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._send_loop, name="shg-tracking", daemon=True)
        self._thread.start()

    # --- the Tracker interface ---------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)  # when it happened, not when it was delivered
        metrics = dict(metrics)
        self._put(lambda: self.tracker.log_metrics(metrics, step, timestamp_ms=stamp), droppable=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        params = dict(params)
        self._put(lambda: self.tracker.log_params(params), droppable=False)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        tags = dict(tags)
        self._put(lambda: self.tracker.set_tags(tags), droppable=False)

    def log_figure(self, figure, artifact_file: str) -> None:
        """Renders the figure now (PNG bytes; the figure is closed) and queues the upload."""
        import io

        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        png = buffer.getvalue()
        self._put(lambda: self._upload(png, artifact_file), droppable=False)

    def _upload(self, payload: bytes, artifact_file: str) -> None:
        folder, name = str(Path(artifact_file).parent), Path(artifact_file).name
        with tempfile.TemporaryDirectory(prefix="shg-upload-") as tmp:
            (Path(tmp) / name).write_bytes(payload)
            self.tracker.client.log_artifact(self.run_id, str(Path(tmp) / name),
                                             None if folder in ("", ".") else folder)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._put(lambda: self.tracker.log_text(text, artifact_file), droppable=False)

    def log_dict(self, values: dict, artifact_file: str) -> None:
        self._put(lambda: self.tracker.log_dict(values, artifact_file), droppable=False)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """Read straight from the store (after sending what is queued, so it is complete)."""
        self.flush(timeout_s=30.0)
        return self.tracker.metric_history(key)

    # --- delivery ----------------------------------------------------------------------------

    def pending(self) -> int:
        with self._cv:
            return len(self._queue) + int(self._busy)

    def flush(self, timeout_s: float) -> bool:
        """Waits until everything queued so far was sent; False if `timeout_s` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(min(remaining, 0.5))
        return True

    def close(self, timeout_s: float = 600.0) -> bool:
        """Sends what is left (waiting up to `timeout_s`), records any outage, stops the thread."""
        deadline = time.monotonic() + timeout_s
        delivered = self.flush(timeout_s)
        if self.failed_attempts or self.dropped:  # said on the run, once the store is back
            self.set_tags({"shg.tracking_outage_s": round(self.outage_s, 1),
                           "shg.tracking_failed_attempts": self.failed_attempts,
                           "shg.tracking_dropped": self.dropped})
            delivered = self.flush(max(deadline - time.monotonic(), 0.0))
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if not delivered:
            log.error("tracking: %d writes to run %s in %s could not be delivered within %.0f s",
                      self.pending(), self.run_id, self.tracking_uri, timeout_s)
        return delivered

    def _put(self, send: Callable[[], None], *, droppable: bool) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("BufferedTracker is closed")
            if len(self._queue) >= self.max_pending:
                for i, queued in enumerate(self._queue):
                    if queued.droppable:
                        del self._queue[i]
                        self.dropped += 1
                        break
            self._queue.append(_Write(send, droppable))
            self._cv.notify_all()

    def _send_loop(self) -> None:
        wait = self.retry_s[0]
        down_since: float | None = None
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                item = self._queue[0]
                self._busy = True
            try:
                item.send()
            except Exception as err:  # the store did not take it: keep it, wait, try again
                self.failed_attempts += 1
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("tracking: %s did not answer (%s: %s); buffering and retrying",
                                self.tracking_uri, type(err).__name__, str(err)[:200])
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
                time.sleep(wait)
                wait = min(wait * 2, self.retry_s[1])
                continue
            with self._cv:
                self._queue.popleft()
                self._busy = False
                self._cv.notify_all()
            if down_since is not None:
                self.outage_s += time.monotonic() - down_since
                log.warning("tracking: %s is back after %.0f s; sending %d buffered writes",
                            self.tracking_uri, time.monotonic() - down_since, len(self._queue))
                down_since = None
            wait = self.retry_s[0]
