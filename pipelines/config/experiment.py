"""The training stage's configuration: one frozen `ExperimentConfig` built in three layers.

Defaults (the dataclass fields) → an optional TOML or YAML file → dotted `section.field=value`
overrides from the command line. Every value is parsed by its field's declared type, and an
unknown key is an error that lists the valid ones. `flatten()` turns the result into the
`{"model.stacks": 2, ...}` mapping logged as MLflow params.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dataprep.augment import AugmentConfig
from shg_model import HourglassConfig


class ConfigError(ValueError):
    """A configuration file or override that cannot be applied; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: the Ray Train loop, optimiser, schedule, validation and run bookkeeping.

    Sizes are per worker (`batch_size` images per worker per step); `lr` is the learning rate of
    `optimizer` (RMSprop as in the paper, or Adam, which leaves the zero-heatmap plateau sooner
    in short runs), multiplied by `lr_drop_factor` at each epoch listed in `lr_drop_epochs` and whenever
    validation PCKh has not improved for `lr_plateau_patience` epochs (0 disables plateau drops).
    """

    epochs: int = 10
    batch_size: int = 16
    workers: int = 2
    use_gpu: bool = False
    lr: float = 2.5e-4
    optimizer: str = "rmsprop"  # rmsprop (the paper's) | adam
    rmsprop_alpha: float = 0.99
    weight_decay: float = 0.0
    lr_drop_factor: float = 0.2
    lr_drop_epochs: tuple[int, ...] = ()
    lr_plateau_patience: int = 0
    max_steps: int = 0  # total optimiser steps over the whole run; 0 means no cap
    seed: int = 0
    # Speed paths; `auto` is resolved when training starts (pipelines.training.precision): on a
    # GPU bf16 (else fp16) autocast and channels_last; on a CPU the fastest measured path.
    amp: str = "auto"  # auto | off | bf16 | fp16
    layout: str = "auto"  # auto | nchw | channels_last (model.channels_last=true fixes channels_last)
    # torch.compile of the stem and each stack (Inductor): off | on | auto (measured, for long
    # runs). Off by default: on 2 CPU cores compiling costs ~3 minutes and gained nothing
    # (docs/RECIPES.md, "Speed paths").
    compile: str = "off"
    deterministic: bool = False
    cpus_per_worker: float = 0.5  # < 1 leaves CPUs for the Ray Data augmentation tasks
    cache_data: bool = True  # read the train split once into the object store (see data_stream)
    val_every: int = 1  # validate every N epochs (and always after the last)
    val_flip: bool = True
    val_batch_size: int = 32
    val_max_people: int = 0  # 0: the whole validation split
    val_grid_people: int = 8  # people drawn in the skeleton grid artifact
    log_every: int = 10  # steps between per-step metric logs
    max_failures: int = 3
    storage: str = "runs"  # run directory root: Ray checkpoints, default MLflow store
    run_name: str = ""  # "" derives a stable name from the config and data fingerprint

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "workers": self.workers >= 1,
            "lr": self.lr > 0,
            "optimizer": self.optimizer in ("rmsprop", "adam"),
            "lr_drop_factor": 0 < self.lr_drop_factor <= 1,
            "max_steps": self.max_steps >= 0,
            "amp": self.amp in ("auto", "off", "bf16", "fp16"),
            "layout": self.layout in ("auto", "nchw", "channels_last"),
            "compile": self.compile in ("auto", "on", "off"),
            "val_every": self.val_every >= 1,
            "val_batch_size": self.val_batch_size >= 1,
            "log_every": self.log_every >= 1,
            "max_failures": self.max_failures >= -1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"invalid train settings {bad}: epochs/batch_size/workers/val_every/log_every ≥ 1, "
                "lr > 0, optimizer in rmsprop|adam, 0 < lr_drop_factor ≤ 1, max_steps ≥ 0, amp in auto|off|bf16|fp16, "
                "layout in auto|nchw|channels_last, compile in auto|on|off, max_failures ≥ -1 (-1 retries forever)"
            )


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a training run: the network, the data augmentation, the loop."""

    model: HourglassConfig = dataclasses.field(default_factory=HourglassConfig)
    data: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def flatten(self) -> dict[str, Any]:
        """`{"model.stacks": 2, "train.lr": 0.00025, ...}`: one entry per leaf field."""
        flat: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            for field in dataclasses.fields(getattr(self, section.name)):
                flat[f"{section.name}.{field.name}"] = getattr(getattr(self, section.name), field.name)
        return flat

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain-Python form (tuples become lists), e.g. for JSON or a config file."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def fingerprint(self, *, exclude: Sequence[str] = ()) -> str:
        """Short sha256 of the flattened config, leaving out the keys in `exclude`."""
        flat = {k: v for k, v in self.flatten().items() if k not in exclude}
        text = json.dumps(flat, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def valid_keys(cfg: ExperimentConfig | None = None) -> list[str]:
    """Every dotted key an override may name."""
    return list((cfg or ExperimentConfig()).flatten())


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    base: ExperimentConfig | None = None,
) -> ExperimentConfig:
    """Builds the config: `base` (defaults) → file at `path` (TOML/YAML) → `overrides`.

    Args:
        path: a `.toml`, `.yaml` or `.yml` file with `[model]`, `[data]`, `[train]` sections
            (nested tables) or dotted top-level keys.
        overrides: `["model.stacks=2", ...]` strings, or a `{"model.stacks": 2}` mapping.
    Raises:
        ConfigError: unreadable file, unknown key (the message lists the valid keys), or a
            value that does not parse as its field's type.
    """
    cfg = base or ExperimentConfig()
    if path is not None:
        cfg = apply_overrides(cfg, _read_config_file(Path(path)), source=str(path))
    if not isinstance(overrides, Mapping):
        overrides = dict(_split_override(item) for item in overrides)
    return apply_overrides(cfg, overrides, source="command line")


def apply_overrides(
    cfg: ExperimentConfig, values: Mapping[str, Any], *, source: str = "overrides"
) -> ExperimentConfig:
    """Returns `cfg` with the dotted keys in `values` replaced; strings are parsed by type.

    `data.heatmap_size` follows `data.input_size` (input / 4) unless it is given as well.
    """
    flat_keys = set(valid_keys(cfg))
    unknown = [key for key in values if key not in flat_keys]
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} in {source}; valid keys are:\n  "
            + "\n  ".join(sorted(flat_keys))
        )
    values = dict(values)
    if "data.input_size" in values and "data.heatmap_size" not in values:
        # The heatmap side is tied to the input side (stride 4); follow it unless given.
        try:
            values["data.heatmap_size"] = parse_value(values["data.input_size"], int) // 4
        except (TypeError, ValueError):
            pass  # the bad input_size is reported below, under its own key
    changes: dict[str, dict[str, Any]] = {}
    for key, raw in values.items():
        section_name, field_name = key.split(".", 1)
        section = getattr(cfg, section_name)
        hint = typing.get_type_hints(type(section))[field_name]
        try:
            value = parse_value(raw, hint)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}={raw!r} from {source}: {err}") from None
        changes.setdefault(section_name, {})[field_name] = value
    sections = {}
    for section_name, fields in changes.items():
        try:
            sections[section_name] = dataclasses.replace(getattr(cfg, section_name), **fields)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{section_name} settings from {source} are invalid: {err}") from None
    return dataclasses.replace(cfg, **sections)


def parse_value(raw: Any, hint: Any) -> Any:
    """Converts `raw` (a string from the command line, or a TOML/YAML value) to type `hint`.

    Supports bool, int, float, str, `X | None` ("none" → None), `tuple[T, ...]` and
    `tuple[A, B]` (comma-separated, optionally in brackets) and `Literal[...]`.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for option in inner:
            try:
                return parse_value(raw, option)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ValueError("; ".join(errors))
    if origin is typing.Literal:
        for option in args:
            try:
                if parse_value(raw, type(option)) == option:
                    return option
            except (TypeError, ValueError):
                pass
        raise ValueError(f"expected one of {list(args)}")
    if origin in (tuple, list):
        items = raw
        if isinstance(raw, str):
            text = raw.strip().strip("[]()")
            items = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"expected a comma-separated list, got {raw!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(item, args[0]) for item in items)
        if args and len(items) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values, got {len(items)}")
        return tuple(parse_value(item, arg) for item, arg in zip(items, args or [str] * len(items)))
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean (true/false), got {raw!r}")
    if hint is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"expected an integer, got {raw!r}")
        return int(raw) if not isinstance(raw, str) else int(raw.strip())
    if hint is float:
        if isinstance(raw, bool):
            raise ValueError(f"expected a number, got {raw!r}")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {raw!r}")
        return raw
    raise TypeError(f"unsupported config field type {hint!r}")


def _split_override(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. model.stacks=2)")
    return key.strip(), value


def _read_config_file(path: Path) -> dict[str, Any]:
    """Reads a TOML/YAML config file into a flat `{"section.field": value}` mapping."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text())
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text()) or {}
        else:
            raise ConfigError(f"config file {path}: use a .toml, .yaml or .yml file")
    except ConfigError:
        raise
    except Exception as err:  # the parsers raise their own error types
        raise ConfigError(f"config file {path} could not be parsed: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[str(key)] = value
    return flat
