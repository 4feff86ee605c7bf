"""PCKh, the official MPII single-person protocol (pure numpy, plus one loader for the .mat file).

The protocol (the MPII evaluation toolkit, as in `/work/shared/data/README.md`):
- head size = 0.6 x the diagonal of the head box, in the same pixels as the joints;
- a joint is correct when `||pred - gt|| <= threshold * head size` (`<=`, not `<`);
- ground-truth joints marked missing are skipped (neither correct nor counted);
- a person whose head size is unknown (NaN: e.g. the 26 validation people of the PyTorch MPII
  JSON without an upper neck or head top, where no head box is at hand) cannot be normalised:
  all of their joints are skipped the same way, so such a person never crashes the scoring;
- pelvis (6) and thorax (7) are not scored;
- the table: Head (upper neck + head top), Shoulder, Elbow, Wrist, Hip, Knee, Ankle, each the
  mean of its two joints' PCKh; UBody, the six arm joints pooled; Total, all 14 scored joints
  pooled ("pooled" = correct joints / labelled joints, so joints labelled more often weigh more).
All values are percentages.

Popular projects print other "Mean"s: the HRNet/pytorch-pose `eval_PCKh.py` reports Head as the
head top alone and "Mean" = the 14-joint pooled value (equal to our Total); others average the
joints or the seven columns unweighted, or use `<`. They can differ from Total by tenths of a
point; this module reports the official Total only.

Cross-check on the real files: `pos_pred_src` of `detections_our_format.mat` (2,958 validation
people) scores Head 96.7, Shoulder 92.7, Elbow 83.4, Wrist 76.7, Hip 81.9, Knee 73.4, Ankle 65.4,
UBody 84.3, Total 82.3 (PCKh@0.1 Total 29.0). With `<` instead of `<=` Total is 82.34 as well;
HRNet's head-top-only Head would be 95.6; the unweighted 14-joint mean is 81.5. These stored
predictions sit on a quarter-heatmap-pixel grid (an older heatmap model), so ~82 rather than the
~90 of a stacked hourglass; the ground truth against itself scores 100 everywhere.

Joint order is MPII (`dataprep.joints.JOINT_NAMES`); distances are frame-agnostic as long as
predictions and ground truth share one pixel frame (both 0-based or both 1-based).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataprep.joints import NUM_JOINTS, PCKH_GROUPS, SCORED_JOINTS, UBODY_JOINTS
from dataprep.official import read_detections_mat

HEAD_SIZE_FACTOR = 0.6
# Table columns (each the mean of its joints' PCKh; Head = upper neck + head top), then the
# pooled rows. Pelvis (6) and thorax (7) are in no column and not in SCORED_JOINTS.
GROUPS = PCKH_GROUPS
UPPER_BODY = UBODY_JOINTS
SCORED = SCORED_JOINTS
TABLE_KEYS = (*GROUPS, "UBody", "Total")


def head_size_from_boxes(headboxes: np.ndarray) -> np.ndarray:
    """Head sizes from head boxes.

    Args:
        headboxes: (N, 2, 2) as `[[x1, y1], [x2, y2]]` per person, pixels.
    Returns:
        (N,) float64, `0.6 * ||(x2, y2) - (x1, y1)||`.
    """
    boxes = np.asarray(headboxes, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[1:] != (2, 2):
        raise ValueError(f"head boxes must have shape (N, 2, 2), got {boxes.shape}")
    return HEAD_SIZE_FACTOR * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)


def _check_inputs(pred, gt, missing, head_size):
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    missing = np.asarray(missing, dtype=bool)
    head_size = np.asarray(head_size, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[1:] != (NUM_JOINTS, 2):
        raise ValueError(f"predictions must have shape (N, {NUM_JOINTS}, 2), got {pred.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth shape {gt.shape} does not match predictions {pred.shape}")
    if missing.shape != pred.shape[:2]:
        raise ValueError(f"missing must have shape {pred.shape[:2]}, got {missing.shape}")
    if head_size.shape != pred.shape[:1]:
        raise ValueError(f"head_size must have shape {pred.shape[:1]}, got {head_size.shape}")
    scored = ~missing
    bad_pred = ~np.isfinite(pred).all(axis=2) & scored
    if bad_pred.any():
        n, j = np.argwhere(bad_pred)[0]
        raise ValueError(
            f"{int(bad_pred.sum())} non-finite predictions of labelled joints (first: row {n}, "
            f"joint {j}); predict every joint, even with low confidence"
        )
    bad_gt = ~np.isfinite(gt).all(axis=2) & scored
    if bad_gt.any():
        n, j = np.argwhere(bad_gt)[0]
        raise ValueError(f"ground truth row {n} joint {j} is not finite but not marked missing")
    needs_size = scored.any(axis=1)
    bad_size = needs_size & ~np.isnan(head_size) & ~(np.isfinite(head_size) & (head_size > 0))
    if bad_size.any():
        n = int(np.flatnonzero(bad_size)[0])
        raise ValueError(
            f"head size of row {n} is {head_size[n]}; it must be a positive number, or NaN "
            f"when unknown (that person's joints are then skipped)"
        )
    # Unknown head size: nothing to normalise by, so the person's joints are skipped like
    # missing ones (checked after the joint checks, which still catch bad predictions).
    missing = missing | np.isnan(head_size)[:, None]
    return pred, gt, missing, head_size


def normalized_distances(pred, gt, missing, head_size) -> np.ndarray:
    """Distances in head sizes.

    Args:
        pred, gt: (N, 16, 2) pixels in one frame.
        missing: (N, 16) bool, True where the ground truth joint is absent.
        head_size: (N,) pixels (0.6 x head-box diagonal); NaN = unknown, the row is skipped.
    Returns:
        (N, 16) float64 `||pred - gt|| / head_size`; NaN where `missing` or the head size is NaN.
    """
    pred, gt, missing, head_size = _check_inputs(pred, gt, missing, head_size)
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.linalg.norm(pred - gt, axis=2) / head_size[:, None]
    dist[missing] = np.nan
    return dist


def _counts(dist: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    labelled = ~np.isnan(dist)
    with np.errstate(invalid="ignore"):
        correct = (dist <= threshold) & labelled
    return correct.sum(axis=0), labelled.sum(axis=0)


def pckh_counts(pred, gt, missing, head_size, threshold: float = 0.5):
    """Per-joint counts: `(correct (16,) int, labelled (16,) int)`; see `normalized_distances`."""
    return _counts(normalized_distances(pred, gt, missing, head_size), threshold)


def _percent(correct, labelled) -> np.ndarray:
    correct = np.asarray(correct, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(labelled > 0, 100.0 * correct / labelled, np.nan)


def pckh_per_joint(pred, gt, missing, head_size, threshold: float = 0.5) -> np.ndarray:
    """(16,) PCKh in percent per MPII joint (pelvis/thorax included); NaN for a never-labelled joint."""
    return _percent(*pckh_counts(pred, gt, missing, head_size, threshold))


def table_from_counts(correct, labelled) -> dict[str, float]:
    """The official table from per-joint counts (16,) each; keys `TABLE_KEYS`, percent."""
    correct = np.asarray(correct, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=np.float64)
    per_joint = _percent(correct, labelled)
    table = {name: float(np.mean(per_joint[list(pair)])) for name, pair in GROUPS.items()}
    for name, joints in (("UBody", UPPER_BODY), ("Total", SCORED)):
        table[name] = float(_percent(correct[list(joints)].sum(), labelled[list(joints)].sum()))
    return table


def pckh_table(pred, gt, missing, head_size, threshold: float = 0.5) -> dict:
    """The official MPII PCKh table.

    Args: as `normalized_distances`, plus `threshold` in head sizes (0.5 for PCKh@0.5).
    Returns:
        dict with the `TABLE_KEYS` (floats, percent), `per_joint` (16 floats, MPII order,
        pelvis/thorax included for information, NaN if never labelled), `threshold`.
    """
    correct, labelled = pckh_counts(pred, gt, missing, head_size, threshold)
    table: dict = table_from_counts(correct, labelled)
    table["per_joint"] = [float(v) for v in _percent(correct, labelled)]
    table["threshold"] = float(threshold)
    return table


def pckh_curve(pred, gt, missing, head_size, thresholds) -> dict[str, np.ndarray]:
    """PCKh as a function of the threshold.

    Returns:
        dict: `threshold` (T,) and one (T,) percent array per `TABLE_KEYS` entry.
    """
    dist = normalized_distances(pred, gt, missing, head_size)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    rows = [table_from_counts(*_counts(dist, t)) for t in thresholds]
    curve = {"threshold": thresholds}
    curve.update({k: np.array([r[k] for r in rows]) for k in TABLE_KEYS})
    return curve


def format_table(table: dict) -> str:
    """One header line and one value line, 1 decimal, as the MPII benchmark prints them."""
    header = " ".join(f"{k:>8s}" for k in TABLE_KEYS)
    values = " ".join(f"{table[k]:8.1f}" for k in TABLE_KEYS)
    return f"PCKh@{table.get('threshold', 0.5):g} (official MPII: <=, Total = 14 joints pooled)\n{header}\n{values}"


@dataclass(frozen=True)
class PckhGroundTruth:
    """Ground truth for PCKh, in the pixel frame of its file (1-based for the MPII .mat).

    joints: (N, 16, 2) float64; missing: (N, 16) bool; head_size: (N,) float64;
    predictions: (N, 16, 2) float64 or None (`pos_pred_src` when the file has it).
    """

    joints: np.ndarray
    missing: np.ndarray
    head_size: np.ndarray
    predictions: np.ndarray | None = None


def load_mpii_ground_truth(path: str | Path) -> PckhGroundTruth:
    """Reads `detections_our_format.mat` (the official-protocol ground truth).

    Keys used: `pos_gt_src` (16, 2, N), `jnt_missing` (16, N), `headboxes_src` (2, 2, N), and
    `pos_pred_src` (16, 2, N) when present. Coordinates stay 1-based, as in the file.
    """
    mat = read_detections_mat(Path(path))
    joints, missing = mat["pos_gt_src"], mat["jnt_missing"]
    head_size = head_size_from_boxes(mat["headboxes_src"])
    predictions = mat.get("pos_pred_src")
    return PckhGroundTruth(joints, missing, head_size, predictions)
