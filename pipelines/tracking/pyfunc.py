"""The pose model as an MLflow pyfunc, "models from code" (logged by `model_io.log_model`).

MLflow executes this file when it loads the model (it is never imported by shg itself), so the
`set_model` call below is the one intended module-level effect. The weights travel as the
`weights` / `card` artifacts and are read with `torch.load(weights_only=True)`; the code it
needs (`pipelines.inference`, `dataprep.geometry`/`joints`, `shg_model`) travels as the model's
`code_paths`, so it loads where shg is not installed.

Input: a DataFrame (or its JSON: `dataframe_split` / `dataframe_records`), one row per image:
    image: base64 string of a JPEG/PNG file (a `data:` URL is fine), the file's bytes, or an
        (H, W, 3) RGB / (H, W) grey uint8 array (nested lists in JSON).
    boxes: optional list of person boxes [x0, y0, x1, y1] in image px; none or empty = one
        person filling the image.
Params: flip (bool, default True): average with the mirrored crop.
Output: a DataFrame, one row per person (rows in input order, boxes in their order):
    image_index, person_index: which input row and which of its boxes;
    box: [x0, y0, x1, y1] (the whole image when none was given);
    keypoints: J x [x, y] float in original image px (0-based, pixel centres at integers);
    confidence: J floats (heatmap peak); joint_names: J names (MPII order);
    score: the mean confidence.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np

# Imported where used: torch, pandas, pipelines.inference (loaded when MLflow loads or serves the
# model, inside its own process)


class PosePyfunc(mlflow.pyfunc.PythonModel):
    """Keypoints of every boxed person in each image."""

    # `predict` has no type hints (the signature is given explicitly when the model is logged):
    # MLflow's type-hint validation would be a no-op, and defining the class would warn about it
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        import torch

        from pipelines.inference.model_dir import load_model_dir

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.card = load_model_dir(Path(context.artifacts["card"]).parent, device)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from pipelines.inference.people import box_to_center_scale, image_from_value, predict_people

        flip = bool((params or {}).get("flip", True))
        frame = pd.DataFrame(model_input) if not isinstance(model_input, pd.DataFrame) else model_input
        if "image" not in frame.columns:
            raise ValueError(f"the input needs an 'image' column (base64 JPEG/PNG or uint8 array), "
                             f"got columns {list(frame.columns)}")
        images, boxes, rows = [], [], []
        for index in range(len(frame)):
            where = f"row {index}"
            image = image_from_value(frame["image"].iloc[index], f"{where} image")
            given = frame["boxes"].iloc[index] if "boxes" in frame.columns else None
            if given is None or (isinstance(given, float) and np.isnan(given)):  # a row without boxes
                given = []
            person_boxes = [np.asarray(b, dtype=np.float64) for b in given]
            if not person_boxes:
                person_boxes = [np.array([-0.5, -0.5, image.shape[1] - 0.5, image.shape[0] - 0.5])]
            for person, box in enumerate(person_boxes):
                try:
                    boxes.append(box_to_center_scale(box))
                except ValueError as err:
                    raise ValueError(f"{where} box {person}: {err}") from None
                images.append(image)
                rows.append((index, person, box))
        results = predict_people(self.model, self.card, images, boxes, flip=flip) if images else []
        names = list(self.card.joint_names)
        return pd.DataFrame([
            {"image_index": index, "person_index": person, "box": box.tolist(),
             "keypoints": keypoints.tolist(), "confidence": confidence.astype(float).tolist(),
             "joint_names": names, "score": float(np.mean(confidence))}
            for (index, person, box), (keypoints, confidence) in zip(rows, results)
        ], columns=["image_index", "person_index", "box", "keypoints", "confidence", "joint_names", "score"])


mlflow.models.set_model(PosePyfunc())
