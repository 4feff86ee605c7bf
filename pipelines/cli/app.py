"""The `shg` command line: one typer app, commands registered by `pipelines.cli.*`."""

from __future__ import annotations

import typer

from pipelines.cli import evaluate
from pipelines.cli import ops
from pipelines.cli import prepare
from pipelines.cli import synth
from pipelines.cli import train


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="shg",
        help="Stacked Hourglass pose estimation: synthesise, prepare, train, evaluate, register, operate.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)  # keeps `shg` a command group even while few commands exist
    app.command("versions")(versions)
    for module in (synth, prepare, train, evaluate, ops):
        module.register(app)
    return app


def _root() -> None:
    """Stacked Hourglass pose estimation on Ray and MLflow."""


def versions() -> None:
    """Print the versions of shg and of the libraries it pins (for bug reports)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in ("shg", "torch", "ray", "mlflow", "pyarrow", "albumentations", "numpy"):
        try:
            typer.echo(f"{name:15s} {version(name)}")
        except PackageNotFoundError:
            typer.echo(f"{name:15s} not installed")


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
