"""pipelines.config: defaults → file → dotted overrides, typed parsing, unknown keys, flatten."""

from __future__ import annotations

import pytest

from pipelines.config.experiment import ConfigError, ExperimentConfig, TrainConfig, load_config
from pipelines.config.overrides import parse_value


def test_dotted_overrides_are_parsed_by_field_type():
    cfg = load_config(None, ["model.stacks=2", "model.channels=64", "train.epochs=3",
                             "train.batch_size=8", "train.workers=2", "train.max_steps=50",
                             "train.lr=1e-3", "train.use_gpu=false", "train.lr_drop_epochs=2,4"])
    assert (cfg.model.stacks, cfg.model.channels) == (2, 64)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.workers, cfg.train.max_steps) == (3, 8, 2, 50)
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.use_gpu is False
    assert cfg.train.lr_drop_epochs == (2, 4)
    assert cfg.data == ExperimentConfig().data  # untouched sections keep their defaults


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.stack=2"])
    message = str(err.value)
    assert "model.stack'" in message and "model.stacks" in message and "train.max_steps" in message


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="model.stacks='two'"):
        load_config(None, ["model.stacks=two"])
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_config(None, ["model.stacks"])
    with pytest.raises(ConfigError, match="invalid train settings"):
        load_config(None, ["train.epochs=0"])


def test_file_then_overrides(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('[model]\nstacks = 1\nchannels = 32\n[train]\nepochs = 7\nlr_drop_epochs = [3]\n')
    cfg = load_config(toml, ["train.epochs=9"])
    assert (cfg.model.stacks, cfg.model.channels, cfg.train.epochs, cfg.train.lr_drop_epochs) == (1, 32, 9, (3,))
    yaml_file = tmp_path / "exp.yaml"
    yaml_file.write_text("train:\n  batch_size: 4\ndata.input_size: 128\n")
    cfg = load_config(yaml_file)
    assert cfg.train.batch_size == 4 and cfg.data.input_size == 128
    assert cfg.data.heatmap_size == 32  # follows input_size unless given
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nwidth = 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key.*model.width.*bad.toml"):
        load_config(bad)


def test_flatten_round_trips_through_overrides():
    cfg = load_config(None, ["model.stacks=3", "train.lr_drop_epochs=5", "train.run_name=x"])
    flat = cfg.flatten()
    assert flat["model.stacks"] == 3 and flat["train.lr_drop_epochs"] == (5,)
    assert set(flat) >= {"model.channels", "data.rotation_deg", "train.max_steps"}
    rebuilt = load_config(None, {k: str(v) if not isinstance(v, tuple) else ",".join(map(str, v))
                                 for k, v in flat.items()})
    assert rebuilt == cfg
    assert cfg.fingerprint() == rebuilt.fingerprint() != ExperimentConfig().fingerprint()


@pytest.mark.parametrize("raw, hint, expected", [
    ("true", bool, True), ("0", bool, False), ("12", int, 12), ("2.5e-4", float, 2.5e-4),
    ("none", int | None, None), ("3", int | None, 3), ("[1, 2]", tuple[int, ...], (1, 2)),
    ("", tuple[int, ...], ()), ("a", str, "a"),
])
def test_parse_value(raw, hint, expected):
    assert parse_value(raw, hint) == expected


def test_parse_value_rejects():
    for raw, hint in (("maybe", bool), ("1.5", int), ("x", float)):
        with pytest.raises(ValueError):
            parse_value(raw, hint)


def test_train_config_is_frozen():
    with pytest.raises(AttributeError):
        TrainConfig().epochs = 3  # type: ignore[misc]
