"""`shg submit` against a real Ray head started by this test (`ray start --head` on 127.0.0.1).

The cluster is this test's own: its own temp dir, free ports, its own session; it is stopped by
the id of the `ray start --block` process (which takes its children down with it), never by a
bare `ray stop`, which would also stop other people's clusters on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipelines.orchestration import submit as jobs

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Processes whose session id is `sid` (what `ray start` started, in its own session)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, s in (line.split() for line in out.splitlines()) if int(s) == sid]


@pytest.fixture(scope="module")
def ray_head():
    """A real single-node Ray cluster with the Jobs API; yields its dashboard URL."""
    port, dashboard = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="shg-rayjobs-", dir="/tmp")  # short: Ray's socket paths
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"  # job entrypoints run `python` = this venv
    log = open(Path(temp_dir) / "ray-start.log", "wb")
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "ray"), "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1", f"--port={port}",
            "--dashboard-host", "127.0.0.1", f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
            "--num-cpus", "2", f"--temp-dir={temp_dir}", "--include-dashboard=true",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                jobs.client(url).list_jobs()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start failed; see {log.name}") from None
                time.sleep(1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its own processes on SIGTERM
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # its graceful shutdown can take ~30 s; the sweep below is enough
            proc.kill()
            proc.wait()
        for pid in _session_pids(proc.pid):  # stragglers of this session only
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def test_entrypoint_and_runtime_env_ship_the_project_without_outputs():
    cfg = jobs.SubmitConfig(address="http://x:8265", step="run", args=("--profile", "smoke", "train.epochs=1"))
    assert jobs.entrypoint(cfg) == "python -m pipelines.cli.app run --address auto --profile smoke train.epochs=1"
    env = jobs.runtime_env(cfg)
    assert Path(env["working_dir"]) == ROOT
    assert {".venv", ".git", "runs"} <= set(env["excludes"])
    assert env["env_vars"]["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["env_vars"]["SHG_GIT_COMMIT"]  # the shipped copy has no .git: record the revision
    with pytest.raises(ValueError, match="unknown step"):
        jobs.SubmitConfig(step="deploy")
    with pytest.raises(FileNotFoundError, match="not the shg project root"):
        jobs.runtime_env(jobs.SubmitConfig(working_dir="/tmp"))


def test_unreachable_jobs_api_gives_a_clear_error():
    with pytest.raises(ConnectionError, match="no Ray Jobs API at http://127.0.0.1:"):
        jobs.client(f"http://127.0.0.1:{_free_port()}")


@pytest.mark.slow
def test_submit_a_step_to_a_real_cluster_and_read_it_back(ray_head, tmp_path):
    """`shg submit --step synth` runs the shipped project on the cluster, to SUCCEEDED."""
    out = tmp_path / "synth"
    result = subprocess.run(
        [str(VENV_BIN / "shg"), "submit", "--address", ray_head, "--step", "synth", "--",
         "--out", str(out), "--people", "6", "--workers", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    assert job_id.startswith("raysubmit_")

    assert jobs.wait(ray_head, job_id, timeout_s=120) == "SUCCEEDED", jobs.logs(ray_head, job_id)
    status = subprocess.run(
        [str(VENV_BIN / "shg"), "submit", "--address", ray_head, "status", job_id],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.stdout.strip() == "SUCCEEDED"
    logs = subprocess.run(
        [str(VENV_BIN / "shg"), "submit", "--address", ray_head, "logs", job_id],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert "wrote 6 people" in logs
    annotations = json.loads((out / "annotations.json").read_text())
    assert len(annotations) == 6
    info = jobs.client(ray_head).get_job_info(job_id)
    assert info.metadata["shg.step"] == "synth"


@pytest.mark.slow
def test_stop_a_running_job(ray_head):
    job_id = jobs.client(ray_head).submit_job(entrypoint="python -c 'import time; time.sleep(300)'")
    deadline = time.monotonic() + 60
    while jobs.status(ray_head, job_id) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs.stop(ray_head, job_id) is True
    assert jobs.wait(ray_head, job_id, timeout_s=60) == "STOPPED"


@pytest.mark.slow
def test_submit_the_tiny_workflow_as_a_ray_job(ray_head, tmp_path):
    """The whole workflow as a Ray job on the cluster (`--address auto` inside the job)."""
    from tiny_run import TINY

    workdir = tmp_path / "work"
    cfg = jobs.SubmitConfig(address=ray_head, step="run",
                            args=("--profile", "smoke", "--workdir", str(workdir), *TINY))  # fmt: skip
    job_id = jobs.submit(cfg)
    final = jobs.wait(ray_head, job_id, timeout_s=300)
    output = jobs.logs(ray_head, job_id)
    assert final == "SUCCEEDED", output[-3000:]
    assert "prepare=ran" in output and "register=ran" in output
    summaries = list((workdir / "workflow").glob("*.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["config"]["address"] == "auto"
    assert [s["status"] for s in summary["steps"]] == ["ran"] * 4
