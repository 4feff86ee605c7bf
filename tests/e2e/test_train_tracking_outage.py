"""A tracking server that dies during `shg train` and is still down when training ends costs a
re-run of the command, never the trained model.

Real parts only: `shg prepare` and `shg train` as a user runs them (each its own local Ray
cluster), and a real `mlflow server` process on a sqlite store, killed (SIGKILL) while the
model trains, then started again on the same port and store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.services import free_port

VENV_BIN = Path(sys.executable).parent
TINY = ["model.stacks=1", "model.channels=8", "data.input_size=64", "train.epochs=1", "train.workers=1",
        "train.batch_size=8", "train.val_max_people=8", "train.log_every=1", "train.tracking_flush_s=5"]


def _mlflow_server(store: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination",
         str(store / "mlartifacts"), "--workers", "1"],
        stdout=open(store / f"server-{port}-{time.time_ns()}.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    import urllib.request

    while time.monotonic() < deadline:
        assert proc.poll() is None, "mlflow server exited while starting"
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} did not start")


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


@pytest.mark.slow
def test_a_tracking_outage_at_the_end_of_training_keeps_the_model_and_a_rerun_registers_it(tmp_path):
    from mlflow import MlflowClient

    from dataprep.synth import SynthConfig, generate

    generate(SynthConfig(people=24, seed=5, val_fraction=0.25, workers=1), tmp_path / "synth")
    ray_tmp = tempfile.mkdtemp(prefix="shg-ray-", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([str(VENV_BIN / "shg"), "prepare", "--annotations", str(tmp_path / "synth" / "annotations.json"),
                           "--images", str(tmp_path / "synth" / "images"), "--out", str(tmp_path / "prepared")],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    store, port = tmp_path / "store", free_port()
    store.mkdir()
    url = f"http://127.0.0.1:{port}"
    server = _mlflow_server(store, port)
    command = [str(VENV_BIN / "shg"), "train", "--data", str(tmp_path / "prepared"), "--tracking-uri", url,
               "--no-progress", *TINY, f"train.storage={tmp_path / 'runs'}"]
    try:
        train = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []

        def read() -> None:
            for line in train.stdout:
                lines.append(line)
                if "train: MLflow run" in line or "resuming run" in line:
                    time.sleep(2)  # the run is created and open: the server dies now
                    _kill(server)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        code = train.wait(timeout=600)
        reader.join(10)
        output = "".join(lines)
        assert server.poll() is not None, output  # it was killed during the run
        assert code == 3, output
        assert "Traceback" not in output, output
        assert "did not take the result" in output and "The trained model is kept" in output
        assert "run the same `shg train` command" in output
        models = list((tmp_path / "runs" / "models").glob("*/model"))
        assert len(models) == 1 and (models[0] / "weights.pt").is_file() and (models[0] / "card.json").is_file()
        records = list((tmp_path / "runs").glob("*/shg_run.json"))
        assert len(records) == 1 and json.loads(records[0].read_text())["status"] == "trained"

        server = _mlflow_server(store, port)  # the store is back
        started = time.monotonic()
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        output = again.stdout + again.stderr
        assert again.returncode == 0, output
        assert "was trained before but not recorded" in output
        assert "registry: stacked-hourglass v1 -> champion" in output
        record = json.loads(records[0].read_text())
        assert record["status"] == "finished"
        run = MlflowClient(url).get_run(record["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["registry.version"] == "1"
        assert time.monotonic() - started < 300
    finally:
        _kill(server)
