"""pipelines.config.profiles and run: recipes as YAML files, layered into one `RunConfig` tree."""

from __future__ import annotations

import pytest

from pipelines.config.overrides import ConfigError, read_config_file
from pipelines.config.profiles import get_profile, profile_names
from pipelines.config.run import WORKFLOW_KEYS, RunConfig, resolve_run_config


@pytest.mark.parametrize("name", profile_names())
def test_every_shipped_profile_resolves_to_a_valid_tree(name):
    profile = get_profile(name)
    assert profile.description and profile.values
    cfg = resolve_run_config(name)
    assert cfg.model.stacks >= 2  # intermediate supervision is in every recipe
    for key, value in profile.values.items():  # nothing in the file was dropped on the way
        section, field = key.split(".", 1)
        got = getattr(getattr(cfg, section), field)
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_layers_apply_in_order_and_the_user_wins(tmp_path):
    smoke = resolve_run_config("smoke")
    assert (smoke.model.channels, smoke.train.epochs) == (16, 2)
    own = tmp_path / "mine.yaml"
    own.write_text("train:\n  epochs: 5\n  lr: 1.0e-3\nmodel:\n  channels: 32\n")
    cfg = resolve_run_config("smoke", own, ["train.epochs=7"])
    assert (cfg.model.channels, cfg.train.lr, cfg.train.epochs) == (32, 1e-3, 7)
    assert cfg.synth.people == smoke.synth.people  # untouched by the file
    assert cfg.data.heatmap_size == 16  # follows the profile's input size


def test_saved_config_reads_back_to_the_same_tree(tmp_path):
    cfg = resolve_run_config("synthetic", None, ["train.epochs=4", "data.rotation_deg=12.5"])
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml(header="saved"))
    again = resolve_run_config("", path)
    assert again == cfg
    assert not set(WORKFLOW_KEYS) & set(read_config_file(path))


def test_real_data_needs_both_paths_and_rejects_synthetic_overrides():
    real = resolve_run_config("smoke", None, ["prepare.annotations=/d/a.json", "prepare.images=/d/img"])
    assert real.uses_real_data and not any(k.startswith("synth.") for k in real.flatten())
    with pytest.raises(ConfigError, match="needs both"):
        resolve_run_config("smoke", None, ["prepare.annotations=/d/a.json"])
    with pytest.raises(ConfigError, match="make no sense with real data"):
        resolve_run_config("smoke", None, ["prepare.annotations=/a", "prepare.images=/i", "synth.people=3"])


@pytest.mark.parametrize(
    "values, message",
    [
        (["synth.peeple=3"], "unknown config key"),
        (["train.epochz=3"], "unknown config key"),
        (["train.storage=/elsewhere"], "cannot be set here"),
        (["prepare.out=/x"], "cannot be set here"),
        (["train.epochs=three"], "expected an integer"),
        (["train.epochs"], "not KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(values, message):
    with pytest.raises(ConfigError, match=message):
        resolve_run_config("smoke", None, values)


def test_unknown_profile_lists_the_known_ones_and_a_bad_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="known profiles: .*smoke.*synthetic"):
        get_profile("huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  stackz: 3\n")
    with pytest.raises(ConfigError, match=f"unknown config key.*{bad}"):
        resolve_run_config("", bad)


def test_dataclass_defaults_are_one_recipe_the_profiles_are_named_others():
    assert resolve_run_config("") == RunConfig()
    assert resolve_run_config("synthetic") != RunConfig()


@pytest.mark.parametrize("name", ["synthetic", "smoke"])
def test_cpu_profiles_state_intent_not_one_machines_answer(name):
    cfg = resolve_run_config(name)  # the speed path is measured on the machine (training.precision)
    assert cfg.train.amp == "auto" and cfg.train.layout == "auto" and not cfg.model.channels_last


def test_the_main_job_has_a_time_budget_not_one_machines_step_count():
    """The README's job fits its 15 minutes by a training-time budget: the whole recipe where
    the machine is fast enough, a stop at the budget where it is not (docs/RECIPES.md)."""
    cfg = resolve_run_config("synthetic")
    train, people = cfg.train, cfg.synth.people * (1 - cfg.synth.val_fraction)  # 3,520 train
    assert train.max_steps == 0 and 0 < train.max_minutes <= 11
    assert train.epochs * people >= 30_000  # the full recipe: the ~30 k images that reach 85 %
