"""The champion gate's decision as run tags and back: what `shg run` and `shg train` record on a
run is what a later run reads when it reuses the registration."""

from __future__ import annotations

import pytest

from pipelines.tracking.registry import GateDecision


def test_a_first_version_round_trips_through_its_tags():
    decision = GateDecision(name="stacked-hourglass", version="1", alias="champion", promoted=True,
                            new_total=61.25, champion_version=None, champion_total=None,
                            reason="first registered version becomes champion", val_fingerprint="sha256:ab/val")
    tags = decision.to_tags()
    assert tags == {
        "registry.name": "stacked-hourglass", "registry.version": "1", "registry.alias": "champion",
        "registry.promoted": "True", "registry.new_total": "61.25", "registry.champion_version": "",
        "registry.champion_total": "", "registry.reason": "first registered version becomes champion",
        "registry.val_fingerprint": "sha256:ab/val",
    }
    assert GateDecision.from_tags({**tags, "mlflow.runName": "x"}) == decision


def test_a_challenger_keeps_both_numbers():
    decision = GateDecision(name="m", version="3", alias="challenger", promoted=False, new_total=40.0,
                            champion_version="2", champion_total=55.5, reason="does not beat")
    assert GateDecision.from_tags(decision.to_tags()) == decision


def test_a_run_without_a_decision_has_none():
    assert GateDecision.from_tags({"mlflow.runName": "x", "registry.version": ""}) is None


def test_a_partial_decision_is_an_error_naming_the_tags():
    with pytest.raises(ValueError, match=r"registry\.alias.*registry\.reason"):
        GateDecision.from_tags({"registry.version": "1", "registry.name": "m", "registry.promoted": "True",
                                "registry.new_total": "1.0"})
