"""The one override engine: dotted `section.field=value` keys applied to a tree of frozen dataclasses.

A *tree* is a frozen dataclass whose fields are themselves frozen dataclasses (its sections):
`ExperimentConfig` (model, data, train) for `shg train`, `RunConfig` (synth, prepare, model,
data, train) for `shg run`. Every value is parsed by its field's declared type; an unknown key is
an error that lists the valid ones. Files (YAML or TOML) hold nested sections or dotted keys.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

Tree = TypeVar("Tree")


class ConfigError(ValueError):
    """A configuration file or override that cannot be applied; the message says how to fix it."""


def flatten(tree: Any) -> dict[str, Any]:
    """`{"model.stacks": 2, "train.lr": 0.00025, ...}`: one entry per leaf field, in field order."""
    flat: dict[str, Any] = {}
    for section in dataclasses.fields(tree):
        values = getattr(tree, section.name)
        for field in dataclasses.fields(values):
            flat[f"{section.name}.{field.name}"] = getattr(values, field.name)
    return flat


def to_nested(tree: Any, *, exclude: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Nested plain-Python form (tuples become lists): what a YAML/JSON config file holds."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flatten(tree).items():
        if key in exclude:
            continue
        section, field = key.split(".", 1)
        nested.setdefault(section, {})[field] = json.loads(json.dumps(value))
    return nested


def to_yaml(tree: Any, *, exclude: Sequence[str] = (), header: str = "") -> str:
    """The tree as a YAML config file that `read_config_file` reads back to the same tree."""
    text = yaml.safe_dump(to_nested(tree, exclude=exclude), sort_keys=False, default_flow_style=None)
    return "".join(f"# {line}\n" for line in header.splitlines()) + text


def split_override(item: str) -> tuple[str, str]:
    """`"model.stacks=2"` → `("model.stacks", "2")`; ConfigError if there is no `=`."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. model.stacks=2)")
    return key.strip(), value


def parse_overrides(items: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """`KEY=VALUE` strings (or a mapping) as a dict; a later value for the same key wins."""
    if isinstance(items, Mapping):
        return dict(items)
    return dict(split_override(item) for item in items)


def apply_overrides(cfg: Tree, values: Mapping[str, Any], *, source: str = "overrides",
                    locked: Sequence[str] = ()) -> Tree:
    """Returns `cfg` with the dotted keys in `values` replaced; strings are parsed by type.

    `data.heatmap_size` follows `data.input_size` (input / 4) unless it is given as well.
    """
    flat_keys = set(flatten(cfg))
    refused = [key for key in values if key in locked]
    if refused:
        raise ConfigError(f"{refused} from {source} cannot be set here: the command sets them itself "
                          "(e.g. from --workdir or --address)")
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
        try:
            return int(raw) if not isinstance(raw, str) else int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    if hint is float:
        if isinstance(raw, bool):
            raise ValueError(f"expected a number, got {raw!r}")
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    if hint is str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {raw!r}")
        return raw
    raise TypeError(f"unsupported config field type {hint!r}")


def read_config_file(path: Path) -> dict[str, Any]:
    """Reads a TOML/YAML config file into a flat `{"section.field": value}` mapping."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(path.read_text())
        elif suffix in (".yaml", ".yml"):
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
