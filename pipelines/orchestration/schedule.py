"""`shg schedule`: a local cron-style scheduler that fires the workflow on one machine.

Each firing is one call of `fire(at)` (the workflow's `run_firing`): it re-prepares or reuses the
data, skips (an MLflow run tagged `skipped=unchanged-data`) when the data fingerprint equals the
last successful run's unless forced, skips (`skipped=busy`) when another run holds the work-dir
lock, and otherwise trains, evaluates and promotes only through the champion gate.

When to use which: this process suits one machine (a workstation, a single VM) that is up at the
firing times. On Kubernetes, `infra/k8s/raycronjob-retrain.yaml` (KubeRay's RayCronJob) or
`infra/k8s/cronjob-retrain.yaml` (a CronJob for older KubeRay) is the counterpart: the cluster
keeps the schedule, and each firing runs `shg schedule --once` on a fresh Ray cluster.

A firing that raises is recorded as a `FiringFailed` outcome and the scheduler goes on to the
next cron time; the caller decides the exit status from the outcomes. A clock that steps back
(NTP, a restored VM) never makes the same cron slot fire twice.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from croniter import croniter

from shg_io.clock import utc_now


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """When to fire.

    Args:
        cron: a five-field cron expression in UTC, e.g. `"0 3 * * 1"` (Mondays 03:00).
        once: fire once, now, and return (what a cluster CronJob runs at each firing).
        max_firings: stop after this many firings (0: run until interrupted).
    """

    cron: str = "0 3 * * 1"
    once: bool = False
    max_firings: int = 0

    def __post_init__(self) -> None:
        validate_cron(self.cron)
        if self.max_firings < 0:
            raise ValueError(f"max_firings must be ≥ 0 (0: no limit), got {self.max_firings}")


def validate_cron(cron: str) -> None:
    """Raises ValueError naming the expression and the expected form when `cron` is not valid."""
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ValueError(
            f"--cron {cron!r} is not a five-field cron expression "
            "(minute hour day-of-month month day-of-week, e.g. '0 3 * * 1')"
        )


def next_firing(cron: str, after: datetime) -> datetime:
    """The first time strictly after `after` (timezone-aware, UTC) that `cron` fires."""
    if after.tzinfo is None:
        raise ValueError("next_firing needs a timezone-aware datetime (UTC)")
    return croniter(cron, after.astimezone(timezone.utc)).get_next(datetime)


@dataclasses.dataclass(frozen=True)
class FiringFailed:
    """A firing that raised: when it was due and what went wrong (`Type: message`)."""

    at: datetime
    error: str




def run_schedule(
    cfg: ScheduleConfig,
    fire: Callable[[datetime], Any],
    *,
    now: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[datetime], None] | None = None,
) -> list[Any]:
    """Fires `fire(at)` at each cron time and returns the outcomes, in order.

    `now` and `sleep` are the clock; tests pass a fake one that advances when slept on, so a
    week of firings takes no time. A firing that overruns the next cron time is not made up:
    the next firing is the first cron time after the previous one finished.
    """
    if cfg.once:
        return [_fire_safely(fire, now())]
    outcomes: list[Any] = []
    last: datetime | None = None
    while not cfg.max_firings or len(outcomes) < cfg.max_firings:
        # After a firing, the next slot is strictly later than the one that fired, even when
        # the clock has stepped back in the meantime.
        at = next_firing(cfg.cron, now() if last is None else max(now(), last))
        if on_wait is not None:
            on_wait(at)
        while (remaining := (at - now()).total_seconds()) > 0:
            sleep(min(remaining, 60.0))  # wake up now and then: clock jumps, suspend/resume
        outcomes.append(_fire_safely(fire, at))
        last = at
    return outcomes


def _fire_safely(fire: Callable[[datetime], Any], at: datetime) -> Any:
    try:
        return fire(at)
    except Exception as err:  # one bad firing must not end the schedule
        return FiringFailed(at, f"{type(err).__name__}: {err}")
