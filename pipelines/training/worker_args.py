"""What the driver hands every Ray Train worker (`pipelines.training.worker.train_worker`)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.config.experiment import ExperimentConfig


@dataclass(frozen=True)
class WorkerArgs:
    """The arguments of `train_worker`, one value for every rank.

    Attributes:
        cfg: the experiment (model, data, train sections).
        data: the prepared dataset, a local path or an object store URI.
        tracking_uri, run_id: the MLflow store and the run rank 0 logs to.
        baseline: the mean-pose PCKh table (`TABLE_KEYS` -> percent) logged beside the model's.
        clock_name: the run's `EpochClock` actor (`pipelines.training.data_stream`).
        train_rows: rows of the training split (from the manifest).
        progress_name: the live display's board actor ("" without a display).
    """

    cfg: ExperimentConfig
    data: str
    tracking_uri: str
    run_id: str
    baseline: dict[str, float]
    clock_name: str
    train_rows: int
    progress_name: str = ""
