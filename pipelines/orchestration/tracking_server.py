"""Below `shg tracking-server`: an MLflow server over a store, from start to Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable

from pipelines.tracking.server import (
    StoreUnavailable,
    TrackingServerConfig,
    redact,
    server_command,
    start_server,
    stop_server,
    wait_until_ready,
)

__all__ = ["StoreUnavailable", "TrackingServerConfig", "serve"]


def serve(cfg: TrackingServerConfig, *, log: Callable[[str], None]) -> None:
    """Starts `mlflow server` for `cfg` (the command is logged with secrets redacted), says when it
    answers, and waits until it ends or Ctrl-C; the server is stopped either way.

    Raises:
        StoreUnavailable: the backend store or the artifact bucket does not answer (nothing started).
    """
    log(redact(" ".join(server_command(cfg))))
    proc = start_server(cfg)
    try:
        wait_until_ready(cfg.url, proc=proc)
        log(f"tracking server ready at {cfg.url} (pid {proc.pid}); use --tracking-uri {cfg.url}")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(proc)
