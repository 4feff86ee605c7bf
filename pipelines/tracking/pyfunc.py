"""The pose model as an MLflow pyfunc, "models from code" (logged by `model_io.log_model`).

MLflow executes this file when it loads the model (it is never imported by shg itself), so the
`set_model` call below is the one intended module-level effect. The weights travel as the
`weights` / `card` artifacts and are read with `torch.load(weights_only=True)`.

predict(uint8 (B, S, S, 3) RGB images of the standard person box, params={"flip": bool})
-> {"keypoints": (B, J, 2) float32 input px, "confidence": (B, J) float32}.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np


class PosePyfunc(mlflow.pyfunc.PythonModel):
    """Keypoints of the one person centred in each image."""

    def load_context(self, context) -> None:
        import torch

        from pipelines.inference.model_dir import load_model_dir

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.card = load_model_dir(Path(context.artifacts["card"]).parent, device)

    def predict(self, context, model_input, params=None):
        from pipelines.inference.keypoints import predict_keypoints

        flip = bool((params or {}).get("flip", True))
        coords, confidence = predict_keypoints(
            self.model, np.asarray(model_input), self.card.flip_pairs, flip=flip
        )
        return {"keypoints": coords.astype(np.float32), "confidence": confidence}


mlflow.models.set_model(PosePyfunc())
