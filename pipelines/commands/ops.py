"""`shg` subcommands of this stage (see pipelines/commands/__init__.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to `app`."""
