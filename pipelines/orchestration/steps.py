"""The workflow's four steps, each a function from typed inputs to a typed result.

    prepare(run)                                          -> Prepared
    train(plan, prepared, parent)                         -> Trained
    evaluate(plan, prepared, trained, parent)             -> Evaluated
    register(plan, prepared, trained, evaluated, parent)  -> Registered

Every result says whether the step `ran` or was `reused` (its inputs had not changed) and
carries what later steps need. `parent` is the workflow's MLflow parent run, under which stage
runs nest; None for `shg train`, whose run stands alone. Two runners compose them: `shg run`
(`pipelines.orchestration.workflow`) and `shg train` (`pipelines.orchestration.standalone`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.prepare import run_prepare
from pipelines.orchestration.plan import ResolvedRun, TrainPlan
from pipelines.orchestration.promotion import register_and_gate, save_and_evaluate
from pipelines.orchestration.reuse import prepare_inputs_key, synthesise
from pipelines.runtime.prepared import MANIFEST, PreparedDataError, PreparedManifest, read_manifest
from pipelines.tracking.registry import GateDecision
from pipelines.tracking.run_records import RunRecord
from pipelines.tracking.tracker import run_tags
from pipelines.tracking.workflow_runs import DATA_FINGERPRINT_TAG, WorkflowRuns
from pipelines.training.driver import (
    TrainedNotRecorded,
    TrainInputs,
    TrainResult,
    run_name_in_store,
    train_resolved,
)
from pipelines.training.run_names import run_name_of
from shg_io.clock import utc_compact
from shg_io.json_files import read_json, write_json_atomic
from shg_io.storage import Location, copy_folder, location

Log = Callable[[str], None]


@dataclass(frozen=True)
class ParentRun:
    """The workflow's MLflow parent run, and the store it lives in."""

    runs: WorkflowRuns
    run_id: str


@dataclass(frozen=True)
class Prepared:
    status: str  # ran | reused | given (`shg train --data`)
    path: str  # the prepared dataset folder: a local path or an object store URI
    manifest: PreparedManifest

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    def detail(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "rows": self.manifest.rows,
                "quarantined": self.manifest.quarantined}


@dataclass(frozen=True)
class Trained:
    status: str
    result: TrainResult

    def detail(self) -> dict[str, Any]:
        r = self.result
        return {"mlflow_run_id": r.mlflow_run_id, "run_name": r.run_name, "global_step": r.global_step,
                "val_pckh_total": r.pckh.get("Total")}


@dataclass(frozen=True)
class Evaluated:
    status: str
    mlflow_run_id: str
    model_dir: Path
    table: dict[str, Any]  # the official PCKh table of the whole val split (strict JSON)

    def detail(self) -> dict[str, Any]:
        return {"mlflow_run_id": self.mlflow_run_id, "pckh_total": self.table["Total"], "rows": self.table.get("rows")}


@dataclass(frozen=True)
class Registered:
    status: str
    decision: GateDecision  # name, version, alias, promoted, both numbers, reason

    def detail(self) -> dict[str, Any]:
        return dataclasses.asdict(self.decision)


def prepare(run: ResolvedRun, *, force: bool, log: Log) -> Prepared:
    """Synthesises (for the embedded dataset) and prepares the data, or reuses the prepared set.

    Reuse needs the same inputs key and a manifest whose fingerprint is the one recorded with
    that key (so a hand-edited dataset is redone).
    """
    inputs = run.data
    synthesised = False
    if inputs.synth is not None:
        synthesised = synthesise(inputs.synth, Path(inputs.prepare.annotations).parent, force=force, log=log)
    key = prepare_inputs_key(inputs.prepare, inputs.synth)
    out = inputs.prepare.out
    manifest_path = location(out) / MANIFEST
    if not force and not synthesised and inputs.marker.is_file() and manifest_path.is_file():
        marker = _read_json(inputs.marker)
        try:
            manifest = read_manifest(out)
        except PreparedDataError:  # unreadable: prepare again
            manifest = None
        if manifest is not None and marker.get("key") == key and marker.get("fingerprint") == manifest.fingerprint:
            log(f"prepare: {out} is up to date (fingerprint {manifest.fingerprint}); reused")
            return Prepared("reused", out, manifest)
    manifest = run_prepare(inputs.prepare, log=log)
    write_json_atomic(inputs.marker, {"key": key, "fingerprint": manifest.fingerprint})
    return Prepared("ran", out, manifest)


def train(plan: TrainPlan, prepared: Prepared, parent: ParentRun | None, *, force: bool, address: str,
          log: Log, verbose: bool = False, progress: bool = True) -> Trained:
    """Trains (or reports the finished run of the same config and data), nested under `parent`
    (None: a run of its own, as `shg train` makes)."""
    experiment = plan.experiment
    name = run_name_of(experiment, prepared.manifest)
    if force and not experiment.train.run_name:  # a new folder: the finished one would be reported
        name = f"{name}-{utc_compact()}"
    storage = location(experiment.train.storage)  # the work dir: checkpoints and run records
    name = run_name_in_store(storage, name, plan.tracking_uri, log)
    record = RunRecord.read(storage / name)
    reused = record is not None and record.status == "finished"
    inputs = TrainInputs(data=prepared.path, manifest=prepared.manifest, tracking_uri=plan.tracking_uri,
                         run_name=name, experiment=plan.mlflow_experiment)
    try:
        out = train_resolved(experiment, inputs, address=address or None, log=log, verbose=verbose,
                             progress=progress)
    except TrainedNotRecorded:
        raise  # the store is down: the next firing records, attaches and registers the run
    except BaseException:
        if parent is not None:
            failed = RunRecord.read(storage / name)  # the run a failure left behind, if any
            parent.runs.attach(failed.mlflow_run_id if failed else None, parent.run_id)
        raise
    if parent is not None:
        if not reused:  # a reused run stays nested under the workflow run that trained it
            parent.runs.attach(out.mlflow_run_id, parent.run_id)
        parent.runs.tracker(parent.run_id).set_tags({"shg.train_run_id": out.mlflow_run_id})
    return Trained("reused" if reused else "ran", out)


def evaluate(plan: TrainPlan, prepared: Prepared, trained: Trained, parent: ParentRun | None, *,
             force: bool, address: str, log: Log) -> Evaluated:
    """Saves the trained model as a model directory and scores the whole val split (official PCKh).

    The model directory is written locally (`plan.state/models/<run name>`, the registry logs it
    from there); for a work dir URI it is then copied to `<workdir>/models/<run name>`. Under a
    workflow `parent` the scores are also an MLflow run of their own, nested under it.
    """
    result = trained.result
    folder = plan.state / "models" / result.run_name
    record_path = folder / "evaluation.json"
    if not force and record_path.is_file():
        record = _read_json(record_path)
        if record.get("train_run_id") == result.mlflow_run_id:
            where = f" (run {record['mlflow_run_id']})" if record.get("mlflow_run_id") else ""
            log(f"evaluate: {result.run_name} was evaluated before{where}; reused")
            return Evaluated("reused", record["mlflow_run_id"], Path(record["model_dir"]), record["table"])

    model_dir, table = save_and_evaluate(plan.experiment, result, prepared.path, prepared.fingerprint, folder,
                                         tracking_uri=plan.tracking_uri, address=address or None, log=log)
    evaluation_id = ""
    if parent is not None:
        evaluation_id = parent.runs.start_child(parent.run_id, f"evaluate-{result.run_name}", {
            "shg.stage": "evaluate", "shg.train_run_id": result.mlflow_run_id,
            DATA_FINGERPRINT_TAG: prepared.fingerprint})
        tracker = parent.runs.tracker(evaluation_id)
        tracker.log_params({"model": str(model_dir), "split": "val", "flip": True, "rows": table["rows"]})
        tracker.log_metrics({f"eval/pckh/{k}": v for k, v in table.items() if isinstance(v, float)}, step=0)
        tracker.log_dict(table, "evaluation/pckh_val.json")
        parent.runs.finish(evaluation_id)
    write_json_atomic(record_path, {"train_run_id": result.mlflow_run_id, "mlflow_run_id": evaluation_id,
                                    "model_dir": str(model_dir), "table": table})
    if not plan.workdir.is_local:  # the export: model directory and evaluation record on the URI
        copy_folder(folder, plan.workdir / "models" / result.run_name)
    return Evaluated("ran", evaluation_id, model_dir, table)


def register(plan: TrainPlan, prepared: Prepared, trained: Trained, evaluated: Evaluated,
             parent: ParentRun | None, *, force: bool, address: str, log: Log) -> Registered:
    """Registers the evaluated model under `plan.model_name` and moves `champion` only through
    the gate; a run registered before is reported, not registered twice (unless `force`)."""
    train_run_id = trained.result.mlflow_run_id
    before = GateDecision.from_tags(run_tags(plan.tracking_uri, train_run_id))
    if not force and before is not None:
        decision = before
        log(f"register: {decision.name} v{decision.version} was registered from this run before; reused")
        status = "reused"
    else:
        decision = register_and_gate(evaluated.model_dir, evaluated.table, prepared.fingerprint, prepared.path,
                                     tracking_uri=plan.tracking_uri, run_id=train_run_id,
                                     address=address or None, log=log, name=plan.model_name or None,
                                     unscorable_champion=plan.experiment.train.unscorable_champion)
        status = "ran"
    if parent is not None:
        parent.runs.tracker(parent.run_id).set_tags(decision.to_tags())
    return Registered(status, decision)


def _read_json(path: str | Path | Location) -> dict[str, Any]:
    """A JSON file written by an earlier run (a path or URI); an unreadable one counts as absent
    (redo the step)."""
    try:
        value = read_json(path)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}

