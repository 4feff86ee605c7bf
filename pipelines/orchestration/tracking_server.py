"""Below `shg tracking-server`: an MLflow server over a store, from start to Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
from collections.abc import Callable

from pipelines.tracking.server import (
    AuthSetupError,
    StopRequested,
    StoreUnavailable,
    TrackingServerConfig,
    UnsafeExposure,
    provision,
    redact,
    server_command,
    start_server,
    stop_server,
    stop_signals_raise,
    wait_until_ready,
)

__all__ = [
    "AuthSetupError",
    "ServerSetupError",
    "StoreUnavailable",
    "TrackingServerConfig",
    "UnsafeExposure",
    "serve",
]

# What `serve` raises when the server cannot be set up; the CLI prints it and exits 1.
ServerSetupError = (StoreUnavailable, UnsafeExposure, AuthSetupError)


def serve(cfg: TrackingServerConfig, *, log: Callable[[str], None]) -> None:
    """Starts `mlflow server` for `cfg` (the command is logged with secrets redacted), provisions the
    gate account when users log in, says when it answers and how users log in, and waits until it
    ends or SIGTERM / SIGHUP / Ctrl-C; the server's whole process group is stopped either way.

    Raises:
        StoreUnavailable: the backend store or the artifact bucket does not answer (nothing started).
        UnsafeExposure: `--no-auth` on a non-loopback host (nothing started).
        AuthSetupError: the user store or the gate account could not be set up.
    """
    log(redact(" ".join(server_command(cfg))))
    with stop_signals_raise():  # SIGTERM / SIGHUP / Ctrl-C: the `finally` stops the server's whole group
        proc = None
        try:
            proc = start_server(cfg)  # the store checks may take seconds: a signal then stops nothing
            wait_until_ready(cfg.url, proc=proc)
            provision(cfg)
            log(f"tracking server ready at {cfg.url} (pid {proc.pid}); use --tracking-uri {cfg.url}")
            if cfg.auth:
                log(_login_line(cfg))
            proc.wait()
        except StopRequested as stop:
            log(f"tracking-server: {stop}: stopping the server and its workers")
        finally:
            if proc is not None:
                stop_server(proc)


def _login_line(cfg: TrackingServerConfig) -> str:
    """Where the admin and gate passwords come from (never the passwords themselves)."""
    files = cfg.auth_files
    admin = "MLFLOW_AUTH_ADMIN_PASSWORD" if os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") else files.admin_password
    gate = ("$SHG_TRACKING_GATE_PASSWORD" if os.environ.get("SHG_TRACKING_GATE_PASSWORD")
            else f"\"$(cat {files.gate_password})\"")  # fmt: skip
    return (f"users log in: the admin password is in {admin}; training and the gate log in with "
            f"MLFLOW_TRACKING_USERNAME={cfg.gate_user} MLFLOW_TRACKING_PASSWORD={gate}")  # fmt: skip
