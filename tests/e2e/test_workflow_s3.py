"""`shg run --workdir s3://bucket/w` against a real S3 server (moto on 127.0.0.1): the prepared
data, Ray Train's checkpoints, the workflow summary and the exported model directory go to the
bucket; a driver killed after the second epoch's checkpoint is re-run and resumes from a
checkpoint in S3 (one MLflow run, epoch 0 not trained again). What stays local (lock, sqlite store, run
record, synthetic source images) goes to `$SHG_STATE_DIR`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3_server import s3_client, s3_server

from shg_io.storage import local_state_dir, location

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# The tiny workflow of tests/e2e/test_workflow.py, three epochs so that there is a run to resume.
TINY = ("synth.people=24", "synth.workers=1", "model.stacks=1", "model.channels=8", "train.epochs=3",
        "train.workers=1", "train.batch_size=7", "train.val_max_people=8", "train.log_every=1")


@pytest.fixture(scope="module")
def bucket():
    with s3_server() as name:
        yield name


def _keys(bucket: str, prefix: str) -> list[str]:
    listing = s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.mark.slow
def test_shg_run_on_an_s3_workdir_checkpoints_there_and_resumes(bucket, tmp_path, monkeypatch):
    workdir = f"s3://{bucket}/w"
    monkeypatch.setenv("SHG_STATE_DIR", str(tmp_path / "state"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [str(VENV_BIN / "shg"), "run", "--profile", "smoke", "--workdir", workdir, *TINY]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        # Killed once epoch 1's checkpoint is in S3: by then Ray Train has recorded epoch 0's (a
        # driver killed the moment a checkpoint's files land may not have recorded it yet).
        while not any("/epoch_0001/" in k for k in _keys(bucket, "w/")):
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint reached S3"
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray cluster it started
        first.wait()
    assert location(f"{workdir}/data/prepared/manifest.json").is_file()

    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming run" in again.stdout + again.stderr

    keys = _keys(bucket, "w/")
    summaries = [k for k in keys if k.startswith("w/workflow/") and k.endswith(".json")]
    assert len(summaries) == 1  # the killed run never got to write one
    summary = json.loads(location(f"s3://{bucket}/{summaries[0]}").read_text())
    assert [s["status"] for s in summary["steps"]] == ["reused", "ran", "ran", "ran"]  # prepare: committed before
    run_name = summary["steps"][1]["detail"]["run_name"]
    assert any(k.startswith(f"w/{run_name}/epoch_0002/") for k in keys)  # checkpoints in S3
    exported = [k for k in keys if k.startswith(f"w/models/{run_name}/")]  # the model directory
    assert f"w/models/{run_name}/evaluation.json" in exported and len(exported) > 1

    # Local state: the lock and the sqlite store, keyed by the work dir URI.
    state = local_state_dir(workdir)
    assert state.parent == tmp_path / "state" and (state / ".workflow.lock").is_file()
    assert f"w/{run_name}/shg_run.json" in keys and not (tmp_path / "s3:").exists()  # beside its checkpoints
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    train_id = summary["train_run_id"]
    assert client.get_run(train_id).info.status == "FINISHED"
    history = client.get_metric_history(train_id, "epoch/loss")
    steps = sorted(m.step for m in history)
    assert set(steps) == {0, 1, 2} and steps.count(0) == 1  # epoch 0 trained once: resumed from S3
