"""`shg run`: the workflow's pure parts, its lock, and end to end on a tiny synthetic config.

The end-to-end tests share one tiny workflow run (`tiny_workflow`, ~40 s on 2 cores: 24
synthetic people, a 1-stack 8-channel hourglass, one epoch on one deterministic worker) in a
real local Ray cluster with a real sqlite MLflow store, and then look at what it recorded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.orchestration.plan import WorkflowConfig, resolve
from pipelines.orchestration.workflow import STEPS
from pipelines.orchestration.lock import WorkflowBusy, workdir_lock
from tiny_run import TINY, VENV_BIN, run_tiny_once

@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory, ray_local):
    return run_tiny_once(tmp_path_factory.getbasetemp())


def _client(cfg: WorkflowConfig):
    from mlflow import MlflowClient

    return MlflowClient(resolve(cfg).tracking_uri)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hold_lock(workdir: Path, lock_name: str = ".workflow.lock") -> subprocess.Popen:
    """Another process holding the work-dir lock (what a concurrent `shg run` does)."""
    code = (
        "import sys, time; from pathlib import Path; from pipelines.orchestration.lock import workdir_lock\n"
        "with workdir_lock(Path(sys.argv[1]), 'shg run', sys.argv[2]):\n    print('held', flush=True); time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(workdir), lock_name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# --- pure parts --------------------------------------------------------------------------------


def test_resolve_applies_profile_then_user_overrides_and_puts_everything_in_the_workdir(tmp_path):
    run = resolve(WorkflowConfig(profile="smoke", workdir=str(tmp_path), overrides=("train.epochs=3", "synth.people=10")))
    assert run.experiment.train.epochs == 3  # user wins over the profile's 2
    assert run.experiment.model.channels == 16  # from the profile
    assert run.data.synth.people == 10
    assert run.experiment.train.storage == str(tmp_path)
    assert run.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert Path(run.data.prepare.out) == tmp_path / "data" / "prepared"
    assert run.params["train.epochs"] == 3 and run.params["synth.people"] == 10
    assert run.params["workflow.profile"] == "smoke"
    assert run.data.synth.people == 10 and Path(run.data.prepare.annotations).parent == tmp_path / "data" / "synth"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("synth.peeple=3",), "unknown config key"),
        (("train.epochz=3",), "unknown config key"),
        (("prepare.annotations=/x.json",), "needs both"),
        (("prepare.annotations=/x.json", "prepare.images=/x", "synth.people=3"), "make no sense with real data"),
        (("train.storage=/elsewhere",), "cannot be set here"),
    ],
)
def test_bad_overrides_fail_before_anything_starts(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve(WorkflowConfig(workdir=str(tmp_path / "w"), overrides=overrides))
    assert not (tmp_path / "w").exists()


def test_unknown_profile_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        resolve(WorkflowConfig(profile="huge", workdir=str(tmp_path)))


def test_real_data_overrides_switch_off_the_synthetic_set(tmp_path):
    run = resolve(WorkflowConfig(profile="smoke", workdir=str(tmp_path),
                                 overrides=("prepare.annotations=/d/a.json", "prepare.images=/d/img")))
    assert run.data.synth is None
    assert (run.data.prepare.annotations, run.data.prepare.images) == ("/d/a.json", "/d/img")
    assert not any(k.startswith("synth.") for k in run.params)


def test_print_config_shows_the_resolved_tree_and_runs_nothing(tmp_path):
    result = subprocess.run(
        [str(VENV_BIN / "shg"), "run", "--profile", "smoke", "--workdir", str(tmp_path / "w"),
         "--print-config", "train.epochs=5"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "epochs: 5" in result.stdout and "channels: 16" in result.stdout
    assert not (tmp_path / "w").exists()


def test_workdir_lock_is_exclusive_across_processes_and_names_the_holder(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        with pytest.raises(WorkflowBusy, match=f"pid {holder.pid}"):
            with workdir_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with workdir_lock(tmp_path):  # released by the kernel when the holder died
        pass


def test_prepare_takes_the_lock_beside_the_folder_it_writes(tmp_path):
    """`shg prepare --out D` refuses, naming the holder, while another shg command holds D's
    lock (beside D: a run replaces D whole); nothing is started or written. (`shg train`:
    tests/integration/test_train_ray.py.)"""
    from typer.testing import CliRunner

    from dataprep.synth import SynthConfig, generate
    from pipelines.cli.app import build_app

    generate(SynthConfig(people=4, seed=1, workers=1), tmp_path / "synth")
    out = tmp_path / "prepared"
    holder = _hold_lock(tmp_path, ".prepared.prepare.lock")
    try:
        result = CliRunner().invoke(build_app(), [
            "prepare", "--annotations", str(tmp_path / "synth" / "annotations.json"),
            "--images", str(tmp_path / "synth" / "images"), "--out", str(out)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 75, result.output  # busy (EX_TEMPFAIL), not Click's usage 2
    assert f"pid {holder.pid}" in result.output and "another shg command" in result.output
    assert not out.exists()


def test_unreachable_tracking_server_stops_the_run_before_any_work(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [str(VENV_BIN / "shg"), "run", "--profile", "smoke", "--workdir", str(tmp_path), "--tracking-uri", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 69  # unavailable (EX_UNAVAILABLE), not Click's usage 2
    assert f"MLflow tracking server {url} is unreachable" in result.stderr
    assert "Nothing was trained" in result.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "data").exists()  # not even the data was made


def test_a_failed_scheduled_firing_exits_non_zero_with_the_step_and_cause(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}"
    result = subprocess.run(
        [str(VENV_BIN / "shg"), "schedule", "--once", "--profile", "smoke", "--workdir", str(tmp_path),
         "--tracking-uri", url], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed in step setup: TrackingUnavailable" in result.stderr
    assert "schedule: trained" not in result.stdout
    [record] = (tmp_path / "workflow").glob("*-failed.json")  # MLflow was what failed: recorded locally
    assert json.loads(record.read_text())["failed_step"] == "setup"


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_workflow_runs_every_step_and_groups_its_mlflow_runs(tiny_workflow):
    cfg, result = tiny_workflow
    assert [(s.name, s.status) for s in result.steps] == [(n, "ran") for n in STEPS]
    client = _client(cfg)
    parent = client.get_run(result.parent_run_id)
    tags = parent.data.tags
    assert {tags[f"step.{n}"] for n in STEPS} == {"ran"}
    assert parent.info.status == "FINISHED"
    for key in ("git.commit", "version.torch", "version.ray", "version.mlflow", "data.fingerprint"):
        assert tags[key]
    assert tags["data.fingerprint"] == result.data_fingerprint
    assert parent.data.params["train.seed"] == "0" and parent.data.params["synth.seed"] == "0"
    saved = client.download_artifacts(result.parent_run_id, "config.yaml", str(Path(cfg.workdir) / "dl"))
    assert resolve(WorkflowConfig(profile="", config=saved, workdir=cfg.workdir)).config == resolve(cfg).config
    assert set(parent.data.metrics) >= {f"step.{n}.seconds" for n in STEPS}

    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    assert {c.info.run_id for c in children} >= {result.train_run_id}
    assert len(children) == 2  # train + evaluate
    evaluation = next(c for c in children if c.data.tags.get("shg.stage") == "evaluate")
    assert 0.0 <= evaluation.data.metrics["eval/pckh/Total"] <= 100.0
    train = client.get_run(result.train_run_id)
    assert train.data.tags["registry.alias"] == "champion"  # first version: through the gate
    assert tags["registry.version"] == train.data.tags["registry.version"]

    summary = json.loads(Path(result.summary_path).read_text())
    assert [s["status"] for s in summary["steps"]] == ["ran"] * 4
    assert all(s["seconds"] > 0 for s in summary["steps"])
    prepared = Path(cfg.workdir) / "data" / "prepared" / "manifest.json"
    assert json.loads(prepared.read_text())["fingerprint"] == result.data_fingerprint


@pytest.mark.slow
def test_second_run_reuses_every_unchanged_step(tiny_workflow):
    from pipelines.orchestration.workflow import run_workflow

    cfg, first = tiny_workflow
    again = run_workflow(cfg)
    assert [(s.name, s.status) for s in again.steps] == [(n, "reused") for n in STEPS]
    assert again.parent_run_id != first.parent_run_id
    assert again.train_run_id == first.train_run_id
    assert again.step("train").seconds < first.step("train").seconds
    client = _client(cfg)
    assert client.get_run(again.parent_run_id).data.tags["step.train"] == "reused"
    assert client.get_run(again.parent_run_id).data.tags["shg.train_run_id"] == first.train_run_id
    # The reused run stays nested under the workflow run that trained it.
    assert client.get_run(first.train_run_id).data.tags["mlflow.parentRunId"] == first.parent_run_id


@pytest.mark.slow
def test_scheduled_firing_skips_unchanged_data_and_records_it(tiny_workflow):
    from pipelines.orchestration.workflow import run_firing

    cfg, first = tiny_workflow
    firing = run_firing(cfg)
    assert firing.skipped == "unchanged-data"
    assert [s.status for s in firing.steps] == ["reused", "skipped", "skipped", "skipped"]
    run = _client(cfg).get_run(firing.parent_run_id)
    assert run.data.tags["skipped"] == "unchanged-data"
    assert run.data.tags["step.train"] == "skipped"
    assert run.data.tags["data.fingerprint"] == first.data_fingerprint


@pytest.mark.slow
def test_a_firing_that_finds_the_workdir_busy_records_skipped_busy(tiny_workflow):
    from pipelines.orchestration.workflow import run_firing

    cfg, _ = tiny_workflow
    holder = _hold_lock(Path(cfg.workdir))
    try:
        firing = run_firing(cfg)
    finally:
        holder.kill()
        holder.wait()
    assert firing.skipped == "busy"
    run = _client(cfg).get_run(firing.parent_run_id)
    assert run.data.tags["skipped"] == "busy"
    assert f"pid {holder.pid}" in run.data.tags["shg.busy_reason"]


@pytest.mark.slow
def test_schedule_cli_once_fires_and_skips_unchanged_data(tiny_workflow):
    cfg, _ = tiny_workflow
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    result = subprocess.run(
        [str(VENV_BIN / "shg"), "schedule", "--once", "--profile", "smoke", "--workdir", cfg.workdir, *TINY],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "schedule: skipped-unchanged-data" in result.stdout


def test_prepare_refuses_to_replace_a_dataset_a_training_reads(tmp_path):
    """`shg prepare --out D` while `shg train --data D` (another process) reads D: exit 75 naming
    the reader; D is not touched."""
    from typer.testing import CliRunner

    from dataprep.synth import SynthConfig, generate
    from pipelines.cli.app import build_app

    generate(SynthConfig(people=4, seed=1, workers=1), tmp_path / "synth")
    out = tmp_path / "prepared"
    code = ("import sys, time; from pipelines.orchestration.lock import dataset_lock\n"
            "with dataset_lock(sys.argv[1], 'shg train', write=False):\n    print('held', flush=True); time.sleep(120)\n")
    reader = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "held"
        result = CliRunner().invoke(build_app(), [
            "prepare", "--annotations", str(tmp_path / "synth" / "annotations.json"),
            "--images", str(tmp_path / "synth" / "images"), "--out", str(out)])
    finally:
        reader.kill()
        reader.wait()
    assert result.exit_code == 75, result.output  # busy (EX_TEMPFAIL)
    assert f"is being read (shg train, pid {reader.pid}" in result.output
    assert not out.exists()
