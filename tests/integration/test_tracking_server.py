"""`shg tracking-server`: a real `mlflow server` on 127.0.0.1; a training run logged over HTTP."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest
from tiny_run import TINY

from pipelines.tracking.server import (
    TrackingServerConfig,
    backend_store_uri,
    redact,
    server_command,
    server_env,
    start_server,
    stop_server,
    wait_until_ready,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def test_server_command_serves_the_workdir_store_with_one_worker(tmp_path):
    cmd = server_command(TrackingServerConfig(port=5123, workdir=str(tmp_path)))
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cmd[cmd.index("--port") + 1] == "5123"
    assert server_env()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_redact_hides_only_the_password_of_each_uri():
    assert redact("postgresql+psycopg2://mlflow:s3/cr+t=@db:5432/mlflow") == "postgresql+psycopg2://mlflow:***@db:5432/mlflow"
    assert redact("a http://u:p@h:1/x b s3://bucket/key c") == "a http://u:***@h:1/x b s3://bucket/key c"
    assert redact("sqlite:////tmp/mlflow.db http://127.0.0.1:5000") == "sqlite:////tmp/mlflow.db http://127.0.0.1:5000"


def test_a_team_store_uri_with_a_password_goes_by_environment_not_argv(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "sqlite:///elsewhere.db")
    uri = "postgresql+psycopg2://mlflow:pw@127.0.0.1:5432/mlflow"
    cfg = TrackingServerConfig(workdir=str(tmp_path), backend_store_uri=uri, artifacts_destination="s3://b/p")
    cmd = server_command(cfg)
    assert "--backend-store-uri" not in cmd and not any("pw" in part for part in cmd)
    assert cmd[cmd.index("--artifacts-destination") + 1] == "s3://b/p" and "--serve-artifacts" in cmd
    assert server_env(cfg)["MLFLOW_BACKEND_STORE_URI"] == uri
    local = TrackingServerConfig(workdir=str(tmp_path))  # the work dir's sqlite: on argv, none inherited
    assert "MLFLOW_BACKEND_STORE_URI" not in server_env(local)
    assert server_command(local)[server_command(local).index("--backend-store-uri") + 1].startswith("sqlite:///")


def test_the_server_serves_the_same_store_a_local_run_writes(tmp_path):
    from pipelines.tracking.uris import resolve_tracking_uri

    assert backend_store_uri(tmp_path) == resolve_tracking_uri(None, tmp_path) or pytest.skip(
        "MLFLOW_TRACKING_URI is set in this environment"
    )


@pytest.mark.slow
def test_training_logged_over_http_reads_back_through_the_rest_api(tmp_path, ray_local):
    from pipelines.orchestration.plan import WorkflowConfig
    from pipelines.orchestration.workflow import run_workflow

    cfg = TrackingServerConfig(port=_free_port(), workdir=str(tmp_path / "server"), auth=False)
    server = start_server(cfg, log_path=tmp_path / "server.log")
    try:
        wait_until_ready(cfg.url, proc=server)
        result = run_workflow(WorkflowConfig(
            profile="smoke", workdir=str(tmp_path / "work"), tracking_uri=cfg.url, overrides=TINY))  # fmt: skip
        assert result.step("train").status == "ran"

        run = _get(f"{cfg.url}/api/2.0/mlflow/runs/get?run_id={result.train_run_id}")["run"]
        assert run["info"]["status"] == "FINISHED"
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["mlflow.parentRunId"] == result.parent_run_id
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert "loss" in metrics
        parent = _get(f"{cfg.url}/api/2.0/mlflow/runs/get?run_id={result.parent_run_id}")["run"]
        parent_tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
        assert parent_tags["step.train"] == "ran" and parent_tags["step.register"] == "ran"
        # Stored where the server's store is, not in the client's work dir.
        assert (Path(cfg.workdir) / "mlflow.db").is_file()
        assert not (tmp_path / "work" / "mlflow.db").exists()
    finally:
        stop_server(server)
    assert server.poll() is not None  # stopped, by its pid
