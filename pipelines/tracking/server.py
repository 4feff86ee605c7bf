"""`shg tracking-server`: a real `mlflow server` over the project's local store.

`shg tracking-server` serves the same sqlite store that a local `shg run` writes under its work
dir, so runs logged locally and runs logged over HTTP land in one place and the UI shows both.
Artifacts are proxied by the server (`--serve-artifacts`): clients need only the tracking URI.
Runs check that a tracking server answers before they start (`pipelines.tracking.store.check_reachable`).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class TrackingServerConfig:
    """Where `shg tracking-server` listens and which work dir's store it serves.

    `workers` stays 1 and the server's job runner stays off: that keeps the server near 0.5 GB.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    workdir: str = "runs"
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def backend_store_uri(workdir: str | Path) -> str:
    """The sqlite store a local run under `workdir` uses (`pipelines.tracking.store`'s default)."""
    from pipelines.tracking.store import default_tracking_uri

    return default_tracking_uri(workdir)


def server_command(cfg: TrackingServerConfig) -> list[str]:
    """The `mlflow server` command line for `cfg` (absolute paths, the venv's own mlflow)."""
    workdir = Path(cfg.workdir).resolve()
    return [
        sys.executable, "-m", "mlflow", "server",
        "--host", cfg.host,
        "--port", str(cfg.port),
        "--workers", str(cfg.workers),
        "--backend-store-uri", backend_store_uri(workdir),
        "--artifacts-destination", (workdir / "mlartifacts").as_uri(),
        "--serve-artifacts",
    ]  # fmt: skip


def server_env() -> dict[str, str]:
    """The environment for the server process: the job runner off (it would cost ~0.5 GB)."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_server(cfg: TrackingServerConfig, *, log_path: Path | None = None) -> subprocess.Popen:
    """Starts the server in its own process group and returns at once (see `wait_until_ready`).

    The process group lets `stop_server` end the server and its uvicorn worker by the one id.
    Output goes to `log_path`, or to this process's stdout when None.
    """
    Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab") if log_path else None
    try:
        return subprocess.Popen(
            server_command(cfg), env=server_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    finally:
        if log_path:
            log.close()


def wait_until_ready(url: str, *, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Polls `url/health` until it answers 200; raises if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {proc.returncode} before it was ready")
        if _health_ok(url, timeout_s=2.0):
            return
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} was not ready after {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen, *, timeout_s: float = 20.0) -> None:
    """Stops the server started by `start_server`: SIGTERM to its group, SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout_s)
    except ProcessLookupError:
        pass


def _health_ok(url: str, *, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
