"""What a command's failure was, in the words its exit status uses (`pipelines.cli.exits`).

Every refusal the commands know is one of three kinds besides a plain failure: the input was
wrong (`usage`: nothing was done, fix the command line), something held what the command needs
(`busy`: a lock; try again later), or a service did not answer (`unavailable`: the MLflow store,
the Ray cluster, the Ray Jobs API). A step error that wraps one of these (`WorkflowError` from a
cluster that went away mid-run) is classified by its cause.
"""

from __future__ import annotations

from pipelines.config.experiment import ConfigError
from pipelines.orchestration.lock import WorkflowBusy
from pipelines.runtime.ray_cluster import ClusterUnavailable
from pipelines.tracking.uris import TrackingUnavailable

BUSY_ERRORS: tuple[type[BaseException], ...] = (WorkflowBusy,)
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (TrackingUnavailable, ClusterUnavailable, ConnectionError)
USAGE_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, LookupError, FileNotFoundError)


def failure_kind(err: BaseException) -> str:
    """`busy`, `unavailable`, `usage` or `failure` for `err`, looking through its causes
    (`raise ... from err`) for a busy or unavailable one first."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, BUSY_ERRORS):
            return "busy"
        if isinstance(cause, UNAVAILABLE_ERRORS):
            return "unavailable"
        cause = cause.__cause__
    return "usage" if isinstance(err, USAGE_ERRORS) else "failure"
