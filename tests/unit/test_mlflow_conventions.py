"""What MLflow users expect of shg's runs: the experiment marked as model training, readable run
names, MLflow's user/source tags on every run, datasets by their real URI, an explicit artifact
root for every store (never ./mlruns under the current folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipelines.config.experiment import load_config
from pipelines.tracking.datasets import dataset_source
from pipelines.tracking.tracker import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_experiment
from pipelines.tracking.uris import artifact_root_for, default_tracking_uri
from pipelines.training.run_names import dataset_label, run_key, run_name_for

FINGERPRINT = "sha256:" + "ab" * 32


def test_dataset_source_is_the_real_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert dataset_source("s3://bucket/shg/prepared") == ("s3", "s3://bucket/shg/prepared")
    assert dataset_source("prepared") == ("local", (tmp_path / "prepared").as_uri())
    assert dataset_source(tmp_path / "p") == ("local", f"file://{tmp_path}/p")


def test_artifact_root_is_explicit_for_every_store(tmp_path):
    work = tmp_path / "runs"
    own = default_tracking_uri(work)
    assert artifact_root_for(own, work) == (work / "mlartifacts").as_uri()
    assert artifact_root_for("http://mlflow.team:5000", work) is None  # the server's proxied root
    assert artifact_root_for("postgresql://db/mlflow", work) == (work / "mlartifacts").as_uri()
    assert artifact_root_for(f"sqlite:///{tmp_path / 'other.db'}", work) == (work / "mlartifacts").as_uri()
    assert artifact_root_for("postgresql://db/mlflow", "s3://bucket/runs") == "s3://bucket/runs/mlartifacts"
    assert artifact_root_for("http://mlflow.team:5000", work, "s3://art/shg") == "s3://art/shg"
    assert artifact_root_for(own, work, str(tmp_path / "art")) == (tmp_path / "art").as_uri()
    for uri in ("postgresql://db/mlflow", own, f"sqlite:///{tmp_path / 'x.db'}"):
        assert artifact_root_for(uri, "runs").startswith("file:///")  # never relative to the cwd


def test_run_names_are_the_config_s_essence_and_a_short_id():
    cfg = load_config(None, ["model.stacks=2", "model.channels=256"])
    name = run_name_for(cfg, FINGERPRINT, "synth")
    assert name.startswith("hg2x256-synth-") and len(name.rsplit("-", 1)[1]) == 8
    assert run_name_for(cfg, FINGERPRINT, "synth") == name  # the same command finds its folder
    assert run_name_for(cfg, "sha256:" + "cd" * 32, "synth") != name  # other data, other run
    other = load_config(None, ["model.stacks=2", "model.channels=256", "train.lr=0.001"])
    assert run_name_for(other, FINGERPRINT, "synth") != name
    assert run_key(cfg, FINGERPRINT).endswith("-" + "ab" * 6)
    # bookkeeping settings do not make another run
    moved = load_config(None, ["model.stacks=2", "model.channels=256", "train.storage=/elsewhere",
                               "train.artifact_root=s3://a/b", "train.system_metrics_s=1"])
    assert run_name_for(moved, FINGERPRINT, "synth") == name
    assert run_name_for(load_config(None, ["train.run_name=mine"]), FINGERPRINT) == "mine"


@pytest.mark.parametrize(("annotations", "label"), [
    ("/w/runs/data/synth/annotations.json", "synth"),
    ("/data/mpii/mpii_human_pose_v1_u12_1.mat", "mpii"),
    ("s3://bucket/mpii/annot/train.json", "annot"),
    ("/data/trainval.json", "data"),
    ("", "data"),
])
def test_dataset_label(annotations, label):
    assert dataset_label(annotations) == label


def test_experiment_is_marked_as_model_training_when_made_and_when_found(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(default_tracking_uri(tmp_path))
    made = ensure_experiment(client, "shg", (tmp_path / "art").as_uri())
    assert client.get_experiment(made).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    older = client.create_experiment("older", artifact_location=(tmp_path / "a2").as_uri())
    assert ensure_experiment(client, "older", None) == older
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    chosen = client.create_experiment("chosen", artifact_location=(tmp_path / "a3").as_uri(),
                                      tags={EXPERIMENT_KIND_TAG: "genai_development"})
    ensure_experiment(client, "chosen", None)
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"  # a person's choice stays


def test_workflow_runs_carry_user_and_source_tags(tmp_path):
    from pipelines.tracking.workflow_runs import WorkflowRuns

    runs = WorkflowRuns(default_tracking_uri(tmp_path), tmp_path)
    parent = runs.start_parent("workflow-smoke-hg1x32-abc123", {"shg.profile": "smoke"})
    child = runs.start_child(parent, "evaluate", {})
    for run_id in (parent, child):
        tags = runs.get(run_id).tags
        assert tags["mlflow.user"] and tags["mlflow.source.name"] and tags["mlflow.source.type"] == "LOCAL"
        assert len(tags.get("mlflow.source.git.commit", "0" * 40)) == 40
    experiment = runs.client.get_experiment(runs.experiment_id)
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_a_logged_dataset_keeps_its_object_store_uri(tmp_path):
    from dataprep.prepare.manifest import PreparedManifest  # noqa: F401 (the type logged)
    from pipelines.tracking.datasets import log_dataset
    from pipelines.tracking.tracker import Tracker
    from pipelines.tracking.workflow_runs import WorkflowRuns

    class Manifest:  # the fields log_dataset reads
        fingerprint, rows, quarantined, schema = FINGERPRINT, {"train": 3, "val": 1}, 0, {"image": "binary"}

    runs = WorkflowRuns(default_tracking_uri(tmp_path), tmp_path)
    run_id = runs.start_parent("p", {})
    log_dataset(Tracker(runs.tracking_uri, run_id), Manifest(), "s3://bucket/shg/prepared")
    (logged,) = runs.client.get_run(run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.source_type) == ("prepared", "s3")
    assert json.loads(logged.dataset.source) == {"uri": "s3://bucket/shg/prepared"}
    assert os.getcwd() not in logged.dataset.source
