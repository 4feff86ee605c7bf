"""`shg predict`: keypoints of the people in photos, written as JSON, COCO results and overlays.

Frames: keypoints are in *original image px* of the image as displayed (EXIF orientation
applied, since a user's photo is meant to be seen upright), 0-based, pixel centres at integers.

Who is in an image (one of):
  * `boxes`: person boxes [x0, y0, x1, y1] image px, the same for every image given;
  * `detections`: a COCO detections file (many people, many images; `pipelines.evaluation.coco`
    says how image ids map to files);
  * `center`/`scale`: one person in the square of side `200 * scale` around `center` (the
    adjusted MPII convention the model was trained on);
  * nothing: one person filling the image (the box is centred on the image and its side is
    1.25 x the longer image side).
A person box becomes the network square of side 1.25 x its longer side around its centre
(`pipelines.inference.people.box_to_center_scale`).

Writes into `out`: `<stem>.json` per image (the image, its size, the model and a `people` list:
box, center, scale, detection score, score and the named keypoints with confidences),
`<stem>.png` (the skeletons drawn on the image) and `coco_keypoints.json` (COCO keypoint
results of every person, `pipelines.evaluation.coco.keypoint_result`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipelines.evaluation import coco
from pipelines.inference.people import (  # noqa: F401  (crop_input: shg predict's geometry, tested here)
    box_to_center_scale,
    crop_input,
    decode_image,
    default_box,
    predict_people,
)

# Imported where used: torch, pipelines.figures, pipelines.tracking.model_io (torch, matplotlib and
# mlflow load in seconds: only predicting needs them, not planning the images or checking the
# arguments)

DEFAULT_MODEL = "models:/stacked-hourglass@champion"


@dataclass(frozen=True)
class PredictConfig:
    """Settings of `shg predict` (CLI options carry the same names).

    Attributes:
        images: image files (JPEG, PNG, anything OpenCV reads; colour or greyscale). May be
            empty when `image_list` names the files.
        model: a model directory or MLflow URI (`runs:/...`, `models:/name@alias`).
        out: output folder (see the module docstring).
        tracking_uri: the MLflow store of an MLflow `model` URI; None = $MLFLOW_TRACKING_URI,
            else ./runs/mlflow.db.
        boxes: person boxes [x0, y0, x1, y1] image px, used for every image.
        detections: a COCO detections file (`pipelines.evaluation.coco`).
        image_list: a COCO file with an `images` list (id, file_name) for `detections`.
        image_dir: the folder of the image list's file names (default: the list's folder).
        min_score: detections scoring below this are skipped.
        center: (x, y) image px of the person, or None to use the image centre.
        scale: person box side / 200 px, or None for the whole image (see module docstring).
        flip: average with the mirrored image (flip testing).
        batch_size: crops per forward pass.
    """

    images: tuple[str, ...]
    model: str = DEFAULT_MODEL
    out: str = "predictions"
    tracking_uri: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    detections: str | None = None
    image_list: str | None = None
    image_dir: str | None = None
    min_score: float = 0.0
    center: tuple[float, float] | None = None
    scale: float | None = None
    flip: bool = True
    batch_size: int = 8

    def __post_init__(self) -> None:
        if not self.images and self.image_list is None:
            raise ValueError("predict needs at least one image (or --image-list with --detections)")
        if self.image_list is not None and (self.images or self.detections is None):
            raise ValueError("--image-list names the images of --detections: use it with "
                             "--detections and without image arguments")
        given = [name for name, value in (("--box", self.boxes), ("--detections", self.detections),
                                          ("--center/--scale", self.center or self.scale)) if value]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} both say where people are; give one of them")
        for box in self.boxes:
            box_to_center_scale(box)  # raises for an empty or non-finite box
        if self.scale is not None and not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive number (person box side / 200 px), got {self.scale}")
        if self.center is not None and not np.all(np.isfinite(self.center)):
            raise ValueError(f"center must be finite image px, got {self.center}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        check_unique_stems(self.images)


def check_unique_stems(paths) -> None:
    """Raises ValueError when two images would write the same `<stem>.json`."""
    stems: dict[str, str] = {}
    for path in paths:
        stem = Path(path).stem
        if stem in stems:
            raise ValueError(
                f"{path} and {stems[stem]} would both write {stem}.json; rename one or run "
                "them with different --out folders"
            )
        stems[stem] = str(path)


@dataclass(frozen=True)
class Person:
    """Where to look for one person: the network box `(center, scale)`, the person box it came
    from (None for --center/--scale or the whole image) and its detection score."""

    center: tuple[float, float]
    scale: float
    box: tuple[float, float, float, float] | None = None
    detection_score: float = 1.0


@dataclass(frozen=True)
class ImageJob:
    """One image to predict: its file, COCO image id and people."""

    path: str
    image_id: int | str
    people: list[Person] = field(default_factory=list)


def read_image_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB as displayed: EXIF orientation applied, greyscale expanded, alpha
    dropped, 16-bit scaled to 8. Raises ValueError naming the file when it cannot be decoded."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # also works for non-ASCII paths
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from err
    return decode_image(data.tobytes(), str(path))


def plan_images(cfg: PredictConfig, log=print) -> list[ImageJob]:
    """The images to predict with their people; for neither --detections nor --box, people
    are filled in once the image size is known (`people_without_boxes`)."""
    if cfg.detections is None:
        people = [Person(tuple(c.tolist()), s, tuple(float(v) for v in box))
                  for box in cfg.boxes for c, s in [box_to_center_scale(box)]]
        return [ImageJob(path, coco.id_key(Path(path).stem), list(people)) for path in cfg.images]
    by_image, counts = coco.load_detections(cfg.detections, cfg.min_score)
    log(f"{cfg.detections}: {counts.kept} person detections; skipped {counts.other_category} of other "
        f"categories, {counts.below_score} below score {cfg.min_score}, quarantined {counts.quarantined}"
        + (f" (first: {counts.problems[0]})" if counts.problems else ""))
    if cfg.image_list is not None:
        files = coco.load_image_list(cfg.image_list, cfg.image_dir)
        paths = {key: str(files[key]) for key in by_image if key in files}
        missing = [f for f in paths.values() if not Path(f).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} image(s) of {cfg.image_list} not found, e.g. "
                                    f"{missing[0]}; pass --image-dir with the folder that holds them")
        check_unique_stems(paths.values())
    else:
        paths = {coco.id_key(Path(path).stem): path for path in cfg.images}
    unmatched = [key for key in by_image if key not in paths]
    if unmatched:
        log(f"{cfg.detections}: skipped {sum(len(by_image[k]) for k in unmatched)} detections of "
            f"{len(unmatched)} image ids with no image (e.g. {unmatched[0]!r}); see --image-list")
    jobs = []
    for key, path in paths.items():
        people = [Person(tuple(c.tolist()), s, d.box, d.score)
                  for d in by_image.get(key, []) for c, s in [box_to_center_scale(d.box)]]
        jobs.append(ImageJob(path, key, people))
    return jobs


def people_without_boxes(cfg: PredictConfig, width: int, height: int) -> list[Person]:
    """One person at --center/--scale, defaulting to one filling the image."""
    center, scale = default_box(width, height)
    if cfg.center is not None:
        center = np.asarray(cfg.center, float)
    return [Person(tuple(float(v) for v in center), float(cfg.scale if cfg.scale is not None else scale))]


def person_record(person: Person, keypoints, confidence, joint_names) -> dict:
    """One entry of a `<stem>.json` `people` list."""
    return {
        "box": None if person.box is None else [float(v) for v in person.box],
        "center": [float(v) for v in person.center],
        "scale": float(person.scale),
        "detection_score": float(person.detection_score),
        "score": float(np.mean(confidence)) * float(person.detection_score),
        "keypoints": [
            {"name": name, "x": float(x), "y": float(y), "confidence": float(c)}
            for name, (x, y), c in zip(joint_names, keypoints, confidence)
        ],
    }


def image_record(job: ImageJob, image: np.ndarray, people: list[dict], model_uri: str) -> dict:
    """The JSON document written for one image."""
    return {
        "image": str(job.path),
        "image_id": job.image_id,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "frame": "image px as displayed (EXIF applied), 0-based, pixel centres at integers",
        "model": model_uri,
        "people": people,
    }


def run_predict(cfg: PredictConfig, log=print) -> list[dict]:
    """Loads the model, predicts every person of every image and writes `<stem>.json`,
    `<stem>.png` and `coco_keypoints.json` into `cfg.out` (module docstring); returns the
    per-image JSON documents."""
    import torch

    from pipelines.figures.plots import draw_skeleton
    from pipelines.tracking.model_io import load_model

    jobs = plan_images(cfg, log)
    images = [read_image_rgb(job.path) for job in jobs]  # fail on a bad file before any work
    jobs = [job if job.people or cfg.detections is not None else
            dataclasses.replace(job, people=people_without_boxes(cfg, image.shape[1], image.shape[0]))
            for job, image in zip(jobs, images)]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, card = load_model(cfg.model, map_location=device, tracking_uri=cfg.tracking_uri)
    crops_of = [(image, (np.asarray(p.center), p.scale)) for job, image in zip(jobs, images) for p in job.people]
    results = iter(predict_people(model, card, [c[0] for c in crops_of], [c[1] for c in crops_of],
                                  cfg.flip, cfg.batch_size) if crops_of else [])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    documents, coco_results = [], []
    for job, image in zip(jobs, images):
        people, overlay = [], image
        for person in job.people:
            keypoints, conf = next(results)
            people.append(person_record(person, keypoints, conf, card.joint_names))
            coco_results.append(coco.keypoint_result(job.image_id, keypoints, conf, person.detection_score))
            overlay = draw_skeleton(overlay, keypoints)
        doc = image_record(job, image, people, cfg.model)
        stem = Path(job.path).stem
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
        ok, png = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"OpenCV could not encode the overlay of {job.path} as PNG")
        png.tofile(out / f"{stem}.png")
        mean = ", ".join(f"{p['score']:.3f}" for p in people) or "none"
        log(f"{job.path}: {len(people)} people (scores {mean}) -> {out / stem}.json, {out / stem}.png")
        documents.append(doc)
    (out / coco.RESULTS_FILE).write_text(json.dumps(coco_results) + "\n")
    log(f"{len(coco_results)} people in {len(jobs)} images -> {out / coco.RESULTS_FILE}")
    return documents
