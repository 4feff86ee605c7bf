"""`shg train`: Ray Train V2 training of a prepared dataset, tracked in MLflow, gated into the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to `app`."""
    app.command("train", context_settings={"help_option_names": ["-h", "--help"]})(train)


def train(
    data: Annotated[str, typer.Option(help="Prepared dataset folder or URI (`shg prepare --out`): train/, val/, manifest.json.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        metavar="[KEY=VALUE]...",
        help="Dotted config overrides, e.g. model.stacks=2 train.epochs=3 train.max_steps=50.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML or YAML config file (applied before the overrides).")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite under train.storage.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="MLflow experiment name (default shg, the one `shg run` uses).")] = None,
    register: Annotated[bool, typer.Option("--register/--no-register", help="Log, register and champion-gate the final model.")] = True,
    model_name: Annotated[Optional[str], typer.Option(help="Registered model name (default stacked-hourglass).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray address ('auto', HOST:PORT); default: a local cluster.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Ray's own output (worker logs, Ray Train/Data messages); default: Ray's log files only.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Live progress: a bar on a terminal, a line every 30 s otherwise.")] = True,
) -> None:
    """Train the Stacked Hourglass; re-running the same command resumes an interrupted run."""
    from pipelines.config.experiment import ConfigError, load_config
    from pipelines.runtime.prepared import PreparedDataError
    from pipelines.tracking.store import TrackingUnavailable
    from pipelines.training.checkpoints import CheckpointMismatchError
    from pipelines.training.driver import resolve_train_inputs, train_resolved

    try:
        cfg = load_config(config, overrides or [])
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="KEY=VALUE / --config") from None
    from pipelines.orchestration.lock import WorkflowBusy, workdir_lock
    from shg_io.storage import is_uri, local_state_dir

    try:
        # inputs checked first (a bad --data or an unreachable store leaves nothing behind),
        # then the same lock as `shg run` on this folder: one training and registration at a time
        inputs = resolve_train_inputs(cfg, data, tracking_uri=tracking_uri, experiment=experiment)
        with workdir_lock(local_state_dir(cfg.train.storage), "shg train"):
            result = train_resolved(cfg, inputs, address=address, log=typer.echo, verbose=verbose,
                                    progress=progress)
            decision = None
            if register:  # the same evaluation and champion gate as `shg run`
                from pipelines.orchestration.promotion import evaluate_and_register

                prepared = data if is_uri(data) else Path(data).resolve()
                decision = evaluate_and_register(cfg, result, prepared, address=address,
                                                 log=typer.echo, name=model_name)
    except (PreparedDataError, TrackingUnavailable, CheckpointMismatchError, WorkflowBusy) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    from dataprep.pckh import TABLE_KEYS

    typer.echo(f"run {result.run_name}: {result.epochs_completed} epochs, {result.global_step} steps, "
               f"{result.seconds:.0f} s; MLflow run {result.mlflow_run_id} ({result.tracking_uri})")
    typer.echo("PCKh@0.5 (official MPII, Total = 14 joints pooled)")
    typer.echo("            " + " ".join(f"{k:>8s}" for k in TABLE_KEYS))
    typer.echo("model       " + " ".join(f"{result.pckh.get(k, float('nan')):8.1f}" for k in TABLE_KEYS))
    typer.echo("mean pose   " + " ".join(f"{result.baseline_pckh.get(k, float('nan')):8.1f}" for k in TABLE_KEYS))
    if decision is not None:
        typer.echo(f"registry: {decision.name} v{decision.version} -> {decision.alias} ({decision.reason})")
