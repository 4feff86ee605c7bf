"""`shg rerun RUN_ID`: repeat a recorded workflow run from what MLflow holds about it.

The workflow parent run records every setting that decides the result as params (`synth.*`,
`prepare.*`, `model.*`, `data.*`, `train.*`, seeds included), the data fingerprint and the
provenance tags (git revision, package versions). A rerun turns the params back into overrides,
runs the workflow under a new training-run name (so the finished original is not just reported
back), requires the prepared data to have the recorded fingerprint, and with `check` compares
the per-step training losses with the original's. With `train.workers=1` and
`train.deterministic=true` they are equal step for step; a different git revision or package
version is reported, since it can change the numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from pipelines.orchestration.workflow import FINGERPRINT_TAG, WORKFLOW_TAG, WorkflowConfig, WorkflowResult
from pipelines.tracking.provenance import provenance

# Params that are settings of a run (turned back into overrides); the rest describe it.
OVERRIDE_PREFIXES = ("synth.", "prepare.", "model.", "data.", "train.")
LOSS_METRIC = "loss"  # per-step training loss, logged every train.log_every steps


class RerunMismatch(RuntimeError):
    """The repeated run's losses differ from the original's (message: the first differing step)."""


@dataclasses.dataclass(frozen=True)
class RerunConfig:
    """`shg rerun` (CLI options carry these names).

    Args:
        run_id: a workflow parent run, or one of its child runs (train / evaluate).
        workdir, tracking_uri, address: as for `shg run`; the store must hold `run_id`.
        check: compare per-step losses with the original and raise RerunMismatch if they differ.
    """

    run_id: str
    workdir: str = "runs"
    tracking_uri: str = ""
    address: str = ""
    check: bool = False


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """What MLflow knows about the run to repeat."""

    parent_run_id: str
    train_run_id: str
    profile: str
    overrides: tuple[str, ...]
    fingerprint: str
    tags: dict[str, str]


def read_recorded_run(client, run_id: str) -> RecordedRun:
    """Finds the workflow parent run of `run_id` and turns its params back into overrides.

    Raises:
        LookupError: no such run, or a run that no workflow made (e.g. a plain `shg train`).
    """
    run = _get_run(client, run_id)
    if run.data.tags.get(WORKFLOW_TAG) != "parent":
        parent_id = run.data.tags.get("mlflow.parentRunId")
        if not parent_id:
            raise LookupError(
                f"run {run_id} was not made by `shg run` (no {WORKFLOW_TAG} tag, no parent run); "
                "rerun needs the workflow run, which records the data settings too"
            )
        run = _get_run(client, parent_id)
    params, tags = run.data.params, run.data.tags
    if "skipped" in tags:
        raise LookupError(f"workflow run {run.info.run_id} skipped its training ({tags['skipped']}); nothing to repeat")
    overrides = tuple(f"{k}={v}" for k, v in sorted(params.items()) if k.startswith(OVERRIDE_PREFIXES))
    return RecordedRun(
        parent_run_id=run.info.run_id,
        train_run_id=tags.get("shg.train_run_id", ""),
        profile=params.get("workflow.profile", "default"),
        overrides=overrides,
        fingerprint=tags.get(FINGERPRINT_TAG, ""),
        tags=dict(tags),
    )


def rerun_run(cfg: RerunConfig, *, log: Callable[[str], None] = print) -> WorkflowResult:
    """Repeats the run (see the module docstring); returns the new workflow's result."""
    from mlflow import MlflowClient

    from pipelines.tracking import store as tracking
    from pipelines.orchestration.workflow import run_workflow

    uri = tracking.resolve_tracking_uri(cfg.tracking_uri or None, Path(cfg.workdir).resolve())
    tracking.check_reachable(uri)
    client = MlflowClient(uri)
    recorded = read_recorded_run(client, cfg.run_id)
    for key, now in provenance().items():
        was = recorded.tags.get(key)
        if key.startswith(("version.", "git.commit")) and was is not None and was != now:
            log(f"rerun: {key} was {was}, is {now} now; results may differ")
    original_name = client.get_run(recorded.train_run_id).info.run_name if recorded.train_run_id else "run"
    new_name = f"{original_name}-rerun-{recorded.parent_run_id[:8]}-{_short_stamp()}"
    workflow = WorkflowConfig(
        profile=recorded.profile, workdir=cfg.workdir, tracking_uri=cfg.tracking_uri, address=cfg.address,
        overrides=(*recorded.overrides, f"train.run_name={new_name}"),
        expect_fingerprint=recorded.fingerprint,
        tags=(("shg.rerun_of", recorded.parent_run_id),),
    )  # fmt: skip
    log(f"rerun: repeating workflow run {recorded.parent_run_id} ({len(recorded.overrides)} settings)")
    result = run_workflow(workflow, log=log)
    if cfg.check:
        if not recorded.train_run_id:
            raise LookupError(f"workflow run {recorded.parent_run_id} names no train run to compare with")
        compare_losses(client, recorded.train_run_id, result.train_run_id)
        log(f"rerun: per-step losses equal the original's ({recorded.train_run_id})")
    return result


def loss_history(client, run_id: str, key: str = LOSS_METRIC) -> list[tuple[int, float]]:
    """`(step, value)` of a metric, one value per step (the last logged), in step order."""
    latest: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, key):
        if m.step not in latest or m.timestamp >= latest[m.step][0]:
            latest[m.step] = (m.timestamp, m.value)
    return [(step, value) for step, (_, value) in sorted(latest.items())]


def compare_losses(client, original_id: str, repeated_id: str, key: str = LOSS_METRIC) -> None:
    """Raises RerunMismatch unless both runs logged the same `key` values at the same steps."""
    original, repeated = loss_history(client, original_id, key), loss_history(client, repeated_id, key)
    if not original:
        raise RerunMismatch(f"original run {original_id} logged no {key!r} metric to compare")
    if [s for s, _ in original] != [s for s, _ in repeated]:
        raise RerunMismatch(
            f"{key!r} was logged at steps {[s for s, _ in original][:10]}... in {original_id} but "
            f"{[s for s, _ in repeated][:10]}... in {repeated_id}"
        )
    for (step, a), (_, b) in zip(original, repeated):
        if a != b:
            raise RerunMismatch(f"{key!r} differs at step {step}: {a!r} (original {original_id}) vs {b!r} ({repeated_id})")


def _get_run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as err:
        raise LookupError(f"MLflow run {run_id} not found in {client.tracking_uri}: {err.message}") from None


def _short_stamp() -> str:
    import time

    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())
