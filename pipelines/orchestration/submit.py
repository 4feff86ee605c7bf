"""Submitting the workflow (or one stage) to a Ray cluster as a Ray job, and following it.

The Ray Jobs API runs the entrypoint as a driver on the head node of the cluster at `address`
(the dashboard's HTTP address, `http://HOST:8265`). The project travels in the runtime
environment as its `working_dir` (without `.venv`, `.git`, `runs`, ...), and the entrypoint is
`python -m pipelines.cli ...` so that the driver imports the shipped code, not whatever version
of `shg` happens to be installed on the cluster. The cluster's Python must already hold the
pinned dependencies (the Docker image in `infra/`, or the setup commands in `ray_cluster.yaml`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipelines.tracking.provenance import git_revision

# Imported where used: ray (its job client loads in seconds: only the calls that reach a cluster
# need it)

REPO_ROOT = Path(__file__).resolve().parents[2]

# What never travels: secrets, environments, history, outputs, caches. The packed working_dir
# is stored in the cluster's object store where any job can read it, so `.env` files (and other
# local secrets) must never be in it; Ray's limit on it is 500 MiB, and runs/ alone can exceed it.
WORKING_DIR_EXCLUDES: tuple[str, ...] = (
    ".env*", "*.pem", "*.key", ".netrc", ".aws", ".ray",
    ".venv", ".git", "runs", "mlruns", "mlartifacts", "work", "build", "dist",
    "__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".benchmarks",
)  # fmt: skip

# Commands a job may run: the workflow, or one of its stages on its own.
STEPS: tuple[str, ...] = ("run", "synth", "prepare", "train", "evaluate", "rerun", "schedule")

# The steps that start or join a Ray cluster (`synth` runs in one process).
JOINING_STEPS: tuple[str, ...] = ("run", "prepare", "train", "evaluate", "rerun", "schedule")

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})

# Environment variables forwarded to the job when set here: endpoints only, never credentials.
# A job's env_vars can be read by anyone who can reach the Jobs API, so S3 access comes from the
# cluster's own identity (IRSA on EKS, an instance profile on EC2; infra/README.md), and MLflow
# credentials from the cluster's environment, not from the submitter's shell.
FORWARDED_ENV: tuple[str, ...] = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_DEFAULT_REGION")
NEVER_FORWARDED: tuple[str, ...] = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "RAY_AUTH_TOKEN",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SubmitConfig:
    """One job submission.

    Args:
        address: the cluster's Jobs API (dashboard) URL, e.g. `http://127.0.0.1:8265`.
        step: the `shg` command the job runs (`run` = the whole workflow; see `STEPS`).
        args: arguments after the command, e.g. `("--profile", "smoke", "train.epochs=1")`.
        working_dir: the project directory shipped to the cluster.
        entrypoint_num_cpus: CPUs reserved for the driver itself (0: it mostly waits).
    """

    address: str = "http://127.0.0.1:8265"
    step: str = "run"
    args: tuple[str, ...] = ()
    working_dir: str = str(REPO_ROOT)
    entrypoint_num_cpus: float = 0.0

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"unknown step {self.step!r}; choose one of {', '.join(STEPS)}")


def default_address() -> str:
    """`RAY_ADDRESS` when it is an HTTP address (as `ray job submit` reads it), else localhost."""
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else "http://127.0.0.1:8265"


def entrypoint(cfg: SubmitConfig) -> str:
    """The shell command the job runs on the cluster.

    Every step that uses Ray joins the job's own cluster (`--address auto`: Ray sets
    `RAY_ADDRESS` for job drivers) unless the caller already chose an address; without it, a
    stage would start a private cluster on the head node (no GPUs, no workers).
    """
    args = list(cfg.args)
    if cfg.step in JOINING_STEPS and not any(a.startswith("--address") for a in args):
        args = ["--address", "auto", *args]
    return shlex.join(["python", "-m", "pipelines.cli.app", cfg.step, *args])


def runtime_env(cfg: SubmitConfig) -> dict[str, Any]:
    """The job's runtime environment: the project as working_dir (without `.env*` and other
    secrets), and its tracking endpoints; never credentials (`FORWARDED_ENV`).

    Raises:
        ValueError: a forwarded URI holds a password.
    """
    working_dir = Path(cfg.working_dir)
    if not (working_dir / "pipelines" / "cli" / "app.py").is_file():
        raise FileNotFoundError(
            f"{working_dir} is not the shg project root (no pipelines/cli/app.py); pass working_dir="
        )

    # The shipped copy has no .git: the job records the submitter's revision instead.
    revision = git_revision(working_dir)
    env_vars = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
        "SHG_GIT_COMMIT": revision["git.commit"],
        "SHG_GIT_DIRTY": revision["git.dirty"],
    }
    env_vars.update({k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)})
    for name, value in env_vars.items():
        if "://" in value and urlsplit(value).password:
            raise ValueError(
                f"{name} carries a password ({urlsplit(value).hostname}); job env vars are readable by "
                f"anyone who can reach the Jobs API. Drop the user:password@ part and give the "
                f"cluster its credentials itself (see infra/README.md)."
            )
    return {
        "working_dir": str(working_dir),
        "excludes": list(WORKING_DIR_EXCLUDES),
        "env_vars": env_vars,
    }


def client(address: str):
    """A `JobSubmissionClient` for `address`, with a clear error when nothing answers there."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError) as err:
        raise ConnectionError(
            f"no Ray Jobs API at {address} ({err}). Start a cluster with token auth on (`ray get-auth-token "
            "--generate >/dev/null && RAY_AUTH_MODE=token ray start --head --dashboard-host 127.0.0.1`: without "
            "RAY_AUTH_MODE=token `ray start` runs unauthenticated unless a token file already exists; "
            "`ray up ray_cluster.yaml` + `ray dashboard ray_cluster.yaml`) or pass --address http://HOST:8265."
        ) from None


def submit(cfg: SubmitConfig) -> str:
    """Submits the job and returns its submission id (`raysubmit_...`)."""
    return client(cfg.address).submit_job(
        entrypoint=entrypoint(cfg),
        runtime_env=runtime_env(cfg),
        entrypoint_num_cpus=cfg.entrypoint_num_cpus,
        metadata={"shg.step": cfg.step, "shg.args": shlex.join(cfg.args)},
    )


def status(address: str, job_id: str) -> str:
    """The job's status: PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED."""
    return str(client(address).get_job_status(job_id).value)


def job_info(address: str, job_id: str) -> dict[str, Any]:
    """What `shg submit status --json` prints: id, status, entrypoint, message, start/end times
    (epoch milliseconds, None while unknown)."""
    info = client(address).get_job_info(job_id)
    return {"job_id": job_id, "address": address, "status": str(info.status.value),
            "entrypoint": info.entrypoint, "message": info.message or "",
            "start_time_ms": info.start_time, "end_time_ms": info.end_time}


def logs(address: str, job_id: str) -> str:
    """All of the job's driver output so far."""
    return client(address).get_job_logs(job_id)


def stop(address: str, job_id: str) -> bool:
    """Asks the cluster to stop the job; True when a stop was sent (the job was still running)."""
    return bool(client(address).stop_job(job_id))


def follow(address: str, job_id: str, emit: Callable[[str], None]) -> str:
    """Streams the job's output to `emit` until the job ends; returns its final status."""
    async def tail() -> None:
        async for chunk in client(address).tail_job_logs(job_id):
            emit(chunk)

    asyncio.run(tail())
    return wait(address, job_id, timeout_s=60.0)


def wait(address: str, job_id: str, *, timeout_s: float, poll_s: float = 1.0) -> str:
    """Blocks until the job reaches a terminal status (returned) or raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    jobs = client(address)
    while True:
        current = str(jobs.get_job_status(job_id).value)
        if current in TERMINAL_STATUSES:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {current} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def split_workflow_args(args: Sequence[str]) -> tuple[str, ...]:
    """Drops a leading `--` separator (kept by some shells/CLIs) from the pass-through args."""
    args = list(args)
    return tuple(args[1:] if args[:1] == ["--"] else args)
