"""What a workflow run will do, resolved and validated before anything starts.

`WorkflowConfig` is what the user asked for (`shg run`'s options); `resolve` turns it into a
`ResolvedRun`: the `RunConfig` tree (profile → config file → overrides), where every output goes
under the work dir, the MLflow store, and the training stage's `ExperimentConfig`.

The work dir (default `./runs`) may be a local path, a mounted shared folder or an object store
URI (`s3://bucket/prefix`, `shg_io.storage`). Layout under it:
    data/synth/            the embedded synthetic MPII-format dataset (images/, annotations.json)
    data/prepared/         the prepared parquet dataset (train/, val/, quarantine/, manifest.json)
    data/prepared.inputs.json  what the prepared dataset was made from (the reuse key)
    <run name>/            the Ray Train run folder (checkpoints, shg_run.json)
    models/<run name>/     the evaluated model directory and evaluation.json
    workflow/*.json        one summary per workflow run (steps, outcomes, seconds, run ids)
    .workflow.lock         held while a workflow runs: two runs never train at once here

For a work dir URI, what must be local lives in `local_state_dir(workdir)` instead (the lock,
the default sqlite MLflow store, `data/synth/`, and `models/<run name>/` before it is copied to
the URI; the run records `<run name>/shg_run.json` stay beside their checkpoints in the URI); `ResolvedRun.state` is that folder, and
the work dir itself when it is local.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dataprep.prepare import PrepareConfig
from dataprep.synth import SynthConfig
from pipelines.config.experiment import ExperimentConfig
from pipelines.config.run import RunConfig, resolve_run_config
from pipelines.tracking.tracker import DEFAULT_EXPERIMENT
from pipelines.tracking.uris import resolve_tracking_uri
from shg_io.storage import Location, local_state_dir, location

DEFAULT_PROFILE = "synthetic"


@dataclasses.dataclass(frozen=True)
class WorkflowConfig:
    """One `shg run` (CLI options carry these names).

    Args:
        profile: a recipe file from `pipelines/config/profiles/` ("" = the dataclass defaults).
        config: a config file (YAML/TOML) applied after the profile, e.g. a saved `config.yaml`.
        workdir: everything the workflow writes goes under it (see the module docstring).
        tracking_uri: MLflow tracking URI; "" = the sqlite store under `workdir`.
        address: Ray cluster; "" = an embedded local Ray started for this run, "auto" or
            "HOST:PORT" = an existing cluster (what a submitted Ray job uses).
        force: redo every step even when its inputs are unchanged.
        overrides: `KEY=VALUE` strings applied last: `synth.*`, `prepare.*` (`prepare.annotations`
            and `prepare.images` switch to real MPII files), `model.*`, `data.*`, `train.*`.
        skip_unchanged: a scheduler firing: stop after prepare, tagging the parent run
            `skipped=unchanged-data`, when the data fingerprint equals the last successful run's.
        expect_fingerprint: `shg rerun`: the prepare step fails unless the data has this
            fingerprint (the repeated run must see the same rows).
        run_name: the training run's name ("" = derived from the config and the data).
        tags: extra tags on the parent run (e.g. `shg.rerun_of`).
        verbose: show Ray's own output on the terminal (off: it stays in Ray's log files).
    """

    profile: str = DEFAULT_PROFILE
    config: str = ""
    workdir: str = "runs"
    tracking_uri: str = ""
    address: str = ""
    force: bool = False
    overrides: tuple[str, ...] = ()
    skip_unchanged: bool = False
    expect_fingerprint: str = ""
    run_name: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    verbose: bool = False


@dataclasses.dataclass(frozen=True)
class DataInputs:
    """What the prepare step works from: the synthetic config (None for real data), the prepare
    config with its paths filled in, and the reuse marker of the prepared dataset."""

    synth: SynthConfig | None
    prepare: PrepareConfig
    marker: Location


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """What the train, evaluate and register steps work with, for `shg run` and `shg train`.

    Attributes:
        experiment: the training config (`train.storage` is where run folders go).
        tracking_uri: the MLflow store (checked reachable).
        state: the local folder of `train.storage` (`local_state_dir`): lock, model directories.
        workdir: `train.storage` as a location (a path or an object store URI).
        mlflow_experiment: the MLflow experiment of the training run.
        model_name: the registered model's name ("" = `stacked-hourglass`).
    """

    experiment: ExperimentConfig
    tracking_uri: str
    state: Path
    workdir: Location
    mlflow_experiment: str = DEFAULT_EXPERIMENT
    model_name: str = ""


@dataclasses.dataclass(frozen=True)
class ResolvedRun:
    """Everything a workflow run will do, resolved before anything starts."""

    workdir: Location  # the outputs: local path or object store URI
    state: Path  # local: the work dir itself, or its local state folder for a URI
    tracking_uri: str
    config: RunConfig
    data: DataInputs
    experiment: ExperimentConfig  # config.experiment() with train.storage = workdir
    params: dict[str, Any]  # logged on the parent run

    @property
    def train_plan(self) -> TrainPlan:
        """The train, evaluate and register steps' part of the run."""
        return TrainPlan(experiment=self.experiment, tracking_uri=self.tracking_uri, state=self.state,
                         workdir=self.workdir)


def resolve(cfg: WorkflowConfig) -> ResolvedRun:
    """Builds the run's config and paths; raises ValueError (ConfigError) on any bad key/value."""
    workdir = location(cfg.workdir)
    state = local_state_dir(workdir)
    config = resolve_run_config(cfg.profile, cfg.config or None, cfg.overrides)
    experiment = config.experiment()
    experiment = dataclasses.replace(experiment, train=dataclasses.replace(
        experiment.train, storage=workdir.uri, run_name=cfg.run_name))
    return ResolvedRun(
        workdir=workdir,
        state=state,
        tracking_uri=resolve_tracking_uri(cfg.tracking_uri or None, state),
        config=config,
        data=data_inputs(config, workdir, address=cfg.address, state=state),
        experiment=experiment,
        params={"workflow.profile": cfg.profile, **config.flatten()},
    )


def data_inputs(config: RunConfig, workdir: str | Path | Location, *, address: str = "",
                state: Path | None = None) -> DataInputs:
    """Where the data comes from and goes: real files when `prepare.annotations` is set, else
    the embedded synthetic dataset under `state/data/synth` (`state`: the work dir's local
    folder, `local_state_dir(workdir)` by default)."""
    workdir = location(workdir)
    data = workdir / "data"
    prepare = dataclasses.replace(config.prepare, out=(data / "prepared").uri, address=address or None)
    if config.uses_real_data:
        return DataInputs(synth=None, prepare=prepare, marker=data / "prepared.inputs.json")
    synth = (local_state_dir(workdir) if state is None else state) / "data" / "synth"
    prepare = dataclasses.replace(prepare, annotations=str(synth / "annotations.json"),
                                  images=str(synth / "images"))
    return DataInputs(synth=config.synth, prepare=prepare, marker=data / "prepared.inputs.json")
