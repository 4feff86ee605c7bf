"""`RunConfig`: everything that decides what `shg run` produces, as one tree of frozen dataclasses.

Sections: `synth` (the embedded synthetic dataset, `dataprep.synth.SynthConfig`), `prepare`
(`dataprep.prepare.PrepareConfig`; `prepare.annotations` + `prepare.images` switch to real MPII
files), and the training stage's `model`, `data`, `train` (`ExperimentConfig`). It is built in
layers, each overriding the one before:

    dataclass defaults → profile file (`--profile`) → config file (`--config`) → KEY=VALUE overrides

The resolved tree is printed by `--print-config`, saved with every workflow run as `config.yaml`
(`to_yaml` leaves out the keys the workflow sets itself), and read back by `shg rerun`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dataprep.augment import AugmentConfig
from dataprep.prepare import PrepareConfig
from dataprep.synth import SynthConfig
from pipelines.config import overrides
from pipelines.config.experiment import ExperimentConfig, TrainConfig
from pipelines.config.overrides import ConfigError
from pipelines.config.profiles import get_profile
from shg_model import HourglassConfig

# Set by the workflow from --workdir / --address / the derived run name, never by a user value.
WORKFLOW_KEYS = ("prepare.out", "prepare.address", "train.storage", "train.run_name")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The whole recipe of one workflow run: data source, preparation, network, augmentation, loop."""

    synth: SynthConfig = dataclasses.field(default_factory=SynthConfig)
    prepare: PrepareConfig = dataclasses.field(default_factory=PrepareConfig)
    model: HourglassConfig = dataclasses.field(default_factory=HourglassConfig)
    data: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    @property
    def uses_real_data(self) -> bool:
        """True when `prepare.annotations` names real MPII files (else: the synthetic dataset)."""
        return bool(self.prepare.annotations)

    def experiment(self) -> ExperimentConfig:
        """The training stage's part of the tree."""
        return ExperimentConfig(model=self.model, data=self.data, train=self.train)

    def flatten(self) -> dict[str, Any]:
        """One entry per leaf field; the synthetic section only when the run uses it."""
        flat = overrides.flatten(self)
        if self.uses_real_data:
            flat = {k: v for k, v in flat.items() if not k.startswith("synth.")}
        return flat

    def to_yaml(self, header: str = "") -> str:
        """The config file that rebuilds this tree (workflow-set keys left out)."""
        return overrides.to_yaml(self, exclude=WORKFLOW_KEYS, header=header)


def resolve_run_config(
    profile: str = "",
    config_file: str | Path | None = None,
    values: Sequence[str] | Mapping[str, Any] = (),
) -> RunConfig:
    """Builds the tree: defaults → profile `profile` ("" = none) → `config_file` → `values`.

    A profile's `synth` section is a description of the synthetic data; with real data
    (`prepare.annotations`) it is simply not used, while a user's own `synth.*` value is an
    error (it would be silently ignored).

    Raises:
        ConfigError: unknown profile, key or unparsable value (the message lists the fix).
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    if profile:
        layers.append((f"profile {profile!r}", get_profile(profile).values))
    if config_file is not None:
        layers.append((str(config_file), overrides.read_config_file(Path(config_file))))
    user = overrides.parse_overrides(values)
    layers.append(("command line", user))
    cfg = RunConfig()
    for source, layer in layers:
        cfg = overrides.apply_overrides(cfg, layer, source=source, locked=WORKFLOW_KEYS)
    if bool(cfg.prepare.annotations) != bool(cfg.prepare.images):
        raise ConfigError(
            "real data needs both prepare.annotations=FILE and prepare.images=DIR (the folder the "
            "annotation's image names are relative to); give both, or neither for the embedded "
            "synthetic dataset"
        )
    own_synth = sorted(k for source, layer in layers[1:] for k in layer if k.startswith("synth."))
    if cfg.uses_real_data and own_synth:
        raise ConfigError(f"{own_synth} make no sense with real data (prepare.annotations); drop them")
    return cfg
