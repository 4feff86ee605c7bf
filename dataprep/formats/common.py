"""What every MPII annotation reader shares: the error type, the 1-based -> 0-based shift, the
raw center/scale adjustment, the "labelled" rule and the head-size rules.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np

from dataprep.records import PersonRecord

# Center/scale adjustment of the raw MPII annotation (objpos is roughly at the chest and
# scale = height/200 is tight): move the centre down by 15 * scale px and enlarge by 1.25, the
# standard practice of the original Torch code, applied once by the loaders of raw forms.
CENTER_SHIFT_Y = 15.0
SCALE_FACTOR = 1.25

# head_size ~= HEAD_SEGMENT_TO_HEAD_SIZE * ||head_top - upper_neck|| (MPII JSON, which has no
# head boxes). Fitted on the 2,932 validation people of valid.h5 whose two head joints are
# labelled: median of normalize / ||head_top - upper_neck|| = 0.7500000 (least squares
# 0.74999); relative error median 5e-6, mean 0.056 %, 99th percentile 0.9 %. The JSON's
# upper_neck and head_top are the MPII head-box diagonal's ends scaled by 0.8 (0.6/0.8 = 0.75).
# tests/unit/test_dataprep_mpii.py refits it on the real files.
HEAD_SEGMENT_TO_HEAD_SIZE = 0.75
HEAD_BOX_TO_HEAD_SIZE = 0.6  # official PCKh: 0.6 x head-box diagonal

UPPER_NECK, HEAD_TOP = 8, 9


# What reading one malformed entry can raise (wrong types, shapes, absurd nesting); each is
# caught per entry so that one entry never aborts the whole file.
ENTRY_ERRORS = (KeyError, TypeError, ValueError, OverflowError, IndexError, AttributeError, RecursionError)


class AnnotationFormatError(ValueError):
    """An annotation file that cannot be read; the message names the file and what was expected."""


@dataclasses.dataclass(frozen=True)
class MalformedEntry:
    """One annotation entry that could not be read as a person (a field of the wrong type or
    shape, a missing field). The rest of the file is still read; `shg prepare` quarantines it.

    Attributes:
        person_id: the id the entry would have had, or `entry<row>` when it cannot be known.
        image: the entry's image name when it is a string, else "".
        split: the entry's split when known, else "".
        detail: the file, the entry and what was wrong with it.
    """

    person_id: str
    image: str
    split: str
    detail: str


@dataclasses.dataclass(frozen=True)
class AnnotationSet:
    """A loaded annotation file.

    Attributes:
        records: the people, in file order.
        format: the annotation form that was read.
        skipped: reason -> count of annotations that are not people with joints and were left
            out on purpose (e.g. people of unannotated test images); every other problem
            stays in `records` for `PersonRecord.validate` / quarantine to count.
        malformed: entries that are meant to be people but cannot be read as one; they are
            people in, so `shg prepare` counts each as a quarantined row.
    """

    records: list[PersonRecord]
    format: str
    skipped: Counter
    malformed: list[MalformedEntry] = dataclasses.field(default_factory=list)


def adjust_raw_center_scale(center_x: float, center_y: float, scale: float) -> tuple[float, float, float]:
    """Raw MPII objpos/scale -> the adjusted center/scale used for cropping (same frame)."""
    return center_x, center_y + CENTER_SHIFT_Y * scale, scale * SCALE_FACTOR


def labelled_from_raw(xy: np.ndarray) -> np.ndarray:
    """(..., 2) 1-based MPII joint coordinates -> (...) bool labelled.

    MPII files store a missing joint as (0, 0) (or (-1, -1)): a joint is labelled unless *both*
    coordinates are <= 0. A single negative coordinate is a real annotation just outside the
    image (366 in the PyTorch JSON, mostly head tops above the frame, 38 of them in validation,
    all counted as present by the official `jnt_missing`).
    """
    xy = np.asarray(xy, dtype=np.float64)
    return (xy[..., 0] > 0) | (xy[..., 1] > 0)


def to_zero_based(xy: np.ndarray) -> np.ndarray:
    """1-based MATLAB pixel coordinates -> the project's 0-based ones (centres at integers)."""
    return np.asarray(xy, dtype=np.float64) - 1.0


def head_size_from_box(x1: float, y1: float, x2: float, y2: float) -> float:
    """0.6 x the head-box diagonal (px; the 1-based offset cancels)."""
    return HEAD_BOX_TO_HEAD_SIZE * math.hypot(float(x2) - float(x1), float(y2) - float(y1))


def head_size_from_segment(joints: np.ndarray, labelled: np.ndarray) -> float:
    """Estimated head size from upper_neck -> head_top; NaN when either is unlabelled."""
    if not (labelled[UPPER_NECK] and labelled[HEAD_TOP]):
        return math.nan
    length = float(np.hypot(*(joints[HEAD_TOP] - joints[UPPER_NECK])))
    return HEAD_SEGMENT_TO_HEAD_SIZE * length if length > 0 else math.nan
