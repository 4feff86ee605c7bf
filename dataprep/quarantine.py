"""Why a person is rejected by `shg prepare`: the reasons and the checks that need no image.

A rejected person is never dropped silently: it becomes one row of `OUT/quarantine/` with one of
the `REASONS` below and a human-readable detail, and the manifest counts it by reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

import numpy as np

from dataprep.records import PersonRecord

PATH_ESCAPES_ROOT = "path_escapes_root"  # absolute path or `..`: would read outside --images
NON_FINITE = "non_finite"  # NaN/inf centre, scale, head size or labelled joint; scale <= 0
INVALID_RECORD = "invalid_record"  # any other `PersonRecord.validate()` problem (e.g. no joints)
DUPLICATE_PERSON_ID = "duplicate_person_id"  # a later record reusing an earlier person_id
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"  # undecodable or truncated bytes
SIZE_MISMATCH = "size_mismatch"  # decoded size differs from the annotation's width/height
BOX_OUTSIDE_IMAGE = "box_outside_image"  # the standard 200*scale box does not touch the image
CROP_FAILED = "crop_failed"  # the crop maths refused this person (e.g. a degenerate scale)

REASONS: tuple[str, ...] = (
    PATH_ESCAPES_ROOT,
    NON_FINITE,
    INVALID_RECORD,
    DUPLICATE_PERSON_ID,
    MISSING_IMAGE,
    CORRUPT_IMAGE,
    SIZE_MISMATCH,
    BOX_OUTSIDE_IMAGE,
    CROP_FAILED,
)


@dataclass(frozen=True)
class Rejection:
    """A quarantine verdict: `reason` is one of `REASONS`, `detail` says what was seen."""

    reason: str
    detail: str


def check_record(record: PersonRecord) -> Rejection | None:
    """The checks that need no image, in order: path, non-finite numbers, `validate()`."""
    rejection = check_image_path(record.image) or check_geometry(
        np.asarray(record.center), record.scale, record.joints, record.labelled, record.head_size
    )
    if rejection is None and (problems := record.validate()):
        rejection = Rejection(INVALID_RECORD, "; ".join(problems))
    return rejection


def check_image_path(image: str) -> Rejection | None:
    """Rejects an image path that is empty, absolute (POSIX or Windows) or contains `..`.

    Purely lexical: the path must name a file *under* the image root, whatever the root is.
    """
    if not image:
        return Rejection(PATH_ESCAPES_ROOT, "empty image path")
    posix, windows = PurePosixPath(image), PureWindowsPath(image)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return Rejection(PATH_ESCAPES_ROOT, f"absolute image path {image!r}; paths must be relative to --images")
    if ".." in posix.parts or ".." in windows.parts:
        return Rejection(PATH_ESCAPES_ROOT, f"image path {image!r} contains '..'; it would leave --images")
    return None


def check_geometry(
    center: np.ndarray, scale: float, joints: np.ndarray, labelled: np.ndarray, head_size: float
) -> Rejection | None:
    """Rejects non-finite numbers where the contract needs finite ones.

    Args:
        center: (2,) image px. scale: person height / 200 px, must be finite and > 0.
        joints: (16, 2) image px; only the labelled rows must be finite (unlabelled are NaN).
        labelled: (16,) bool. head_size: NaN means unknown and is allowed; inf is not.
    """
    center = np.asarray(center, dtype=np.float64)
    if not np.all(np.isfinite(center)):
        return Rejection(NON_FINITE, f"center {center.tolist()} is not finite")
    if not (np.isfinite(scale) and scale > 0):
        return Rejection(NON_FINITE, f"scale {scale!r} is not a finite positive number")
    bad = np.asarray(labelled, dtype=bool) & ~np.all(np.isfinite(joints), axis=-1)
    if bad.any():
        return Rejection(NON_FINITE, f"labelled joints {np.flatnonzero(bad).tolist()} are not finite")
    if np.isinf(head_size):
        return Rejection(NON_FINITE, f"head_size {head_size!r} is infinite")
    return None


def check_box_in_image(center: np.ndarray, scale: float, width: int, height: int) -> Rejection | None:
    """Rejects a person whose standard box (side 200*scale, image px) misses the image entirely.

    The image covers the continuous square [-0.5, width-0.5] x [-0.5, height-0.5] (pixel centres
    at integers). A box that only partly overlaps is kept: truncated people are real MPII data.
    """
    half = 100.0 * scale
    cx, cy = float(center[0]), float(center[1])
    overlaps_x = cx - half < width - 0.5 and cx + half > -0.5
    overlaps_y = cy - half < height - 0.5 and cy + half > -0.5
    if overlaps_x and overlaps_y:
        return None
    return Rejection(
        BOX_OUTSIDE_IMAGE,
        f"box centre ({cx:.1f}, {cy:.1f}) side {2 * half:.1f} px lies outside the {width}x{height} image",
    )
