"""The `mpii` profile file: every key is a field of its section's dataclass and the values
build valid configs (the workflow's own profile loader replaces this check later)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dataprep.augment import AugmentConfig
from dataprep.prepare import PrepareConfig
from pipelines.config.experiment import TrainConfig
from shg_model import HourglassConfig

PROFILE = Path(__file__).resolve().parents[2] / "pipelines" / "config" / "profiles" / "mpii.yaml"
SECTIONS = {"model": HourglassConfig, "data": AugmentConfig, "train": TrainConfig, "prepare": PrepareConfig}
PREPARE_PATHS = {"annotations": "a", "images": "i", "out": "o"}  # the user's, never the profile's


@pytest.fixture(scope="module")
def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def test_profile_has_a_description_and_only_known_sections(profile):
    assert isinstance(profile["description"], str) and profile["description"].strip()
    assert set(profile) - {"description"} <= set(SECTIONS)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_key_is_a_field_and_builds_a_valid_config(profile, section):
    values = dict(profile.get(section) or {})
    fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
    assert set(values) <= fields, f"{section}: unknown keys {sorted(set(values) - fields)}"
    if section == "prepare":
        assert not set(values) & set(PREPARE_PATHS)
        values.update(PREPARE_PATHS)
    if section == "train":
        values["lr_drop_epochs"] = tuple(values.get("lr_drop_epochs", ()))
    cfg = SECTIONS[section](**values)  # __post_init__ validates
    for key, value in values.items():
        assert getattr(cfg, key) == value


def test_the_paper_numbers(profile):
    model, data, train = (profile[k] for k in ("model", "data", "train"))
    assert (model["stacks"], model["channels"], data["input_size"], data["heatmap_size"]) == (8, 256, 256, 64)
    assert (data["sigma"], data["rotation_deg"], data["scale_min"], data["scale_max"]) == (1.0, 30.0, 0.75, 1.25)
    assert train["optimizer"] == "rmsprop" and train["lr"] == 2.5e-4 and train["lr_drop_factor"] == 0.2
    assert train["lr_plateau_patience"] > 0 and train["use_gpu"] is True and train["val_flip"] is True
    samples = train["epochs"] * 22_246  # the training people of the real JSON
    assert abs(samples - 2.4e6) < 22_246 / 2  # the nearest whole number of epochs to 2.4 M
