"""Models in MLflow: load a model from a directory or any MLflow model URI; log one as a pyfunc.

The files are the model directory of `pipelines.inference.model_dir` (`card.json` + `weights.pt`),
carried as the artifacts of a "models from code" pyfunc (`pipelines/tracking/pyfunc.py`), so
loading never unpickles code.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.inference.model_dir import CARD_FILE, WEIGHTS_FILE, ModelCard, load_model_dir, save_model_dir

PYFUNC_CODE = Path(__file__).with_name("pyfunc.py")
def load_model(uri_or_dir: str | Path, map_location: str | torch.device = "cpu"):
    """`(model in eval mode, card)` from a local directory or an MLflow model URI.

    Accepts a directory from `save_model_dir`, a downloaded MLflow model directory, or any URI
    MLflow resolves: `runs:/<run_id>/<name>`, `models:/<name>@<alias>`, `models:/<name>/<version>`,
    `models:/<model_id>`. MLflow URIs use the current tracking/registry URI.
    """
    local = Path(str(uri_or_dir))
    if "://" not in str(uri_or_dir) and ":/" not in str(uri_or_dir):
        if not local.is_dir():
            raise FileNotFoundError(
                f"{local}: no such model directory; pass a directory from save_model_dir or an "
                "MLflow URI such as runs:/<run_id>/model or models:/<name>@champion"
            )
        return load_model_dir(local, map_location)
    import mlflow

    with tempfile.TemporaryDirectory(prefix="shg-model-") as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(artifact_uri=str(uri_or_dir), dst_path=tmp)
        except Exception as err:  # MLflow raises several types for unknown runs/models/aliases
            raise ValueError(f"cannot download model {uri_or_dir}: {err}") from err
        return load_model_dir(path, map_location)


def _signature(card: ModelCard):
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    joints = len(card.joint_names)
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, card.input_size, card.input_size, 3))]),
        outputs=Schema([
            TensorSpec(np.dtype(np.float32), (-1, joints, 2), "keypoints"),
            TensorSpec(np.dtype(np.float32), (-1, joints), "confidence"),
        ]),
        params=ParamSchema([ParamSpec("flip", "boolean", True)]),
    )


def log_model(model: nn.Module, card: ModelCard, name: str = "model",
              registered_model_name: str | None = None) -> str:
    """Logs the model to the active MLflow run as a pyfunc; returns its model URI.

    The pyfunc ("models from code", `pyfunc.py`) takes uint8 RGB images (B, S, S, 3),
    S = card.input_size, each the standard person box, and returns `keypoints` (B, J, 2)
    float32 in input px and `confidence` (B, J) float32; param `flip` (default True). The
    input example is one uint8 mid-grey image. The environment must have `shg` installed (the
    project image does). Also registers it under `registered_model_name` when given.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_model needs an active MLflow run: call it inside mlflow.start_run()")
    example = np.full((1, card.input_size, card.input_size, 3), 128, dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="shg-model-") as tmp:
        save_model_dir(model, card, tmp)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_CODE),
            artifacts={"card": str(Path(tmp) / CARD_FILE), "weights": str(Path(tmp) / WEIGHTS_FILE)},
            signature=_signature(card),
            input_example=example,
            registered_model_name=registered_model_name,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                              f"mlflow=={mlflow.__version__}"],
        )
    return info.model_uri
