"""The cron scheduler's clock logic, with a fake clock (a week of firings in no time).

The firing itself (skip on unchanged data, busy lock) is tested end to end in test_workflow.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipelines.orchestration.schedule import ScheduleConfig, next_firing, run_schedule, validate_cron

UTC = timezone.utc


class FakeClock:
    """`now()` and `sleep(s)`; sleeping advances the time, firing takes `fire_seconds`."""

    def __init__(self, start: datetime, fire_seconds: float = 0.0):
        self.t = start
        self.fire_seconds = fire_seconds
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)

    def fire(self, at: datetime) -> datetime:
        self.t += timedelta(seconds=self.fire_seconds)
        return at


def test_next_firing_hand_computed():
    # 2026-11-25 is a Wednesday; "0 3 * * 1" is Mondays 03:00 -> Monday 2026-11-30 03:00.
    assert next_firing("0 3 * * 1", datetime(2026, 11, 25, 8, 15, tzinfo=UTC)) == datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    # Strictly after: at exactly a firing time, the next one is a week later.
    assert next_firing("0 3 * * 1", datetime(2026, 11, 30, 3, 0, tzinfo=UTC)) == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    assert next_firing("*/15 * * * *", datetime(2026, 1, 1, 0, 7, 30, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 15, tzinfo=UTC)


def test_next_firing_needs_an_aware_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_firing("0 3 * * 1", datetime(2026, 1, 1))


@pytest.mark.parametrize("bad", ["", "0 3 * *", "61 3 * * 1", "0 3 * * 1 2026", "every monday"])
def test_invalid_cron_is_rejected_with_the_expected_form(bad):
    with pytest.raises(ValueError, match="five-field cron expression"):
        validate_cron(bad)
    with pytest.raises(ValueError):
        ScheduleConfig(cron=bad)


def test_three_weekly_firings_at_the_cron_times():
    clock = FakeClock(datetime(2026, 11, 25, 8, 15, tzinfo=UTC), fire_seconds=600)
    fired = run_schedule(ScheduleConfig(cron="0 3 * * 1", max_firings=3), clock.fire, now=clock.now, sleep=clock.sleep)
    assert fired == [datetime(2026, 11, 30, 3, tzinfo=UTC), datetime(2026, 12, 7, 3, tzinfo=UTC), datetime(2026, 12, 14, 3, tzinfo=UTC)]
    assert max(clock.slept) <= 60.0  # wakes up at least every minute


def test_an_overrunning_firing_skips_the_missed_time_instead_of_firing_twice():
    clock = FakeClock(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC), fire_seconds=150)  # firing lasts 2.5 min
    fired = run_schedule(ScheduleConfig(cron="* * * * *", max_firings=3), clock.fire, now=clock.now, sleep=clock.sleep)
    # 00:01 fires and runs to 00:03:30; 00:02 and 00:03 are not made up; next is 00:04.
    assert fired == [datetime(2026, 1, 1, 0, m, tzinfo=UTC) for m in (1, 4, 7)]


def test_once_fires_immediately_without_sleeping():
    clock = FakeClock(datetime(2026, 11, 25, 8, 15, tzinfo=UTC))
    fired = run_schedule(ScheduleConfig(cron="0 3 * * 1", once=True), clock.fire, now=clock.now, sleep=clock.sleep)
    assert fired == [datetime(2026, 11, 25, 8, 15, tzinfo=UTC)] and clock.slept == []


def test_a_clock_that_steps_back_never_fires_the_same_slot_twice():
    clock = FakeClock(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))

    def fire_then_step_back(at):
        clock.t = at - timedelta(seconds=50)  # NTP steps the clock back below the fired slot
        return at

    fired = run_schedule(ScheduleConfig(cron="* * * * *", max_firings=3), fire_then_step_back,
                         now=clock.now, sleep=clock.sleep)
    assert fired == [datetime(2026, 1, 1, 0, m, tzinfo=UTC) for m in (1, 2, 3)]


def test_a_failing_firing_is_recorded_and_the_schedule_goes_on():
    from pipelines.orchestration.schedule import FiringFailed

    clock = FakeClock(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    calls = []

    def flaky(at):
        calls.append(at)
        if len(calls) == 2:
            raise ConnectionError("tracking server hiccup")
        return at

    fired = run_schedule(ScheduleConfig(cron="* * * * *", max_firings=3), flaky, now=clock.now, sleep=clock.sleep)
    assert fired[0] == datetime(2026, 1, 1, 0, 1, tzinfo=UTC) and fired[2] == datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    assert fired[1] == FiringFailed(datetime(2026, 1, 1, 0, 2, tzinfo=UTC), "ConnectionError: tracking server hiccup")
