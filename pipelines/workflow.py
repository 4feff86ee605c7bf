"""`shg run`: prepare → train → evaluate → register, as named steps under one MLflow parent run.

Why plain Python and not `ray.workflow`: Ray's workflow library (durable DAGs of tasks) was
deprecated in Ray 2.7 and is gone from Ray 2.60. What it offered is covered here more simply:
each step is an ordinary function that drives Ray Data (`dataprep.prepare`) or Ray Train
(`pipelines.train`) on whatever cluster this process is connected to; durability comes from the
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
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STEPS: tuple[str, ...] = ("prepare", "train", "evaluate", "register")
EXPERIMENT = "shg"
WORKFLOW_TAG = "shg.workflow"  # "parent" on workflow runs, so they are easy to search for
SKIPPED_TAG = "skipped"  # unchanged-data | busy (scheduler firings that did no training)
FINGERPRINT_TAG = "data.fingerprint"


class WorkflowBusy(RuntimeError):
    """Another workflow holds the work-dir lock; this one did nothing."""


class WorkflowError(RuntimeError):
    """A step failed; the message names the step, the parent run and the cause."""


@dataclasses.dataclass(frozen=True)
class WorkflowConfig:
    """One `shg run` (CLI options carry these names).

    Args:
        profile: named override set (`pipelines.profiles`): `default` or `smoke`.
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
    """

    profile: str = "default"
    workdir: str = "runs"
    tracking_uri: str = ""
    address: str = ""
    force: bool = False
    overrides: tuple[str, ...] = ()
    skip_unchanged: bool = False


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

    def step(self, name: str) -> StepOutcome:
        return next(s for s in self.steps if s.name == name)


# --- the work-dir lock -------------------------------------------------------------------------


@contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """Holds `workdir/.workflow.lock` (flock, non-blocking) for the duration of the block.

    flock is released by the kernel when the holder dies, so a crashed run never leaves a stale
    lock. The file records the holder (pid, host, start time) for the busy message.

    Raises:
        WorkflowBusy: another process holds it; names the holder and the lock file.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / ".workflow.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "unknown holder"
            raise WorkflowBusy(
                f"another shg workflow is running in {workdir} ({holder}); two runs never train "
                f"at once on one work dir. Wait for it, or use another --workdir. Lock: {path}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename} since {_utc_now()}".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- configuration -----------------------------------------------------------------------------


def split_overrides(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """`["synth.people=8", "train.epochs=1"]` → `{"synth": {"people": "8"}, "experiment": {...}}`.

    Keys are grouped by where they go: `synth`, `prepare`, or `experiment` (everything else,
    checked later by `pipelines.config`). A later value for the same key wins.
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

    from pipelines.config import parse_value

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


def input_key(payload: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able description of a step's inputs."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (annotation files: what the prepared rows derive from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def images_listing_digest(root: Path) -> str:
    """sha256 over (relative path, size, mtime) of every file under `root`: cheap change check."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --- provenance --------------------------------------------------------------------------------


def provenance(repo_root: Path | None = None) -> dict[str, str]:
    """Tags that let a run be repeated: git revision (and dirty flag), versions, host, time."""
    from importlib.metadata import PackageNotFoundError, version

    tags: dict[str, str] = {"shg.started_utc": _utc_now(), "shg.host": os.uname().nodename}
    root = repo_root or Path(__file__).resolve().parents[1]
    tags.update(git_revision(root))
    for name in ("shg", "torch", "ray", "mlflow", "numpy", "pyarrow", "albumentations", "opencv-python-headless"):
        try:
            tags[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            tags[f"version.{name}"] = "not installed"
    import platform

    tags["version.python"] = platform.python_version()
    return tags


def git_revision(root: Path) -> dict[str, str]:
    """`git.commit` and `git.dirty` of the checkout at `root`, or `git.commit=unknown`.

    A Ray job's working_dir carries no .git; the submitter records `SHG_GIT_COMMIT` for it.
    """
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        # Only this checkout counts, not a repository that happens to enclose a job's copy of it.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            raise OSError("not the root of a git checkout")
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return {"git.commit": commit, "git.dirty": str(dirty).lower()}
    except (OSError, subprocess.SubprocessError):
        commit = os.environ.get("SHG_GIT_COMMIT", "unknown")
        return {"git.commit": commit, "git.dirty": os.environ.get("SHG_GIT_DIRTY", "unknown")}


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
