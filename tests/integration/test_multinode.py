"""The workflow on a Ray cluster of several nodes that loses one while it trains.

This test starts, on this machine, everything a team's setup has (each in its own process,
stopped at the end also when the test fails):

- a Ray cluster of `ray start` processes: a head (driver, dashboard/Jobs API, 1 CPU) and two
  worker nodes (1 CPU each), every worker node offering one unit of the custom resource
  `trainer`; the training workers ask for one (`train.worker_resource=trainer`), so the two
  of them run on two different worker nodes;
- a PostgreSQL 15 cluster and an S3 server (moto), from tests/services.py, and `shg
  tracking-server` over them (the fixtures of tests/integration/test_team_tracking.py);
- the work dir on S3 (`--workdir s3://…/w`): prepared data, Ray Train's storage_path and its
  checkpoints, the workflow summary and the exported model. The S3 endpoint and keys are in
  the cluster's environment (its own identity), never in the job's.

`shg submit --follow` sends the smoke-size workflow (mid-epoch checkpoints every 2 steps) as a
Ray job. Once Ray Train's checkpoint snapshot in S3 names a mid-epoch checkpoint, every process
of the worker node that runs rank 0 is killed (SIGKILL, as a lost machine), and a replacement
node joins (as an autoscaler would). The run must finish from that checkpoint in S3: the job
succeeds, one MLflow training run (resumed inside epoch 0) with a champion, the new worker
group again on two different nodes, and the champion loads back from the S3 artifact store
through the tracking server and predicts. Timings are printed (pytest -s), never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from services import free_port
from test_team_tracking import stores, team_server  # noqa: F401  (fixtures: PostgreSQL + S3 + server)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
WORKDIR_PREFIX = "w"
# The smoke profile, smaller: 2 workers, 2 epochs of a few steps, a checkpoint every 2 steps.
SMOKE = ("synth.people=48", "synth.workers=1", "model.stacks=1", "model.channels=8", "train.epochs=2",
         "train.val_max_people=8", "train.val_grid_people=2", "train.log_every=1",
         "train.checkpoint_every_steps=2", "train.max_failures=3", "train.worker_resource=trainer")  # fmt: skip


class RayNodes:
    """`ray start --block` processes, one per node, each in its own session (so that a node's
    processes, workers included, are found by session id and killed together)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.dashboard = ""
        self.gcs = ""

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        temp_dir = self.root / name  # per node: its logs and sockets apart (short: socket paths)
        temp_dir.mkdir()
        log = open(self.root / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(
            [str(VENV_BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1",
             f"--temp-dir={temp_dir}", "--object-store-memory", str(150 * 2**20),
             f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}", *args],
            env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def start_head(self) -> None:
        port, dashboard = free_port(), free_port()
        # Node loss is noticed after 3 missed health checks a second apart (Ray's default: 5 × 3 s).
        env = {**self.env, "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
        self._start("head", ["--head", f"--port={port}", "--num-cpus", "1", "--dashboard-host", "127.0.0.1",
                             f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
                             "--include-dashboard=true"], env)  # fmt: skip
        self.gcs, self.dashboard = f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"

    def start_worker(self, name: str) -> None:
        self._start(name, [f"--address={self.gcs}", "--num-cpus", "1",
                           "--resources", json.dumps({"trainer": 1, f"shg_node_{name}": 1})])  # fmt: skip

    def alive_nodes(self) -> dict[str, str]:
        """{node name: Ray node id} of the nodes this object started that Ray reports ALIVE."""
        from ray.util.state import list_nodes

        named = {}
        for node in list_nodes(address=self.dashboard, filters=[("state", "=", "ALIVE")]):
            names = [r[len("shg_node_"):] for r in node.resources_total if r.startswith("shg_node_")]
            named[names[0] if names else "head"] = node.node_id
        return named

    def wait_for(self, names: set[str], timeout_s: float = 120.0) -> None:
        from pipelines.orchestration import submit as jobs

        deadline = time.monotonic() + timeout_s
        while True:
            failed = [n for n, p in self.procs.items() if p.poll() is not None and n in names]
            assert not failed, f"ray start exited for {failed}: {(self.root / f'{failed[0]}.log').read_text()[-3000:]}"
            try:
                jobs.client(self.dashboard).list_jobs()
                if names <= set(self.alive_nodes()):
                    return
            except Exception:
                pass
            assert time.monotonic() < deadline, f"nodes {names} not up after {timeout_s:.0f} s"
            time.sleep(0.5)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Every process of the node (its `ray start`, raylet, agents and workers) gets `sig`."""
        proc = self.procs[name]
        for pid in _session_pids(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def stop_all(self) -> None:
        for name in [n for n in self.procs if n != "head"] + ["head"]:
            if name in self.procs and self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)  # `ray start --block` stops its processes
        for name, proc in self.procs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            self.kill(name)  # stragglers of that node's session only


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, s in (line.split() for line in out.splitlines()) if int(s) == sid]


def _train_workers(dashboard: str) -> dict[str, str]:
    """{actor id: node id} of the Ray Train workers ALIVE now."""
    from ray.util.state import list_actors

    alive = list_actors(address=dashboard, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    return {a.actor_id: a.node_id for a in alive}


def _group_of_two(dashboard: str, not_of: dict[str, str] | None = None) -> dict[str, str]:
    """The two ALIVE training workers ({actor id: node id}), none of them in `not_of`; {} if not."""
    workers = _train_workers(dashboard)
    return workers if len(workers) == 2 and not set(workers) & set(not_of or {}) else {}


def _snapshot(s3) -> str:
    """Ray Train's checkpoint_manager_snapshot.json of the run under the work dir ('' before)."""
    keys = [k for k in s3.keys(WORKDIR_PREFIX + "/") if k.endswith("/checkpoint_manager_snapshot.json")]
    if not keys:
        return ""
    return s3.client().get_object(Bucket=s3.bucket, Key=keys[0])["Body"].read().decode(errors="replace")


def _wait(what: str, check, deadline: float, submitter: subprocess.Popen, log: Path, every_s: float = 0.3):
    while not (value := check()):
        assert submitter.poll() is None, f"the job ended before {what}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-4000:]}"
        time.sleep(every_s)
    return value


def test_workflow_job_survives_a_lost_worker_node(stores, team_server):  # noqa: F811
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from pipelines.tracking.model_io import download_model

    test_started = time.monotonic()
    _, s3, _ = stores
    url, _, _ = team_server
    root = Path(tempfile.mkdtemp(prefix="shg-mn-", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the job runs the shipped copy
    env.update(s3.env(), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", SHG_STATE_DIR=str(root / "state"),
               PATH=f"{VENV_BIN}{os.pathsep}{env['PATH']}")  # fmt: skip
    nodes = RayNodes(root, env)
    submitter = None
    try:
        started = time.monotonic()
        nodes.start_head()
        nodes.wait_for({"head"})
        nodes.start_worker("w1")
        nodes.start_worker("w2")
        nodes.wait_for({"head", "w1", "w2"})
        cluster_s = time.monotonic() - started

        log = root / "submit.log"
        workdir = f"s3://{s3.bucket}/{WORKDIR_PREFIX}"
        submit_env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "PYTHONPATH": str(REPO)}
        with open(log, "wb") as out:
            submitter = subprocess.Popen(
                [str(VENV_BIN / "shg"), "submit", "--address", nodes.dashboard, "--follow", "--",
                 "--profile", "smoke", "--workdir", workdir, "--tracking-uri", url, *SMOKE],
                env=submit_env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 540  # the job took 273 s, and its restart ~2 min, on a busy 2-core CPU
        node_names = nodes.alive_nodes()
        first = _wait("two training workers", lambda: _group_of_two(nodes.dashboard), deadline, submitter, log)
        assert len(set(first.values())) == 2, f"both training workers on one node: {first}"
        assert node_names["head"] not in first.values(), "a training worker on the head node"
        _wait("a mid-epoch checkpoint in S3", lambda: "epoch_0000_step_" in _snapshot(s3), deadline, submitter, log)
        checkpoints_before = _snapshot(s3)

        victim = next(n for n, node_id in node_names.items() if node_id == next(iter(first.values())))
        killed_at = time.monotonic()
        nodes.kill(victim)
        nodes.start_worker("w3")  # the replacement node, as an autoscaler would add one
        second = _wait("a new worker group", lambda: _group_of_two(nodes.dashboard, not_of=first),
                       deadline, submitter, log, every_s=0.5)  # fmt: skip
        workers_back_s = time.monotonic() - killed_at
        _wait("a checkpoint after the restart", lambda: _snapshot(s3) not in ("", checkpoints_before),
              deadline, submitter, log, every_s=0.5)  # fmt: skip
        resumed_s = time.monotonic() - killed_at
        assert len(set(second.values())) == 2 and node_names[victim] not in second.values(), second

        assert submitter.wait(max(1.0, deadline - time.monotonic())) == 0, log.read_text()[-4000:]
        output = log.read_text()
        assert "SUCCEEDED" in output and "register=ran" in output, output[-4000:]
        job_s = time.monotonic() - started - cluster_s

        # One training run, resumed inside epoch 0, and its champion; checkpoints in S3.
        summaries = [k for k in s3.keys(f"{WORKDIR_PREFIX}/workflow/") if k.endswith(".json")]
        assert len(summaries) == 1, summaries
        summary = json.loads(s3.client().get_object(Bucket=s3.bucket, Key=summaries[0])["Body"].read())
        assert [s["status"] for s in summary["steps"]] == ["ran"] * 4
        client = MlflowClient(url)
        train = client.get_run(summary["train_run_id"])
        assert train.info.status == "FINISHED"
        assert train.data.tags["train.resumed_in_epoch"].startswith("epoch 0, "), train.data.tags
        children = client.search_runs([train.info.experiment_id],
                                      filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")
        assert sorted(c.data.tags.get("shg.stage", "train") for c in children) == ["evaluate", "train"]
        assert len(client.search_runs([train.info.experiment_id])) == 3  # the workflow, train, evaluate
        champion = client.get_model_version_by_alias("stacked-hourglass", "champion")
        assert champion.run_id == train.info.run_id
        run_name = summary["steps"][1]["detail"]["run_name"]
        assert any(k.startswith(f"{WORKDIR_PREFIX}/{run_name}/epoch_0001") for k in s3.keys(WORKDIR_PREFIX + "/"))

        # The registered model comes back from the S3 artifact store, through the server.
        folder = download_model("models:/stacked-hourglass@champion", root / "champion", tracking_uri=url)
        pyfunc = mlflow.pyfunc.load_model(folder)
        image = np.random.default_rng(0).integers(0, 256, size=(96, 80, 3), dtype=np.uint8)
        (row,) = pyfunc.predict(pd.DataFrame({"image": [image]})).to_dict("records")
        keypoints = np.asarray(row["keypoints"], dtype=float)
        assert keypoints.shape == (16, 2) and np.isfinite(keypoints).all()
        assert [k for k in s3.keys("artifacts/") if k.endswith("/MLmodel")]
        print(f"\nmulti-node: head + 2 worker nodes up in {cluster_s:.1f} s; workers on {sorted(first.values())}; "
              f"node {victim} killed after checkpoint; new worker group ALIVE {workers_back_s:.1f} s after the kill, "
              f"first checkpoint after the restart {resumed_s:.1f} s after it, on {sorted(second.values())}; "
              f"job (submit to SUCCEEDED) {job_s:.1f} s; test {time.monotonic() - test_started:.1f} s")  # fmt: skip
    finally:
        if submitter is not None and submitter.poll() is None:
            os.killpg(submitter.pid, signal.SIGKILL)
            submitter.wait()
        nodes.stop_all()
        shutil.rmtree(root, ignore_errors=True)
