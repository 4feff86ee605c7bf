"""The MLflow records of `shg run`: one parent run per workflow, the stage runs nested under it.

`WorkflowRuns` is the workflow's only window on MLflow: one client for one store, passed
explicitly (no process-wide tracking URI). It creates the parent run, nests children under it,
finds the last successful run's data fingerprint (the scheduler's "unchanged data" check) and
reads back what a recorded run holds (`shg rerun`).

Tags on a parent run: `shg.workflow=parent`, `step.<name>` = ran | reused | failed | skipped,
`data.fingerprint`, `skipped` (a scheduler firing that did no training: unchanged-data | busy),
the provenance tags; its `config.yaml` artifact is the resolved `RunConfig`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.tracking.datasets import DATA_FINGERPRINT_TAG
from pipelines.tracking.tracker import DEFAULT_EXPERIMENT, Tracker, ensure_experiment, standard_tags
from pipelines.tracking.uris import artifact_root_for
from shg_io.storage import Location

# Imported where used: mlflow (about a second to load: only the calls that talk to the store pay
# for it)

EXPERIMENT = DEFAULT_EXPERIMENT
WORKFLOW_TAG = "shg.workflow"  # "parent" on workflow runs, so they are easy to search for
SKIPPED_TAG = "skipped"
CONFIG_ARTIFACT = "config.yaml"


@dataclass(frozen=True)
class RunView:
    """What a recorded run holds: name, params, tags."""

    run_id: str
    run_name: str
    params: dict[str, str]
    tags: dict[str, str]


class WorkflowRuns:
    """The workflow experiment of one MLflow store (created on first use)."""

    def __init__(self, tracking_uri: str, workdir: str | Path | Location, experiment: str = EXPERIMENT,
                 artifact_root: str = "") -> None:
        """`workdir` (a path or URI) and `artifact_root` (`train.artifact_root`) choose the
        artifact location of the experiment when this store does not have it yet
        (`pipelines.tracking.uris.artifact_root_for`)."""
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        self.experiment_id = ensure_experiment(self.client, experiment,
                                               artifact_root_for(tracking_uri, workdir, artifact_root))

    def tracker(self, run_id: str) -> Tracker:
        return Tracker(self.tracking_uri, run_id)

    def start_parent(self, run_name: str, tags: Mapping[str, str]) -> str:
        """A new workflow run (RUNNING), tagged `shg.workflow=parent` and with MLflow's user and
        source tags (`standard_tags`), as a run `mlflow.start_run` made would have."""
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={**standard_tags(), WORKFLOW_TAG: "parent", **tags})
        return run.info.run_id

    def start_child(self, parent_id: str, run_name: str, tags: Mapping[str, str]) -> str:
        """A new run nested under `parent_id` (the UI shows it below the workflow run)."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={**standard_tags(), **tags})
        self.attach(run.info.run_id, parent_id)
        return run.info.run_id

    def attach(self, child_id: str | None, parent_id: str) -> None:
        """Points an existing stage run at the workflow run."""
        if child_id:
            self.client.set_tag(child_id, "mlflow.parentRunId", parent_id)
            self.client.set_tag(child_id, "shg.workflow_run_id", parent_id)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def get(self, run_id: str) -> RunView:
        """The run's name, params and tags; LookupError when the store has no such run."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as err:
            raise LookupError(f"MLflow run {run_id} not found in {self.tracking_uri}: {err.message}") from None
        return RunView(run.info.run_id, run.info.run_name or "", dict(run.data.params), dict(run.data.tags))

    def last_successful_fingerprint(self, *, exclude: str = "") -> str | None:
        """The data fingerprint of the latest FINISHED workflow run that did not skip, or None."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{WORKFLOW_TAG}` = 'parent' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=200,
        )
        for found in runs:
            if found.info.run_id != exclude and SKIPPED_TAG not in found.data.tags:
                return found.data.tags.get(DATA_FINGERPRINT_TAG)
        return None

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """`(step, value)` of a metric, one value per step (the last logged), in step order."""
        return Tracker(self.tracking_uri, run_id).metric_history(key)

    def read_text(self, run_id: str, artifact_path: str) -> str:
        """A text artifact of a run; LookupError when the run has none at that path."""
        with tempfile.TemporaryDirectory(prefix="shg-artifact-") as tmp:
            try:
                local = self.client.download_artifacts(run_id, artifact_path, tmp)
            except Exception as err:  # the artifact stores raise several types for "missing"
                raise LookupError(f"run {run_id} has no artifact {artifact_path} ({err})") from None
            return Path(local).read_text()

