"""COCO-format person detections in, COCO-format keypoint results out (pure, no model).

Detections file (`shg predict --detections`): the COCO detection *results* format, a JSON list of
`{"image_id": int | str, "bbox": [x, y, w, h], "score": float, "category_id": int}` in image
px (any other keys are ignored). Only people (`category_id` 1) are used; other categories and
scores below the threshold are skipped and counted; malformed records (missing keys, a bbox
that is not 4 finite numbers with w, h > 0) are quarantined and counted with their index.

Image ids -> files, either
  * an image list (`--image-list`): a COCO annotation file, or any JSON object with an
    `"images"` list of `{"id", "file_name"}` (or that list alone); file names are relative to
    `--image-dir` (default: the list's folder); or
  * the image files given on the command line: an image's id is its file stem, and a detection
    matches it when the ids are equal as text, or as integers (`397133` matches
    `000000397133.jpg`).

Keypoint results (`coco_keypoints.json`): a JSON list, one entry per person,
`{"image_id", "category_id": 1, "keypoints": [x1, y1, c1, ..., x16, y16, c16], "score"}` with
x, y in original image px (0-based, pixel centres at integers) in the model's joint order
(MPII's 16, not COCO's 17) and c the joint's confidence (the heatmap peak) in the place of the
visibility flag, as HRNet and mmpose write it; score = mean joint confidence x detection score.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PERSON_CATEGORY = 1
RESULTS_FILE = "coco_keypoints.json"


@dataclass(frozen=True)
class Detection:
    """One person box from a detections file: `box` [x0, y0, x1, y1] image px, `score`."""

    image_id: int | str
    box: tuple[float, float, float, float]
    score: float


@dataclass
class DetectionCounts:
    """What `load_detections` kept and skipped (for the log)."""

    kept: int = 0
    other_category: int = 0
    below_score: int = 0
    quarantined: int = 0
    problems: list[str] = field(default_factory=list)  # the first few quarantine reasons


def id_key(image_id) -> int | str:
    """The comparable form of an image id: an int for integers and digit strings, else the text."""
    if isinstance(image_id, bool):
        return str(image_id)
    if isinstance(image_id, int):
        return image_id
    if isinstance(image_id, float) and image_id.is_integer():
        return int(image_id)
    text = str(image_id)
    return int(text) if text.isdigit() else text


def _read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what} file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON {what} file ({err})") from None


def load_detections(path: str | Path, min_score: float = 0.0) -> tuple[dict[int | str, list[Detection]], DetectionCounts]:
    """Person detections by image id (`id_key`), in file order, plus counts of what was skipped."""
    records = _read_json(Path(path), "detections")
    if isinstance(records, dict) and isinstance(records.get("annotations"), list):
        records = records["annotations"]  # a ground-truth-style file works too
    if not isinstance(records, list):
        raise ValueError(f"{path}: a detections file is a JSON list of {{image_id, bbox [x, y, w, h], "
                         f"score, category_id}}, got a {type(records).__name__}")
    counts = DetectionCounts()
    by_image: dict[int | str, list[Detection]] = {}
    for index, record in enumerate(records):
        problem = _detection_problem(record)
        if problem:
            counts.quarantined += 1
            if len(counts.problems) < 5:
                counts.problems.append(f"{path} record {index}: {problem}")
            continue
        if int(record.get("category_id", PERSON_CATEGORY)) != PERSON_CATEGORY:
            counts.other_category += 1
            continue
        score = float(record.get("score", 1.0))
        if score < min_score:
            counts.below_score += 1
            continue
        x, y, w, h = (float(v) for v in record["bbox"])
        key = id_key(record["image_id"])
        by_image.setdefault(key, []).append(Detection(key, (x, y, x + w, y + h), score))
        counts.kept += 1
    return by_image, counts


def _detection_problem(record) -> str:
    """Why `record` is not a usable detection, or "" when it is."""
    if not isinstance(record, dict):
        return f"not an object ({type(record).__name__})"
    missing = [k for k in ("image_id", "bbox") if k not in record]
    if missing:
        return f"missing {missing}"
    bbox = record["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        return f"bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return f"bbox {bbox} has no area (w, h must be > 0)"
    for key in ("score", "category_id"):
        if key in record and not (isinstance(record[key], (int, float)) and math.isfinite(record[key])):
            return f"{key} must be a number, got {record[key]!r}"
    return ""


def load_image_list(path: str | Path, image_dir: str | Path | None = None) -> dict[int | str, Path]:
    """Image files by id (`id_key`) from a COCO `images` list (see the module docstring)."""
    path = Path(path)
    values = _read_json(path, "image list")
    images = values.get("images") if isinstance(values, dict) else values
    if not isinstance(images, list):
        raise ValueError(f"{path}: expected a COCO file with an \"images\" list of {{id, file_name}} "
                         "(or that list alone)")
    folder = Path(image_dir) if image_dir is not None else path.parent
    files: dict[int | str, Path] = {}
    for index, entry in enumerate(images):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise ValueError(f"{path} images[{index}]: needs \"id\" and \"file_name\", got {entry!r}")
        files[id_key(entry["id"])] = folder / str(entry["file_name"])
    return files


def keypoint_result(image_id, keypoints: np.ndarray, confidence: np.ndarray,
                    detection_score: float = 1.0) -> dict:
    """One COCO keypoint result (see the module docstring) from (J, 2) image px and (J,) confidences."""
    triples = np.concatenate([np.asarray(keypoints, np.float64),
                              np.asarray(confidence, np.float64)[:, None]], axis=1)  # (J, 3)
    return {
        "image_id": image_id,
        "category_id": PERSON_CATEGORY,
        "keypoints": [round(float(v), 3) for v in triples.reshape(-1)],
        "score": float(np.mean(confidence)) * float(detection_score),
    }
