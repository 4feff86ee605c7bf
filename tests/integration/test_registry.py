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

    uri, client, experiment = store
    before = os.environ.get("MLFLOW_TRACKING_URI")
    run_id, version = _train_run(uri, client, experiment, "shg-load")
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # registering leaves the process as it was
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # no process-wide MLflow URI was set: the store was passed explicitly all the way
    assert tracking_utils._tracking_uri is None and registry_utils._registry_uri is None
    model, card = load_model(f"models:/shg-load/{version}", tracking_uri=uri)
    assert card.input_size == 64 and model.cfg.channels == 8
    assert client.get_run(run_id).info.status == "RUNNING"  # registering does not end the run


def test_after_the_data_changed_the_champion_is_scored_on_the_new_rows(store):
    uri, client, experiment = store
    name = "shg-newdata"
    run1, v1 = _train_run(uri, client, experiment, name)
    promote_if_better(name, v1, pckh_total=70.0, val_fingerprint="old", tracking_uri=uri, run_id=run1)
    scored = []

    def score(model_uri):  # what the workflow does: evaluate the registered champion on the new rows
        scored.append(model_uri)
        return 55.0

    run2, v2 = _train_run(uri, client, experiment, name)
    decision = promote_if_better(name, v2, pckh_total=60.0, val_fingerprint="new", tracking_uri=uri,
                                 run_id=run2, score_version=score)
    assert scored == [f"models:/{name}/{v1}"]
    assert decision.promoted and decision.champion_total == 55.0 and decision.val_fingerprint == "new"
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == v2
    tags = client.get_run(run2).data.tags
    assert (tags["registry.new_total"], tags["registry.champion_total"]) == ("60.0", "55.0")

    run3, v3 = _train_run(uri, client, experiment, name)  # the same new rows: no second scoring
    worse = promote_if_better(name, v3, pckh_total=58.0, val_fingerprint="new", tracking_uri=uri,
                              run_id=run3, score_version=score)
    assert len(scored) == 1 and not worse.promoted and worse.champion_total == 60.0


def test_two_promotions_forced_to_interleave_leave_the_better_champion(store):
    """Both read the old champion before either writes; the worse one writes last."""
    import threading

    uri, client, experiment = store
    name = "shg-race"
    run0, v0 = _train_run(uri, client, experiment, name)
    promote_if_better(name, v0, pckh_total=50.0, val_fingerprint="old", tracking_uri=uri, run_id=run0)
    (run_a, v_a), (run_b, v_b) = _train_run(uri, client, experiment, name), _train_run(uri, client, experiment, name)
    both_read = threading.Barrier(2, timeout=60)
    better_done = threading.Event()
    decisions = {}

    def score_then_wait(first: bool):
        def score(_uri):
            both_read.wait()  # both have read v0 as champion and found it unscored on the new rows
            if not first:
                assert better_done.wait(60)  # the worse promotion decides only after the better one
            return 40.0
        return score

    def promote(key, version, total, run_id, first):
        decisions[key] = promote_if_better(name, version, pckh_total=total, val_fingerprint="new",
                                           tracking_uri=uri, run_id=run_id, score_version=score_then_wait(first))
        if first:
            better_done.set()

    threads = [threading.Thread(target=promote, args=("a", v_a, 90.0, run_a, True)),
               threading.Thread(target=promote, args=("b", v_b, 80.0, run_b, False))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == v_a
    assert decisions["a"].promoted and not decisions["b"].promoted
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == v_b


@pytest.mark.parametrize("policy", ["replace", "keep"])
def test_a_champion_that_cannot_be_scored_is_handled_by_the_policy_and_recorded(store, tmp_path, policy):
    """The champion's artifacts were deleted, and the data changed: scoring it on the new rows
    fails. The gate decides by `unscorable_champion`, records why on both versions and the run,
    and the next registration on the same rows does not fail the same way."""
    import shutil

    from pipelines.tracking.model_io import load_model

    uri, client, experiment = store
    name = f"shg-unscorable-{policy}"
    run1, v1 = _train_run(uri, client, experiment, name)
    promote_if_better(name, v1, pckh_total=70.0, val_fingerprint="old", tracking_uri=uri, run_id=run1)
    shutil.rmtree(tmp_path / "art")  # someone cleaned the artifact store
    attempts = []

    def score(model_uri):  # the first thing the workflow's scoring does: load the model
        attempts.append(model_uri)
        model, _ = load_model(model_uri, tracking_uri=uri)
        return 0.0

    run2, v2 = _train_run(uri, client, experiment, name)
    decision = promote_if_better(name, v2, pckh_total=60.0, val_fingerprint="new", tracking_uri=uri,
                                 run_id=run2, score_version=score, unscorable_champion=policy)
    assert attempts == [f"models:/{name}/{v1}"]
    assert decision.unscorable_champion == policy and decision.champion_version == v1
    assert "could not be scored" in decision.reason and f"unscorable_champion={policy}" in decision.reason
    champion = str(client.get_model_version_by_alias(name, CHAMPION).version)
    assert champion == (v2 if policy == "replace" else v1) and decision.promoted == (policy == "replace")
    assert client.get_model_version(name, v1).tags["registry.unscorable_on"] == "new"
    assert client.get_model_version(name, v1).tags["registry.unscorable"]
    assert client.get_model_version(name, v2).tags["registry.unscorable_champion"].startswith(f"{policy}: v{v1}")
    tags = client.get_run(run2).data.tags
    assert tags["registry.unscorable_champion"] == policy and "could not be scored" in tags["registry.reason"]

    run3, v3 = _train_run(uri, client, experiment, name)  # the next firing, same rows
    later = promote_if_better(name, v3, pckh_total=65.0, val_fingerprint="new", tracking_uri=uri,
                              run_id=run3, score_version=score, unscorable_champion=policy)
    if policy == "replace":  # compared with v2's score on these rows: no scoring, no failure
        assert len(attempts) == 1 and later.promoted and later.champion_total == 60.0
    else:  # v1 still cannot be scored: the same explicit decision, not a failure
        assert len(attempts) == 2 and not later.promoted and later.unscorable_champion == "keep"
