"""One MLflow run per training run: creating or resuming it, logging to it, its tags.

The driver creates the run, or resumes it when the run directory remembers one (`RunRecord`,
`pipelines.tracking.run_records`). Rank 0 of the worker group logs metrics and artifacts to that
run id through a `Tracker`; the other ranks log nothing. Each function builds its own client for
the store URI it is given. mlflow is imported inside the functions: it takes seconds to load and
the modules that import this one are also used where no run is logged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.tracking.provenance import git_revision
from pipelines.tracking.run_records import RUN_RECORD, RunRecord
from pipelines.tracking.uris import TrackingUnavailable, artifact_root_for
from shg_io.storage import Location

# Imported where used: mlflow, matplotlib (seconds to load: only the calls that talk to the store
# or draw a figure pay for them, not the CLI or a Ray worker that imports this module)

# One experiment for every run of the project: `shg run` workflows (a parent run with nested
# prepare/train/evaluate/register runs) and standalone `shg train` runs alike.
DEFAULT_EXPERIMENT = "shg"
# The MLflow 3 UI opens an experiment by its kind; without this tag it guesses, and an
# experiment with few runs opens in the GenAI view (traces, token usage).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


class Tracker:
    """Logs to one existing MLflow run by id (usable on any process: driver or rank 0)."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.client = MlflowClient(tracking_uri)

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, timestamp_ms: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        batch = [Metric(k, float(v), now, int(step)) for k, v in metrics.items() if v == v]  # no NaN
        for start in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
            self.client.log_batch(self.run_id, metrics=batch[start:start + 900], synchronous=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_text(v)) for k, v in params.items()]
        for start in range(0, len(items), 90):  # params: at most 100 per batch
            self.client.log_batch(self.run_id, params=items[start:start + 90], synchronous=True)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()],
                              synchronous=True)

    def log_figure(self, figure, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, artifact_file)
        plt.close(figure)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, values: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, values, artifact_file)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """`(step, value)` of every logged value of `key`, the last value per step, by step."""
        latest: dict[int, tuple[int, float]] = {}
        for m in self.client.get_metric_history(self.run_id, key):
            if m.step not in latest or m.timestamp >= latest[m.step][0]:
                latest[m.step] = (m.timestamp, m.value)
        return [(step, value) for step, (_, value) in sorted(latest.items())]


def run_tags(tracking_uri: str, run_id: str) -> dict[str, str]:
    """The tags of run `run_id` in the store at `tracking_uri`."""
    from mlflow import MlflowClient

    return dict(MlflowClient(tracking_uri).get_run(run_id).data.tags)


def run_exists(tracking_uri: str, run_id: str) -> bool:
    """Whether the store at `tracking_uri` holds run `run_id`."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException:
        return False
    return True


def start_or_resume_run(*, tracking_uri: str, experiment: str, run_name: str, run_dir: Path | Location,
                        storage: str | Path | Location, model_config: dict[str, Any],
                        artifact_root: str = "", tags: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The MLflow run id of this training run: remembered in `run_dir`, else a new run.

    The run is found again by the id its folder's record holds, never by its name. `storage`
    and `artifact_root` choose a new experiment's artifact location (`artifact_root_for`);
    `tags` go on a new run besides `standard_tags()`.

    Returns:
        (run_id, resumed). A resumed run is set back to RUNNING.
    Raises:
        TrackingUnavailable: the run directory names a run that the store does not have (e.g.
            another --tracking-uri than the first attempt used).
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    record = RunRecord.read(run_dir)
    if record is not None:
        try:
            client.get_run(record.mlflow_run_id)
        except Exception:
            raise TrackingUnavailable(
                f"{run_dir / RUN_RECORD} names MLflow run {record.mlflow_run_id} in "
                f"{record.tracking_uri}, which {tracking_uri} does not have. Resume with "
                f"--tracking-uri {record.tracking_uri}, or start a new run (train.run_name)."
            ) from None
        client.update_run(record.mlflow_run_id, status="RUNNING")
        return record.mlflow_run_id, True
    experiment_id = ensure_experiment(client, experiment, artifact_root_for(tracking_uri, storage, artifact_root))
    run = client.create_run(experiment_id, run_name=run_name, tags={**standard_tags(), **(tags or {})})
    RunRecord(run.info.run_id, tracking_uri, experiment, model_config).write(run_dir)
    return run.info.run_id, False


def ensure_experiment(client, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (with `artifact_location`) when the store lacks it;
    marked as model training (`EXPERIMENT_KIND_TAG`) when made, or when found without a kind."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if EXPERIMENT_KIND_TAG not in found.tags:  # a kind a person chose stays
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location,
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def standard_tags() -> dict[str, str]:
    """MLflow's own run tags, as `mlflow.start_run` would set them: `mlflow.user`,
    `mlflow.source.name` / `mlflow.source.type`, and `mlflow.source.git.commit` from this
    checkout (MLflow looks for git only beside the entry script, which for an installed `shg`
    is not the checkout; unknown revisions are left out)."""
    from mlflow.tracking.context.registry import resolve_tags

    tags = dict(resolve_tags())
    commit = git_revision(Path(__file__).resolve().parents[2])["git.commit"]
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def finish_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Marks the MLflow run FINISHED (or FAILED / KILLED)."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri).set_terminated(run_id, status=status)


def _param_text(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = json.dumps(value) if not isinstance(value, str) else value
    return text[:6000]
