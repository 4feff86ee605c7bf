"""pipelines.config.profiles: every named profile is a valid override set for the workflow."""

from __future__ import annotations

import dataclasses

import pytest

from dataprep.synth import SynthConfig
from pipelines.config.experiment import load_config
from pipelines.config.profiles import PROFILES, get_profile, profile_overrides


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_overrides_are_valid(name):
    overrides = profile_overrides(name)
    synth = {k.split("=")[0][len("synth."):]: v for k, v in (o.split("=", 1) for o in overrides) if k.startswith("synth.")}
    assert set(synth) <= {f.name for f in dataclasses.fields(SynthConfig)}
    cfg = load_config(None, [o for o in overrides if not o.startswith("synth.")])
    assert cfg.train.workers >= 1 and cfg.model.stacks == 2
    # the speed path is the machine's to choose (pipelines.training.precision), not the profile's
    assert cfg.train.amp == "auto" and cfg.train.layout == "auto" and not cfg.model.channels_last


def test_smoke_is_small_and_unknown_profile_is_an_error():
    smoke = load_config(None, [o for o in profile_overrides("smoke") if not o.startswith("synth.")])
    default = load_config(None, [o for o in profile_overrides("default") if not o.startswith("synth.")])
    assert smoke.model.channels < default.model.channels and smoke.data.input_size < default.data.input_size
    with pytest.raises(ValueError, match="known profiles: smoke, default"):
        get_profile("huge")
