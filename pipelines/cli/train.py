"""`shg train`: Ray Train V2 training of a prepared dataset, tracked in MLflow, gated into the registry.

The train-only plan (train -> evaluate -> register through the workflow's steps) is
`pipelines.orchestration.standalone.run_train_only`; this command parses, calls it, prints.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from dataprep.pckh import TABLE_KEYS
from pipelines.cli import exits
from pipelines.config.experiment import ConfigError


def register(app: typer.Typer) -> None:
    """Adds this module's commands to `app`."""
    app.command("train")(train)


def train(
    data: Annotated[str, typer.Option(help="Prepared dataset folder or URI (`shg prepare --out`): train/, val/, manifest.json.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        metavar="[KEY=VALUE]...",
        help="Dotted config overrides, e.g. model.stacks=2 train.epochs=3 train.max_steps=50.")] = None,
    profile: Annotated[str, typer.Option(help="Recipe file from pipelines/config/profiles/ (synthetic | smoke | mpii) whose model, data and train sections are the base; '' = dataclass defaults.")] = "",
    config: Annotated[Optional[Path], typer.Option(help="TOML or YAML config file (applied after the profile, before the overrides).")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite under train.storage.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="MLflow experiment name (default shg, the one `shg run` uses).")] = None,
    register: Annotated[bool, typer.Option("--register/--no-register", help="Log, register and champion-gate the final model.")] = True,
    model_name: Annotated[Optional[str], typer.Option(help="Registered model name (default stacked-hourglass).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray address ('auto', HOST:PORT); default: a local cluster.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Ray's own output (worker logs, Ray Train/Data messages); default: Ray's log files only.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Live progress: a bar on a terminal, a line every 30 s otherwise.")] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout (run, MLflow run id, PCKh table, registry decision); progress goes to stderr.")] = False,
) -> None:
    """Train the Stacked Hourglass; re-running the same command resumes an interrupted run.

    Exit status (docs/USAGE.md#exit-status): 2 bad input, 69 the tracking store or the Ray
    cluster unreachable, 75 the folder busy (nothing trained in all three); 3 when training
    finished but the tracking store did not take the result (the model is kept; run the same
    command again once the store answers: it records and registers without training).
    """
    # the orchestration layer imports ray, torch and mlflow: loaded when a command runs, not for --help
    from pipelines.orchestration.standalone import (
        TRAIN_REFUSALS,
        TrainedNotRecorded,
        TrainOnlyConfig,
        run_train_only,
    )

    cfg = TrainOnlyConfig(
        data=data, profile=profile, config="" if config is None else str(config), overrides=tuple(overrides or ()),
        tracking_uri=tracking_uri or "", experiment=experiment or "", register=register,
        model_name=model_name or "", address=address or "", verbose=verbose, progress=progress)
    try:
        done = run_train_only(cfg, log=lambda line: typer.echo(line, err=json_output))
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--profile / --config / KEY=VALUE") from None
    except TRAIN_REFUSALS as err:
        exits.fail_on(err)
    except TrainedNotRecorded as err:  # trained and kept, not yet recorded nor registered
        exits.fail(str(err), exits.TRAINED_NOT_RECORDED)
    result = done.trained
    if json_output:
        exits.emit_json(train_summary(done))
        return
    typer.echo(f"run {result.run_name}: {result.epochs_completed} epochs, {result.global_step} steps, "
               f"{result.seconds:.0f} s; MLflow run {result.mlflow_run_id} ({result.tracking_uri})")
    typer.echo("PCKh@0.5 (official MPII, Total = 14 joints pooled)")
    typer.echo("            " + " ".join(f"{k:>8s}" for k in TABLE_KEYS))
    typer.echo("model       " + " ".join(f"{result.pckh.get(k, float('nan')):8.1f}" for k in TABLE_KEYS))
    typer.echo("mean pose   " + " ".join(f"{result.baseline_pckh.get(k, float('nan')):8.1f}" for k in TABLE_KEYS))
    if done.decision is not None:
        d = done.decision
        typer.echo(f"registry: {d.name} v{d.version} -> {d.alias} ({d.reason})")


def train_summary(done) -> dict:
    """What `shg train --json` prints: the training run, its PCKh and the registry's decision."""
    result = done.trained
    out = {"run_name": result.run_name, "mlflow_run_id": result.mlflow_run_id,
           "tracking_uri": result.tracking_uri, "epochs_completed": result.epochs_completed,
           "global_step": result.global_step, "seconds": result.seconds, "resumed": result.resumed,
           "best_epoch": result.best_epoch, "best_checkpoint": result.best_checkpoint,
           "pckh": result.pckh, "baseline_pckh": result.baseline_pckh, "registry": None}
    if done.decision is not None:
        out["registry"] = dataclasses.asdict(done.decision)
    return out
