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

Authentication is on by default (`mlflow server --app-name basic-auth`, see
`pipelines.tracking.server_auth`: users in a store of the state folder, only the gate account may
move `champion`). `auth=False` (`--no-auth`) is for one person on one machine: it is refused
unless the server binds a loopback address, since anyone reaching an open server can point
`champion` at any version or register a model whose code runs when it is served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipelines.tracking.registry import DEFAULT_MODEL_NAME
from pipelines.tracking.server_auth import AuthFiles, AuthSetupError, auth_env, prepare_auth, provision_gate
from pipelines.tracking.uris import default_tracking_uri

# Imported where used: sqlalchemy, boto3, botocore (only checking a team's PostgreSQL and S3 stores
# needs them)


@dataclasses.dataclass(frozen=True)
class TrackingServerConfig:
    """Where `shg tracking-server` listens and which stores it serves.

    `backend_store_uri` / `artifacts_destination` empty: the work dir's sqlite store and its
    `mlartifacts/` folder. `workers` stays 1 and the server's job runner stays off: that keeps
    the server near 0.5 GB. `auth` on: MLflow's basic-auth app with its user store and secrets
    in `state_dir` (default `<workdir>/tracking-auth`), `gate_user` owning `registered_model`.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    workdir: str = "runs"
    workers: int = 1
    backend_store_uri: str = ""
    artifacts_destination: str = ""
    auth: bool = True
    state_dir: str = ""
    gate_user: str = "gate"
    registered_model: str = DEFAULT_MODEL_NAME

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_files(self) -> AuthFiles:
        return AuthFiles(Path(self.state_dir or Path(self.workdir) / "tracking-auth").resolve())


class UnsafeExposure(ValueError):
    """An unauthenticated server asked to listen beyond this machine."""


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(cfg: TrackingServerConfig) -> None:
    """Raises `UnsafeExposure` for a server without authentication on a non-loopback host."""
    if not cfg.auth and not is_loopback(cfg.host):
        raise UnsafeExposure(
            f"--host {cfg.host} with --no-auth: anyone who reaches this machine could point `champion` at "
            "any version or register a model whose code runs when it is served. Drop --no-auth (users log "
            "in; training jobs set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) or bind --host 127.0.0.1"
        )


def backend_store_uri(workdir: str | Path) -> str:
    """The sqlite store a local run under `workdir` uses (`pipelines.tracking.uris.default_tracking_uri`)."""
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
        *(["--app-name", "basic-auth"] if cfg.auth else []),
        "--host", cfg.host,
        "--port", str(cfg.port),
        "--workers", str(cfg.workers),
        *([] if redact(store) != store else ["--backend-store-uri", store]),
        "--artifacts-destination", cfg.artifacts_destination or (workdir / "mlartifacts").as_uri(),
        "--serve-artifacts",
    ]  # fmt: skip


_URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^\s?#]*@", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"([?&;](?:[a-z_]*password|passwd|pwd|secret|token)=)[^&;#\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password in a URI replaced by ***: the one of `scheme://user:password@host`
    (up to the last `@` before the query, so a password holding `@` or `/` goes whole) and the value
    of `password=`, `sslpassword=`, `passwd=`, `pwd=`, `secret=`, `token=` query parameters."""
    return _QUERY_SECRET.sub(r"\1***", _URI_PASSWORD.sub(r"\1***@", text))


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
    """The environment for the server process: the job runner off (it would cost ~0.5 GB), the
    backend store URI when it carries a password (see `server_command`), and with `cfg.auth` the
    auth app's config path, admin password and secret key (`prepare_auth`: it makes the state
    folder and any missing secret file)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_BACKEND_STORE_URI", None)  # only `cfg` says which store is served
    env.pop("MLFLOW_AUTH_CONFIG_PATH", None)  # nor which user store guards it
    if cfg is not None and cfg.backend_store_uri and redact(cfg.backend_store_uri) != cfg.backend_store_uri:
        env["MLFLOW_BACKEND_STORE_URI"] = cfg.backend_store_uri
    if cfg is not None and cfg.auth:
        env.update(auth_env(cfg.auth_files, prepare_auth(cfg.auth_files)))
    return env


def check_auth_app() -> None:
    """Raises `AuthSetupError` when MLflow's basic-auth app cannot load (Flask-WTF missing)."""
    if importlib.util.find_spec("flask_wtf") is None:
        raise AuthSetupError(
            "MLflow's basic-auth app needs Flask-WTF, which is not installed: pip install 'mlflow[auth]==3.17.2' "
            "(or, for yourself on this machine only, --no-auth with --host 127.0.0.1)"
        )


def provision(cfg: TrackingServerConfig) -> None:
    """After the server answers: the gate account exists and owns the registered model
    (`server_auth.provision_gate`). Nothing to do without authentication."""
    if cfg.auth:
        provision_gate(cfg.url, prepare_auth(cfg.auth_files), gate_user=cfg.gate_user,
                       registered_model=cfg.registered_model)  # fmt: skip


def start_server(cfg: TrackingServerConfig, *, log_path: Path | None = None) -> subprocess.Popen:
    """Starts the server in its own process group and returns (see `wait_until_ready`).

    First refuses an unauthenticated server on a non-loopback host (`check_exposure`, raises
    `UnsafeExposure`), checks the remote stores (`check_stores`, raises `StoreUnavailable`), so a
    server is never started over a database or bucket it cannot reach, and with `cfg.auth` that
    the auth app can load (`check_auth_app`, raises `AuthSetupError`). The process group lets
    `stop_server` end the server and its uvicorn worker by the one id. Output goes to
    `log_path`, or to this process's stdout when None.
    """
    check_exposure(cfg)
    check_stores(cfg)
    if cfg.auth:
        check_auth_app()
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


def stop_server(proc: subprocess.Popen, *, grace_s: float = 20.0) -> None:
    """Stops the server started by `start_server` and every process of its group (the `mlflow
    server` process, its uvicorn or gunicorn and their workers): SIGTERM to the group, then, once
    `grace_s` has passed with any of them still there, SIGKILL to the group.

    The group is waited for, not only its leader: uvicorn outlives an `mlflow server` process
    that dies first, and would go on serving the store.
    """
    deadline = time.monotonic() + grace_s
    _signal_group(proc.pid, signal.SIGTERM)
    while time.monotonic() < deadline and (proc.poll() is None or _group_alive(proc.pid)):
        time.sleep(0.1)
    if proc.poll() is None or _group_alive(proc.pid):
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(grace_s)


class StopRequested(Exception):
    """SIGTERM, SIGHUP or SIGINT reached the process that runs the server (see `stop_signals_raise`)."""


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block the first SIGTERM, SIGHUP or SIGINT raises `StopRequested` and later ones
    are ignored, so that a `finally: stop_server(...)` runs to its end when a service manager, a
    container runtime, `kill PID` or Ctrl-C stops the process: without it Python dies at once on
    SIGTERM and the server's process group, in a session of its own, keeps serving. The previous
    handlers are put back on exit. Main thread only (Python's rule for signal handlers)."""
    received: list[int] = []

    def raise_stop(signum: int, _frame: object) -> None:
        if not received:
            received.append(signum)
            raise StopRequested(signal.Signals(signum).name)

    signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    previous = {signum: signal.signal(signum, raise_stop) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` other than a zombie is left."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _health_ok(url: str, *, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
