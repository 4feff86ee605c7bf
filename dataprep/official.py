"""The official-protocol files of the MPII validation set, and finding our people in them.

Two files carry the official PCKh normalisers of the 2,958 validation people (Tompson split):
- `detections_our_format.mat` (the evaluation toolkit's ground truth): `pos_gt_src` (16, 2, N)
  1-based joints, `jnt_missing` (16, N), `headboxes_src` (2, 2, N); head size = 0.6 x the head
  box's diagonal. It has no image names or person ids: a row is found by its joints.
- `valid.h5` (original Torch code): `normalize` (N,), the same head sizes (to 6e-5 px), with
  `index` / `person`, so a row is found by person id.
Checked on the real files: both are in the order of the PyTorch JSON's validation entries, and
the .mat joints equal the JSON's to 5e-4 px on every labelled joint, with the same missing
joints. The PyTorch JSON itself has no head boxes, so its head sizes are estimated from the
head segment (`formats.common.head_size_from_segment`, NaN for the 26 validation people
without an upper neck or head top); `apply_official_head_sizes` replaces them by these.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from dataprep.formats import h5
from dataprep.formats.common import HEAD_BOX_TO_HEAD_SIZE, AnnotationFormatError
from dataprep.formats.limits import DEFAULT_MAX_ANNOTATION_BYTES, check_mat_size
from dataprep.joints import NUM_JOINTS
from dataprep.records import PersonRecord

# Imported where used: scipy (only .mat files need it)

# head_size_source of a record whose head size came from one of these files.
SOURCE_MAT = "detections_mat_headbox"
SOURCE_H5 = "h5_normalize"
# Joint match (`match_by_joints`): coordinates agree within this many px (the .mat stores the
# JSON's pixels with ~5e-4 px noise), and at least this fraction of a person's labelled joints
# must agree.
MATCH_TOLERANCE_PX = 0.01
MIN_AGREE = 0.5


@dataclasses.dataclass(frozen=True)
class OfficialGroundTruth:
    """One official file's people, in file order, in the project's 0-based image px.

    Attributes:
        joints: (N, 16, 2) float64, NaN where missing. labelled: (N, 16) bool.
        head_size: (N,) float64 px. person_id: (N,) str ids, or None when the file has none.
        source: the `head_size_source` these head sizes get (SOURCE_MAT or SOURCE_H5).
    """

    joints: np.ndarray
    labelled: np.ndarray
    head_size: np.ndarray
    person_id: np.ndarray | None
    source: str


def read_official(path: str | Path) -> OfficialGroundTruth:
    """Reads `detections_our_format.mat` or `valid.h5` (told apart by content)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationFormatError(f"{path}: official ground-truth file not found")
    with open(path, "rb") as f:
        head = f.read(20)
    if head.startswith(b"\x89HDF"):
        records = h5.read(path).records
        return OfficialGroundTruth(
            joints=np.stack([r.joints for r in records]),
            labelled=np.stack([r.labelled for r in records]),
            head_size=np.array([r.head_size for r in records]),
            person_id=np.array([r.person_id for r in records]),
            source=SOURCE_H5,
        )
    if head.startswith(b"MATLAB 5.0"):
        return _read_detections_mat(path)
    raise AnnotationFormatError(
        f"{path}: expected detections_our_format.mat (MATLAB 5.0) or valid.h5 (HDF5) with the "
        f"official validation head sizes"
    )


def read_detections_mat(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of the official `detections_our_format.mat`, person-first and still 1-based:
    `pos_gt_src` (N, 16, 2), `jnt_missing` (N, 16), `headboxes_src` (N, 2, 2), and
    `pos_pred_src` (N, 16, 2) when the file has it. The one reader of that file (PCKh uses it too).

    Raises:
        AnnotationFormatError: unreadable file or a missing key, naming the file.
    """
    from scipy.io import loadmat

    check_mat_size(path, DEFAULT_MAX_ANNOTATION_BYTES)
    try:
        mat = loadmat(path)
    except (OSError, ValueError, TypeError) as exc:
        raise AnnotationFormatError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc
    needed = ("pos_gt_src", "jnt_missing", "headboxes_src")
    absent = [k for k in needed if k not in mat]
    if absent:
        raise AnnotationFormatError(f"{path}: missing {absent}; expected detections_our_format.mat with {list(needed)}")
    arrays = {
        "pos_gt_src": np.transpose(mat["pos_gt_src"], (2, 0, 1)).astype(np.float64),
        "jnt_missing": np.transpose(mat["jnt_missing"], (1, 0)).astype(bool),
        "headboxes_src": np.transpose(mat["headboxes_src"], (2, 0, 1)).astype(np.float64),
    }
    if "pos_pred_src" in mat:
        arrays["pos_pred_src"] = np.transpose(mat["pos_pred_src"], (2, 0, 1)).astype(np.float64)
    return arrays


def _read_detections_mat(path: Path) -> OfficialGroundTruth:
    mat = read_detections_mat(path)
    joints = mat["pos_gt_src"] - 1.0  # 1-based -> 0-based
    labelled = ~mat["jnt_missing"]
    boxes = mat["headboxes_src"]  # (N, 2, 2)
    if joints.shape[1:] != (NUM_JOINTS, 2) or labelled.shape != joints.shape[:2] or boxes.shape[0] != len(joints):
        raise AnnotationFormatError(f"{path}: inconsistent shapes {joints.shape}, {labelled.shape}, {boxes.shape}")
    joints[~labelled] = np.nan
    head_size = HEAD_BOX_TO_HEAD_SIZE * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)
    return OfficialGroundTruth(joints, labelled, head_size, None, SOURCE_MAT)


def match_by_joints(ref_joints: np.ndarray, ref_labelled: np.ndarray,
                    joints: np.ndarray, labelled: np.ndarray,
                    tolerance: float = MATCH_TOLERANCE_PX, min_agree: float = MIN_AGREE) -> np.ndarray:
    """For each query person, the index of the reference person with the same ground truth.

    A joint agrees when both files label it and its coordinates differ by <= `tolerance` px;
    a query matches the reference row with the most agreeing joints when they are at least
    `min_agree` of the query's labelled joints (and at least one). Not all: the real .mat
    and the JSON disagree on a few joints (a handful of x = 0 in the .mat where the JSON has
    the annotation), and annotations at half pixels sit on any rounding boundary.

    Args:
        ref_joints, joints: (R, 16, 2) and (Q, 16, 2) px in one frame (NaN where unlabelled).
        ref_labelled, labelled: (R, 16) and (Q, 16) bool.
    Returns:
        (Q,) int64: the reference row, or -1 when none agrees enough.
    """
    ref_joints = np.asarray(ref_joints, np.float64)
    ref_labelled = np.asarray(ref_labelled, bool) & np.isfinite(ref_joints).all(-1)
    joints = np.asarray(joints, np.float64)
    labelled = np.asarray(labelled, bool) & np.isfinite(joints).all(-1)
    # Bucket each labelled reference joint by (joint, whole-pixel x, y); a query joint looks in
    # the 3 x 3 buckets around its own, so a difference <= 1 px always finds its candidates.
    buckets: dict[tuple[int, int, int], list[int]] = {}
    cells = np.rint(np.nan_to_num(ref_joints)).astype(np.int64)
    for r, j in zip(*np.nonzero(ref_labelled)):
        buckets.setdefault((int(j), int(cells[r, j, 0]), int(cells[r, j, 1])), []).append(int(r))
    found = np.full(len(joints), -1, dtype=np.int64)
    query_cells = np.rint(np.nan_to_num(joints)).astype(np.int64)
    for q in range(len(joints)):
        votes: Counter = Counter()
        for j in np.flatnonzero(labelled[q]):
            x, y = query_cells[q, j]
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    for r in buckets.get((int(j), int(x + dx), int(y + dy)), ()):
                        if np.abs(ref_joints[r, j] - joints[q, j]).max() <= tolerance:
                            votes[r] += 1
        if votes:
            (best, n), *rest = votes.most_common(2) + [(None, 0)]
            if n >= max(1.0, min_agree * labelled[q].sum()) and rest[0][1] < n:
                found[q] = best
    return found


def official_rows(records: list[PersonRecord], official: OfficialGroundTruth) -> np.ndarray:
    """(len(records),) index of each record's row in `official`, -1 when it is not there.

    By person id when the file has ids (valid.h5) and the id's joints agree; otherwise by
    joints (`match_by_joints`). Only validation records are looked up: the files hold the
    validation people only.
    """
    rows = np.full(len(records), -1, dtype=np.int64)
    val = [i for i, r in enumerate(records) if r.split == "val"]
    if not val:
        return rows
    joints = np.stack([records[i].joints for i in val])
    labelled = np.stack([records[i].labelled for i in val])
    if official.person_id is not None:
        where = {pid: k for k, pid in enumerate(official.person_id.tolist())}
        ids = np.array([where.get(records[i].person_id, -1) for i in val])
        same = ids >= 0
        if same.any():  # an id that exists but names another person is not a match
            ok = (official.labelled[ids[same]] == labelled[same]).all(1) & (np.where(
                labelled[same][..., None], np.abs(np.nan_to_num(official.joints[ids[same]]) - np.nan_to_num(joints[same])),
                0.0).max(axis=(1, 2)) <= 1.0)  # valid.h5's `part` is the JSON's joints in whole px
            ids[np.flatnonzero(same)[~ok]] = -1
    else:
        ids = match_by_joints(official.joints, official.labelled, joints, labelled)
        values, counts = np.unique(ids[ids >= 0], return_counts=True)
        ids[np.isin(ids, values[counts > 1])] = -1  # two of our people claim one row: neither
    rows[val] = ids
    return rows


def apply_official_head_sizes(records: list[PersonRecord], path: str | Path) -> tuple[list[PersonRecord], dict]:
    """Records with the head sizes of an official file where it has the person.

    Returns:
        (records, report): records in the same order, those found in the file with its
        `head_size` and `head_size_source`; report = {"file", "source", "file_rows",
        "matched", "val_records_not_in_file", "file_rows_not_matched"}.
    """
    official = read_official(path)
    rows = official_rows(records, official)
    out = [
        dataclasses.replace(r, head_size=float(official.head_size[k]), head_size_source=official.source)
        if k >= 0 else r
        for r, k in zip(records, rows)
    ]
    matched = rows[rows >= 0]
    n_val = sum(r.split == "val" for r in records)
    return out, {
        "file": str(path),
        "source": official.source,
        "file_rows": int(len(official.head_size)),
        "matched": int(len(matched)),
        "val_records_not_in_file": int(n_val - len(matched)),
        "file_rows_not_matched": int(len(official.head_size) - len(np.unique(matched))),
    }


def head_size_sources(records: list[PersonRecord]) -> dict[str, dict[str, int]]:
    """{split: {head_size_source or "unknown": count}} for the manifest."""
    counts: dict[str, Counter] = {}
    for r in records:
        counts.setdefault(r.split, Counter())[r.head_size_source or "unknown"] += 1
    return {split: dict(sorted(c.items())) for split, c in sorted(counts.items())}
