"""`shg tracking-server` with authentication (the default), against the real MLflow basic-auth app.

The real command in a subprocess on a free port of 127.0.0.1 (the auth app needs Flask-WTF,
`mlflow[auth]`). The test then acts as four callers over HTTP: nobody (refused, 401), the admin
(password read from the 0600 file the command generated; creates a user `alice`), the gate
account (training side: MLFLOW_TRACKING_USERNAME/PASSWORD in the environment, as a training job
sets them; logs a run, registers a version, moves `champion`) and alice (reads the champion, but
moving it, deleting it or adding a version is refused with 403). A run's start-up check
(`check_reachable`) refuses a server that will not take its login, before anything is trained.
SIGTERM to the shg process ends it all.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from services import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("flask_wtf") is None,
                       reason="MLflow's basic-auth app needs Flask-WTF: pip install 'mlflow[auth]==3.17.2'"),
]
MODEL = "stacked-hourglass"


def _call(url: str, path: str, *, user: tuple[str, str] | None = None, payload: dict | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url + path, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, state folder) of `shg tracking-server --workdir tmp` once it says it is ready."""
    tmp_path = tmp_path_factory.mktemp("auth-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "shg.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SHG_TRACKING_"))}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("shg")), "tracking-server", "--port", str(port),
                                 "--workdir", str(tmp_path / "w")], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "tracking server ready" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"shg tracking-server not ready ({proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, tmp_path / "w" / "tracking-auth"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_only_the_gate_account_moves_the_champion(server, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    url, state = server
    # Nobody logged in: refused, reading as well as moving the alias.
    assert _call(url, "/api/2.0/mlflow/experiments/search?max_results=1")[0] == 401
    status, _ = _call(url, "/api/2.0/mlflow/registered-models/alias",
                      payload={"name": MODEL, "alias": "champion", "version": "1"})  # fmt: skip
    assert status == 401

    # The secrets: generated into 0600 files of a 0700 folder; the user store lives there too.
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("admin.password", "gate.password", "flask.secret"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert (state / "basic_auth.db").is_file() and not (state.parents[1] / "basic_auth.db").exists()
    admin = ("admin", (state / "admin.password").read_text().strip())
    gate = ("gate", (state / "gate.password").read_text().strip())

    # The admin makes a user account for a person.
    alice = ("alice", "alice-password-1234")
    status, body = _call(url, "/api/2.0/mlflow/users/create", user=admin,
                         payload={"username": alice[0], "password": alice[1]})  # fmt: skip
    assert status == 200, body

    # The gate account, as a training job logs in: a run, a registered version, the champion.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", gate[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", gate[1])
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment_id = client.create_experiment("retrain")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "pckh", 0.5)
    client.log_text(run.info.run_id, "a model", "model/MLmodel")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(MODEL, "champion", version.version)
    assert client.get_model_version_by_alias(MODEL, "champion").version == version.version

    # Alice reads the champion, but cannot move it, delete it, or add a version to the model.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", alice[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", alice[1])
    assert client.get_model_version_by_alias(MODEL, "champion").version == version.version
    for attempt in (lambda: client.set_registered_model_alias(MODEL, "champion", version.version),
                    lambda: client.delete_registered_model_alias(MODEL, "champion"),
                    lambda: client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)):
        with pytest.raises(MlflowException) as refused:
            attempt()
        assert refused.value.get_http_status_code() == 403, refused.value
    status, body = _call(url, "/api/2.0/mlflow/registered-models/alias", user=alice,
                         payload={"name": MODEL, "alias": "champion", "version": version.version})  # fmt: skip
    assert status == 403, body
    # ... nor squat the model under another owner: it exists, owned by the gate.
    with pytest.raises(MlflowException):
        client.create_registered_model(MODEL)


def test_a_run_without_the_gates_login_is_stopped_before_it_trains(server, monkeypatch):
    from pipelines.tracking.uris import TrackingUnavailable, check_reachable

    url, state = server
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TrackingUnavailable, match="401 to no login.*MLFLOW_TRACKING_USERNAME=gate"):
        check_reachable(url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "gate")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-gates-password")
    with pytest.raises(TrackingUnavailable, match="401 to user 'gate'") as refused:
        check_reachable(url)
    assert "not-the-gates-password" not in str(refused.value)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", (state / "gate.password").read_text().strip())
    check_reachable(url)  # the gate's login: the run goes on
