"""Connecting to Ray: an embedded local cluster by default, or an existing one by address.

The embedded cluster keeps Ray's token authentication on. Ray 2.60 binds its gRPC servers (GCS,
raylet, object manager, workers) to every interface whatever node IP it is given, so a cluster
with authentication off would run code for anyone who can reach this machine. A new local
cluster gets Ray's default, `RAY_AUTH_MODE=token` with the token in `~/.ray/auth_token` (made on
first use); the dashboard, when started, listens on 127.0.0.1 only. Only an explicit
`RAY_AUTH_MODE=disabled` in the environment (the test suite sets it for its own clusters) turns
authentication off, and then a warning says so.
"""

from __future__ import annotations

import logging
import os

_log = logging.getLogger(__name__)


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Initialises Ray once per process.

    Args:
        address: None, "" or "local" starts a fresh local cluster for this process (never joins
            a stale one recorded in /tmp/ray), with token authentication; "auto" or
            "HOST:PORT" / "ray://HOST:PORT" joins an existing cluster (its token, if it has
            one, comes from `RAY_AUTH_TOKEN` or `~/.ray/auth_token`).
        num_cpus: CPUs the local cluster advertises (ignored when joining a cluster).
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address in (None, "", "local"):
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
            _log.warning(
                "RAY_AUTH_MODE=disabled: the local Ray cluster listens on all interfaces without "
                "authentication; unset it outside tests."
            )
        ray.init(
            address="local", num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1",
            log_to_driver=True,
        )
    else:
        ray.init(address=address)
