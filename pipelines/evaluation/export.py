"""`shg evaluate --export FILE`: predictions in the official toolkit's order and pixels.

The MPII evaluation toolkit (and `shg pckh`) takes one prediction per ground-truth person of
`detections_our_format.mat`, in that file's row order, in its 1-based MATLAB pixels. That file
has no image names or person ids, so each evaluated row is found in it by its ground-truth
joints (`dataprep.official.match_by_joints`: the same labelled joints within 0.01 px on at least
half of them; on the real files every one of the 2,958 validation people of the PyTorch JSON
finds its row, which is the JSON's own validation order). `valid.h5` has the same order and
serves as well.

Formats, by the file name's suffix:
- `.npy`: (N, 16, 2) float64, x then y, 1-based, N = the ground truth's rows;
- `.mat`: `preds` (N, 16, 2), the layout the toolkit's `evaluatePCKh.m` ports read
  (`scipy.io.savemat`).
A ground-truth person without a prediction (not in the evaluated split, e.g. quarantined by
`shg prepare`) gets a NaN row; `shg pckh --only-predicted` scores the others.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataprep.official import OfficialGroundTruth, match_by_joints, read_official
from shg_io.storage import location

# Imported where used: scipy (only .mat exports and reads need it)

EXPORT_SUFFIXES = (".npy", ".mat")
ONE_BASED = 1.0  # MATLAB pixel (1, 1) is our (0, 0)


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: `rows` of the ground truth, `predicted` of them filled, and
    `unmatched` evaluated people not found in the ground truth (their ids, first 10)."""

    path: str
    rows: int
    predicted: int
    unmatched: int
    unmatched_ids: tuple[str, ...]


def official_order(official: OfficialGroundTruth, joints_image: np.ndarray, labelled: np.ndarray,
                   gt_path: str | Path = "ground truth") -> np.ndarray:
    """(M,) row of each evaluated person in the ground truth (`read_official`), -1 when not there.

    Args:
        official: `read_official(detections_our_format.mat or valid.h5)`.
        joints_image: (M, 16, 2) 0-based image px (NaN unlabelled). labelled: (M, 16) bool.
    """
    rows = match_by_joints(official.joints, official.labelled, joints_image, labelled)
    values, counts = np.unique(rows[rows >= 0], return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{gt_path}: {int((counts > 1).sum())} ground-truth rows match more than one "
                         f"evaluated person (first: row {int(values[counts > 1][0])}); cannot export")
    return rows


def official_predictions(pred: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """(n_rows, 16, 2) float64 1-based predictions in ground-truth order, NaN rows unfilled.

    Args:
        pred: (M, 16, 2) 0-based image px. rows: (M,) from `official_order`.
    """
    out = np.full((n_rows, *pred.shape[1:]), np.nan)
    hit = rows >= 0
    out[rows[hit]] = np.asarray(pred, np.float64)[hit] + ONE_BASED
    return out


def write_predictions(path: str | Path, preds: np.ndarray) -> None:
    """Writes (N, 16, 2) predictions as `.npy` or as the toolkit's `.mat` (`preds`), atomically,
    to a local path or an object store URI (`shg_io.storage`)."""
    target = location(path)
    suffix = posixpath.splitext(target.name)[1]
    if suffix not in EXPORT_SUFFIXES:
        raise ValueError(f"--export {path}: the file name must end in {' or '.join(EXPORT_SUFFIXES)}")
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, preds)
    else:
        from scipy.io import savemat

        savemat(buffer, {"preds": preds})
    target.write_bytes_atomic(buffer.getvalue())


def export_predictions(path: str | Path, gt_path: str | Path, person_id: np.ndarray, pred: np.ndarray,
                       joints_image: np.ndarray, labelled: np.ndarray) -> ExportReport:
    """Puts evaluated predictions (0-based image px) into the ground truth's order and writes them."""
    official = read_official(gt_path)
    official_rows = official_order(official, joints_image, labelled, gt_path)
    n_rows = len(official.head_size)
    write_predictions(path, official_predictions(pred, official_rows, n_rows))
    missed = np.asarray(person_id)[official_rows < 0].astype(str)
    return ExportReport(str(path), n_rows, int((official_rows >= 0).sum()), len(missed), tuple(missed[:10]))


def read_predictions(path: str | Path) -> np.ndarray:
    """Reads predictions written by `write_predictions` (or any `.npy`, or a `.mat` with `preds`),
    from a local path or an object store URI."""
    source = location(path)
    try:
        data = io.BytesIO(source.read_bytes())
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err})") from err
    if posixpath.splitext(source.name)[1] == ".mat":
        from scipy.io import loadmat

        try:
            mat = loadmat(data)
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: not a readable MATLAB .mat file ({err})") from err
        if "preds" not in mat:
            raise ValueError(f"{path}: no `preds` variable; expected the toolkit's preds (N, 16, 2)")
        return np.asarray(mat["preds"])
    try:
        return np.load(data, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read a .npy array ({err}); save predictions with numpy.save") from err
