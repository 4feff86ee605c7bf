"""`shg train`: distributed training with Ray Train V2, tracked in MLflow, gated into the registry.

The driver (this module) checks the data and the tracking store, creates or resumes the MLflow
run, computes the mean-pose baseline, and runs a `TorchTrainer` whose workers execute
`pipelines.training.worker.train_worker`. Afterwards it logs and registers the best checkpoint
by validation PCKh Total (`pick_best`; Ray keeps the two best and the latest) and applies the
champion gate (`pipelines.tracking.registry`). MLflow system metrics (CPU, memory, disk,
network, GPU of the driver's node) are logged to the run while it trains.

Durability:
- a worker that dies is replaced and training continues from the last checkpoint
  (`FailureConfig(max_failures)`);
- a driver that dies: running the same command again resumes. The Ray Train run folder is
  `<train.storage>/<run name>`; Ray Train V2 restores the checkpoint list of a run with the same
  `RunConfig(name, storage_path)` and `ray.train.get_checkpoint()` returns the latest one. The
  MLflow run id is kept in that folder (`shg_run.json`), so the same MLflow run continues. The
  default run name is derived from the config and the data fingerprint, so "the same command"
  finds the same folder; a run that already finished is reported, not repeated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dataprep.pckh import TABLE_KEYS
from pipelines.config.experiment import ExperimentConfig
from pipelines.runtime.prepared import PreparedManifest, read_manifest, split_files
from pipelines.training.checkpoints import check_model_config
from pipelines.training.data_stream import TRAIN_DATASET
from pipelines.training.loop import SCORE_METRIC  # "best checkpoint": validation PCKh@0.5 Total
from shg_io.clock import utc_iso
from shg_io.storage import Location, local_state_dir, location

# Settings that do not change what is trained: excluded from the derived run name, so a resumed
# run may use another storage folder layout or retry budget.
NOT_IN_RUN_NAME = ("train.storage", "train.run_name", "train.max_failures", "train.log_every",
                   "train.worker_resource")


@dataclass(frozen=True)
class TrainResult:
    """What a finished training run produced."""

    run_name: str
    run_dir: str
    mlflow_run_id: str
    tracking_uri: str
    epochs_completed: int
    global_step: int
    pckh: dict[str, float]
    baseline_pckh: dict[str, float]
    val_fingerprint: str
    checkpoint: str
    resumed: bool
    registry: dict[str, Any] | None
    seconds: float
    best_epoch: int | None = None  # the epoch of the best checkpoint (where `pckh` was measured)
    best_checkpoint: str = ""  # what is evaluated and registered (`pick_best`)


def pick_best(candidates: list[tuple[Any, dict]]) -> tuple[Any, dict]:
    """The `(checkpoint, metrics)` with the highest `pckh/Total`; unscored (not validated) ones
    rank below every scored one, and ties go to the later `epoch`."""
    if not candidates:
        raise ValueError("no checkpoints to choose from")

    def rank(item):
        total = item[1].get(SCORE_METRIC)
        scored = isinstance(total, (int, float)) and total == total
        return (scored, float(total) if scored else float("-inf"), item[1].get("epoch", -1))

    return max(candidates, key=rank)


def run_name_for(cfg: ExperimentConfig, data_fingerprint: str) -> str:
    """`train.run_name`, or `shg-<hash of config and data>` so a re-run finds its folder."""
    if cfg.train.run_name:
        return cfg.train.run_name
    data_hex = str(data_fingerprint).rpartition(":")[2]  # "sha256:<hex>" → "<hex>"
    return f"shg-{cfg.fingerprint(exclude=NOT_IN_RUN_NAME)}-{data_hex[:8]}"


@dataclass(frozen=True)
class TrainInputs:
    """What a training run works from, resolved once by its caller.

    Attributes:
        data: the prepared dataset folder; manifest: its `manifest.json`.
        tracking_uri: the MLflow store (already checked reachable).
        run_name: the Ray Train run folder's name under `train.storage` (and the MLflow run name).
        experiment: the MLflow experiment of the run.
    """

    data: Path
    manifest: PreparedManifest
    tracking_uri: str
    run_name: str
    experiment: str


def resolve_train_inputs(cfg: ExperimentConfig, data: str | Path, *, tracking_uri: str | None = None,
                         experiment: str | None = None) -> TrainInputs:
    """Reads the manifest, checks both splits and the store, derives the run name (`shg train`).

    Raises:
        PreparedDataError: `data` is not a prepared dataset.
        TrackingUnavailable: the store cannot be reached (before any training).
    """
    from pipelines.tracking import store as tracking

    data = location(data).uri  # a local path or an object store URI (shg_io.storage)
    manifest = read_manifest(data)
    split_files(data, "train"), split_files(data, "val")  # fail now if a split is missing
    uri = tracking.resolve_tracking_uri(tracking_uri, local_state_dir(cfg.train.storage))
    tracking.check_reachable(uri)
    return TrainInputs(data=data, manifest=manifest, tracking_uri=uri,
                       run_name=run_name_for(cfg, manifest.fingerprint),
                       experiment=experiment or tracking.DEFAULT_EXPERIMENT)


def run_name_in_store(storage: Location, run_name: str, tracking_uri: str, log: Callable[[str], None]) -> str:
    """`run_name`, unless its folder records a run of another MLflow store (or one this store
    lost): then `<run_name>-<store hash>`, a folder of this store's own, and the log says so.

    A run folder is resumed (or reported as finished) only by the store and run it belongs to.
    """
    from pipelines.tracking import store as tracking

    record = tracking.RunRecord.read(storage / run_name)
    if record is None or (record.tracking_uri == tracking_uri and tracking.run_exists(tracking_uri, record.mlflow_run_id)):
        return run_name
    own = f"{run_name}-{hashlib.sha256(tracking_uri.encode()).hexdigest()[:6]}"
    log(f"train: {storage / run_name} belongs to MLflow run {record.mlflow_run_id} in {record.tracking_uri}, "
        f"which is not a run of {tracking_uri}; not resuming it: this store's run is {own}")
    return own


def run_training(cfg: ExperimentConfig, data: str | Path, *, tracking_uri: str | None = None,
                 experiment: str | None = None, address: str | None = None,
                 log: Callable[[str], None] = print, verbose: bool = False,
                 progress: bool = True) -> TrainResult:
    """`shg train`: resolves the inputs (`resolve_train_inputs`), then `train_resolved`."""
    inputs = resolve_train_inputs(cfg, data, tracking_uri=tracking_uri, experiment=experiment)
    return train_resolved(cfg, inputs, address=address, log=log, verbose=verbose, progress=progress)


def train_resolved(cfg: ExperimentConfig, inputs: TrainInputs, *, address: str | None = None,
                   log: Callable[[str], None] = print, verbose: bool = False,
                   progress: bool = True) -> TrainResult:
    """Trains `cfg` on `inputs.data` (see the module docstring); the caller resolved the inputs.

    Registration is the caller's (`pipelines.orchestration.promotion`, one path for `shg train`
    and `shg run`).

    Args:
        address: Ray cluster address (None: a local cluster for this process).
        verbose: show Ray's own output (worker logs, Ray Train/Data messages) on the terminal;
            off, it stays in Ray's log files (`pipelines.runtime.ray_cluster.connect`).
        progress: show live training progress while fitting (`pipelines.training.progress`):
            a bar on a terminal, a line every 30 s (and at each phase/validation) through `log`
            otherwise.
    """
    from pipelines.tracking import store as tracking

    started = time.perf_counter()
    data, manifest, uri, run_name = inputs.data, inputs.manifest, inputs.tracking_uri, inputs.run_name
    experiment = inputs.experiment
    # Checkpoints and the run record (shg_run.json) go to `train.storage`, a path or an object
    # store URI (Ray Train's storage_path): a driver restarted on another machine finds both.
    storage = location(cfg.train.storage)
    records = local_state_dir(storage)  # local: the default sqlite store's artifact root
    run_name = run_name_in_store(storage, run_name, uri, log)
    run_dir = storage / run_name
    record = tracking.RunRecord.read(run_dir)
    if record is not None and record.model_config is not None:
        # Refuse before starting Ray; the workers check each checkpoint again when loading it.
        check_model_config(record.model_config, cfg.model, where=f"run {run_dir}")
    if record is not None and record.status == "finished" and record.result:
        log(f"train: run {run_name} already finished (MLflow run {record.mlflow_run_id}); "
            f"pass train.run_name=<new name> to train again")
        return TrainResult(**{**record.result, "resumed": True})

    val_cfg = dataclasses.replace(cfg.data, enabled=False)
    from pipelines.training.data_stream import load_validation, train_keypoints_input_px
    from pipelines.training.validation import mean_pose, mean_pose_baseline

    val = load_validation(data, val_cfg, cfg.train.val_max_people)
    baseline = mean_pose_baseline(mean_pose(*train_keypoints_input_px(data, val_cfg)), val)
    run_id, resumed = tracking.start_or_resume_run(
        tracking_uri=uri, experiment=experiment, run_name=run_name,
        run_dir=run_dir, storage=records, model_config=dataclasses.asdict(cfg.model))
    tracker = tracking.Tracker(uri, run_id)
    if not resumed:
        tracker.log_params(cfg.flatten())
        tracking.log_dataset(tracker, manifest, data, val.fingerprint)
        tracker.set_tags({**tracking.system_tags(workers=cfg.train.workers, use_gpu=cfg.train.use_gpu),
                          "shg.run_dir": str(run_dir)})
        # params, not metrics: nine one-point bar charts would head the run's metric charts
        tracker.log_params({f"baseline.pckh.{k}": round(float(baseline[k]), 2) for k in TABLE_KEYS})
        log(f"train: MLflow run {run_id} in {uri}; mean-pose baseline PCKh Total {baseline['Total']:.1f} %")
    else:
        tracker.set_tags({"shg.resumed_at": utc_iso()})
        log(f"train: resuming run {run_name} (MLflow run {run_id})")
    experiment_id = tracker.client.get_run(run_id).info.experiment_id
    log(f"train: {tracking.how_to_open(uri, experiment_id, run_id)}")

    try:
        with tracking.system_metrics(uri, run_id, resumed=resumed, log=log):
            result = _fit(cfg, data, run_name, storage, uri, run_id, baseline, address,
                          verbose=verbose, progress=progress, log=log)
    except BaseException:
        tracking.finish_run(uri, run_id, status="FAILED")  # re-running the command resumes it
        raise
    state = _final_state(result.checkpoint)
    if state.get("stopped_by") == "max_minutes":
        log(f"train: the time budget (train.max_minutes={cfg.train.max_minutes:g}) ended training at step "
            f"{state['global_step']}, in epoch {int(state['epoch']) + 1} of {cfg.train.epochs}")
    best, _ = pick_best([*(result.best_checkpoints or []), (result.checkpoint, result.metrics or {})])
    best_state = state if best.path == result.checkpoint.path else _final_state(best)
    pckh = {k[len("pckh/"):]: v for k, v in best_state["metrics"].items() if k.startswith("pckh/")}
    best_uri = Location(storage.filesystem, best.path, storage.scheme).uri  # a URI on an object store
    tracker.set_tags({"train.best_epoch": int(best_state["epoch"]), "train.best_checkpoint": best_uri})
    out = TrainResult(
        run_name=run_name, run_dir=str(run_dir), mlflow_run_id=run_id, tracking_uri=uri,
        epochs_completed=int(state["epoch"]) + 1, global_step=int(state["global_step"]), pckh=pckh,
        baseline_pckh={k: baseline[k] for k in TABLE_KEYS},
        val_fingerprint=val.fingerprint, resumed=resumed,
        checkpoint=Location(storage.filesystem, result.checkpoint.path, storage.scheme).uri,
        registry=None, seconds=round(time.perf_counter() - started, 1),
        best_epoch=int(best_state["epoch"]), best_checkpoint=best_uri)
    tracker.log_metrics({"run/seconds": out.seconds}, step=out.epochs_completed)
    tracking.finish_run(uri, run_id)
    tracking.RunRecord(run_id, uri, experiment,
                       dataclasses.asdict(cfg.model), "finished", dataclasses.asdict(out)).write(run_dir)
    return out


def _fit(cfg: ExperimentConfig, data: str, run_name: str, storage: Location, uri: str, run_id: str,
         baseline: dict, address: str | None, *, verbose: bool, progress: bool,
         log: Callable[[str], None]):
    """Runs the TorchTrainer (resuming from the run folder when it has checkpoints)."""
    import contextlib

    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipelines.runtime.ray_cluster import connect
    from pipelines.training.data_stream import start_epoch_clock, train_dataset
    from pipelines.training.progress import ProgressDisplay, start_progress_board
    from pipelines.training.worker import train_worker

    connect(address, num_cpus=None, verbose=verbose)
    train = cfg.train

    clock_name = f"shg-epoch-clock-{run_name}"
    clock = start_epoch_clock(clock_name)  # held here: the actor lives as long as this driver
    board_name = f"shg-progress-{run_name}"
    board = start_progress_board(board_name)

    ingest = ray.train.DataConfig.default_ingest_options()
    # Ray Data hands blocks on as their tasks finish; a deterministic run needs them in order
    # (the same batches in the same order on a rerun), at some cost in overlap.
    ingest.preserve_order = train.deterministic
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg, "data": str(data), "tracking_uri": uri, "run_id": run_id,
                           "baseline": baseline, "clock_name": clock_name,
                           "train_rows": int(read_manifest(data).rows["train"]),
                           "progress_name": board_name},
        scaling_config=ray.train.ScalingConfig(
            num_workers=train.workers, use_gpu=train.use_gpu,
            resources_per_worker={"CPU": train.cpus_per_worker, **({"GPU": 1} if train.use_gpu else {}),
                                  **({train.worker_resource: 1} if train.worker_resource else {})}),
        dataset_config=ray.train.DataConfig(execution_options=ingest),
        datasets={TRAIN_DATASET: lambda: train_dataset(data, cfg.data, clock_name, shuffle_seed=train.seed,
                                                              cache=train.cache_data)},
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=storage.uri,  # Ray Train opens a URI itself
            failure_config=ray.train.FailureConfig(max_failures=train.max_failures),
            # the two best by validation PCKh; Ray V2 also always keeps the latest (the resume point)
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=SCORE_METRIC, checkpoint_score_order="max"),
        ),
    )
    display = (ProgressDisplay(lambda: ray.get(board.latest.remote(), timeout=10), write=log)
               if progress else contextlib.nullcontext())
    with display:
        result = trainer.fit()
    del clock, board
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} ended without a checkpoint; see the log above")
    return result


def _final_state(checkpoint) -> dict:
    from pipelines.training.checkpoints import load_state

    with checkpoint.as_directory() as folder:
        return load_state(folder)
