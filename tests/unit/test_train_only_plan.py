"""`shg train --profile NAME`: the profile's model, data and train sections are the base of the
training config, as `shg run --profile NAME` builds them; without a profile, the defaults."""

from __future__ import annotations

import pytest

from pipelines.config.experiment import ConfigError, load_config
from pipelines.config.run import resolve_run_config
from pipelines.orchestration.standalone import train_experiment


def test_a_profile_gives_what_shg_run_trains():
    ours = train_experiment("smoke", None, ("train.epochs=1",))
    assert ours == resolve_run_config("smoke", None, ["train.epochs=1"]).experiment()
    assert ours != load_config(None, ["train.epochs=1"])  # the profile did change something


def test_no_profile_is_the_defaults_and_the_overrides():
    assert train_experiment("", None, ("model.stacks=2",)) == load_config(None, ["model.stacks=2"])


def test_an_unknown_profile_or_key_is_a_config_error():
    with pytest.raises(ConfigError):
        train_experiment("no-such-profile", None, ())
    with pytest.raises(ConfigError, match="model.stacks"):
        train_experiment("smoke", None, ("model.stack=2",))
