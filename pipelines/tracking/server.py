"""`shg tracking-server`: a real `mlflow server`, over the project's local store or a team's.

By default `shg tracking-server` serves the same sqlite store that a local `shg run` writes under
its work dir, so runs logged locally and runs logged over HTTP land in one place and the UI shows
both. As a team runs it (infra/k8s/mlflow.yaml, infra/mlflow/docker-compose.yml) it takes a
PostgreSQL backend store (`--backend-store-uri postgresql+psycopg2://user:password@host:5432/db`;
the driver is named because SQLAlchemy >= 2.1 reads a bare postgresql:// as psycopg 3) and an S3 artifact store (`--artifacts-destination s3://bucket/prefix`, client boto3; the
endpoint and keys come from MLFLOW_S3_ENDPOINT_URL / AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY in the server's environment). Both stores are checked before the server
starts, so a wrong URI, a stopped database or a missing bucket is one clear error instead of a
server that answers /health and then fails every request. Artifacts are always proxied by the
server (`--serve-artifacts`): clients need only the tracking URI, never the S3 keys.
Runs check that a tracking server answers before they start (`pipelines.tracking.uris.check_reachable`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class TrackingServerConfig:
    """Where `shg tracking-server` listens and which stores it serves.

    `backend_store_uri` / `artifacts_destination` empty: the work dir's sqlite store and its
    `mlartifacts/` folder. `workers` stays 1 and the server's job runner stays off: that keeps
    the server near 0.5 GB.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    workdir: str = "runs"
    workers: int = 1
    backend_store_uri: str = ""
    artifacts_destination: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def backend_store_uri(workdir: str | Path) -> str:
    """The sqlite store a local run under `workdir` uses (`pipelines.tracking.uris.default_tracking_uri`)."""
    from pipelines.tracking.uris import default_tracking_uri

    return default_tracking_uri(workdir)


def server_command(cfg: TrackingServerConfig) -> list[str]:
    """The `mlflow server` command line for `cfg` (absolute paths, the venv's own mlflow).

    A backend store URI that carries a password is not on the command line (where `ps` shows it
    to every user of the machine): `server_env(cfg)` hands it over as MLFLOW_BACKEND_STORE_URI.
    """
    workdir = Path(cfg.workdir).resolve()
    store = cfg.backend_store_uri or backend_store_uri(workdir)
    return [
        sys.executable, "-m", "mlflow", "server",
        "--host", cfg.host,
        "--port", str(cfg.port),
        "--workers", str(cfg.workers),
        *([] if redact(store) != store else ["--backend-store-uri", store]),
        "--artifacts-destination", cfg.artifacts_destination or (workdir / "mlartifacts").as_uri(),
        "--serve-artifacts",
    ]  # fmt: skip


def redact(text: str) -> str:
    """`text` with the password of every `scheme://user:password@host` URI in it replaced by ***."""
    return re.sub(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def check_stores(cfg: TrackingServerConfig, *, timeout_s: float = 10.0) -> None:
    """Raises `StoreUnavailable`, naming the store (password hidden) and the fix, when a remote
    backend store does not accept a connection or an S3 artifact bucket cannot be reached.

    Local stores (sqlite, file) need no check: the server creates them. Takes about the time of one
    connection per remote store.
    """
    if cfg.backend_store_uri.startswith(("postgresql", "mysql", "mssql")):
        _check_database(cfg.backend_store_uri, timeout_s=timeout_s)
    if cfg.artifacts_destination.startswith("s3://"):
        _check_bucket(cfg.artifacts_destination, timeout_s=timeout_s)


class StoreUnavailable(RuntimeError):
    """A store the tracking server needs cannot be reached; the message says which and what to do."""


def _check_database(uri: str, *, timeout_s: float) -> None:
    import sqlalchemy

    connect_args = {"connect_timeout": max(1, int(timeout_s))} if uri.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except ModuleNotFoundError as error:
        hint = ("; SQLAlchemy >= 2.1 reads a bare postgresql:// as psycopg 3: write postgresql+psycopg2://"
                if error.name == "psycopg" and uri.startswith("postgresql://") else "")
        raise StoreUnavailable(
            f"backend store {redact(uri)}: its driver is not installed ({error.name}){hint}. "
            "shg installs psycopg2-binary (bash scripts/setup.sh)"
        ) from error
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StoreUnavailable(
            f"backend store {redact(uri)} does not accept a connection: {reason}. Start the database "
            "or fix --backend-store-uri (host, port, user, password, database name)"
        ) from error


def _check_bucket(destination: str, *, timeout_s: float) -> None:
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ModuleNotFoundError as error:
        raise StoreUnavailable(
            f"artifact store {destination}: boto3 is not installed (MLflow's S3 client); bash scripts/setup.sh installs it"
        ) from error
    bucket = destination[len("s3://"):].split("/", 1)[0]
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    config = botocore.config.Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 1})
    try:
        boto3.client("s3", endpoint_url=endpoint, config=config).head_bucket(Bucket=bucket)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        where = f" at {endpoint}" if endpoint else ""
        raise StoreUnavailable(
            f"artifact store {destination}: bucket {bucket!r}{where} cannot be reached: {error}. Create the "
            "bucket, or set MLFLOW_S3_ENDPOINT_URL and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the server"
        ) from error


def server_env(cfg: TrackingServerConfig | None = None) -> dict[str, str]:
    """The environment for the server process: the job runner off (it would cost ~0.5 GB), and
    the backend store URI when it carries a password (see `server_command`)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_BACKEND_STORE_URI", None)  # only `cfg` says which store is served
    if cfg is not None and cfg.backend_store_uri and redact(cfg.backend_store_uri) != cfg.backend_store_uri:
        env["MLFLOW_BACKEND_STORE_URI"] = cfg.backend_store_uri
    return env


def start_server(cfg: TrackingServerConfig, *, log_path: Path | None = None) -> subprocess.Popen:
    """Starts the server in its own process group and returns (see `wait_until_ready`).

    First checks the remote stores (`check_stores`, raises `StoreUnavailable`), so a server is
    never started over a database or bucket it cannot reach. The process group lets
    `stop_server` end the server and its uvicorn worker by the one id. Output goes to
    `log_path`, or to this process's stdout when None.
    """
    check_stores(cfg)
    Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab") if log_path else None
    try:
        return subprocess.Popen(
            server_command(cfg), env=server_env(cfg), stdout=log, stderr=subprocess.STDOUT,
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
