"""Throwaway services a test starts and stops itself: a PostgreSQL 15 cluster and an S3 server.

Nothing here depends on anything already running. Each service listens on a free port of
127.0.0.1 only, lives in its own temporary directory, and is stopped and deleted on exit of its
context manager, also when the test fails.

- `postgres_cluster()`: Debian's PostgreSQL 15 binaries (`/usr/lib/postgresql/15/bin`, package
  postgresql-15), run as the `postgres` user (never as root), a new cluster made by `initdb` in a
  temp dir owned by `postgres`, the unix socket in that dir. Local (socket) connections are
  trusted; TCP connections need a password (scram-sha-256), and the `mlflow` role gets a random
  one. Skips the test, saying why, when the binaries or the `postgres` user are missing.
- `s3_server()`: `moto` in server mode (`python -m moto.server`, package `moto[server]`) as a
  real HTTP S3 endpoint, in its own process, with one bucket made through boto3.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- PostgreSQL -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway cluster: `database` is owned by `user`, who logs in with `password`."""

    port: int
    socket_dir: Path
    data_dir: Path
    user: str
    password: str
    database: str
    host: str = "127.0.0.1"

    @property
    def uri(self) -> str:
        """The SQLAlchemy / MLflow backend-store URI (TCP, password auth, the psycopg2 driver)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def connect(self):
        """A psycopg2 connection as the database's owner, over TCP as MLflow connects."""
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=self.database, connect_timeout=5)  # fmt: skip


def _as_postgres(argv: list[str]) -> list[str]:
    """`argv` run as the `postgres` user: through runuser when we are root, as is otherwise."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    if pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        pytest.skip("the PostgreSQL fixture runs initdb as the postgres user: needs root or postgres")
    return argv


def _run_as_postgres(argv: list[str], *, timeout_s: float = 60.0) -> None:
    done = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def postgres_cluster(database: str = "mlflow", user: str = "mlflow") -> Iterator[PostgresCluster]:
    """Starts a new PostgreSQL 15 cluster on a free port of 127.0.0.1; stops and deletes it after."""
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / name).is_file()]
    if missing:
        pytest.skip(f"PostgreSQL 15 binaries {missing} not in {PG_BIN} (apt-get install postgresql-15)")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no `postgres` user to run PostgreSQL as (apt-get install postgresql-15 makes it)")

    # Not under pytest's tmp_path: that is root's, mode 700, and postgres could not enter it.
    root = Path(tempfile.mkdtemp(prefix="shg-pg-"))
    data_dir, log = root / "data", root / "postgres.log"
    started = False
    try:
        os.chown(root, owner.pw_uid, owner.pw_gid)
        password_file = root / "superuser.pw"
        password_file.write_text(secrets.token_urlsafe(18) + "\n")
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
        password_file.chmod(0o600)
        _run_as_postgres([str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", "postgres", "--no-sync",
                          "--auth-local=trust", "--auth-host=scram-sha-256",
                          f"--pwfile={password_file}", "--encoding=UTF8", "--locale=C"])  # fmt: skip
        port = free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c shared_buffers=16MB -c max_connections=40")  # fmt: skip
        _run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", options,
                          "-w", "-t", "60", "start"])  # fmt: skip
        started = True

        cluster = PostgresCluster(port=port, socket_dir=root, data_dir=data_dir, user=user,
                                  password=secrets.token_urlsafe(18), database=database)  # fmt: skip
        import psycopg2
        from psycopg2 import sql

        admin = psycopg2.connect(host=str(root), port=port, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)), [cluster.password])
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user)))
        admin.close()
        yield cluster
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


# --- S3 (moto server) -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint with `bucket` in it; moto accepts any key pair, these are random."""

    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The standard variables by which boto3 and MLflow find this endpoint and its keys."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
        }

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key_id,
                            aws_secret_access_key=self.secret_access_key)  # fmt: skip

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix` in the bucket (all pages)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@contextlib.contextmanager
def s3_server(bucket: str = "mlflow", *, log_path: Path | None = None) -> Iterator[S3Server]:
    """Starts `moto` in server mode on a free port of 127.0.0.1 and makes `bucket`; stops it after."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (bash scripts/setup.sh)")
    pytest.importorskip("boto3", reason="boto3 is not installed (bash scripts/setup.sh)")
    port = free_port()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        server = S3Server(endpoint_url=f"http://127.0.0.1:{port}", bucket=bucket,
                          access_key_id="test" + secrets.token_hex(8), secret_access_key=secrets.token_urlsafe(24))  # fmt: skip
        _wait_for_http(server.endpoint_url + "/moto-api/", proc, what="moto server")
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        if log_path:
            log.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(20)


def _wait_for_http(url: str, proc: subprocess.Popen, *, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it answered at {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers, whatever the status
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not answer at {url} within {timeout_s:.0f} s")
