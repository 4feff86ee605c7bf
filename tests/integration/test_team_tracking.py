"""MLflow as a team runs it (infra/k8s/mlflow.yaml): PostgreSQL backend store, S3 artifact store.

The test starts its own PostgreSQL 15 cluster and its own S3 endpoint (moto in server mode) on
127.0.0.1 (tests/services.py), then the real tracking server through `shg tracking-server
--artifacts-destination s3://…` (the PostgreSQL URI, password included, in MLFLOW_BACKEND_STORE_URI
so that `ps` does not show it). A tiny workflow (train + register, as tests/e2e/test_workflow.py)
logs to that server, and the test reads what landed where: rows in PostgreSQL's own tables,
objects in the bucket, and the champion loaded back through the server. The training side has no
S3 keys at all: the server proxies every artifact (`--serve-artifacts`), as in infra/.
Timings are printed (pytest -s), never asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from services import free_port, postgres_cluster, s3_server
from tiny_run import TINY, VENV_BIN

pytestmark = pytest.mark.slow
S3_PREFIX = "artifacts"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(PostgresCluster, S3Server, seconds to start both) for the tests of this module."""
    logs = tmp_path_factory.mktemp("team-stores")
    started = time.monotonic()
    with postgres_cluster() as pg, s3_server(log_path=logs / "moto.log") as s3:
        yield pg, s3, time.monotonic() - started


@pytest.fixture(scope="module")
def team_server(stores, tmp_path_factory):
    """`shg tracking-server` over the stores, stopped (SIGINT, as Ctrl-C) after the module."""
    pg, s3, _ = stores
    root = tmp_path_factory.mktemp("team-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **s3.env(), "MLFLOW_BACKEND_STORE_URI": pg.uri}
    log = open(root / "server.log", "wb")
    started = time.monotonic()
    shg = subprocess.Popen(
        [str(VENV_BIN / "shg"), "tracking-server", "--port", str(port), "--workdir", str(root / "workdir"),
         "--artifacts-destination", f"s3://{s3.bucket}/{S3_PREFIX}", "--no-auth"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_ready(url, shg, root / "server.log")
        yield url, root, time.monotonic() - started
    finally:
        if shg.poll() is None:
            shg.send_signal(signal.SIGINT)  # the command's Ctrl-C path stops the server's group
            try:
                shg.wait(30)
            except subprocess.TimeoutExpired:
                shg.kill()
                shg.wait(10)
        log.close()
    assert not _answers(url), "the tracking server still answers after `shg tracking-server` stopped"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"shg tracking-server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if _answers(url):
            return
        time.sleep(0.5)
    pytest.fail(f"tracking server not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _rows(pg, query: str, args=()) -> list[tuple]:
    connection = pg.connect()
    try:
        with connection.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        connection.close()


def test_training_and_champion_go_to_postgres_and_s3_and_load_back(stores, team_server, ray_local, tmp_path):
    import mlflow
    import pandas as pd

    from pipelines.orchestration.plan import WorkflowConfig
    from pipelines.orchestration.workflow import run_workflow
    from pipelines.tracking.model_io import download_model

    pg, s3, stores_s = stores
    url, root, server_s = team_server
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(os.environ)  # the client has no S3 keys

    started = time.monotonic()
    result = run_workflow(WorkflowConfig(profile="smoke", workdir=str(root / "client"), tracking_uri=url,
                                         overrides=TINY))  # fmt: skip
    workflow_s = time.monotonic() - started
    assert result.step("train").status == "ran" and result.step("register").status == "ran"

    # PostgreSQL holds the runs, their params and metrics (MLflow's own tables, read directly).
    runs = dict(_rows(pg, "SELECT run_uuid, status FROM runs"))
    assert runs[result.train_run_id] == "FINISHED" and runs[result.parent_run_id] == "FINISHED"
    (n_metrics,) = _rows(pg, "SELECT count(*) FROM metrics WHERE run_uuid = %s AND key = 'loss'", [result.train_run_id])[0]
    (n_params,) = _rows(pg, "SELECT count(*) FROM params WHERE run_uuid = %s", [result.train_run_id])[0]
    assert n_metrics >= 1 and n_params >= 1
    aliases = _rows(pg, "SELECT name, alias, version FROM registered_model_aliases")
    assert ("stacked-hourglass", "champion", 1) in aliases
    (artifact_uri,) = _rows(pg, "SELECT artifact_uri FROM runs WHERE run_uuid = %s", [result.train_run_id])[0]
    assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri  # proxied: clients never see S3

    # The bucket holds the artifacts: the logged model, and nothing went to a local folder.
    keys = s3.keys(S3_PREFIX + "/")
    assert [k for k in keys if k.endswith("/MLmodel")], keys[:20]
    assert any(k.endswith((".pt", ".pth", ".safetensors", ".bin")) for k in keys), keys[:20]
    assert not (root / "workdir" / "mlartifacts").exists() and not (root / "workdir" / "mlflow.db").exists()
    assert not (root / "client" / "mlflow.db").exists()

    # The champion loads back through the server (artifacts streamed from S3) and predicts.
    started = time.monotonic()
    local = download_model("models:/stacked-hourglass@champion", tmp_path / "champion", tracking_uri=url)
    pyfunc = mlflow.pyfunc.load_model(local)
    image = np.random.default_rng(0).integers(0, 256, size=(96, 80, 3), dtype=np.uint8)
    out = pyfunc.predict(pd.DataFrame({"image": [image]}))
    load_s = time.monotonic() - started
    (row,) = out.to_dict("records")
    keypoints = np.asarray(row["keypoints"], dtype=float)
    assert keypoints.shape == (16, 2) and np.isfinite(keypoints).all()
    assert np.isfinite(np.asarray(row["confidence"], dtype=float)).all()
    print(f"\nteam tracking: PostgreSQL + moto S3 started in {stores_s:.1f} s; `shg tracking-server` "
          f"ready in {server_s:.1f} s; workflow (train + register) {workflow_s:.1f} s; "
          f"champion load + predict {load_s:.1f} s; {len(runs)} runs, {n_metrics} loss points, "
          f"{len(keys)} S3 objects")


def test_unreachable_backend_store_is_one_clear_error(stores):
    """A stopped database: the command says which store (password hidden) and exits 1."""
    from pipelines.cli.app import build_app

    pg, _, _ = stores
    dead = pg.uri.replace(f":{pg.port}/", f":{free_port()}/")
    reply = CliRunner().invoke(build_app(), ["tracking-server", "--port", str(free_port())],
                               env={"MLFLOW_BACKEND_STORE_URI": dead})  # fmt: skip
    assert reply.exit_code == 1, reply.output
    assert "does not accept a connection" in reply.output and "Start the database" in reply.output
    assert f"postgresql+psycopg2://{pg.user}:***@127.0.0.1:" in reply.output
    assert pg.password not in reply.output


def test_missing_bucket_is_one_clear_error(stores, monkeypatch):
    from pipelines.tracking.server import StoreUnavailable, TrackingServerConfig, start_server

    pg, s3, _ = stores
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    cfg = TrackingServerConfig(port=free_port(), backend_store_uri=pg.uri, artifacts_destination="s3://no-such-bucket/x")
    with pytest.raises(StoreUnavailable, match="bucket 'no-such-bucket' at http://127.0.0.1:.*cannot be reached"):
        start_server(cfg)
