"""`shg pckh`, `shg evaluate`, `shg predict`: scoring predictions and running a saved model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import numpy as np
import typer
from typer.core import TyperCommand

from dataprep import pckh as pckh_lib
from pipelines.cli import exits

# Imported where used: pipelines.orchestration (each command imports it inside its function: it
# loads torch, ray and mlflow, seconds that `shg --help` and the other commands should not pay for)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to `app`."""
    app.command("pckh")(pckh)
    app.command("evaluate")(evaluate)
    app.command("predict", cls=_FourValueBoxCommand)(predict)


def _fail(message: str) -> NoReturn:
    exits.fail(message, exits.USAGE)


def _emit_table(table: dict, as_json: bool) -> None:
    if as_json:
        exits.emit_json(table)
        return
    typer.echo(pckh_lib.format_table(table))


def _load_predictions(path: Path, expected_rows: int, what: str, only_predicted: bool = False):
    """(N, 16, 2) float64 predictions, checked; with `only_predicted`, whole-NaN rows (people
    without a prediction) stay NaN for the caller to leave out."""
    from pipelines.orchestration.scoring import read_prediction_file

    try:
        pred = read_prediction_file(path)
    except ValueError as err:
        _fail(str(err))
    if pred.ndim != 3 or pred.shape[1:] != (16, 2):
        _fail(f"{path}: shape {pred.shape}, expected (N, 16, 2) (x, y per MPII joint); "
              "reshape/transpose your predictions to person x joint x xy")
    if pred.shape[0] != expected_rows:
        _fail(f"{path}: {pred.shape[0]} rows but {what} has {expected_rows} people; write one "
              f"row per ground-truth person, in the ground-truth order")
    if not np.issubdtype(pred.dtype, np.number):
        _fail(f"{path}: dtype {pred.dtype} is not numeric")
    bad = ~np.isfinite(pred).all(axis=2)
    if only_predicted:
        bad &= ~np.isnan(pred).all(axis=(1, 2))[:, None]
    if bad.any():
        n, j = np.argwhere(bad)[0]
        _fail(f"{path}: {int(bad.sum())} non-finite (NaN/inf) joints, first at row {n} joint {j}; "
              "predict every joint (use the heatmap argmax even when confidence is low); a person "
              "without any prediction (an all-NaN row of `shg evaluate --export`) is left out "
              "with --only-predicted")
    return pred.astype(np.float64)


def pckh(
    pred: Annotated[Path, typer.Option(help="(N,16,2) predictions, 1-based MPII pixels, ground-truth row order: .npy, or the toolkit's .mat with `preds` (shg evaluate --export).")],
    gt: Annotated[Path, typer.Option(help="MPII detections_our_format.mat (pos_gt_src, jnt_missing, headboxes_src).")],
    threshold: Annotated[float, typer.Option(help="Correct when distance <= threshold x head size.")] = 0.5,
    only_predicted: Annotated[bool, typer.Option(help="Leave out people whose row is all NaN (no prediction) instead of failing.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Emit the table as a JSON object.")] = False,
) -> None:
    """Score predictions with the official MPII PCKh (Total = all 14 scored joints pooled, <=)."""
    if not gt.is_file():
        _fail(f"{gt}: no such file; pass --gt /path/to/detections_our_format.mat")
    if not pred.is_file():
        _fail(f"{pred}: no such file; pass --pred with a .npy of shape (N, 16, 2) or a .mat with preds")
    if not threshold > 0:
        _fail(f"--threshold {threshold}: must be positive (0.5 for PCKh@0.5)")
    try:
        truth = pckh_lib.load_mpii_ground_truth(gt)
    except ValueError as err:
        _fail(str(err))
    predictions = _load_predictions(pred, len(truth.joints), str(gt), only_predicted)
    keep = ~np.isnan(predictions).all(axis=(1, 2))
    if not keep.all():
        typer.echo(f"{pred}: left out {int((~keep).sum())} of {len(keep)} people without a prediction "
                   f"(--only-predicted)", err=True)
    if not keep.any():
        _fail(f"{pred}: no person has a prediction")
    table = pckh_lib.pckh_table(predictions[keep], truth.joints[keep], truth.missing[keep],
                                truth.head_size[keep], threshold)
    _emit_table(table, json_output)


def evaluate(
    model: Annotated[str, typer.Option(help="Model directory or MLflow URI (runs:/..., models:/name@alias).")],
    data: Annotated[str, typer.Option(help="Prepared dataset folder or URI (shg prepare --out), with train/ and val/.")],
    split: Annotated[str, typer.Option(help="Split to score: val or train.")] = "val",
    address: Annotated[Optional[str], typer.Option(help="Ray address (auto, HOST:PORT); default a local cluster.")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per inference batch.")] = 32,
    flip: Annotated[bool, typer.Option(help="Flip testing: average with the mirrored input.")] = True,
    actors: Annotated[int, typer.Option(help="Inference actors.")] = 1,
    gpus_per_actor: Annotated[float, typer.Option(help="GPUs per actor (0: inference on the CPU, using the cluster's cores).")] = 0.0,
    cpus_per_actor: Annotated[float, typer.Option(help="CPUs (and torch threads) per actor.")] = 1.0,
    export: Annotated[Optional[Path], typer.Option(help="Also write the predictions in --gt's row order and 1-based pixels: FILE.npy (N,16,2) or FILE.mat (`preds`), for `shg pckh --pred FILE`.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="With --export: detections_our_format.mat (or valid.h5), whose row order the export follows.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Emit the table as a JSON object.")] = False,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow store of an MLflow --model URI (default: $MLFLOW_TRACKING_URI, else ./runs/mlflow.db).")] = None,
) -> None:
    """Batch inference over a prepared split with Ray Data; prints the official PCKh table."""
    from pipelines.orchestration.scoring import EXPORT_SUFFIXES, EvaluateConfig, evaluate_and_export

    if export is not None:
        if gt is None or not gt.is_file():
            _fail(f"--export needs --gt with the ground truth whose order it follows "
                  f"(detections_our_format.mat); got {gt}")
        if export.suffix not in EXPORT_SUFFIXES:
            _fail(f"--export {export}: the file name must end in {' or '.join(EXPORT_SUFFIXES)}")

    try:
        cfg = EvaluateConfig(model=model, data=str(data), split=split, address=address,
                             batch_size=batch_size, flip=flip, actors=actors,
                             cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, tracking_uri=tracking_uri)
        result, report = evaluate_and_export(cfg, export=export, gt=gt,
                                             log=lambda line: typer.echo(line, err=True))
    except (ValueError, FileNotFoundError, ConnectionError) as err:
        exits.fail_on(err)
    if report is not None:
        typer.echo(f"exported {report.predicted} of {report.rows} ground-truth people to {report.path}"
                   + (f"; {report.unmatched} evaluated people are not in {gt} (e.g. {', '.join(report.unmatched_ids)})"
                      if report.unmatched else "")
                   + (f"; score with shg pckh --pred {report.path} --gt {gt}"
                      + (" --only-predicted" if report.predicted < report.rows else "")), err=True)
    _emit_table(result.summary(), json_output)


class _FourValueBoxCommand(TyperCommand):
    """Lets `--box X0 Y0 X1 Y1` repeat: typer has no repeatable multi-value option, so the four
    values after each `--box` are joined into one `X0,Y0,X1,Y1` before parsing."""

    def parse_args(self, ctx, args):
        joined, rest = [], list(args)
        while rest:
            arg = rest.pop(0)
            joined.append(arg)
            if arg == "--box" and len(rest) >= 4:
                joined.append(",".join(rest[:4]))
                del rest[:4]
        return super().parse_args(ctx, joined)


def _parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        values = ()
    if len(values) != 4:
        _fail(f"--box {text}: expected four numbers X0 Y0 X1 Y1 (image px)")
    return values


def predict(
    images: Annotated[Optional[list[Path]], typer.Argument(help="Image files (JPEG/PNG, colour or greyscale).")] = None,
    model: Annotated[str, typer.Option(help="Model directory or MLflow URI (runs:/..., models:/name@alias).")] = "models:/stacked-hourglass@champion",
    out: Annotated[Path, typer.Option(help="Folder for <stem>.json and <stem>.png per image and coco_keypoints.json.")] = Path("predictions"),
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow store of an MLflow --model URI (default: $MLFLOW_TRACKING_URI, else ./runs/mlflow.db).")] = None,
    box: Annotated[Optional[list[str]], typer.Option(metavar="X0 Y0 X1 Y1", help="A person box in image px; repeat for more people (applies to every image).")] = None,
    detections: Annotated[Optional[Path], typer.Option(help="COCO detections JSON: [{image_id, bbox (x,y,w,h), score, category_id}]; ids match image file stems or --image-list.")] = None,
    image_list: Annotated[Optional[Path], typer.Option(help="COCO JSON with an \"images\" list of {id, file_name} for --detections (instead of image arguments).")] = None,
    image_dir: Annotated[Optional[Path], typer.Option(help="Folder of --image-list's file names (default: the list's folder).")] = None,
    min_score: Annotated[float, typer.Option(help="Skip detections scoring below this.")] = 0.0,
    center: Annotated[Optional[tuple[float, float]], typer.Option(help="Person centre X Y in image px (default: image centre).")] = None,
    scale: Annotated[Optional[float], typer.Option(help="Person box side / 200 px (default: 1.25 x the longer image side / 200).")] = None,
    flip: Annotated[bool, typer.Option(help="Flip testing: average with the mirrored input.")] = True,
    batch_size: Annotated[int, typer.Option(help="Crops per forward pass.")] = 8,
) -> None:
    """Keypoints of the people in images (boxes, COCO detections, or one person per image):
    writes JSON (image px, names, confidences), COCO keypoint results and overlays."""
    from pipelines.orchestration.scoring import PredictConfig, predict_images

    images = images or []
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        _fail(f"no such image file(s): {', '.join(missing)}")
    for path, flag in ((detections, "--detections"), (image_list, "--image-list")):
        if path is not None and not path.is_file():
            _fail(f"{flag} {path}: no such file")
    try:
        cfg = PredictConfig(
            images=tuple(str(p) for p in images), model=model, out=str(out), tracking_uri=tracking_uri,
            boxes=tuple(_parse_box(b) for b in box or ()),
            detections=None if detections is None else str(detections),
            image_list=None if image_list is None else str(image_list),
            image_dir=None if image_dir is None else str(image_dir), min_score=min_score,
            center=center, scale=scale, flip=flip, batch_size=batch_size)
        predict_images(cfg, log=typer.echo)
    except (ValueError, FileNotFoundError, ConnectionError) as err:
        exits.fail_on(err)
