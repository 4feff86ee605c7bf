"""One register-and-gate path for `shg run` and `shg train` (the steps' evaluate and register).

A trained run's best checkpoint is saved as a model directory, scored on the whole validation
split of its prepared dataset (official PCKh, flip test), registered, and put through the
champion gate with that score. The model card, the version's tags and the run's `registry.*`
tags all carry the same numbers and the same validation fingerprint. When the data changed since
the champion won, the gate scores the champion on the same rows (`score_version` below) before
deciding, so both numbers are measured on equal terms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataprep.pckh import TABLE_KEYS
from pipelines.config.experiment import ExperimentConfig
from pipelines.evaluation.evaluate import EvaluateConfig, run_evaluate
from pipelines.inference.model_dir import ModelCard, load_model_dir, model_from_state, save_model_dir
from pipelines.tracking.registry import DEFAULT_MODEL_NAME, GateDecision, promote_if_better, register_model
from pipelines.training.checkpoints import load_state
from pipelines.training.driver import TrainResult
from shg_io.json_files import json_ready
from shg_io.storage import local_folder

Log = Callable[[str], None]


def val_split_fingerprint(data_fingerprint: str) -> str:
    """The name of a prepared dataset's whole validation split, as the gate compares it."""
    return f"{data_fingerprint}/val"


def save_and_evaluate(experiment: ExperimentConfig, trained: TrainResult, prepared: Path,
                      data_fingerprint: str, folder: Path, *, tracking_uri: str,
                      address: str | None, log: Log) -> tuple[Path, dict[str, Any]]:
    """Saves the run's best checkpoint under `folder/model` and scores it on the val split.

    Returns (model directory, the official PCKh table, strict JSON); the saved card carries that
    table and the split's fingerprint.
    """
    checkpoint = trained.best_checkpoint or trained.checkpoint  # a path, or a URI in an object store
    with local_folder(checkpoint) as checkpoint_dir:
        state = load_state(checkpoint_dir, experiment.model)
    card = ModelCard.for_config(experiment.model, input_size=experiment.data.input_size,
                                heatmap_size=experiment.data.heatmap_size)
    model = model_from_state(state["model"], card, f"checkpoint {checkpoint}")
    model_dir = save_model_dir(model, card, folder / "model")
    evaluated = run_evaluate(EvaluateConfig(model=str(model_dir), data=str(prepared), split="val",
                                            address=address, tracking_uri=tracking_uri,
                                            gpus_per_actor=1.0 if experiment.train.use_gpu else 0.0), log=log)
    table = json_ready(evaluated.summary())
    card = dataclasses.replace(card, val_fingerprint=val_split_fingerprint(data_fingerprint), val_metrics=table)
    save_model_dir(model, card, model_dir)  # the card states what the gate will see
    return model_dir, table


def register_and_gate(model_dir: Path, table: dict[str, Any], data_fingerprint: str, prepared: Path, *,
                      tracking_uri: str, run_id: str, address: str | None, log: Log,
                      name: str | None = None, unscorable_champion: str = "replace") -> GateDecision:
    """Registers the model directory under `name` on run `run_id` and applies the champion gate;
    returns the gate's decision. `unscorable_champion` (replace | keep): what the gate does when
    the champion cannot be scored on these rows (`promote_if_better`)."""
    name = name or DEFAULT_MODEL_NAME

    def score_version(model_uri: str) -> float:
        log(f"register: scoring the champion {model_uri} on the same validation rows")
        scored = run_evaluate(EvaluateConfig(model=model_uri, data=str(prepared), split="val",
                                             address=address, tracking_uri=tracking_uri), log=log)
        return float(scored.table["Total"])

    model, card = load_model_dir(model_dir)
    # the whole-split score, on the run and linked to the logged model (its page shows it)
    scores = {f"eval/pckh/{k}": float(table[k]) for k in TABLE_KEYS if k in table}
    version = register_model(model, card, tracking_uri=tracking_uri, run_id=run_id, name=name, metrics=scores)
    gate = promote_if_better(name, version, pckh_total=float(table["Total"]),
                             val_fingerprint=val_split_fingerprint(data_fingerprint),
                             tracking_uri=tracking_uri, run_id=run_id, score_version=score_version,
                             unscorable_champion=unscorable_champion)
    log(f"register: {gate.name} v{gate.version} -> {gate.alias} ({gate.reason})")
    return gate

