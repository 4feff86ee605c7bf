"""The training stage's configuration: `ExperimentConfig` = the network, the augmentation, the loop.

`shg train` builds it in three layers: the dataclass defaults → an optional YAML/TOML file →
dotted `section.field=value` overrides (`pipelines.config.overrides`). `flatten()` is what MLflow
logs as params. The workflow's wider tree (`RunConfig`) holds the same three sections.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dataprep.augment import AugmentConfig
from pipelines.config.overrides import ConfigError, apply_overrides, flatten, parse_overrides, read_config_file
from shg_model import HourglassConfig


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
    # With `max_minutes`: the next drop of `lr_drop_epochs` is taken early once this fraction of
    # the budget is spent (0 never), so a machine too slow for the recipe still finishes at the
    # low learning rate; a machine that reaches the listed epoch first is unaffected.
    lr_drop_budget_fraction: float = 0.0
    # The same early drop at a fixed global step (0 never): what `shg rerun` pins to repeat a
    # budget-stopped run step for step.
    lr_drop_at_step: int = 0
    max_steps: int = 0  # total optimiser steps over the whole run; 0 means no cap
    # Minutes of training passes (startup and validation not counted, restarts included) after
    # which the run stops, validates and keeps its checkpoint; 0 means no limit. A time budget
    # that fits the job to the machine: a fast one goes through every epoch, a slow one stops
    # early (the step it stopped at is tagged, and `shg rerun` repeats exactly that many steps).
    max_minutes: float = 0.0
    seed: int = 0
    # Speed paths; `auto` is resolved when training starts (pipelines.training.precision): on a
    # GPU bf16 (else fp16) autocast and channels_last; on a CPU the fastest measured path.
    amp: str = "auto"  # auto | off | bf16 | fp16
    layout: str = "auto"  # auto | nchw | channels_last (model.channels_last=true fixes channels_last)
    # torch.compile of the stem and each stack (Inductor): off | on | auto (measured, for long
    # runs). Off by default: on 2 CPU cores compiling costs ~3 minutes and gained nothing
    # (docs/RECIPES.md, "Speed paths").
    compile: str = "off"
    deterministic: bool = False  # deterministic kernels and Ray Data blocks in order (for `shg rerun --check`)
    cpus_per_worker: float = 0.5  # < 1 leaves CPUs for the Ray Data augmentation tasks
    # A custom Ray resource each training worker takes one unit of ("" none): a node started
    # with `ray start --resources '{"NAME": k}'` hosts at most k workers, e.g. one per node.
    worker_resource: str = ""
    cache_data: bool = True  # read the train split once into the object store (see data_stream)
    val_every: int = 1  # validate every N epochs (and always after the last)
    val_flip: bool = True
    val_batch_size: int = 32
    val_max_people: int = 0  # 0: the whole validation split
    val_grid_people: int = 8  # people drawn in the skeleton grid artifact
    log_every: int = 10  # steps between per-step metric logs
    max_failures: int = 3
    # Seconds rank 0 waits at the end of training for MLflow writes an outage held back. The
    # model never waits on this: an outage still on after it is reported by the driver, which
    # keeps the trained model for a later run of the same command to record and register.
    tracking_flush_s: float = 300.0
    # Seconds between MLflow system-metric samples (CPU, memory, disk, network, GPU through
    # nvidia-ml-py) taken on rank 0's node while it trains; 0: none.
    system_metrics_s: float = 10.0
    # The champion gate, when the current champion cannot be scored on the new validation rows
    # (its artifacts deleted, a card this code rejects): `replace` (the new, scored version
    # becomes champion) or `keep` (the champion stays, the new version is challenger). Either
    # way the decision and the error are recorded on both versions and the run: a champion that
    # cannot be scored never fails a registration, nor every later one.
    unscorable_champion: str = "replace"
    # Mid-epoch checkpoints (besides the one after every epoch), so a lost worker costs minutes,
    # not an epoch: every N optimiser steps and/or every M minutes of training (0: off). A
    # resumed epoch trains on exactly the samples it had not reached (see data_stream).
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 0.0
    storage: str = "runs"  # run directory root: Ray checkpoints, default MLflow store
    # Where a new MLflow experiment keeps its artifacts, a path or URI (s3://bucket/prefix);
    # "": the work dir's own for its sqlite store, the server's for an MLflow server, else
    # <storage>/mlartifacts (pipelines.tracking.uris.artifact_root_for); never ./mlruns.
    artifact_root: str = ""
    run_name: str = ""  # "" derives a stable name from the config and data fingerprint

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "workers": self.workers >= 1,
            "lr": self.lr > 0,
            "optimizer": self.optimizer in ("rmsprop", "adam"),
            "lr_drop_factor": 0 < self.lr_drop_factor <= 1,
            "lr_drop_budget_fraction": 0 <= self.lr_drop_budget_fraction < 1,
            "lr_drop_at_step": self.lr_drop_at_step >= 0,
            "max_steps": self.max_steps >= 0,
            "max_minutes": self.max_minutes >= 0,
            "amp": self.amp in ("auto", "off", "bf16", "fp16"),
            "layout": self.layout in ("auto", "nchw", "channels_last"),
            "compile": self.compile in ("auto", "on", "off"),
            "val_every": self.val_every >= 1,
            "val_batch_size": self.val_batch_size >= 1,
            "log_every": self.log_every >= 1,
            "checkpoint_every_steps": self.checkpoint_every_steps >= 0,
            "checkpoint_every_minutes": self.checkpoint_every_minutes >= 0,
            "tracking_flush_s": self.tracking_flush_s >= 0,
            "system_metrics_s": self.system_metrics_s >= 0,
            "unscorable_champion": self.unscorable_champion in ("replace", "keep"),
            "max_failures": self.max_failures >= -1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"invalid train settings {bad}: epochs/batch_size/workers/val_every/log_every ≥ 1, "
                "lr > 0, optimizer in rmsprop|adam, 0 < lr_drop_factor ≤ 1, 0 ≤ lr_drop_budget_fraction < 1, max_steps/max_minutes ≥ 0, amp in auto|off|bf16|fp16, "
                "layout in auto|nchw|channels_last, compile in auto|on|off, checkpoint_every_steps/minutes ≥ 0, "
                "max_failures ≥ -1 (-1 retries forever)"
            )


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a training run: the network, the data augmentation, the loop."""

    model: HourglassConfig = dataclasses.field(default_factory=HourglassConfig)
    data: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def flatten(self) -> dict[str, Any]:
        """`{"model.stacks": 2, "train.lr": 0.00025, ...}`: one entry per leaf field."""
        return flatten(self)

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
        cfg = apply_overrides(cfg, read_config_file(Path(path)), source=str(path))
    return apply_overrides(cfg, parse_overrides(overrides), source="command line")


