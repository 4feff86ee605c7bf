"""Profiles: named recipes as YAML files beside this module (`profiles/<name>.yaml`).

A profile file holds a one-line `description` and the sections of `RunConfig` it changes
(`synth`, `prepare`, `model`, `data`, `train`), each a mapping of field names to values, with a
comment saying why. Copy one, edit it, and pass it with `shg run --config FILE`; a user's own
`KEY=VALUE` overrides always win over both. The files are validated by `pipelines.config.run`
like any other config layer: an unknown key or a bad value is an error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.config.overrides import ConfigError, read_config_file

PROFILE_DIR = Path(__file__).with_name("profiles")


@dataclass(frozen=True)
class Profile:
    """A named recipe: what it is for, and the dotted values it sets."""

    name: str
    description: str
    values: dict[str, Any]
    path: Path


def profile_names() -> list[str]:
    """The shipped profiles, sorted by name."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def get_profile(name: str) -> Profile:
    """The profile called `name`; an unknown name is an error listing the known ones."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not name or "/" in name or not path.is_file():
        raise ConfigError(f"unknown profile {name!r}; known profiles: {', '.join(profile_names())} "
                          "(or pass your own file with --config FILE)")
    values = read_config_file(path)
    description = values.pop("description", "")
    if not isinstance(description, str) or not description:
        raise ConfigError(f"{path}: a profile needs a one-line `description:`")
    return Profile(name=name, description=description, values=values, path=path)
