"""Connecting to Ray: an embedded local cluster by default, or an existing one by address."""

from __future__ import annotations

import logging
import os
import warnings


def connect(address: str | None = None, *, num_cpus: int | None = None, verbose: bool = False) -> None:
    """Initialises Ray once per process.

    Args:
        address: None, "" or "local" starts a fresh local cluster for this process (never joins
            a stale one recorded in /tmp/ray); "auto" or "HOST:PORT" / "ray://HOST:PORT" joins
            an existing cluster.
        num_cpus: CPUs the local cluster advertises (ignored when joining a cluster).
        verbose: show Ray's own output on this terminal. Off, the workers' and actors' output
            (Ray Train's controller messages, Ray Data's progress bars, worker log lines) stays
            in Ray's log files (`/tmp/ray/session_latest/logs`) and this process's Ray loggers
            only show errors (see :func:`quiet_ray_driver`); the training progress display
            (`pipelines.training.progress`) is what a person follows instead.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        quiet_ray_driver()
    if address in (None, "", "local"):
        # A local cluster is private to this process: token auth only gets in the way.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=verbose)
    else:
        ray.init(address=address, log_to_driver=verbose)
    if not verbose:
        quiet_ray_driver()  # ray.init sets up its own logger levels


def quiet_ray_driver() -> None:
    """This process's Ray loggers show errors only, and Ray's deprecation warnings are hidden
    (Ray's log files keep everything)."""
    for name in ("ray", "ray.train", "ray.data", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray(\.|$)")
