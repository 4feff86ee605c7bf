"""Connecting to Ray: an embedded local cluster by default, or an existing one by address."""

from __future__ import annotations

import os


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Initialises Ray once per process.

    Args:
        address: None, "" or "local" starts a fresh local cluster for this process (never joins
            a stale one recorded in /tmp/ray); "auto" or "HOST:PORT" / "ray://HOST:PORT" joins
            an existing cluster.
        num_cpus: CPUs the local cluster advertises (ignored when joining a cluster).
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address in (None, "", "local"):
        # A local cluster is private to this process: token auth only gets in the way.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    else:
        ray.init(address=address)
