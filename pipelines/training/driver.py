"""`shg train`: distributed training with Ray Train V2, tracked in MLflow, gated into the registry.

The driver (this module) checks the data and the tracking store, creates or resumes the MLflow
run, computes the mean-pose baseline, and runs a `TorchTrainer` whose workers execute
`pipelines.training.worker.train_worker`. Afterwards it logs and registers the best checkpoint
by validation PCKh Total (`pick_best`; Ray keeps the two best and the latest) and applies the
champion gate (`pipelines.tracking.registry`). MLflow system metrics (CPU, memory, disk,
network, GPU) are sampled on rank 0's node, where the training happens (the driver may be a
CPU-only head), by the worker (`pipelines.training.worker`).

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

import contextlib
import dataclasses
import functools
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dataprep.pckh import TABLE_KEYS
from pipelines.config.experiment import ExperimentConfig
from pipelines.inference.model_dir import ModelCard, model_from_state, save_model_dir
from pipelines.runtime.prepared import PreparedManifest, read_manifest, split_files
from pipelines.runtime.ray_cluster import connect
from pipelines.tracking.datasets import log_dataset
from pipelines.tracking.run_records import RunRecord
from pipelines.tracking.system import system_tags
from pipelines.tracking.tracker import (
    DEFAULT_EXPERIMENT,
    Tracker,
    finish_run,
    run_exists,
    start_or_resume_run,
)
from pipelines.tracking.uris import check_reachable, how_to_open, resolve_tracking_uri
from pipelines.training.checkpoints import check_model_config, load_state
from pipelines.training.data_stream import (
    TRAIN_DATASET,
    load_validation,
    start_epoch_clock,
    train_dataset,
    train_keypoints_input_px,
)
from pipelines.training.loop import SCORE_METRIC  # "best checkpoint": validation PCKh@0.5 Total
from pipelines.training.progress import ProgressDisplay, start_progress_board
from pipelines.training.run_names import run_key, run_name_of
from pipelines.training.validation import mean_pose, mean_pose_baseline
from pipelines.training.worker import train_worker
from pipelines.training.worker_args import WorkerArgs
from shg_io.clock import utc_iso
from shg_io.storage import Location, local_folder, local_state_dir, location

# Imported where used: ray (Ray Train loads in seconds: only starting the training needs it)


class TrainedNotRecorded(RuntimeError):
    """Training finished but the tracking store did not take the result: the model is kept.

    The run folder's record says `trained` (with the result), the best checkpoint stays, and a
    model directory is saved under `model_dir`; running the same command again (or the next
    scheduled firing) does not train again: it records the run and registers the model.
    """

    def __init__(self, message: str, *, run_dir: str, checkpoint: str, model_dir: str) -> None:
        super().__init__(message)
        self.run_dir, self.checkpoint, self.model_dir = run_dir, checkpoint, model_dir


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
    seconds: float
    best_epoch: int | None = None  # the epoch of the best checkpoint (where `pckh` was measured)
    best_checkpoint: str = ""  # what is evaluated and registered (`pick_best`)

    @classmethod
    def from_record(cls, values: dict[str, Any], *, resumed: bool) -> TrainResult:
        """The result a run record (`shg_run.json`) holds; records written before the registry's
        decision left this class carry `registry` (always null there), which is dropped."""
        values = {k: v for k, v in values.items() if k != "registry"}
        return cls(**{**values, "resumed": resumed})


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
    data = location(data).uri  # a local path or an object store URI (shg_io.storage)
    manifest = read_manifest(data)
    split_files(data, "train"), split_files(data, "val")  # fail now if a split is missing
    uri = resolve_tracking_uri(tracking_uri, local_state_dir(cfg.train.storage))
    check_reachable(uri)
    return TrainInputs(data=data, manifest=manifest, tracking_uri=uri,
                       run_name=run_name_of(cfg, manifest),
                       experiment=experiment or DEFAULT_EXPERIMENT)


def run_name_in_store(storage: Location, run_name: str, tracking_uri: str, log: Callable[[str], None]) -> str:
    """`run_name`, unless its folder records a run of another MLflow store (or one this store
    lost): then `<run_name>-<store hash>`, a folder of this store's own, and the log says so.

    A run folder is resumed (or reported as finished) only by the store and run it belongs to.
    """
    record = RunRecord.read(storage / run_name)
    if record is None or (record.tracking_uri == tracking_uri and run_exists(tracking_uri, record.mlflow_run_id)):
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

    Registration is the caller's (the register step, `pipelines.orchestration.steps`, for `shg train`
    and `shg run`).

    Args:
        address: Ray cluster address (None: a local cluster for this process).
        verbose: show Ray's own output (worker logs, Ray Train/Data messages) on the terminal;
            off, it stays in Ray's log files (`pipelines.runtime.ray_cluster.connect`).
        progress: show live training progress while fitting (`pipelines.training.progress`):
            a bar on a terminal, a line every 30 s (and at each phase/validation) through `log`
            otherwise.
    """
    started = time.perf_counter()
    data, manifest, uri, run_name = inputs.data, inputs.manifest, inputs.tracking_uri, inputs.run_name
    experiment = inputs.experiment
    # Checkpoints and the run record (shg_run.json) go to `train.storage`, a path or an object
    # store URI (Ray Train's storage_path): a driver restarted on another machine finds both.
    storage = location(cfg.train.storage)
    run_name = run_name_in_store(storage, run_name, uri, log)
    run_dir = storage / run_name
    record = RunRecord.read(run_dir)
    if record is not None and record.model_config is not None:
        # Refuse before starting Ray; the workers check each checkpoint again when loading it.
        check_model_config(record.model_config, cfg.model, where=f"run {run_dir}")
    if record is not None and record.status == "finished" and record.result:
        log(f"train: run {run_name} already finished (MLflow run {record.mlflow_run_id}); "
            f"pass train.run_name=<new name> to train again")
        return TrainResult.from_record(record.result, resumed=True)
    if record is not None and record.status == "trained" and record.result:
        # trained before, but the store was down when it ended: record it now, do not retrain
        out = TrainResult.from_record(record.result, resumed=True)
        log(f"train: run {run_name} was trained before but not recorded (the tracking store was down); "
            f"recording MLflow run {out.mlflow_run_id} now")
        _record_trained(cfg, out, experiment, run_dir, log)
        return out

    val_cfg = dataclasses.replace(cfg.data, enabled=False)

    val = load_validation(data, val_cfg, cfg.train.val_max_people)
    baseline = mean_pose_baseline(mean_pose(*train_keypoints_input_px(data, val_cfg)), val)
    run_id, resumed = start_or_resume_run(
        tracking_uri=uri, experiment=experiment, run_name=run_name, run_dir=run_dir, storage=storage,
        artifact_root=cfg.train.artifact_root, model_config=dataclasses.asdict(cfg.model),
        tags={"shg.run_key": run_key(cfg, manifest.fingerprint)})
    tracker = Tracker(uri, run_id)
    if not resumed:
        tracker.log_params(cfg.flatten())
        log_dataset(tracker, manifest, data, val.fingerprint)
        tracker.set_tags({**system_tags(workers=cfg.train.workers, use_gpu=cfg.train.use_gpu),
                          "shg.run_dir": str(run_dir)})
        # params, not metrics: nine one-point bar charts would head the run's metric charts
        tracker.log_params({f"baseline.pckh.{k}": round(float(baseline[k]), 2) for k in TABLE_KEYS})
        log(f"train: MLflow run {run_id} in {uri}; mean-pose baseline PCKh Total {baseline['Total']:.1f} %")
    else:
        tracker.set_tags({"shg.resumed_at": utc_iso()})
        log(f"train: resuming run {run_name} (MLflow run {run_id})")
    experiment_id = tracker.client.get_run(run_id).info.experiment_id
    log(f"train: {how_to_open(uri, experiment_id, run_id)}")

    try:
        args = WorkerArgs(cfg=cfg, data=str(data), tracking_uri=uri, run_id=run_id, baseline=baseline,
                          clock_name=f"shg-epoch-clock-{run_name}", train_rows=int(manifest.rows["train"]),
                          progress_name=f"shg-progress-{run_name}")
        result = _fit(args, run_name, storage, address, verbose=verbose, progress=progress, log=log)
    except BaseException:
        finish_run(uri, run_id, status="FAILED")  # re-running the command resumes it
        raise
    state = _final_state(result.checkpoint)
    if state.get("stopped_by") == "max_minutes":
        log(f"train: the time budget (train.max_minutes={cfg.train.max_minutes:g}) ended training at step "
            f"{state['global_step']}, in epoch {int(state['epoch']) + 1} of {cfg.train.epochs}")
    best, _ = pick_best([*(result.best_checkpoints or []), (result.checkpoint, result.metrics or {})])
    best_state = state if best.path == result.checkpoint.path else _final_state(best)
    pckh = {k[len("pckh/"):]: v for k, v in best_state["metrics"].items() if k.startswith("pckh/")}
    best_uri = Location(storage.filesystem, best.path, storage.scheme).uri  # a URI on an object store
    out = TrainResult(
        run_name=run_name, run_dir=str(run_dir), mlflow_run_id=run_id, tracking_uri=uri,
        epochs_completed=int(state["epoch"]) + 1, global_step=int(state["global_step"]), pckh=pckh,
        baseline_pckh={k: baseline[k] for k in TABLE_KEYS},
        val_fingerprint=val.fingerprint, resumed=resumed,
        checkpoint=Location(storage.filesystem, result.checkpoint.path, storage.scheme).uri,
        seconds=round(time.perf_counter() - started, 1),
        best_epoch=int(best_state["epoch"]), best_checkpoint=best_uri)
    # The model is kept before the store is asked for anything: an outage from here on costs a
    # re-run of the command (which finds this record and does not train again), not the model.
    RunRecord(run_id, uri, experiment, dataclasses.asdict(cfg.model), "trained",
              dataclasses.asdict(out)).write(run_dir)
    _record_trained(cfg, out, experiment, run_dir, log)
    return out


def _record_trained(cfg: ExperimentConfig, out: TrainResult, experiment: str, run_dir: Location,
                    log: Callable[[str], None]) -> None:
    """Tags, final metric and FINISHED status of a trained run, then its record says `finished`.

    Raises:
        TrainedNotRecorded: the store did not answer or refused; a model directory was saved
            and the message says how the model gets registered later.
    """
    uri, run_id = out.tracking_uri, out.mlflow_run_id
    try:
        check_reachable(uri)  # seconds, where MLflow's client retries for minutes
        tracker = Tracker(uri, run_id)
        tracker.set_tags({"train.best_epoch": out.best_epoch, "train.best_checkpoint": out.best_checkpoint})
        tracker.log_metrics({"run/seconds": out.seconds}, step=out.epochs_completed)
        finish_run(uri, run_id)
    except Exception as err:  # any failure of the store: the model must not be lost to it
        model_dir = keep_model_dir(cfg, out)
        again = "the same `shg train` command" if not cfg.train.run_name else f"`shg train ... train.run_name={out.run_name}`"
        raise TrainedNotRecorded(
            f"training finished ({out.global_step} steps, validation PCKh Total "
            f"{out.pckh.get('Total', float('nan')):.1f} %) but the tracking store {uri} did not take the "
            f"result ({type(err).__name__}: {str(err)[:300]}). The trained model is kept: model directory "
            f"{model_dir}, best checkpoint {out.best_checkpoint}, run folder {run_dir}. Once the store "
            f"answers, run {again} (or `shg run` / the next scheduled firing with the same config and data) "
            f"again: it does not train again, it records MLflow run {run_id} and registers the model.",
            run_dir=str(run_dir), checkpoint=out.best_checkpoint, model_dir=str(model_dir)) from None
    RunRecord(run_id, uri, experiment, dataclasses.asdict(cfg.model), "finished",
              dataclasses.asdict(out)).write(run_dir)


def keep_model_dir(cfg: ExperimentConfig, out: TrainResult) -> Path:
    """Saves the run's best checkpoint as a model directory (`shg evaluate --model` / `shg predict`
    read it) at `<local state of train.storage>/models/<run name>/model`, where `shg train`'s and
    `shg run`'s evaluation write it later; returns its path."""
    checkpoint = out.best_checkpoint or out.checkpoint
    with local_folder(checkpoint) as folder:
        state = load_state(folder, cfg.model)
    card = ModelCard.for_config(cfg.model, input_size=cfg.data.input_size, heatmap_size=cfg.data.heatmap_size)
    model = model_from_state(state["model"], card, f"checkpoint {checkpoint}")
    return save_model_dir(model, card, local_state_dir(cfg.train.storage) / "models" / out.run_name / "model")


def _fit(args: WorkerArgs, run_name: str, storage: Location, address: str | None, *, verbose: bool,
         progress: bool, log: Callable[[str], None]):
    """Runs the TorchTrainer (resuming from the run folder when it has checkpoints)."""
    import ray  # heavy (seconds): loaded when training starts, not when the CLI or a step imports this
    import ray.train
    from ray.train.torch import TorchTrainer

    connect(address, num_cpus=None, verbose=verbose)
    cfg, data, train = args.cfg, args.data, args.cfg.train

    clock = start_epoch_clock(args.clock_name)  # held here: the actor lives as long as this driver
    board = start_progress_board(args.progress_name)

    ingest = ray.train.DataConfig.default_ingest_options()
    # Ray Data hands blocks on as their tasks finish; a deterministic run needs them in order
    # (the same batches in the same order on a rerun), at some cost in overlap.
    ingest.preserve_order = train.deterministic
    trainer = TorchTrainer(
        # the arguments bound here, not as `train_loop_config`: Ray Train V2 records that as a
        # JSON dict in its run state, and the worker takes one typed value
        functools.partial(train_worker, args),
        scaling_config=ray.train.ScalingConfig(
            num_workers=train.workers, use_gpu=train.use_gpu,
            resources_per_worker={"CPU": train.cpus_per_worker, **({"GPU": 1} if train.use_gpu else {}),
                                  **({train.worker_resource: 1} if train.worker_resource else {})}),
        dataset_config=ray.train.DataConfig(execution_options=ingest),
        datasets={TRAIN_DATASET: lambda: train_dataset(data, cfg.data, args.clock_name, shuffle_seed=train.seed,
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
    with checkpoint.as_directory() as folder:
        return load_state(folder)
