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
    cfg = TrackingServerConfig(host="127.0.0.1", port=_free_port(), workdir=str(tmp_path / "store"))
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
