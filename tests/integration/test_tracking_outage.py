"""MLflow down mid-training must not stop training: `BufferedTracker` against a real server.

The tracking server (a real `mlflow server` process on 127.0.0.1) is frozen with SIGSTOP for
longer than the client's own retries, while metrics keep being logged; every write returns at
once, and after SIGCONT every step's metrics arrive in the one run.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from pipelines.tracking.buffered import BufferedTracker
from pipelines.tracking.server import TrackingServerConfig, start_server, stop_server, wait_until_ready


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, monkeypatch):
    # The client gives up on a request after ~1 s and never retries by itself: the outage below
    # (6 s) is far longer than its retries, so only the buffer can save the writes.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cfg = TrackingServerConfig(host="127.0.0.1", port=_free_port(), workdir=str(tmp_path / "store"), auth=False)
    proc = start_server(cfg, log_path=tmp_path / "server.log")
    try:
        wait_until_ready(cfg.url, proc=proc)
        yield cfg.url, proc
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
        stop_server(proc)


@pytest.mark.slow
def test_a_frozen_tracking_server_loses_no_metrics_and_never_blocks_the_caller(server):
    from mlflow import MlflowClient

    url, proc = server
    client = MlflowClient(url)
    run_id = client.create_run(client.create_experiment("outage")).info.run_id
    tracker = BufferedTracker(url, run_id, retry_s=(0.2, 1.0))
    tracker.log_metrics({"loss": 1.0}, step=0)
    assert tracker.flush(timeout_s=30)

    os.killpg(proc.pid, signal.SIGSTOP)  # the server stops answering (no RST: requests hang)
    slowest = 0.0
    for step in range(1, 31):
        started = time.monotonic()
        tracker.log_metrics({"loss": 1.0 / (step + 1), "loss/stack_0": 2.0 / (step + 1)}, step=step)
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.2)
    tracker.set_tags({"phase": "after-outage"})
    assert not tracker.flush(timeout_s=0.5)  # still down: writes are held, not lost
    assert tracker.pending() > 0 and tracker.failed_attempts > 0
    os.killpg(proc.pid, signal.SIGCONT)

    assert tracker.close(timeout_s=60)
    assert slowest < 0.05  # training never waited on MLflow
    history = {m.step: m.value for m in client.get_metric_history(run_id, "loss")}
    assert sorted(history) == list(range(31)) and history[30] == pytest.approx(1 / 31)
    assert len(client.get_metric_history(run_id, "loss/stack_0")) == 30
    tags = client.get_run(run_id).data.tags
    assert tags["phase"] == "after-outage"
    assert float(tags["shg.tracking_outage_s"]) > 0 and tags["shg.tracking_dropped"] == "0"
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


def test_memory_stays_bounded_by_dropping_the_oldest_metrics_first(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("b", artifact_location=(tmp_path / "a").as_uri())).info.run_id
    tracker = BufferedTracker(uri, run_id, max_pending=5)
    with tracker._cv:  # hold the sender so the queue fills as during an outage
        tracker.set_tags({"kept": "yes"})
        for step in range(10):
            tracker.log_metrics({"m": float(step)}, step=step)
        assert len(tracker._queue) == 5 and tracker.dropped == 6
    assert tracker.close(timeout_s=30)
    assert client.get_run(run_id).data.tags["kept"] == "yes"  # tags are never dropped
    assert [m.step for m in client.get_metric_history(run_id, "m")] == [6, 7, 8, 9]


# --- writes the store refuses for good -------------------------------------------------------


def _sqlite_run(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("refused", artifact_location=(tmp_path / "a").as_uri())
    return uri, client, client.create_run(experiment).info.run_id


def test_a_refused_write_is_dropped_and_counted_not_retried_before_the_next(tmp_path, caplog):
    """A parameter logged again with another value is refused (HTTP 400) by the store: it is
    dropped with a warning, and the metrics and tags queued after it still arrive."""
    uri, client, run_id = _sqlite_run(tmp_path)
    tracker = BufferedTracker(uri, run_id, retry_s=(0.2, 1.0))
    tracker.log_params({"lr": 0.1})
    tracker.log_params({"lr": 0.2})  # MLflow params are write-once: refused for good
    for step in range(5):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    tracker.set_tags({"after": "yes"})
    started = time.monotonic()
    assert tracker.close(timeout_s=20)
    assert time.monotonic() - started < 10
    assert tracker.rejected == 1 and tracker.failed_attempts == 0
    run = client.get_run(run_id)
    assert run.data.params["lr"] == "0.1" and run.data.tags["after"] == "yes"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1, 2, 3, 4]
    assert run.data.tags["shg.tracking_rejected"] == "1"
    assert "refused the params" in caplog.text and "HTTP 400" in caplog.text


def test_writes_to_a_deleted_run_are_dropped_and_close_returns(tmp_path, caplog):
    uri, client, run_id = _sqlite_run(tmp_path)
    tracker = BufferedTracker(uri, run_id, retry_s=(0.2, 1.0))
    tracker.log_metrics({"loss": 1.0}, step=0)
    assert tracker.flush(timeout_s=20)
    client.delete_run(run_id)  # someone deleted the run in the UI mid-training
    for step in range(1, 4):
        tracker.log_metrics({"loss": 0.5}, step=step)
    tracker.set_tags({"phase": "late"})
    started = time.monotonic()
    assert tracker.close(timeout_s=20)  # nothing left pending: refused writes are not held
    assert time.monotonic() - started < 10
    # 3 metric batches, the tag, and close()'s own outage tags: all refused, none retried
    assert tracker.rejected == 5 and tracker.failed_attempts == 0
    assert "must be in the 'active' state" in caplog.text


class _LimitingProxy:
    """A real HTTP proxy in front of a tracking server that answers 413 to any request body
    larger than `limit` bytes (as nginx's client_max_body_size does); forwards the rest."""

    def __init__(self, upstream: str, limit: int) -> None:
        import http.server
        import threading
        import urllib.error
        import urllib.request

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else None
                if size > limit:
                    self.send_response(413)
                    self.send_header("Content-Type", "text/html")
                    page = b"<html><body>413 Request Entity Too Large</body></html>"
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                request = urllib.request.Request(upstream + self.path, data=body, method=self.command,
                                                 headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                try:
                    with urllib.request.urlopen(request, timeout=30) as reply:
                        status, headers, payload = reply.status, reply.headers, reply.read()
                except urllib.error.HTTPError as err:
                    status, headers, payload = err.code, err.headers, err.read()
                self.send_response(status)
                for key in ("Content-Type",):
                    if headers.get(key):
                        self.send_header(key, headers[key])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.slow
def test_a_413_from_a_proxy_drops_that_upload_and_the_next_writes_arrive(server, caplog):
    from mlflow import MlflowClient

    url, _ = server
    proxy = _LimitingProxy(url, limit=64 * 1024)
    try:
        client = MlflowClient(proxy.url)
        run_id = client.create_run(client.create_experiment("proxied")).info.run_id
        tracker = BufferedTracker(proxy.url, run_id, retry_s=(0.2, 1.0))
        tracker.log_text("x" * (256 * 1024), "big/table.txt")  # over the proxy's limit
        tracker.log_text("small", "small/table.txt")
        tracker.log_metrics({"loss": 0.25}, step=7)
        assert tracker.close(timeout_s=30)
        assert tracker.rejected == 1
        assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.25]
        assert [f.path for f in client.list_artifacts(run_id, "small")] == ["small/table.txt"]
        assert not client.list_artifacts(run_id, "big")
        assert "HTTP 413" in caplog.text and "big/table.txt" in caplog.text
    finally:
        proxy.close()
