"""One step on its own, as `shg prepare` and `shg train` run it; the CLI parses, calls one of
these, prints.

`shg train` is a train-only plan through the workflow's own steps (`pipelines.orchestration.
steps`): train -> evaluate -> register, on a prepared dataset given by path, with no workflow
parent run (its MLflow run stands alone). Like `shg run` it holds the work-dir lock of
`train.storage` while it works, and it checks its inputs (config, data, tracking store) before
taking the lock or writing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dataprep.prepare import PrepareConfig, PreparedManifest, PrepareConfigError, run_prepare
from pipelines.config.experiment import ExperimentConfig, load_config
from pipelines.config.run import resolve_run_config
from pipelines.orchestration import steps
from pipelines.orchestration.lock import WorkflowBusy, dataset_lock, workdir_lock
from pipelines.orchestration.plan import TrainPlan
from pipelines.runtime.prepared import PreparedDataError, read_manifest
from pipelines.runtime.ray_cluster import ClusterUnavailable, connect
from pipelines.tracking.registry import GateDecision
from pipelines.tracking.uris import TrackingUnavailable
from pipelines.training.checkpoints import CheckpointMismatchError
from pipelines.training.driver import TrainedNotRecorded, TrainResult, resolve_train_inputs  # noqa: F401 (the CLI catches it from here)
from shg_io.storage import local_state_dir, location

Log = Callable[[str], None]

# What `shg train` refuses before training, each with a message that says the fix (the exit
# status by kind: `pipelines.orchestration.errors`).
TRAIN_REFUSALS = (PreparedDataError, TrackingUnavailable, CheckpointMismatchError, WorkflowBusy, ClusterUnavailable)
# What `shg prepare` refuses before preparing.
PREPARE_REFUSALS = (PrepareConfigError, WorkflowBusy, ClusterUnavailable)


# --- shg prepare ---------------------------------------------------------------------------------

def prepare_dataset(cfg: PrepareConfig, *, log: Log) -> PreparedManifest:
    """`shg prepare`: one writer per output folder and never while a command reads it (the
    dataset lock beside it, `dataset_lock`), on the Ray cluster `cfg.address` names (None: a
    local one for this process)."""
    with dataset_lock(cfg.out, "shg prepare", write=True):
        connect(cfg.address)
        return run_prepare(cfg, log=log)


# --- shg train -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainOnlyConfig:
    """One `shg train` (CLI options carry these names).

    Attributes:
        data: the prepared dataset, a folder or an object store URI (`shg prepare --out`).
        profile: a recipe from `pipelines/config/profiles/` whose model, data and train sections
            are the base ("" = the dataclass defaults), as `shg run --profile`.
        config: a YAML/TOML file of model/data/train keys, applied after the profile ("" = none).
        overrides: `KEY=VALUE` strings (model.*, data.*, train.*), applied last.
        tracking_uri: the MLflow store ("" = $MLFLOW_TRACKING_URI, else sqlite under train.storage).
        experiment: the MLflow experiment ("" = `shg`, the one `shg run` uses).
        register: evaluate the best checkpoint and put it through the champion gate.
        model_name: the registered model's name ("" = `stacked-hourglass`).
        address: Ray cluster ("" = a local one for this process).
        verbose: Ray's own output on the terminal; progress: the live progress display.
    """

    data: str
    profile: str = ""
    config: str = ""
    overrides: tuple[str, ...] = ()
    tracking_uri: str = ""
    experiment: str = ""
    register: bool = True
    model_name: str = ""
    address: str = ""
    verbose: bool = False
    progress: bool = True


@dataclass(frozen=True)
class TrainOnlyResult:
    """What `shg train` did: the training run, and the gate's decision (None with no register)."""

    trained: TrainResult
    decision: GateDecision | None


def train_experiment(profile: str, config: str | Path | None, overrides: tuple[str, ...]) -> ExperimentConfig:
    """The training config: the profile's model/data/train sections (or the defaults), then the
    config file, then the overrides. Raises `ConfigError` naming a bad key or value."""
    base = resolve_run_config(profile).experiment() if profile else None
    return load_config(config or None, overrides, base=base)


def run_train_only(cfg: TrainOnlyConfig, *, log: Log) -> TrainOnlyResult:
    """`shg train`: the train-only plan, train -> evaluate -> register (see the module docstring).

    Raises:
        pipelines.config.experiment.ConfigError: a bad profile, config file or override (nothing looked at yet).
        One of `TRAIN_REFUSALS`: not a prepared dataset, an unreachable store (both before
            anything is written), the work dir busy, a checkpoint of another model.
    """
    experiment = train_experiment(cfg.profile, cfg.config, cfg.overrides)
    inputs = resolve_train_inputs(experiment, cfg.data, tracking_uri=cfg.tracking_uri or None,
                                  experiment=cfg.experiment or None)
    workdir = location(experiment.train.storage)
    plan = TrainPlan(experiment=experiment, tracking_uri=inputs.tracking_uri, state=local_state_dir(workdir),
                     workdir=workdir, mlflow_experiment=inputs.experiment, model_name=cfg.model_name)
    # the lock `shg run` takes on the same folder; then the dataset, read-locked so no prepare
    # replaces it while it is trained on, evaluated and the gate scores on it
    with workdir_lock(plan.state, "shg train"), dataset_lock(inputs.data, "shg train", write=False):
        # read again under the lock: a prepare that finished in between changed the fingerprint
        prepared = steps.Prepared("given", str(inputs.data), read_manifest(inputs.data))
        trained = steps.train(plan, prepared, None, force=False, address=cfg.address, log=log,
                              verbose=cfg.verbose, progress=cfg.progress)
        decision = None
        if cfg.register:  # the same evaluation and champion gate as `shg run`
            decision = _evaluate_and_register(plan, prepared, trained, address=cfg.address, log=log)
    return TrainOnlyResult(trained.result, decision)


def evaluate_and_register(experiment: ExperimentConfig, trained: TrainResult, data: str | Path, *,
                          address: str | None, log: Log, name: str = "") -> GateDecision:
    """The tail of the train-only plan for a run trained already (`run_training`): evaluate and
    register steps in its store; a run registered before is reported, not registered twice."""
    workdir = location(experiment.train.storage)
    plan = TrainPlan(experiment=experiment, tracking_uri=trained.tracking_uri, state=local_state_dir(workdir),
                     workdir=workdir, model_name=name)
    data = location(data).uri
    prepared = steps.Prepared("given", data, read_manifest(data))
    return _evaluate_and_register(plan, prepared, steps.Trained("given", trained), address=address or "", log=log)


def _evaluate_and_register(plan: TrainPlan, prepared: steps.Prepared, trained: steps.Trained, *,
                           address: str, log: Log) -> GateDecision:
    evaluated = steps.evaluate(plan, prepared, trained, None, force=False, address=address, log=log)
    return steps.register(plan, prepared, trained, evaluated, None, force=False, address=address, log=log).decision

