"""`shg run`: prepare → train → evaluate → register, as named steps under one MLflow parent run.

Why plain Python and not `ray.workflow`: Ray's workflow library (durable DAGs of tasks) was
deprecated in Ray 2.7 and is gone from Ray 2.60. What it offered is covered here more simply:
each step is an ordinary function that drives Ray Data (`dataprep.prepare`) or Ray Train
(`pipelines.training.driver`) on whatever cluster this process is connected to; durability comes from the
steps' own outputs (a prepared dataset with a manifest and fingerprint, MLflow runs and logged
models), so a step whose inputs have not changed is *reused* rather than redone. To run on a
cluster, the same driver is submitted as a Ray job (`shg submit`, a KubeRay RayJob), which gives
the lifecycle, logs and stop that a workflow engine would: nothing here needs a second engine.

Layout under the work dir (default `./runs`):
    data/synth/            the embedded synthetic MPII-format dataset (images/, annotations.json)
    data/prepared/         the prepared parquet dataset (train/, val/, quarantine/, manifest.json)
    data/prepared.inputs.json  what the prepared dataset was made from (the reuse key)
    workflow/*.json        one summary per workflow run (steps, outcomes, seconds, run ids)
    .workflow.lock         held while a workflow runs: two runs never train at once here
MLflow: a parent run per workflow, tags `step.<name>` = ran | reused | failed | skipped, a metric
`step.<name>.seconds` each, and the provenance tags of `provenance()`; the train/evaluate runs
carry `mlflow.parentRunId` pointing at it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.orchestration.lock import WorkflowBusy, workdir_lock
from pipelines.orchestration.reuse import file_digest, images_listing_digest, input_key
from pipelines.tracking.provenance import provenance

STEPS: tuple[str, ...] = ("prepare", "train", "evaluate", "register")
EXPERIMENT = "shg"
WORKFLOW_TAG = "shg.workflow"  # "parent" on workflow runs, so they are easy to search for
SKIPPED_TAG = "skipped"  # unchanged-data | busy (scheduler firings that did no training)
FINGERPRINT_TAG = "data.fingerprint"


class WorkflowError(RuntimeError):
    """A step failed; the message names the step, the parent run and the cause."""


@dataclasses.dataclass(frozen=True)
class WorkflowConfig:
    """One `shg run` (CLI options carry these names).

    Args:
        profile: named override set (`pipelines.config.profiles`): `default` or `smoke`.
        workdir: everything the workflow writes goes under it (see module docstring).
        tracking_uri: MLflow tracking URI; "" = the sqlite store under `workdir`.
        address: Ray cluster; "" = an embedded local Ray started for this run, "auto" or
            "HOST:PORT" = an existing cluster (what a submitted Ray job uses).
        force: redo every step even when its inputs are unchanged.
        overrides: `KEY=VALUE` strings: `synth.*` (SynthConfig), `prepare.*` (PrepareConfig:
            `prepare.annotations` and `prepare.images` switch from the synthetic data to real
            MPII files) and the training config's `model.*`, `data.*`, `train.*` keys.
        skip_unchanged: a scheduler firing: stop after prepare, tagging the parent run
            `skipped=unchanged-data`, when the data fingerprint equals the last successful run's.
        expect_fingerprint: `shg rerun`: the prepare step fails unless the data has this
            fingerprint (the repeated run must see the same rows).
        tags: extra tags on the parent run (e.g. `shg.rerun_of`).
    """

    profile: str = "default"
    workdir: str = "runs"
    tracking_uri: str = ""
    address: str = ""
    force: bool = False
    overrides: tuple[str, ...] = ()
    skip_unchanged: bool = False
    expect_fingerprint: str = ""
    tags: tuple[tuple[str, str], ...] = ()


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
    summary_path: str = ""
    error: str = ""  # a scheduler firing that failed (run_firing does not raise)

    def step(self, name: str) -> StepOutcome:
        return next(s for s in self.steps if s.name == name)


# --- the work-dir lock -------------------------------------------------------------------------


# --- configuration -----------------------------------------------------------------------------


def split_overrides(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """`["synth.people=8", "train.epochs=1"]` → `{"synth": {"people": "8"}, "experiment": {...}}`.

    Keys are grouped by where they go: `synth`, `prepare`, or `experiment` (everything else,
    checked later by `pipelines.config.experiment`). A later value for the same key wins.
    """
    groups: dict[str, dict[str, str]] = {"synth": {}, "prepare": {}, "experiment": {}}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE (e.g. train.epochs=1)")
        section, _, field = key.partition(".")
        if section in ("synth", "prepare"):
            groups[section][field] = value
        else:
            groups["experiment"][key] = value
    return groups


def build_synth_config(values: Mapping[str, Any]):
    """`SynthConfig` from `synth.*` values (strings parsed by each field's type)."""
    from dataprep.synth import SynthConfig

    return _build_dataclass(SynthConfig, values, "synth")


def build_prepare_config(values: Mapping[str, Any], *, annotations: str, images: str, out: str):
    """`PrepareConfig` from `prepare.*` values; the data paths default to the given ones."""
    from dataprep.prepare import PrepareConfig

    values = {"annotations": annotations, "images": images, **values, "out": out}
    return _build_dataclass(PrepareConfig, values, "prepare")


def _build_dataclass(cls, values: Mapping[str, Any], prefix: str):
    import typing

    from pipelines.config.experiment import parse_value

    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(
            f"unknown {prefix}.* key(s) {unknown}; valid keys: "
            + ", ".join(f"{prefix}.{k}" for k in hints)
        )
    parsed = {}
    for key, raw in values.items():
        try:
            parsed[key] = parse_value(raw, hints[key])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{prefix}.{key}={raw!r}: {err}") from None
    return cls(**parsed)


# --- provenance --------------------------------------------------------------------------------


# --- step: prepare (synthesise when no real data is named) -------------------------------------


@dataclasses.dataclass(frozen=True)
class DataInputs:
    """What the prepare step works from: the configs, and where the prepared dataset goes."""

    synth: Any  # SynthConfig, or None when prepare.annotations names real data
    prepare: Any  # PrepareConfig
    marker: Path  # the reuse key of the prepared dataset


def data_inputs(workdir: Path, groups: Mapping[str, Mapping[str, str]]) -> DataInputs:
    """The synth and prepare configs of a run from its `synth.*` / `prepare.*` overrides.

    Without `prepare.annotations` the data is the embedded synthetic dataset under
    `workdir/data/synth`; with it, real MPII files (and `prepare.images`, required then).
    """
    data = workdir / "data"
    prepare_values = dict(groups["prepare"])
    if "annotations" in prepare_values:
        if "images" not in prepare_values:
            raise ValueError("prepare.annotations=... needs prepare.images=DIR (the image root) as well")
        if groups["synth"]:
            raise ValueError(f"synth.* overrides {sorted(groups['synth'])} make no sense with real data (prepare.annotations)")
        synth = None
        annotations, images = prepare_values.pop("annotations"), prepare_values.pop("images")
    else:
        synth = build_synth_config(groups["synth"])
        annotations, images = str(data / "synth" / "annotations.json"), str(data / "synth" / "images")
    prepare = build_prepare_config(prepare_values, annotations=annotations, images=images, out=str(data / "prepared"))
    return DataInputs(synth=synth, prepare=prepare, marker=data / "prepared.inputs.json")


def synthesise(synth_cfg, out: Path, *, force: bool, log: Callable[[str], None]) -> bool:
    """Writes the synthetic dataset into `out` unless the same config is already there.

    Returns True when it (re)generated, False when the existing dataset was reused.
    """
    from dataprep.synth import generate
    from dataprep.synth.writer import ANNOTATIONS, GENERATOR_VERSION, MANIFEST

    manifest = out / MANIFEST
    if not force and manifest.is_file() and (out / ANNOTATIONS).is_file():
        found = json.loads(manifest.read_text())
        if found.get("config") == synth_cfg.to_dict() and found.get("generator_version") == GENERATOR_VERSION:
            log(f"prepare: synthetic dataset in {out} matches the config; reused")
            return False
    summary = generate(synth_cfg, out, overwrite=True)
    log(f"prepare: synthesised {summary['people']} people in {summary['images']} images ({summary['seconds']:.1f} s)")
    return True


def prepare_inputs_key(inputs: DataInputs) -> str:
    """The reuse key of the prepared dataset: prepare settings + the content of its inputs."""
    settings = dataclasses.asdict(inputs.prepare)
    for field in ("out", "address", "progress_every", "annotations", "images"):
        settings.pop(field)  # where things are and how progress is shown change no row
    annotations, images = Path(inputs.prepare.annotations), Path(inputs.prepare.images)
    return input_key({
        "prepare": settings,
        "annotations_sha256": file_digest(annotations),
        # A synthetic dataset is fixed by its config; real images by their listing.
        "images": (
            {"synth": inputs.synth.to_dict(), "generator_version": _synth_generator_version()}
            if inputs.synth is not None else images_listing_digest(images)
        ),
    })  # fmt: skip


def _synth_generator_version() -> int:
    from dataprep.synth.writer import GENERATOR_VERSION

    return GENERATOR_VERSION


def prepare_step(inputs: DataInputs, *, force: bool, log: Callable[[str], None]) -> tuple[str, dict]:
    """Synthesises (if needed) and prepares the dataset, or reuses the prepared one.

    Returns ("ran" | "reused", manifest). Reuse needs the same inputs key and a manifest whose
    fingerprint is the one recorded with that key (so a hand-edited dataset is redone).
    """
    from dataprep.prepare import MANIFEST, run_prepare

    synthesised = False
    if inputs.synth is not None:
        synthesised = synthesise(inputs.synth, Path(inputs.prepare.annotations).parent, force=force, log=log)
    key = prepare_inputs_key(inputs)
    manifest_path = Path(inputs.prepare.out) / MANIFEST
    if not force and not synthesised and inputs.marker.is_file() and manifest_path.is_file():
        marker = json.loads(inputs.marker.read_text())
        manifest = json.loads(manifest_path.read_text())
        if marker.get("key") == key and marker.get("fingerprint") == manifest.get("fingerprint"):
            log(f"prepare: {inputs.prepare.out} is up to date (fingerprint {manifest['fingerprint']}); reused")
            return "reused", manifest
    manifest = run_prepare(inputs.prepare, log=log)
    inputs.marker.write_text(json.dumps({"key": key, "fingerprint": manifest["fingerprint"]}, indent=2) + "\n")
    return "ran", manifest


# --- the workflow ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ResolvedRun:
    """Everything a workflow run will do, resolved (and validated) before anything starts."""

    workdir: Path
    tracking_uri: str
    data: DataInputs
    experiment: Any  # ExperimentConfig
    params: dict[str, Any]  # what `shg rerun` rebuilds the run from


def resolve(cfg: WorkflowConfig) -> ResolvedRun:
    """Applies the profile, then the user's overrides; raises ValueError on any bad key/value."""
    from pipelines.tracking import store as tracking
    from pipelines.config.experiment import load_config
    from pipelines.config.profiles import profile_overrides

    workdir = Path(cfg.workdir).resolve()
    groups = split_overrides([*profile_overrides(cfg.profile), *cfg.overrides])
    if "train.storage" in groups["experiment"]:
        raise ValueError("train.storage is the work dir in a workflow; use --workdir instead")
    experiment = load_config(None, {**groups["experiment"], "train.storage": str(workdir)})
    data = data_inputs(workdir, groups)
    if cfg.address:
        data = dataclasses.replace(data, prepare=dataclasses.replace(data.prepare, address=cfg.address))
    params: dict[str, Any] = {"workflow.profile": cfg.profile}
    if data.synth is not None:
        params.update({f"synth.{k}": v for k, v in dataclasses.asdict(data.synth).items()})
    else:
        params.update({"prepare.annotations": data.prepare.annotations, "prepare.images": data.prepare.images})
    skip = {"out", "address", "annotations", "images"}
    params.update({f"prepare.{k}": v for k, v in dataclasses.asdict(data.prepare).items() if k not in skip})
    params.update({k: v for k, v in experiment.flatten().items() if k not in ("train.storage", "train.run_name")})
    uri = tracking.resolve_tracking_uri(cfg.tracking_uri or None, workdir)
    return ResolvedRun(workdir=workdir, tracking_uri=uri, data=data, experiment=experiment, params=params)


def run_workflow(cfg: WorkflowConfig, *, log: Callable[[str], None] = print) -> WorkflowResult:
    """Runs the workflow (see the module docstring) and returns what each step did.

    Raises:
        ValueError: a bad profile or override (before anything starts).
        TrackingUnavailable: the MLflow store does not answer (before anything starts).
        WorkflowBusy: another workflow holds the work-dir lock (nothing was done).
        WorkflowError: a step failed (recorded on the parent run as `step.<name>=failed`).
    """
    from pipelines.tracking import store as tracking

    run = resolve(cfg)
    tracking.check_reachable(run.tracking_uri)
    with workdir_lock(run.workdir):
        return _run_locked(cfg, run, log)


def run_firing(cfg: WorkflowConfig, *, log: Callable[[str], None] = print) -> WorkflowResult:
    """One scheduler firing: the workflow with `skip_unchanged`, a busy work dir recorded, not raised.

    A firing that finds the lock held records an MLflow run tagged `skipped=busy`; a failed
    firing is logged and returned (the scheduler goes on to the next firing).
    """
    from pipelines.tracking import store as tracking

    cfg = dataclasses.replace(cfg, skip_unchanged=not cfg.force)
    try:
        return run_workflow(cfg, log=log)
    except WorkflowBusy as busy:
        log(f"schedule: {busy}")
        run = resolve(cfg)
        client, experiment_id = _experiment(run)
        parent = client.create_run(experiment_id, run_name=f"firing-busy-{_stamp()}", tags={
            WORKFLOW_TAG: "parent", SKIPPED_TAG: "busy", "shg.busy_reason": str(busy)[:4000],
            **{f"step.{name}": "skipped" for name in STEPS}})  # fmt: skip
        client.set_terminated(parent.info.run_id, "FINISHED")
        return WorkflowResult(parent.info.run_id, [StepOutcome(n, "skipped") for n in STEPS], skipped="busy")
    except (WorkflowError, tracking.TrackingUnavailable) as err:
        log(f"schedule: firing failed: {err}")
        return WorkflowResult("", [], error=str(err))


def _experiment(run: ResolvedRun):
    from mlflow import MlflowClient

    from pipelines.tracking import store as tracking

    client = MlflowClient(run.tracking_uri)
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return client, found.experiment_id
    location = tracking.default_artifact_root(run.tracking_uri, run.workdir)
    return client, client.create_experiment(EXPERIMENT, artifact_location=location)


def _run_locked(cfg: WorkflowConfig, run: ResolvedRun, log: Callable[[str], None]) -> WorkflowResult:
    import ray

    from pipelines.tracking import store as tracking

    client, experiment_id = _experiment(run)
    parent = client.create_run(experiment_id, run_name=f"workflow-{cfg.profile}-{_stamp()}", tags={
        WORKFLOW_TAG: "parent", "shg.profile": cfg.profile, "shg.workdir": str(run.workdir),
        "shg.overrides": json.dumps(list(cfg.overrides)), "shg.force": str(cfg.force).lower(),
        "shg.ray_address": cfg.address or "embedded", **provenance(), **dict(cfg.tags)})  # fmt: skip
    parent_id = parent.info.run_id
    tracker = tracking.Tracker(run.tracking_uri, parent_id)
    tracker.log_params(run.params)
    log(f"workflow: MLflow parent run {parent_id} in {run.tracking_uri}")
    result = WorkflowResult(parent_id, [])
    # The steps connect to Ray when they need it (a fully reused run never starts it); an
    # embedded cluster that one of them started for this run is shut down at the end.
    started_ray = not ray.is_initialized()
    context: dict[str, Any] = {}
    try:
        for name in STEPS:
            if result.skipped:
                result.steps.append(StepOutcome(name, "skipped"))
                continue
            outcome = StepOutcome(name, "failed")
            result.steps.append(outcome)
            start = time.perf_counter()
            try:
                outcome.status, outcome.detail = STEP_FUNCTIONS[name](cfg, run, context, result, log)
            finally:
                outcome.seconds = round(time.perf_counter() - start, 3)
                tracker.set_tags({f"step.{name}": outcome.status})
                tracker.log_metrics({f"step.{name}.seconds": outcome.seconds}, step=0)
            log(f"workflow: {name} {outcome.status} in {outcome.seconds:.1f} s")
        for outcome in result.steps:
            if outcome.status == "skipped":
                tracker.set_tags({f"step.{outcome.name}": "skipped"})
        client.set_terminated(parent_id, "FINISHED")
    except BaseException as err:
        if "train_run_dir" in context and "train_run_id" not in context:  # failed mid-training
            record = tracking.RunRecord.read(context["train_run_dir"])
            context["train_run_id"] = record.mlflow_run_id if record else None
        if not context.get("train_reused"):
            _attach_child(client, context.get("train_run_id"), parent_id)
        client.set_terminated(parent_id, "FAILED")
        failed = result.steps[-1].name if result.steps else "setup"
        tracker.set_tags({"shg.error": f"{type(err).__name__}: {err}"[:4000]})
        if isinstance(err, Exception):
            raise WorkflowError(f"step {failed} failed (workflow run {parent_id}): {type(err).__name__}: {err}") from err
        raise
    finally:
        result.summary_path = str(_write_summary(run.workdir, cfg, result))
        if started_ray and ray.is_initialized():
            ray.shutdown()
    return result


def _attach_child(client, child_id: str | None, parent_id: str) -> None:
    """Points a stage's MLflow run at the workflow run (the UI nests it under the parent)."""
    if child_id:
        client.set_tag(child_id, "mlflow.parentRunId", parent_id)
        client.set_tag(child_id, "shg.workflow_run_id", parent_id)


def _write_summary(workdir: Path, cfg: WorkflowConfig, result: WorkflowResult) -> Path:
    folder = workdir / "workflow"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_stamp()}-{result.parent_run_id[:12]}.json"
    body = {"config": dataclasses.asdict(cfg), **dataclasses.asdict(result)}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return path


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


# --- the steps: each returns (status, detail) and leaves what later steps need in `context` ----


def _step_prepare(cfg, run: ResolvedRun, context, result: WorkflowResult, log):
    from pipelines.tracking import store as tracking

    status, manifest = prepare_step(run.data, force=cfg.force, log=log)
    fingerprint = manifest["fingerprint"]
    if cfg.expect_fingerprint and fingerprint != cfg.expect_fingerprint:
        raise ValueError(
            f"the prepared data has fingerprint {fingerprint}, not the recorded {cfg.expect_fingerprint}: "
            "the inputs (annotation file, images or the code that prepares them) changed, so the run "
            "cannot be repeated exactly"
        )
    context["manifest"] = manifest
    result.data_fingerprint = fingerprint
    tracking.Tracker(run.tracking_uri, result.parent_run_id).set_tags({
        FINGERPRINT_TAG: fingerprint, "data.path": run.data.prepare.out,
        "data.rows": json.dumps(manifest["rows"]), "data.quarantined": str(manifest["quarantined"])})  # fmt: skip
    if cfg.skip_unchanged and not cfg.force:
        last = last_successful_fingerprint(run, exclude=result.parent_run_id)
        if last == fingerprint:
            log(f"workflow: data fingerprint {fingerprint} unchanged since the last successful run; skipping")
            result.skipped = "unchanged-data"
            tracking.Tracker(run.tracking_uri, result.parent_run_id).set_tags({SKIPPED_TAG: "unchanged-data"})
    return status, {"fingerprint": fingerprint, "rows": manifest["rows"], "quarantined": manifest["quarantined"]}


def last_successful_fingerprint(run: ResolvedRun, *, exclude: str = "") -> str | None:
    """The data fingerprint of the latest FINISHED workflow run that did not skip, or None."""
    client, experiment_id = _experiment(run)
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{WORKFLOW_TAG}` = 'parent' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    for found in runs:
        if found.info.run_id != exclude and SKIPPED_TAG not in found.data.tags:
            return found.data.tags.get(FINGERPRINT_TAG)
    return None


def _step_train(cfg, run: ResolvedRun, context, result: WorkflowResult, log):
    from pipelines.tracking import store as tracking
    from pipelines.training.driver import run_name_for, run_training

    experiment = run.experiment
    name = run_name_for(experiment, context["manifest"]["fingerprint"])
    if cfg.force:  # a new run folder: the finished one would otherwise be reported, not redone
        name = f"{name}-{_stamp()}"
    experiment = dataclasses.replace(experiment, train=dataclasses.replace(experiment.train, run_name=name))
    context["train_run_dir"] = run.workdir / name
    record = tracking.RunRecord.read(run.workdir / name)
    reused = context["train_reused"] = record is not None and record.status == "finished"
    if record is not None:
        context["train_run_id"] = record.mlflow_run_id
    out = run_training(
        experiment, run.data.prepare.out, tracking_uri=run.tracking_uri, experiment=EXPERIMENT,
        register=False, address=cfg.address or None, log=log,
    )  # fmt: skip
    context["train"] = out
    context["train_run_id"] = result.train_run_id = out.mlflow_run_id
    from mlflow import MlflowClient

    if not reused:  # a reused run stays nested under the workflow run that trained it
        _attach_child(MlflowClient(run.tracking_uri), out.mlflow_run_id, result.parent_run_id)
    tracking.Tracker(run.tracking_uri, result.parent_run_id).set_tags({"shg.train_run_id": out.mlflow_run_id})
    return ("reused" if reused else "ran"), {
        "mlflow_run_id": out.mlflow_run_id, "run_name": out.run_name, "global_step": out.global_step,
        "val_pckh_total": out.pckh.get("Total")}  # fmt: skip


def _step_evaluate(cfg, run: ResolvedRun, context, result: WorkflowResult, log):
    """Saves the final model as a model dir and scores the whole val split (official PCKh)."""
    from pipelines.tracking import store as tracking
    from pipelines.training.checkpoints import load_state
    from pipelines.evaluation.evaluate import EvaluateConfig, run_evaluate
    from pipelines.inference.model_dir import ModelCard, model_from_state, save_model_dir

    train = context["train"]
    folder = run.workdir / "models" / train.run_name
    record_path = folder / "evaluation.json"
    if not cfg.force and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("train_run_id") == train.mlflow_run_id:
            context["evaluation"] = record
            log(f"evaluate: {train.run_name} was evaluated before (run {record['mlflow_run_id']}); reused")
            return "reused", {"mlflow_run_id": record["mlflow_run_id"], "pckh_total": record["table"]["Total"]}

    experiment = run.experiment
    state = load_state(train.checkpoint, experiment.model)
    card = ModelCard.for_config(experiment.model, input_size=experiment.data.input_size,
                                heatmap_size=experiment.data.heatmap_size,
                                val_fingerprint=train.val_fingerprint, val_metrics=train.pckh)  # fmt: skip
    model = model_from_state(state["model"], card, f"final checkpoint {train.checkpoint}")
    save_model_dir(model, card, folder / "model")
    table = run_evaluate(EvaluateConfig(model=str(folder / "model"), data=run.data.prepare.out, split="val",
                                        address=cfg.address or None), log=log)  # fmt: skip
    table.pop("predictions")
    client, experiment_id = _experiment(run)
    child = client.create_run(experiment_id, run_name=f"evaluate-{train.run_name}", tags={
        "shg.stage": "evaluate", "shg.train_run_id": train.mlflow_run_id, FINGERPRINT_TAG: result.data_fingerprint})
    evaluation_id = child.info.run_id
    _attach_child(client, evaluation_id, result.parent_run_id)
    tracker = tracking.Tracker(run.tracking_uri, evaluation_id)
    tracker.log_params({"model": str(folder / "model"), "split": "val", "flip": True, "rows": table["rows"]})
    tracker.log_metrics({f"eval/pckh/{k}": v for k, v in table.items() if isinstance(v, float)}, step=0)
    tracker.log_dict(_json_ready(table), "evaluation/pckh_val.json")
    client.set_terminated(evaluation_id, "FINISHED")
    record = {"train_run_id": train.mlflow_run_id, "mlflow_run_id": evaluation_id,
              "model_dir": str(folder / "model"), "table": _json_ready(table)}  # fmt: skip
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    context["evaluation"] = record
    return "ran", {"mlflow_run_id": evaluation_id, "pckh_total": table["Total"], "rows": table["rows"]}


def _step_register(cfg, run: ResolvedRun, context, result: WorkflowResult, log):
    """Registers the evaluated model and moves `champion` only through the gate."""
    from mlflow import MlflowClient

    from pipelines.tracking import store as tracking
    from pipelines.inference.model_dir import load_model_dir
    from pipelines.tracking.registry import DEFAULT_MODEL_NAME, promote_if_better, register_model

    train, evaluation = context["train"], context["evaluation"]
    client = MlflowClient(run.tracking_uri)
    tags = client.get_run(train.mlflow_run_id).data.tags
    if not cfg.force and tags.get("registry.version"):
        decision = {k[len("registry."):]: v for k, v in tags.items() if k.startswith("registry.")}
        log(f"register: {decision['name']} v{decision['version']} was registered from this run before; reused")
        status = "reused"
    else:
        model, card = load_model_dir(evaluation["model_dir"])
        version = register_model(model, card, tracking_uri=run.tracking_uri, run_id=train.mlflow_run_id,
                                 name=DEFAULT_MODEL_NAME)
        # Compared only with champions scored on the same validation rows (same prepared data).
        gate = promote_if_better(DEFAULT_MODEL_NAME, version, pckh_total=evaluation["table"]["Total"],
                                 val_fingerprint=f"{result.data_fingerprint}/val",
                                 tracking_uri=run.tracking_uri, run_id=train.mlflow_run_id)  # fmt: skip
        decision = dataclasses.asdict(gate)
        log(f"register: {gate.name} v{gate.version} -> {gate.alias} ({gate.reason})")
        status = "ran"
    tracking.Tracker(run.tracking_uri, result.parent_run_id).set_tags(
        {f"registry.{k}": "" if v is None else str(v) for k, v in decision.items()})
    return status, decision


def _json_ready(value):
    """NaN → None (strict JSON), numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


STEP_FUNCTIONS: dict[str, Callable] = {
    "prepare": _step_prepare,
    "train": _step_train,
    "evaluate": _step_evaluate,
    "register": _step_register,
}
