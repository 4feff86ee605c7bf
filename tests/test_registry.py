"""Champion gate on a real MLflow registry (sqlite store in tmp_path)."""

from __future__ import annotations

import pytest

from pipelines.inference.model_dir import ModelCard
from pipelines.tracking.registry import CHALLENGER, CHAMPION, promote_if_better, register_model
from shg_model import HourglassConfig, StackedHourglass


@pytest.fixture()
def store(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    # whatever an earlier test exported, this store is the tracking server and the registry
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("gate", artifact_location=(tmp_path / "art").as_uri())
    return uri, client, experiment


def _train_run(uri, client, experiment, name):
    cfg = HourglassConfig(stacks=1, channels=8, depth=1)
    run_id = client.create_run(experiment).info.run_id
    version = register_model(StackedHourglass(cfg), ModelCard.for_config(cfg, input_size=64, heatmap_size=16),
                             tracking_uri=uri, run_id=run_id, name=name)
    return run_id, version


def test_champion_gate_promotes_better_and_refuses_worse(store):
    uri, client, experiment = store
    name = "shg-test"
    run1, v1 = _train_run(uri, client, experiment, name)
    first = promote_if_better(name, v1, pckh_total=70.0, val_fingerprint="fp", tracking_uri=uri, run_id=run1)
    assert first.promoted and first.alias == CHAMPION and first.champion_total is None
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == v1

    run2, v2 = _train_run(uri, client, experiment, name)
    better = promote_if_better(name, v2, pckh_total=80.5, val_fingerprint="fp", tracking_uri=uri, run_id=run2)
    assert better.promoted and better.champion_version == v1 and better.champion_total == 70.0
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == v2

    run3, v3 = _train_run(uri, client, experiment, name)
    worse = promote_if_better(name, v3, pckh_total=80.5, val_fingerprint="fp", tracking_uri=uri, run_id=run3)
    assert not worse.promoted and worse.alias == CHALLENGER  # a tie does not beat the champion
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == v2
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == v3
    tags = client.get_run(run3).data.tags
    assert tags["registry.promoted"] == "False" and tags["registry.alias"] == CHALLENGER
    assert float(tags["registry.new_total"]) == 80.5 and float(tags["registry.champion_total"]) == 80.5
    assert tags["registry.champion_version"] == v2

    run4, v4 = _train_run(uri, client, experiment, name)
    other = promote_if_better(name, v4, pckh_total=99.0, val_fingerprint="other", tracking_uri=uri, run_id=run4)
    assert not other.promoted and "not comparable" in other.reason
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == v2
    assert client.get_model_version(name, v4).tags["val.pckh_total"] == "99.0"


def test_registered_model_loads_back(store):
    import os

    from pipelines.tracking.model_io import load_model
    from pipelines.tracking.registry import use_tracking_uri

    uri, client, experiment = store
    before = os.environ.get("MLFLOW_TRACKING_URI")
    run_id, version = _train_run(uri, client, experiment, "shg-load")
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # registering leaves the process as it was
    with use_tracking_uri(uri):
        model, card = load_model(f"models:/shg-load/{version}")
    assert card.input_size == 64 and model.cfg.channels == 8
    assert client.get_run(run_id).info.status == "RUNNING"  # registering does not end the run
