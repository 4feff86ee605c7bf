"""`shg run`: prepare → train → evaluate → register, as typed steps under one MLflow parent run.

Why plain Python and not `ray.workflow`: Ray's workflow library (durable DAGs of tasks) was
deprecated in Ray 2.7 and is gone from Ray 2.60. What it offered is covered here more simply:
each step (`pipelines.orchestration.steps`) is an ordinary function that drives Ray Data or Ray
Train on whatever cluster this process is connected to; durability comes from the steps' own
outputs (a prepared dataset with a manifest and fingerprint, MLflow runs and logged models), so a
step whose inputs have not changed is *reused* rather than redone. On a cluster the same driver
is submitted as a Ray job (`shg submit`, a KubeRay RayJob), which gives the lifecycle, logs and
stop that a workflow engine would.

MLflow: a parent run per workflow (`pipelines.tracking.workflow_runs`) with the resolved config
as params and as `config.yaml`, tags `step.<name>` = ran | reused | failed | skipped, a metric
`step.<name>.seconds` each, and the provenance tags; the train and evaluate runs nest under it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from pipelines.orchestration import steps
from pipelines.orchestration.lock import DatasetHold, WorkflowBusy, dataset_lock, workdir_lock
from pipelines.orchestration.plan import ResolvedRun, WorkflowConfig, resolve
from pipelines.runtime.ray_cluster import connect, quiet_ray_driver
from pipelines.tracking.datasets import log_dataset
from pipelines.tracking.provenance import provenance
from pipelines.tracking.uris import TrackingUnavailable, check_reachable  # noqa: F401 (the CLI catches it from here)
from pipelines.tracking.workflow_runs import (
    CONFIG_ARTIFACT,
    DATA_FINGERPRINT_TAG,
    SKIPPED_TAG,
    WorkflowRuns,
)
from shg_io.clock import utc_compact
from shg_io.json_files import write_json_atomic
from shg_io.storage import Location, location
from pipelines.training.progress import evaluation_label

STEPS: tuple[str, ...] = ("prepare", "train", "evaluate", "register")
Step = TypeVar("Step")


class WorkflowError(RuntimeError):
    """A step failed; the message names the step, the parent run and the cause."""

    def __init__(self, message: str, step: str = "") -> None:
        super().__init__(message)
        self.step = step


@dataclasses.dataclass
class StepOutcome:
    name: str
    status: str  # ran | reused | failed | skipped
    seconds: float = 0.0
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class WorkflowResult:
    parent_run_id: str
    steps: list[StepOutcome]
    skipped: str = ""  # "" | unchanged-data | busy
    data_fingerprint: str = ""
    train_run_id: str = ""
    pckh_total: float | None = None
    pckh_people: int | None = None  # people the evaluate step scored (the whole val split)
    summary_path: str = ""
    error: str = ""  # a scheduler firing that failed (run_firing does not raise)
    failed_step: str = ""  # the step it failed in ("setup" before any step)

    @property
    def pckh_label(self) -> str:
        """What the evaluate step's PCKh is (flip test, fp32, best checkpoint, whole split)."""
        return evaluation_label(flip=True, people=self.pckh_people)

    @property
    def outcome(self) -> str:
        """failed | skipped-unchanged-data | skipped-busy | trained (one word for logs and exits)."""
        if self.error:
            return "failed"
        return f"skipped-{self.skipped}" if self.skipped else "trained"

    def step(self, name: str) -> StepOutcome:
        return next(s for s in self.steps if s.name == name)


def run_workflow(cfg: WorkflowConfig, *, log: Callable[[str], None] = print) -> WorkflowResult:
    """Runs the workflow (see the module docstring) and returns what each step did.

    Raises:
        ValueError: a bad profile, config file or override (before anything starts).
        TrackingUnavailable: the MLflow store does not answer (before anything starts).
        WorkflowBusy: another workflow holds the work-dir lock (nothing was done).
        WorkflowError: a step failed (recorded on the parent run as `step.<name>=failed`).
    """
    run = resolve(cfg)
    if not cfg.verbose:
        quiet_ray_driver()  # before the first MLflow call sets up its store
    check_reachable(run.tracking_uri)
    # the work dir (local, also for a work dir URI: shg_io.storage), and the prepared dataset:
    # written by the prepare step, then read (no `shg prepare` replaces it under training)
    with workdir_lock(run.state), dataset_lock(run.data.prepare.out, "shg run", write=True) as dataset:
        return _run_locked(cfg, run, log, dataset)


def run_firing(cfg: WorkflowConfig, *, log: Callable[[str], None] = print) -> WorkflowResult:
    """One scheduler firing: the workflow with `skip_unchanged`; a busy work dir is recorded.

    A firing that finds the lock held records an MLflow run tagged `skipped=busy`. A failed
    firing (a step, the tracking store, anything) is logged, written to the work dir's
    `workflow/` folder (MLflow may be what failed) and returned with `error` and `failed_step`
    set: the scheduler goes on to the next firing and decides the exit status.
    """
    cfg = dataclasses.replace(cfg, skip_unchanged=not cfg.force)
    try:
        return run_workflow(cfg, log=log)
    except WorkflowBusy as busy:
        log(f"schedule: {busy}")
        run = resolve(cfg)
        runs = WorkflowRuns(run.tracking_uri, run.workdir, artifact_root=run.experiment.train.artifact_root)
        parent_id = runs.start_parent(f"firing-busy-{utc_compact()}", {
            SKIPPED_TAG: "busy", "shg.busy_reason": str(busy)[:4000],
            **{f"step.{name}": "skipped" for name in STEPS}})  # fmt: skip
        runs.finish(parent_id)
        return WorkflowResult(parent_id, [StepOutcome(n, "skipped") for n in STEPS], skipped="busy")
    except Exception as err:  # recorded, not raised: one failed firing must not end a schedule
        step = err.step if isinstance(err, WorkflowError) else "setup"
        result = WorkflowResult("", [], error=f"{type(err).__name__}: {err}", failed_step=step)
        log(f"schedule: firing failed in step {step}: {result.error}")
        try:
            result.summary_path = str(_write_summary(location(cfg.workdir), cfg, result))
        except OSError as write_err:
            log(f"schedule: could not record the failure under {cfg.workdir}: {write_err}")
        return result


class _StepRecorder:
    """Times each step, and records its outcome on the parent run and in the result."""

    def __init__(self, parent: steps.ParentRun, result: WorkflowResult, log: Callable[[str], None]) -> None:
        self.tracker = parent.runs.tracker(parent.run_id)
        self.result, self.log = result, log

    def run(self, name: str, step: Callable[[], Step]) -> Step:
        outcome = StepOutcome(name, "failed")
        self.result.steps.append(outcome)
        start = time.perf_counter()
        try:
            out = step()
            outcome.status, outcome.detail = out.status, out.detail()
        finally:
            outcome.seconds = round(time.perf_counter() - start, 3)
            self.tracker.set_tags({f"step.{name}": outcome.status})
            self.tracker.log_metrics({f"step.{name}.seconds": outcome.seconds}, step=0)
        self.log(f"workflow: {name} {outcome.status} in {outcome.seconds:.1f} s")
        return out

    def skip_rest(self) -> None:
        done = {s.name for s in self.result.steps}
        for name in STEPS:
            if name not in done:
                self.result.steps.append(StepOutcome(name, "skipped"))
                self.tracker.set_tags({f"step.{name}": "skipped"})


def _run_locked(cfg: WorkflowConfig, run: ResolvedRun, log: Callable[[str], None],
                dataset: DatasetHold) -> WorkflowResult:
    import ray  # heavy (seconds): loaded when a workflow runs, not when the CLI imports this

    runs = WorkflowRuns(run.tracking_uri, run.workdir, artifact_root=run.experiment.train.artifact_root)
    parent_id = runs.start_parent(workflow_run_name(cfg, run), {
        "shg.profile": cfg.profile, "shg.config_file": cfg.config, "shg.workdir": run.workdir.uri,
        "shg.overrides": json.dumps(list(cfg.overrides)), "shg.force": str(cfg.force).lower(),
        "shg.ray_address": cfg.address or "embedded", **provenance(), **dict(cfg.tags)})  # fmt: skip
    parent = steps.ParentRun(runs, parent_id)
    tracker = runs.tracker(parent_id)
    tracker.log_params(run.params)
    tracker.log_text(run.config.to_yaml(header=f"shg run config of MLflow run {parent_id}"), CONFIG_ARTIFACT)
    log(f"workflow: MLflow parent run {parent_id} in {run.tracking_uri}")
    result = WorkflowResult(parent_id, [])
    record = _StepRecorder(parent, result, log)
    # An embedded cluster started for this run is shut down at the end.
    started_ray = not ray.is_initialized()
    try:
        connect(cfg.address or None, verbose=cfg.verbose)  # Ray's chatter to its log files unless verbose
        prepared = record.run("prepare", lambda: steps.prepare(run, force=cfg.force, log=log))
        dataset.to_read("shg run")  # other readers may join; no writer until the run ends
        result.data_fingerprint = prepared.fingerprint
        _check_expected_fingerprint(cfg, prepared)
        log_dataset(tracker, prepared.manifest, prepared.path)  # the runs table's Dataset column
        tracker.set_tags({DATA_FINGERPRINT_TAG: prepared.fingerprint, "data.path": str(prepared.path),
                          "data.rows": json.dumps(prepared.manifest.rows),
                          "data.quarantined": str(prepared.manifest.quarantined)})
        if cfg.skip_unchanged and not cfg.force and \
                runs.last_successful_fingerprint(exclude=parent_id) == prepared.fingerprint:
            log(f"workflow: data fingerprint {prepared.fingerprint} unchanged since the last successful run; skipping")
            result.skipped = "unchanged-data"
            tracker.set_tags({SKIPPED_TAG: "unchanged-data"})
        else:
            plan = run.train_plan
            trained = record.run("train", lambda: steps.train(
                plan, prepared, parent, force=cfg.force, address=cfg.address, verbose=cfg.verbose, log=log))
            result.train_run_id = trained.result.mlflow_run_id
            evaluated = record.run("evaluate", lambda: steps.evaluate(
                plan, prepared, trained, parent, force=cfg.force, address=cfg.address, log=log))
            result.pckh_total = evaluated.table["Total"]
            result.pckh_people = evaluated.table.get("rows")
            tracker.log_metrics({"pckh/Total": evaluated.table["Total"]}, step=0)
            record.run("register", lambda: steps.register(
                plan, prepared, trained, evaluated, parent, force=cfg.force, address=cfg.address, log=log))
        record.skip_rest()
        runs.finish(parent_id)
    except BaseException as err:
        failed = result.steps[-1].name if result.steps else "setup"
        _record_failure(runs, tracker, parent_id, err, log)
        if isinstance(err, Exception):
            raise WorkflowError(f"step {failed} failed (workflow run {parent_id}): {type(err).__name__}: {err}",
                                step=failed) from err
        raise
    finally:
        result.summary_path = str(_write_summary(run.workdir, cfg, result))
        if started_ray and ray.is_initialized():
            ray.shutdown()
    return result


def workflow_run_name(cfg: WorkflowConfig, run: ResolvedRun) -> str:
    """A readable parent run name: the profile, stacks x channels and a short id, e.g.
    `workflow-synthetic-hg2x256-3f9a1c` (a workflow run is never resumed: the id is new each time)."""
    model = run.experiment.model
    return f"workflow-{cfg.profile or 'custom'}-hg{model.stacks}x{model.channels}-{uuid.uuid4().hex[:6]}"


def _record_failure(runs: WorkflowRuns, tracker, parent_id: str, err: BaseException,
                    log: Callable[[str], None]) -> None:
    """Marks the parent run FAILED with the error; when the store itself is what failed (it
    does not answer), says so instead of hiding the step's error behind the store's."""
    try:
        check_reachable(runs.tracking_uri)  # seconds, where MLflow's client retries for minutes
        runs.finish(parent_id, "FAILED")
        tracker.set_tags({"shg.error": f"{type(err).__name__}: {err}"[:4000]})
    except Exception as record_err:  # TrackingUnavailable, or whatever the store raised
        log(f"workflow: could not mark run {parent_id} failed in the tracking store "
            f"({type(record_err).__name__}: {str(record_err)[:200]})")


def _check_expected_fingerprint(cfg: WorkflowConfig, prepared: steps.Prepared) -> None:
    if cfg.expect_fingerprint and prepared.fingerprint != cfg.expect_fingerprint:
        raise ValueError(
            f"the prepared data has fingerprint {prepared.fingerprint}, not the recorded "
            f"{cfg.expect_fingerprint}: the inputs (annotation file, images or the code that prepares "
            "them) changed, so the run cannot be repeated exactly"
        )


def _write_summary(workdir: Location, cfg: WorkflowConfig, result: WorkflowResult) -> Location:
    path = workdir / "workflow" / f"{utc_compact()}-{result.parent_run_id[:12] or 'failed'}.json"
    return write_json_atomic(path, {"config": dataclasses.asdict(cfg), **dataclasses.asdict(result)})

