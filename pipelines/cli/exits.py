"""The exit statuses of every `shg` command, in one place (the table in docs/USAGE.md is this one).

0 and 1 as every program; 2 is Click's for usage errors, and shg's own refusals of bad input
(a missing file, a bad override, not a prepared dataset) use it too, as nothing was done. A
lock held by another command and a service that does not answer get codes of their own from
BSD's sysexits.h, so a script or a scheduler can tell "try again later" from "fix the command":
75 (EX_TEMPFAIL) and 69 (EX_UNAVAILABLE). 3 is `shg train`'s "trained, the model is kept, but
the tracking store did not take the result".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

import typer

from shg_io.json_files import json_ready


@dataclass(frozen=True)
class ExitStatus:
    code: int
    name: str
    meaning: str


OK = ExitStatus(0, "ok", "the command did what it was asked")
FAILURE = ExitStatus(1, "failure", "a step failed, a job did not succeed, a rerun differed, a scheduled firing failed")
USAGE = ExitStatus(2, "usage", "a bad option, override, config file or input path (Click's usage errors included); nothing was done")
TRAINED_NOT_RECORDED = ExitStatus(
    3, "trained-not-recorded",
    "`shg train`: training finished and the model is kept, but the tracking store did not take the result; "
    "run the same command again once it answers (it records and registers without training)")
UNAVAILABLE = ExitStatus(
    69, "unavailable",
    "a service did not answer: the MLflow tracking store, the Ray cluster or its Jobs API (sysexits EX_UNAVAILABLE); "
    "nothing was trained")
BUSY = ExitStatus(
    75, "busy",
    "another shg command holds the work dir or the prepared dataset (sysexits EX_TEMPFAIL); nothing was done, "
    "try again when it ends")

EXIT_STATUSES: tuple[ExitStatus, ...] = (OK, FAILURE, USAGE, TRAINED_NOT_RECORDED, UNAVAILABLE, BUSY)
_BY_KIND = {"busy": BUSY, "unavailable": UNAVAILABLE, "usage": USAGE, "failure": FAILURE}


def status_for(err: BaseException) -> ExitStatus:
    """The exit status of a command that stopped on `err` (`pipelines.orchestration.errors`)."""
    # the orchestration layer loads torch: every command imports this module, even `shg --help`
    from pipelines.orchestration.errors import failure_kind

    return _BY_KIND[failure_kind(err)]


def fail(message: str, status: ExitStatus) -> NoReturn:
    """`error: <message>` on stderr, then exit with `status`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=status.code)


def fail_on(err: BaseException, prefix: str = "") -> NoReturn:
    """Exits on `err` with the status its kind has (`status_for`), its message on stderr."""
    fail(f"{prefix}{err}", status_for(err))


def emit_json(value: Any) -> None:
    """One JSON object on stdout (`--json`): what a script reads; the rest went to stderr."""
    typer.echo(json.dumps(json_ready(value), indent=2, sort_keys=True))
