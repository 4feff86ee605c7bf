"""`shg predict`: keypoints of one person per photo, written as JSON and as a drawn overlay.

Frames: keypoints are in *original image px* of the image as displayed (EXIF orientation
applied, since a user's photo is meant to be seen upright), 0-based, pixel centres at integers.
The person box is the square of side `200 * scale` around `center` (the adjusted MPII
convention the model was trained on: the person's height is about 1 / 1.25 of the box).
Without `center`/`scale` the person is assumed to fill the image: the box is centred on the
image and its side is 1.25 x the longer image side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataprep.geometry import apply_affine, crop_transform, invert_affine

FILL_MARGIN = 1.25  # box side / person height, as in the training crops


@dataclass(frozen=True)
class PredictConfig:
    """Settings of `shg predict` (CLI options carry the same names).

    Attributes:
        images: image files (JPEG, PNG, anything OpenCV reads; colour or greyscale).
        model: a model directory or MLflow URI (`runs:/...`, `models:/name@alias`).
        out: output folder; gets `<stem>.json` and `<stem>.png` per image.
        center: (x, y) image px of the person, or None to use the image centre.
        scale: person box side / 200 px, or None for the whole image (see module docstring).
        flip: average with the mirrored image (flip testing).
        batch_size: crops per forward pass.
    """

    images: tuple[str, ...]
    model: str
    out: str
    center: tuple[float, float] | None = None
    scale: float | None = None
    flip: bool = True
    batch_size: int = 8

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("predict needs at least one image")
        if self.scale is not None and not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive number (person box side / 200 px), got {self.scale}")
        if self.center is not None and not np.all(np.isfinite(self.center)):
            raise ValueError(f"center must be finite image px, got {self.center}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        stems: dict[str, str] = {}
        for path in self.images:
            stem = Path(path).stem
            if stem in stems:
                raise ValueError(
                    f"{path} and {stems[stem]} would both write {stem}.json; rename one or run "
                    "them with different --out folders"
                )
            stems[stem] = path


def read_image_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB as displayed: EXIF orientation applied, greyscale expanded, alpha
    dropped, 16-bit scaled to 8. Raises ValueError naming the file when it cannot be decoded."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # also works for non-ASCII paths
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from err
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can decode; pass a JPEG or PNG file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def default_box(width: int, height: int) -> tuple[np.ndarray, float]:
    """(center, scale) for one person filling a `width x height` image."""
    center = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    return center, FILL_MARGIN * max(width, height) / 200.0


def crop_input(image: np.ndarray, center, scale: float, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The network input for the box `(center, scale)`: (crop (S, S, 3) uint8, image_to_input (2, 3)).

    Outside the image is black, as in the training crops."""
    affine = crop_transform(center, scale, input_size)
    crop = cv2.warpAffine(image, affine, (input_size, input_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, affine


def predict_people(model, card, images: list[np.ndarray], boxes: list[tuple[np.ndarray, float]],
                   flip: bool = True, batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Keypoints per image in its own px: list of (keypoints (J, 2) float64, confidence (J,))."""
    from pipelines.inference.keypoints import predict_keypoints

    results = []
    for start in range(0, len(images), batch_size):
        crops, affines = zip(*(crop_input(img, c, s, card.input_size)
                               for img, (c, s) in zip(images[start:start + batch_size],
                                                      boxes[start:start + batch_size])))
        coords, conf = predict_keypoints(model, np.stack(crops), card.flip_pairs, flip=flip)
        for i, affine in enumerate(affines):
            results.append((apply_affine(invert_affine(affine), coords[i]), conf[i]))
    return results


def keypoint_record(path: str, image: np.ndarray, center, scale, keypoints, confidence,
                    joint_names, model_uri: str) -> dict:
    """The JSON document written for one image."""
    return {
        "image": str(path),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "frame": "image px as displayed (EXIF applied), 0-based, pixel centres at integers",
        "center": [float(v) for v in center],
        "scale": float(scale),
        "model": model_uri,
        "keypoints": [
            {"name": name, "x": float(x), "y": float(y), "confidence": float(c)}
            for name, (x, y), c in zip(joint_names, keypoints, confidence)
        ],
    }


def run_predict(cfg: PredictConfig, log=print) -> list[dict]:
    """Loads the model, predicts every image, writes `<stem>.json` and `<stem>.png` into
    `cfg.out`; returns the JSON documents."""
    import torch

    from pipelines.tracking.model_io import load_model
    from pipelines.evaluation.plots import draw_skeleton

    images = [read_image_rgb(p) for p in cfg.images]  # fail on a bad file before any work
    boxes = []
    for image in images:
        center, scale = default_box(image.shape[1], image.shape[0])
        boxes.append((np.asarray(cfg.center, float) if cfg.center is not None else center,
                      cfg.scale if cfg.scale is not None else scale))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, card = load_model(cfg.model, map_location=device)
    results = predict_people(model, card, images, boxes, cfg.flip, cfg.batch_size)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    documents = []
    for path, image, (center, scale), (keypoints, conf) in zip(cfg.images, images, boxes, results):
        doc = keypoint_record(path, image, center, scale, keypoints, conf, card.joint_names, cfg.model)
        stem = Path(path).stem
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
        overlay = draw_skeleton(image, keypoints)
        ok, png = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"OpenCV could not encode the overlay of {path} as PNG")
        png.tofile(out / f"{stem}.png")
        log(f"{path}: {out / stem}.json, {out / stem}.png (mean confidence {float(np.mean(conf)):.3f})")
        documents.append(doc)
    return documents
