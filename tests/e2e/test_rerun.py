"""`shg rerun`: a recorded run repeated from MLflow alone gives the same losses, step for step."""

from __future__ import annotations

import pytest
from tiny_run import run_tiny_once

from pipelines.orchestration.rerun import (
    RerunConfig,
    RerunMismatch,
    compare_losses,
    read_recorded_run,
    rerun_run,
)


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory, ray_local):
    return run_tiny_once(tmp_path_factory.getbasetemp())  # the same run test_workflow.py makes


def _store(tmp_path):
    from pipelines.tracking.workflow_runs import WorkflowRuns

    runs = WorkflowRuns(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    return runs, runs.experiment_id


def _run_with_losses(runs, experiment, losses, tags=None):
    run = runs.client.create_run(experiment, tags=tags or {})
    for step, value in enumerate(losses):
        runs.client.log_metric(run.info.run_id, "loss", value, step=step)
    return run.info.run_id


def test_compare_losses_accepts_equal_and_names_the_first_differing_step(tmp_path):
    client, experiment = _store(tmp_path)
    a = _run_with_losses(client, experiment, [0.5, 0.25, 0.125])
    b = _run_with_losses(client, experiment, [0.5, 0.25, 0.125])
    c = _run_with_losses(client, experiment, [0.5, 0.2500001, 0.125])
    d = _run_with_losses(client, experiment, [0.5, 0.25])
    compare_losses(client, a, b)
    with pytest.raises(RerunMismatch, match="differs at step 1"):
        compare_losses(client, a, c)
    with pytest.raises(RerunMismatch, match="logged at steps"):
        compare_losses(client, a, d)


def test_a_run_no_workflow_made_cannot_be_rerun(tmp_path):
    client, experiment = _store(tmp_path)
    plain = _run_with_losses(client, experiment, [1.0])
    with pytest.raises(LookupError, match="not made by `shg run`"):
        read_recorded_run(client, plain)
    with pytest.raises(LookupError, match="not found"):
        read_recorded_run(client, "0" * 32)


@pytest.mark.slow
def test_rerun_repeats_the_losses_step_for_step(tiny_workflow):
    from pipelines.orchestration.plan import resolve
    from pipelines.tracking.workflow_runs import WorkflowRuns

    cfg, original = tiny_workflow
    runs = WorkflowRuns(resolve(cfg).tracking_uri, cfg.workdir)
    client = runs.client
    recorded = read_recorded_run(runs, original.train_run_id)  # a child id finds its parent
    assert recorded.parent_run_id == original.parent_run_id
    assert "seed: 0" in recorded.config_yaml  # the saved config.yaml, not stringified params

    repeated = rerun_run(RerunConfig(run_id=original.parent_run_id, workdir=cfg.workdir, check=True))
    assert repeated.train_run_id != original.train_run_id  # really trained again
    assert repeated.step("train").status == "ran"
    assert repeated.data_fingerprint == original.data_fingerprint
    parent = client.get_run(repeated.parent_run_id)
    assert parent.data.tags["shg.rerun_of"] == original.parent_run_id
    history = client.get_metric_history(repeated.train_run_id, "loss")
    assert len(history) >= 3  # 21 people / batch 7, a loss per step
