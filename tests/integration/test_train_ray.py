"""`pipelines.training.driver` end to end on a real local Ray cluster and a real sqlite MLflow store.

One tiny synthetic dataset (prepared once per module) and a tiny model (2 stacks, 16 channels,
64 px input) keep each training run to seconds of compute.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipelines.config.experiment import load_config

TINY = ["model.stacks=2", "model.channels=16", "data.input_size=64", "train.batch_size=8",
        "train.workers=2", "train.log_every=2", "train.val_max_people=16", "train.val_grid_people=4",
        "train.lr=1e-3"]


@pytest.fixture(autouse=True)
def default_tracking_store(monkeypatch):
    """These tests use the default store (sqlite under train.storage), whatever an earlier test
    or the shell exported."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ray_local) -> Path:
    from dataprep.prepare import PrepareConfig, run_prepare
    from dataprep.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny-data")
    generate(SynthConfig(people=64, seed=3, val_fraction=0.25), root / "synth")
    run_prepare(PrepareConfig(annotations=str(root / "synth" / "annotations.json"),
                              images=str(root / "synth" / "images"), out=str(root / "prepared")),
                log=lambda _: None)
    return root / "prepared"


def _cfg(tmp_path: Path, *extra: str):
    return load_config(None, [*TINY, f"train.storage={tmp_path / 'runs'}", *extra])


def _runs(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("shg")  # the one experiment of the project
    return client, client.search_runs([experiment.experiment_id])


def test_unreachable_tracking_server_stops_before_training(prepared, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli.app import build_app

    result = CliRunner().invoke(build_app(), [
        "train", "--data", str(prepared), "--tracking-uri", "http://127.0.0.1:9", *TINY,
        f"train.storage={tmp_path / 'runs'}"])
    assert result.exit_code == 69  # EX_UNAVAILABLE (pipelines.cli.exits), not Click's usage 2
    assert "unreachable" in result.output and "Nothing was trained" in result.output
    assert not (tmp_path / "runs").exists()


def test_train_refuses_while_another_command_holds_its_storage(prepared, tmp_path):
    """`shg train` takes the lock `shg run` takes on the folder (train.storage); while another
    process holds it, it exits 75 (busy, EX_TEMPFAIL) naming the holder, and trains nothing."""
    from typer.testing import CliRunner

    from pipelines.cli.app import build_app

    storage = tmp_path / "runs"
    storage.mkdir()
    code = ("import sys, time; from pathlib import Path; from pipelines.orchestration.lock import workdir_lock\n"
            "with workdir_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(storage)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(build_app(), ["train", "--data", str(prepared), *TINY, f"train.storage={storage}"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 75, result.output
    assert f"pid {holder.pid}" in result.output and "another shg command" in result.output
    assert not [p for p in storage.iterdir() if p.name not in (".workflow.lock", "mlflow.db")]


def test_two_workers_few_steps_make_one_tracked_run(prepared, tmp_path):
    from pipelines.training.driver import run_training

    cfg = _cfg(tmp_path, "train.epochs=2", "train.max_steps=5", "train.system_metrics_s=0.5")
    result = run_training(cfg, prepared, log=lambda _: None)
    assert result.global_step == 5  # the cap, inside epoch 0 or 1 (a few steps per epoch here)
    assert re.fullmatch(r"hg2x16-synth-[0-9a-f]{8}", result.run_name), result.run_name
    from pipelines.orchestration.standalone import evaluate_and_register  # shg train's own steps

    decision = evaluate_and_register(cfg, result, prepared, address=None, log=lambda _: None)
    client, runs = _runs(result.tracking_uri)
    assert len(runs) == 1 and runs[0].info.run_id == result.mlflow_run_id
    run = runs[0]
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for key in ("loss", "loss/stack_0", "loss/stack_1", "epoch/loss/stack_0", "epoch/loss/stack_1", "lr",
                "throughput/images_per_s", "data_wait_s", "pckh/Head", "pckh/Wrist", "pckh/UBody",
                "pckh/Total", "val/loss/stack_1"):
        assert key in metrics, key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss/stack_1")] == [2, 4]
    assert run.data.params["model.stacks"] == "2" and run.data.params["train.max_steps"] == "5"
    assert run.data.tags["train.workers"] == "2" and "git.commit" in run.data.tags
    # the speed path train.amp/layout=auto chose, and the measured baseline rate behind it
    assert run.data.tags["shg.speed.path"] in ("fp32-nchw", "bf16-channels_last")
    assert metrics["speed/images_per_s/fp32-nchw"] > 0
    assert run.inputs.dataset_inputs[0].dataset.digest
    # what MLflow's own UI and users expect: name, user and source, dataset by URI, system metrics
    assert run.info.run_name == result.run_name and run.data.tags["shg.run_key"]
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.source.name"]
    dataset = run.inputs.dataset_inputs[0].dataset
    assert (dataset.source_type, json.loads(dataset.source)["uri"]) == ("local", prepared.resolve().as_uri())
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # sampled by rank 0 on its node (here the same machine as the driver), while it trained
    assert run.data.tags["train.system_metrics_node"] == os.uname().nodename
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        assert key in metrics, key
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/loss_per_stack.png", "plots/pckh_curve.png", "plots/val_skeletons.png"}
    assert run.data.tags["registry.alias"] == "champion"  # the first version
    assert 0 <= float(run.data.params["baseline.pckh.Total"]) <= 100
    # the registered checkpoint is the best validated epoch, not necessarily the last
    best = max(m.value for m in client.get_metric_history(run.info.run_id, "pckh/Total"))
    assert result.pckh["Total"] == pytest.approx(best)
    assert run.data.tags["train.best_epoch"] == str(result.best_epoch)
    # one register-and-gate path: the card, the version's tags and the run's tags agree
    from pipelines.tracking.model_io import load_model

    version = client.get_model_version("stacked-hourglass", decision.version)
    _, card = load_model(f"models:/stacked-hourglass/{decision.version}", tracking_uri=result.tracking_uri)
    assert float(version.tags["val.pckh_total"]) == card.val_metrics["Total"] == float(run.data.tags["registry.new_total"])
    assert version.tags["val.fingerprint"] == card.val_fingerprint == run.data.tags["registry.val_fingerprint"]


def test_time_budget_stops_every_worker_validates_and_is_recorded(prepared, tmp_path):
    """`train.max_minutes`: rank 0's clock decides for both workers (a disagreement would hang
    the next collective), the run validates where it stopped, and the step is tagged."""
    from pipelines.training.driver import run_training

    cfg = _cfg(tmp_path, "train.epochs=1000", "train.val_every=1000", "train.max_minutes=0.1")
    started, lines = time.monotonic(), []
    result = run_training(cfg, prepared, log=lines.append)
    assert time.monotonic() - started < 300  # 1000 epochs would take far longer
    assert any(f"ended training at step {result.global_step}" in line for line in lines), lines
    client, runs = _runs(result.tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    tags = run.data.tags
    assert tags["train.stopped_by"] == "max_minutes"
    assert tags["train.stopped_at_step"] == str(result.global_step) and 0 < result.global_step < 3000
    assert float(tags["train.trained_minutes"]) >= 0.1
    assert "pckh/Total" in run.data.metrics and result.pckh["Total"] == run.data.metrics["pckh/Total"]


def _alive_train_workers() -> list[int]:
    """PIDs of this session's live Ray Train workers, oldest first, read from the GCS through
    the connected driver. (The state API is served by the dashboard, which a cluster started
    without one, or one whose dashboard failed to come up, does not have; the GCS answers.)"""
    from ray._private import state

    actors = state.actors(actor_state_name="ALIVE").values()
    workers = sorted((a for a in actors if a["ActorClassName"] == "RayTrainWorker"), key=lambda a: a["StartTime"])
    return [int(a["Pid"]) for a in workers if a["Pid"]]


def _wait_for(path_glob, folder: Path, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not list(folder.glob(path_glob)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path_glob} in {folder} after {timeout_s} s")
        time.sleep(0.2)


def test_killed_worker_is_replaced_and_training_finishes(prepared, tmp_path):
    from pipelines.training.driver import run_training

    cfg = _cfg(tmp_path, "train.epochs=3", "train.run_name=kill", "train.max_failures=2")
    killed: list[int] = []

    def kill_after_first_checkpoint() -> None:
        _wait_for("kill/epoch_0000", tmp_path / "runs")
        pid = _alive_train_workers()[-1]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    result = run_training(cfg, prepared, log=lambda _: None)
    killer.join(timeout=5)
    assert killed, "the worker was not killed"
    assert result.epochs_completed == 3
    client, runs = _runs(result.tracking_uri)
    assert len(runs) == 1
    epochs = [m.step for m in client.get_metric_history(result.mlflow_run_id, "pckh/Total")]
    assert set(epochs) == {0, 1, 2}


def test_worker_killed_mid_epoch_resumes_inside_the_epoch(prepared, tmp_path):
    """Checkpoints every 2 steps; the worker is killed right after the first one. The run goes
    on from inside epoch 0: no step repeated (global_step is exactly 2 epochs of steps), each
    epoch trained every sample once, and no step's metrics logged twice."""
    from pipelines.runtime.prepared import read_manifest
    from pipelines.training.driver import run_training

    rows = int(read_manifest(prepared).rows["train"])
    cfg = _cfg(tmp_path, "train.epochs=2", "train.run_name=mid", "train.workers=1", "train.batch_size=4",
               "train.log_every=1", "train.checkpoint_every_steps=2", "train.max_failures=2")
    assert rows % 4 == 0, "the test counts steps: the split must fill whole batches"
    killed: list[int] = []

    def kill_at_first_mid_epoch_checkpoint() -> None:
        deadline = time.monotonic() + 240
        while not (workers := _alive_train_workers()):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        pid = workers[0]  # known before the checkpoint appears: the kill follows at once
        # a checkpoint is a resume point once Ray Train's controller has registered it (its
        # folder appears earlier, while it is written)
        snapshot = tmp_path / "runs" / "mid" / "checkpoint_manager_snapshot.json"
        while not (snapshot.is_file() and "epoch_0000_step_" in snapshot.read_text(errors="replace")):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_at_first_mid_epoch_checkpoint, daemon=True)
    killer.start()
    result = run_training(cfg, prepared, log=lambda _: None)
    killer.join(timeout=5)
    assert killed, "the worker was not killed"
    assert result.epochs_completed == 2 and result.global_step == 2 * rows // 4
    client, runs = _runs(result.tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["train.resumed_in_epoch"].startswith("epoch 0, "), run.data.tags
    for key, expected in (("epoch/samples", rows), ("epoch/samples_repeated", 0), ("epoch/samples_missed", 0)):
        by_epoch = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert by_epoch == {0: expected, 1: expected}, key
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, result.global_step + 1)), "every step logged exactly once"


def test_rerun_after_driver_death_resumes_same_run(prepared, tmp_path):
    from pipelines.training.driver import run_training

    args = [*TINY, f"train.storage={tmp_path / 'runs'}", "train.epochs=3", "train.run_name=resume"]
    driver = subprocess.Popen([sys.executable, "-m", "pipelines.cli.app", "train", "--data", str(prepared),
                               "--no-register", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        _wait_for("resume/epoch_0000", tmp_path / "runs")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local cluster it started
        driver.wait()
    first = (tmp_path / "runs" / "resume" / "shg_run.json").read_text()

    result = run_training(load_config(None, args), prepared, log=lambda _: None)
    assert result.resumed and result.mlflow_run_id in first
    client, runs = _runs(result.tracking_uri)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert result.epochs_completed == 3
    # the resumed attempt started after epoch 0: its lr/epoch metrics exist for every epoch once
    history = client.get_metric_history(result.mlflow_run_id, "epoch/loss")
    assert sorted({m.step for m in history}) == [0, 1, 2]


def test_checkpoint_of_another_model_is_refused(prepared, tmp_path):
    from pipelines.training.checkpoints import CheckpointMismatchError, load_state
    from pipelines.training.driver import run_training

    cfg = _cfg(tmp_path, "train.epochs=1", "train.max_steps=1", "train.run_name=shared")
    result = run_training(cfg, prepared, log=lambda _: None)
    wider = _cfg(tmp_path, "train.epochs=1", "train.max_steps=1", "train.run_name=shared", "model.channels=32")
    with pytest.raises(CheckpointMismatchError, match=r"model.channels: checkpoint 16 vs config 32"):
        run_training(wider, prepared, log=lambda _: None)
    with pytest.raises(CheckpointMismatchError, match="model.channels"):
        load_state(result.checkpoint, expected=wider.model)
