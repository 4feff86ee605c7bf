"""A Tracker whose writes never stall or fail training: sent from a background thread.

Rank 0 logs through `BufferedTracker`. Each write (metrics, params, tags, artifacts) is queued
and returns at once; one daemon thread sends the queue in order, and when the store does not
answer (a tracking server restarting, a network hiccup, a refused upload) it keeps the item and
retries with backoff until the store is back: nothing is lost and training never waits on
MLflow. Memory is bounded: past `max_pending` queued writes the oldest *metric* batch is dropped
(and counted); parameters, tags and artifacts are never dropped for pressure.

A write the store *refuses* for good (an HTTP 4xx answer: a deleted run, a changed parameter,
a proxy's 413 for a large upload; see `permanent_rejection`) is not retried: retrying cannot
succeed, and it would hold every later write behind it. It is dropped with a warning naming the
status and counted (`rejected`). Server errors (5xx), timeouts, 429 and connection failures are
an outage: retried. `close()` sends what is left and records the outage on the run
(`shg.tracking_outage_s`, `shg.tracking_dropped`, `shg.tracking_rejected`).
"""

from __future__ import annotations

import collections
import io
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines.tracking.tracker import Tracker

# Imported where used: mlflow, matplotlib (seconds to load: only writing to the store or drawing a
# figure needs them)

log = logging.getLogger(__name__)


# MLflow's client words a non-JSON error answer (a proxy's) "... failed with error code 413 != 200"
# and files it as INTERNAL_ERROR (500): the status is read back from the message.
_STATUS_IN_MESSAGE = re.compile(r"failed with error code (\d{3})")
# 4xx answers that mean "not now" rather than "never": timeout, too early, rate limited.
_RETRIED_4XX = frozenset({408, 425, 429})


def permanent_rejection(err: BaseException) -> int | None:
    """The HTTP status (4xx) by which the store refused a write for good, or None when the
    error is worth retrying (5xx, a timeout, a connection failure, anything not from the store).

    Covers MLflow's exceptions (REST answers, and the same codes raised by a database store,
    e.g. 400 for a write to a deleted run) and `requests.HTTPError` (artifact uploads).
    """
    status: int | None = None
    response = getattr(err, "response", None)
    if response is not None and isinstance(getattr(response, "status_code", None), int):
        status = response.status_code  # requests.HTTPError from an artifact upload
    else:
        from mlflow.exceptions import MlflowException

        if isinstance(err, MlflowException):
            found = _STATUS_IN_MESSAGE.search(str(err))
            status = int(found.group(1)) if found else err.get_http_status_code()
    if status is not None and 400 <= status < 500 and status not in _RETRIED_4XX:
        return status
    return None


class _Write:
    """One queued write: the call that performs it, and whether it may be dropped under pressure."""

    __slots__ = ("send", "droppable", "what")

    def __init__(self, send: Callable[[], None], droppable: bool, what: str) -> None:
        self.send, self.droppable, self.what = send, droppable, what


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
        self.rejected = 0  # writes the store refused for good (4xx), dropped with a warning
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
        self._put(lambda: self.tracker.log_metrics(metrics, step, timestamp_ms=stamp), droppable=True,
                  what=f"metrics at step {step}")

    def log_params(self, params: Mapping[str, Any]) -> None:
        params = dict(params)
        self._put(lambda: self.tracker.log_params(params), droppable=False, what="params")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        tags = dict(tags)
        self._put(lambda: self.tracker.set_tags(tags), droppable=False, what="tags")

    def log_figure(self, figure, artifact_file: str) -> None:
        """Renders the figure now (PNG bytes; the figure is closed) and queues the upload."""
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        png = buffer.getvalue()
        self._put(lambda: self._upload(png, artifact_file), droppable=False, what=artifact_file)

    def _upload(self, payload: bytes, artifact_file: str) -> None:
        folder, name = str(Path(artifact_file).parent), Path(artifact_file).name
        with tempfile.TemporaryDirectory(prefix="shg-upload-") as tmp:
            (Path(tmp) / name).write_bytes(payload)
            self.tracker.client.log_artifact(self.run_id, str(Path(tmp) / name),
                                             None if folder in ("", ".") else folder)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._put(lambda: self.tracker.log_text(text, artifact_file), droppable=False, what=artifact_file)

    def log_dict(self, values: dict, artifact_file: str) -> None:
        self._put(lambda: self.tracker.log_dict(values, artifact_file), droppable=False, what=artifact_file)

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
        if self.failed_attempts or self.dropped or self.rejected:  # said on the run, once it is back
            self.set_tags({"shg.tracking_outage_s": round(self.outage_s, 1),
                           "shg.tracking_failed_attempts": self.failed_attempts,
                           "shg.tracking_dropped": self.dropped,
                           "shg.tracking_rejected": self.rejected})
            delivered = self.flush(max(deadline - time.monotonic(), 0.0))
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if not delivered:
            log.error("tracking: %d writes to run %s in %s could not be delivered within %.0f s",
                      self.pending(), self.run_id, self.tracking_uri, timeout_s)
        return delivered

    def _put(self, send: Callable[[], None], *, droppable: bool, what: str) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("BufferedTracker is closed")
            if len(self._queue) >= self.max_pending:
                for i, queued in enumerate(self._queue):
                    if queued.droppable:
                        del self._queue[i]
                        self.dropped += 1
                        break
            self._queue.append(_Write(send, droppable, what))
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
            except Exception as err:
                status = permanent_rejection(err)
                if status is None:  # the store did not answer: keep the write, wait, try again
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
                # refused for good: retrying cannot succeed and would hold every later write
                self.rejected += 1
                log.warning("tracking: %s refused the %s of run %s for good (HTTP %d: %s); dropped it "
                            "(%d refused so far), the next writes go on", self.tracking_uri, item.what,
                            self.run_id, status, str(err)[:200], self.rejected)
            with self._cv:  # sent, or refused for good: either way the store answered
                self._queue.popleft()
                self._busy = False
                self._cv.notify_all()
            if down_since is not None:
                self.outage_s += time.monotonic() - down_since
                log.warning("tracking: %s is back after %.0f s; sending %d buffered writes",
                            self.tracking_uri, time.monotonic() - down_since, len(self._queue))
                down_since = None
            wait = self.retry_s[0]
