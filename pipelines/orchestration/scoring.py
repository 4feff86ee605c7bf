"""Below `shg pckh`, `shg evaluate` and `shg predict`: a saved model run over a prepared split
(with the official-order export) or over images, and prediction files read back. The CLI
parses, calls one of these, prints; the work is in `pipelines.evaluation`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipelines.evaluation.evaluate import EvaluateConfig, EvaluationResult, run_evaluate
from pipelines.evaluation.export import EXPORT_SUFFIXES, ExportReport, export_predictions, read_predictions
from pipelines.evaluation.predict import PredictConfig, run_predict

Log = Callable[[str], None]

__all__ = ["EXPORT_SUFFIXES", "EvaluateConfig", "PredictConfig", "evaluate_and_export", "predict_images",
           "read_prediction_file"]


def evaluate_and_export(cfg: EvaluateConfig, *, export: Path | None, gt: Path | None,
                        log: Log) -> tuple[EvaluationResult, ExportReport | None]:
    """`shg evaluate`: scores the split; with `export`, also writes its predictions in `gt`'s
    row order and 1-based pixels (`pipelines.evaluation.export`).

    Raises:
        ValueError, FileNotFoundError: a bad model, dataset, split or ground-truth file.
    """
    result = run_evaluate(cfg, log=log)
    if export is None:
        return result, None
    p = result.predictions
    return result, export_predictions(export, gt, p.person_id, p.pred, p.joints_image, p.labelled)


def predict_images(cfg: PredictConfig, *, log: Log) -> list[dict]:
    """`shg predict`: keypoints of the people in images (`pipelines.evaluation.predict.run_predict`)."""
    return run_predict(cfg, log=log)


def read_prediction_file(path: str | Path) -> np.ndarray:
    """`shg pckh --pred`: a `.npy` array, or a `.mat` with `preds` (ValueError when unreadable)."""
    return read_predictions(path)
