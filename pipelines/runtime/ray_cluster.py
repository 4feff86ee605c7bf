"""Connecting to Ray: an embedded local cluster by default, or an existing one by address.

The embedded cluster keeps Ray's token authentication on. Ray 2.60 binds its gRPC servers (GCS,
raylet, object manager, workers) to every interface whatever node IP it is given, so a cluster
with authentication off would run code for anyone who can reach this machine. A new local
cluster gets Ray's default, `RAY_AUTH_MODE=token` with the token in `~/.ray/auth_token` (made on
first use); the dashboard, when started, listens on 127.0.0.1 only. Any `RAY_AUTH_MODE` in the
environment other than exactly `token` turns Ray 2.60's authentication off (`disabled`, the
test suite's setting for its own clusters, but also a typo such as `tokn`, `none` or an empty
value), and then a warning says so (`auth_mode_warning`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping

# Imported where used: ray (seconds to load: only connecting needs it)

_log = logging.getLogger(__name__)


class ClusterUnavailable(ConnectionError):
    """The Ray cluster named by an address does not answer; nothing was done on it."""


def resolve_address(address: str | None, environ: Mapping[str, str]) -> str:
    """The address `ray.init` gets: "local" (a fresh private cluster) or one to join.

    An explicit address wins ("local" included). With none, a process running as a Ray job's
    driver joins that job's cluster ("auto"): Ray sets `RAY_JOB_ID` and `RAY_ADDRESS` (the GCS
    address, HOST:PORT) for it, and a private cluster on the head would have none of the
    cluster's workers (a `use_gpu` run would wait forever on a head without GPUs). A
    `RAY_ADDRESS` of the form http(s)://... is the Jobs API for `shg submit` / `ray job submit`,
    not a cluster to join, so it alone changes nothing.
    """
    if address:
        return address
    ray_address = environ.get("RAY_ADDRESS", "")
    if environ.get("RAY_JOB_ID") or (ray_address and not ray_address.startswith(("http://", "https://"))):
        return "auto"
    return "local"


def connect(address: str | None = None, *, num_cpus: int | None = None, verbose: bool = False) -> None:
    """Initialises Ray once per process.

    Args:
        address: "local", or None / "" outside a Ray job (:func:`resolve_address`), starts a
            fresh local cluster for this process (never joins a stale one recorded in
            /tmp/ray), with token authentication; None / "" inside a Ray job, "auto" or
            "HOST:PORT" / "ray://HOST:PORT" joins an existing cluster (its token, if it has
            one, comes from `RAY_AUTH_TOKEN` or `~/.ray/auth_token`).
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
    address = resolve_address(address, os.environ)
    if address == "local":
        warning = auth_mode_warning(os.environ)
        if warning:
            _log.warning(warning)
        ray.init(
            address="local", num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1",
            log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR,
        )
    else:
        try:
            ray.init(address=address, log_to_driver=verbose,
                     logging_level=logging.INFO if verbose else logging.ERROR)
        except ConnectionError as err:
            raise ClusterUnavailable(
                f"no Ray cluster answers at {address!r} ({err}). Start it (`ray start --head`, "
                "`ray up ray_cluster.yaml`), fix --address / RAY_ADDRESS, or leave both unset for "
                "a local cluster of this machine."
            ) from None
    if not verbose:
        quiet_ray_driver()  # ray.init sets up its own logger levels


def auth_mode_warning(environ: Mapping[str, str]) -> str | None:
    """The warning for a `RAY_AUTH_MODE` that leaves a new local cluster without authentication,
    or None. Ray 2.60 reads every value but `token` as "no authentication"; unset, a new local
    cluster gets token auth by default."""
    if "RAY_AUTH_MODE" not in environ or environ["RAY_AUTH_MODE"] == "token":
        return None
    return (
        f"RAY_AUTH_MODE={environ['RAY_AUTH_MODE']!r} turns Ray's token authentication off (only 'token' keeps "
        "it on): the local Ray cluster listens on all interfaces and runs code for anyone who reaches this "
        "machine. Unset RAY_AUTH_MODE (or set it to token) outside tests."
    )


# MLflow's own progress lines on the driver (database set-up, system-metrics monitor start/stop)
MLFLOW_CHATTER = ("mlflow.store.db.utils", "mlflow.system_metrics", "mlflow.pyfunc")


def quiet_ray_driver() -> None:
    """This process's Ray loggers show errors only, MLflow's set-up lines warnings only, and Ray's
    deprecation warnings are hidden (Ray's log files keep everything)."""
    import ray.data  # noqa: F401  (its import configures the ray.data loggers: quiet them after)

    for name in ("ray", "ray.train", "ray.data", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in MLFLOW_CHATTER:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray(\.|$)")
