"""`shg rerun RUN_ID`: repeat a recorded workflow run from what MLflow holds about it.

Every workflow parent run carries its resolved configuration as the artifact `config.yaml`
(`RunConfig.to_yaml`: every setting that decides the result, seeds included), the data
fingerprint and the provenance tags (git revision, package versions). A rerun reads that file
back as its `--config` (so nothing is rebuilt from stringified params), trains under a new run
name (so the finished original is not just reported back), requires the prepared data to have
the recorded fingerprint, and with `check` compares the per-step training losses with the
original's. With `train.workers=1` and `train.deterministic=true` they are equal step for step;
a different git revision or package version is reported, since it can change the numbers. A run
that its time budget (`train.max_minutes`) stopped is repeated for the same number of steps,
and every rerun trains on the speed path (precision, layout, compilation) the original chose.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from pipelines.orchestration.plan import WorkflowConfig
from pipelines.orchestration.workflow import WorkflowResult, run_workflow
from pipelines.tracking.provenance import provenance
from pipelines.training.precision import AMP_MODES, LAYOUTS
from pipelines.tracking.uris import check_reachable, resolve_tracking_uri
from pipelines.tracking.workflow_runs import (
    CONFIG_ARTIFACT,
    DATA_FINGERPRINT_TAG,
    SKIPPED_TAG,
    WORKFLOW_TAG,
    WorkflowRuns,
)
from shg_io.clock import utc_compact
from shg_io.storage import local_state_dir

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
    config_yaml: str  # the resolved RunConfig, as saved with the run
    fingerprint: str
    tags: dict[str, str]


def read_recorded_run(runs: WorkflowRuns, run_id: str) -> RecordedRun:
    """Finds the workflow parent run of `run_id` and reads its saved configuration.

    Raises:
        LookupError: no such run, a run that no workflow made (e.g. a plain `shg train`), or a
            workflow run that skipped its training.
    """
    run = runs.get(run_id)
    if run.tags.get(WORKFLOW_TAG) != "parent":
        parent_id = run.tags.get("mlflow.parentRunId")
        if not parent_id:
            raise LookupError(
                f"run {run_id} was not made by `shg run` (no {WORKFLOW_TAG} tag, no parent run); "
                "rerun needs the workflow run, which records the data settings too"
            )
        run = runs.get(parent_id)
    if SKIPPED_TAG in run.tags:
        raise LookupError(f"workflow run {run.run_id} skipped its training ({run.tags[SKIPPED_TAG]}); nothing to repeat")
    return RecordedRun(
        parent_run_id=run.run_id,
        train_run_id=run.tags.get("shg.train_run_id", ""),
        config_yaml=runs.read_text(run.run_id, CONFIG_ARTIFACT),
        fingerprint=run.tags.get(DATA_FINGERPRINT_TAG, ""),
        tags=run.tags,
    )


def rerun_run(cfg: RerunConfig, *, log: Callable[[str], None] = print) -> WorkflowResult:
    """Repeats the run (see the module docstring); returns the new workflow's result."""
    workdir = local_state_dir(cfg.workdir)  # the work dir, or its local folder for a URI
    uri = resolve_tracking_uri(cfg.tracking_uri or None, workdir)
    check_reachable(uri)
    runs = WorkflowRuns(uri, cfg.workdir)
    recorded = read_recorded_run(runs, cfg.run_id)
    for key, now in provenance().items():
        was = recorded.tags.get(key)
        if key.startswith(("version.", "git.commit")) and was is not None and was != now:
            log(f"rerun: {key} was {was}, is {now} now; results may differ")
    original = runs.get(recorded.train_run_id) if recorded.train_run_id else None
    original_name = original.run_name if original is not None else "run"
    train_tags = original.tags if original is not None else {}
    steps, speed = pinned_steps(train_tags), pinned_speed_path(train_tags)
    if steps:
        log(f"rerun: the original stopped on its time budget; repeating its steps ({' '.join(steps)})")
    if speed:
        log(f"rerun: training on the original's speed path ({' '.join(speed)}), not measuring again")
    overrides = steps + speed
    new_name = f"{original_name}-rerun-{recorded.parent_run_id[:8]}-{utc_compact(microseconds=False)}"
    with tempfile.TemporaryDirectory(prefix="shg-rerun-") as tmp:
        config_file = Path(tmp) / CONFIG_ARTIFACT
        config_file.write_text(recorded.config_yaml)
        workflow = WorkflowConfig(
            profile="", config=str(config_file), workdir=cfg.workdir, tracking_uri=cfg.tracking_uri,
            address=cfg.address, run_name=new_name, expect_fingerprint=recorded.fingerprint,
            overrides=overrides, tags=(("shg.rerun_of", recorded.parent_run_id),),
        )  # fmt: skip
        log(f"rerun: repeating workflow run {recorded.parent_run_id} from its {CONFIG_ARTIFACT}")
        result = run_workflow(workflow, log=log)
    if cfg.check:
        if not recorded.train_run_id:
            raise LookupError(f"workflow run {recorded.parent_run_id} names no train run to compare with")
        compare_losses(runs, recorded.train_run_id, result.train_run_id)
        log(f"rerun: per-step losses equal the original's ({recorded.train_run_id})")
    return result


def pinned_steps(train_tags: dict[str, str]) -> tuple[str, ...]:
    """Overrides that repeat a run `train.max_minutes` stopped: its step count instead of the
    clock (a time budget ends at a different step on every run), and the step of the budget's
    early learning-rate drop if it took one. Empty for any other run."""
    if train_tags.get("train.stopped_by") != "max_minutes":
        return ()
    pinned = ("train.max_minutes=0", f"train.max_steps={int(train_tags['train.stopped_at_step'])}")
    if "train.lr_dropped_early_at_step" in train_tags:  # the budget's early lr drop, at its step
        pinned += (f"train.lr_drop_at_step={int(train_tags['train.lr_dropped_early_at_step'])}",)
    return pinned


def pinned_speed_path(train_tags: dict[str, str]) -> tuple[str, ...]:
    """Overrides that train on the speed path the original trained on (its `shg.speed.*` tags).
    `train.amp/layout/compile=auto` measures the candidates again, and on a loaded machine, or
    one whose bf16 is close to its fp32, can choose differently: a bf16 step and an fp32 step
    give different losses. Empty when the run recorded no choice."""
    amp, layout = train_tags.get("shg.speed.amp"), train_tags.get("shg.speed.layout")
    if amp not in AMP_MODES or layout not in LAYOUTS or "auto" in (amp, layout):
        return ()
    compiled = train_tags.get("shg.speed.compile") == "true"
    return (f"train.amp={amp}", f"train.layout={layout}", f"train.compile={'on' if compiled else 'off'}")


def compare_losses(runs: WorkflowRuns, original_id: str, repeated_id: str, key: str = LOSS_METRIC) -> None:
    """Raises RerunMismatch unless both runs logged the same `key` values at the same steps."""
    original, repeated = runs.metric_history(original_id, key), runs.metric_history(repeated_id, key)
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

