"""Training runs in MLflow: the registered checkpoint is the best by validation PCKh; system
metrics and MLflow's standard tags land in a real sqlite store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.training.driver import pick_best


def test_pick_best_by_validation_pckh_total():
    kept = [("e0", {"epoch": 0, "pckh/Total": 50.0}), ("e1", {"epoch": 1, "pckh/Total": 61.5}),
            ("e2", {"epoch": 2, "pckh/Total": 55.0})]
    assert pick_best(kept)[0] == "e1"  # not the last
    tie = kept + [("e3", {"epoch": 3, "pckh/Total": 61.5})]
    assert pick_best(tie)[0] == "e3"  # a tie goes to the later epoch
    unscored = [("e4", {"epoch": 4}), ("e5", {"epoch": 5, "pckh/Total": float("nan")})]
    assert pick_best(kept + unscored)[0] == "e1"  # not validated never beats validated
    assert pick_best(unscored)[0] == "e5"  # none validated: the latest
    with pytest.raises(ValueError, match="no checkpoints"):
        pick_best([])


def test_system_metrics_are_logged_to_the_run_while_the_block_runs(tmp_path):
    pytest.importorskip("psutil", reason="MLflow's system metrics need psutil (a project dependency)")
    from mlflow import MlflowClient

    from pipelines.tracking.system import system_metrics

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("sys", artifact_location=(tmp_path / "a").as_uri())).info.run_id
    with system_metrics(uri, run_id, sampling_interval_s=0.5, log=lambda line: None):
        time.sleep(2.5)
    metrics = client.get_run(run_id).data.metrics
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100
    assert metrics["system/system_memory_usage_megabytes"] > 0
    steps = [m.step for m in client.get_metric_history(run_id, "system/cpu_utilization_percentage")]
    with system_metrics(uri, run_id, resumed=True, sampling_interval_s=0.5, log=lambda line: None):
        time.sleep(1.5)
    later = sorted(m.step for m in client.get_metric_history(run_id, "system/cpu_utilization_percentage"))
    assert len(later) > len(steps) and len(set(later)) == len(later)  # a resumed run continues its steps


def test_training_runs_carry_mlflows_standard_tags(tmp_path):
    from mlflow import MlflowClient

    from pipelines.tracking.provenance import git_revision
    from pipelines.tracking.tracker import start_or_resume_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, resumed = start_or_resume_run(tracking_uri=uri, experiment="tags", run_name="r",
                                          run_dir=tmp_path / "r", storage=tmp_path, model_config={})
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert not resumed and tags["mlflow.runName"] == "r"
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"] and tags["mlflow.user"]
    commit = git_revision(Path(__file__).resolve().parents[2])["git.commit"]
    assert tags.get("mlflow.source.git.commit", "unknown") == commit
