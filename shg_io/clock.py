"""One clock for the timestamps the pipeline writes: UTC always, in two spellings."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def utc_iso(moment: dt.datetime | None = None) -> str:
    """`2026-12-04T15:24:32Z`: for tags, manifests and messages a person reads."""
    return (moment or utc_now()).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_compact(moment: dt.datetime | None = None, *, microseconds: bool = True) -> str:
    """`20261204T152432123456Z` (or `20261204T152432` without microseconds): for names of
    folders and files, which sort by time."""
    moment = (moment or utc_now()).astimezone(dt.timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%S%fZ") if microseconds else moment.strftime("%Y%m%dT%H%M%S")
