"""The `shg` command line: one typer app, commands registered by `pipelines.cli.*`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from pipelines.cli import evaluate, ops, prepare, synth, train


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="shg",
        help="Stacked Hourglass pose estimation: synthesise, prepare, train, evaluate, register, operate.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # inherited by every command and sub-command's context: `-h` wherever `--help` works
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)  # keeps `shg` a command group even while few commands exist
    app.command("versions")(versions)
    for module in (synth, prepare, train, evaluate, ops):
        module.register(app)
    return app


def _print_version(given: bool) -> None:
    if given:
        typer.echo(f"shg {_shg_version()}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print shg's version and exit (`shg versions` adds the libraries').")] = False,
) -> None:
    """Stacked Hourglass pose estimation on Ray and MLflow.

    Exit status: 0 ok, 1 failure, 2 usage, 3 trained but not recorded, 69 a service unavailable,
    75 busy (docs/USAGE.md#exit-status).
    """


def _shg_version() -> str:
    try:
        return version("shg")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "unknown (not installed)"


def versions() -> None:
    """Print the versions of shg and of the libraries it pins (for bug reports)."""
    for name in ("shg", "torch", "ray", "mlflow", "pyarrow", "albumentations", "numpy"):
        try:
            typer.echo(f"{name:15s} {version(name)}")
        except PackageNotFoundError:
            typer.echo(f"{name:15s} not installed")


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
