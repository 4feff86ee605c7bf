"""`shg train`: distributed training with Ray Train V2, tracked in MLflow, gated into the registry.

The driver (this module) checks the data and the tracking store, creates or resumes the MLflow
run, computes the mean-pose baseline, and runs a `TorchTrainer` whose workers execute
`pipelines.training.worker.train_worker`. Afterwards it logs and registers the final model and
applies the champion gate (`pipelines.tracking.registry`).

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipelines.training.checkpoints import check_model_config
from pipelines.config.experiment import ExperimentConfig
from pipelines.training.data_stream import TRAIN_DATASET
from pipelines.runtime.prepared import read_manifest, split_files
from pipelines.evaluation.pckh import TABLE_KEYS

# Settings that do not change what is trained: excluded from the derived run name, so a resumed
# run may use another storage folder layout or retry budget.
NOT_IN_RUN_NAME = ("train.storage", "train.run_name", "train.max_failures", "train.log_every")


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


def run_name_for(cfg: ExperimentConfig, data_fingerprint: str) -> str:
    """`train.run_name`, or `shg-<hash of config and data>` so a re-run finds its folder."""
    if cfg.train.run_name:
        return cfg.train.run_name
    data_hex = str(data_fingerprint).rpartition(":")[2]  # "sha256:<hex>" → "<hex>"
    return f"shg-{cfg.fingerprint(exclude=NOT_IN_RUN_NAME)}-{data_hex[:8]}"


def run_training(cfg: ExperimentConfig, data: str | Path, *, tracking_uri: str | None = None,
                 experiment: str | None = None, register: bool = True,
                 registered_name: str | None = None, address: str | None = None,
                 log: Callable[[str], None] = print, verbose: bool = False,
                 progress: bool = True) -> TrainResult:
    """Trains `cfg` on the prepared dataset `data` (see the module docstring).

    Args:
        tracking_uri: MLflow store; default `$MLFLOW_TRACKING_URI`, else sqlite under
            `train.storage`.
        experiment: MLflow experiment name (default `shg-train`).
        register: log, register and gate the final model.
        address: Ray cluster address (None: a local cluster for this process).
        verbose: show Ray's own output (worker logs, Ray Train/Data messages) on the terminal;
            off, it stays in Ray's log files (`pipelines.runtime.ray_cluster.connect`).
        progress: show live training progress while fitting (`pipelines.training.progress`):
            a bar on a terminal, a line every 30 s (and at each phase/validation) through `log`
            otherwise.
    Raises:
        PreparedDataError: `data` is not a prepared dataset.
        TrackingUnavailable: the store cannot be reached (raised before any training).
    """
    from pipelines.tracking import store as tracking
    from pipelines.tracking.registry import DEFAULT_MODEL_NAME

    started = time.perf_counter()
    data = Path(data).resolve()
    manifest = read_manifest(data)
    split_files(data, "train"), split_files(data, "val")  # fail now if a split is missing
    storage = Path(cfg.train.storage).resolve()
    uri = tracking.resolve_tracking_uri(tracking_uri, storage)
    tracking.check_reachable(uri)

    run_name = run_name_for(cfg, manifest["fingerprint"])
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
        tracking_uri=uri, experiment=experiment or tracking.DEFAULT_EXPERIMENT, run_name=run_name,
        run_dir=run_dir, storage=storage, model_config=dataclasses.asdict(cfg.model))
    tracker = tracking.Tracker(uri, run_id)
    if not resumed:
        tracker.log_params(cfg.flatten())
        tracking.log_dataset(tracker, manifest, data, val.fingerprint)
        tracker.set_tags({**tracking.system_tags(workers=cfg.train.workers, use_gpu=cfg.train.use_gpu),
                          "shg.run_dir": str(run_dir)})
        tracker.log_metrics({f"baseline/pckh/{k}": baseline[k] for k in TABLE_KEYS}, step=0)
        log(f"train: MLflow run {run_id} in {uri}; mean-pose baseline PCKh Total {baseline['Total']:.1f} %")
    else:
        tracker.set_tags({"shg.resumed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        log(f"train: resuming run {run_name} (MLflow run {run_id})")
    experiment_id = tracker.client.get_run(run_id).info.experiment_id
    log(f"train: {tracking.how_to_open(uri, experiment_id, run_id)}")

    try:
        result = _fit(cfg, data, run_name, storage, uri, run_id, baseline, address,
                      verbose=verbose, progress=progress, log=log)
    except BaseException:
        tracking.finish_run(uri, run_id, status="FAILED")  # re-running the command resumes it
        raise
    state = _final_state(result.checkpoint)
    metrics = state["metrics"]
    pckh = {k[len("pckh/"):]: v for k, v in metrics.items() if k.startswith("pckh/")}
    registry = None
    if register:
        registry = _register(cfg, state, pckh, val.fingerprint, uri, run_id,
                             registered_name or DEFAULT_MODEL_NAME)
        log(f"train: registered {registry['name']} v{registry['version']} as {registry['alias']}: "
            f"{registry['reason']}")
    out = TrainResult(
        run_name=run_name, run_dir=str(run_dir), mlflow_run_id=run_id, tracking_uri=uri,
        epochs_completed=int(state["epoch"]) + 1, global_step=int(state["global_step"]), pckh=pckh,
        baseline_pckh={k: baseline[k] for k in TABLE_KEYS},
        val_fingerprint=val.fingerprint, checkpoint=str(result.checkpoint.path), resumed=resumed,
        registry=registry, seconds=round(time.perf_counter() - started, 1))
    tracker.log_metrics({"run/seconds": out.seconds}, step=out.epochs_completed)
    tracking.finish_run(uri, run_id)
    tracking.RunRecord(run_id, uri, experiment or tracking.DEFAULT_EXPERIMENT,
                       dataclasses.asdict(cfg.model), "finished", dataclasses.asdict(out)).write(run_dir)
    return out


def _fit(cfg: ExperimentConfig, data: Path, run_name: str, storage: Path, uri: str, run_id: str,
         baseline: dict, address: str | None, *, verbose: bool, progress: bool,
         log: Callable[[str], None]):
    """Runs the TorchTrainer (resuming from the run folder when it has checkpoints)."""
    import contextlib

    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipelines.training.data_stream import start_epoch_clock, train_dataset
    from pipelines.runtime.ray_cluster import connect
    from pipelines.training.worker import train_worker

    from pipelines.training.progress import ProgressDisplay, start_progress_board

    connect(address, num_cpus=None, verbose=verbose)
    train = cfg.train

    clock_name = f"shg-epoch-clock-{run_name}"
    clock = start_epoch_clock(clock_name)  # held here: the actor lives as long as this driver
    board_name = f"shg-progress-{run_name}"
    board = start_progress_board(board_name)

    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg, "data": str(data), "tracking_uri": uri, "run_id": run_id,
                           "baseline": baseline, "clock_name": clock_name,
                           "train_rows": int(read_manifest(data)["rows"]["train"]),
                           "progress_name": board_name},
        scaling_config=ray.train.ScalingConfig(
            num_workers=train.workers, use_gpu=train.use_gpu,
            resources_per_worker={"CPU": train.cpus_per_worker, **({"GPU": 1} if train.use_gpu else {})}),
        datasets={TRAIN_DATASET: lambda: train_dataset(data, cfg.data, clock_name, shuffle_seed=train.seed,
                                                              cache=train.cache_data)},
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
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


def _register(cfg: ExperimentConfig, state: dict, pckh: dict, val_fingerprint: str, uri: str,
              run_id: str, name: str) -> dict:
    from pipelines.inference.model_dir import ModelCard, model_from_state
    from pipelines.tracking.registry import promote_if_better, register_model

    card = ModelCard.for_config(cfg.model, input_size=cfg.data.input_size,
                                heatmap_size=cfg.data.heatmap_size, val_fingerprint=val_fingerprint,
                                val_metrics=pckh)
    model = model_from_state(state["model"], card, "final checkpoint")
    version = register_model(model, card, tracking_uri=uri, run_id=run_id, name=name)
    decision = promote_if_better(name, version, pckh_total=pckh["Total"], val_fingerprint=val_fingerprint,
                                 tracking_uri=uri, run_id=run_id)
    return dataclasses.asdict(decision)
