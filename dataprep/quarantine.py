"""Why a person is rejected by `shg prepare`: the reasons and the checks that need no image.

A rejected person is never dropped silently: it becomes one row of `OUT/quarantine/` with one of
the `REASONS` below and a human-readable detail, and the manifest counts it by reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

import numpy as np

from dataprep.records import PersonRecord

MALFORMED_ENTRY = "malformed_entry"  # an annotation entry with a field of the wrong type/shape
INVALID_IMAGE_NAME = "invalid_image_name"  # NUL byte or a character UTF-8 cannot encode
PATH_ESCAPES_ROOT = "path_escapes_root"  # absolute, `..`, or a symlink leading out of --images
NON_FINITE = "non_finite"  # NaN/inf (after the cast to float32) centre, scale, head size, joint
INVALID_RECORD = "invalid_record"  # any other `PersonRecord.validate()` problem (e.g. no joints)
DUPLICATE_PERSON_ID = "duplicate_person_id"  # a later record reusing an earlier person_id
MISSING_IMAGE = "missing_image"  # no such file, or it cannot be opened
NOT_A_FILE = "not_a_file"  # a directory, named pipe or device where the image should be
IMAGE_TOO_LARGE = "image_too_large"  # file bytes or header-declared pixels over the limits
CORRUPT_IMAGE = "corrupt_image"  # empty, undecodable, truncated or not an image at all
DECODE_TIMEOUT = "decode_timeout"  # the decoder did not finish within the per-image time limit
SIZE_MISMATCH = "size_mismatch"  # decoded size differs from the annotation's width/height
BOX_OUTSIDE_IMAGE = "box_outside_image"  # the standard 200*scale box does not touch the image
CROP_FAILED = "crop_failed"  # the crop maths refused this person (e.g. a degenerate scale)
RECORD_FAILED = "record_failed"  # any other error while preparing this one person (a bug guard)

REASONS: tuple[str, ...] = (
    MALFORMED_ENTRY,
    INVALID_IMAGE_NAME,
    PATH_ESCAPES_ROOT,
    NON_FINITE,
    INVALID_RECORD,
    DUPLICATE_PERSON_ID,
    MISSING_IMAGE,
    NOT_A_FILE,
    IMAGE_TOO_LARGE,
    CORRUPT_IMAGE,
    DECODE_TIMEOUT,
    SIZE_MISMATCH,
    BOX_OUTSIDE_IMAGE,
    CROP_FAILED,
    RECORD_FAILED,
)

# Every float the prepared dataset stores is float32: values are screened after that cast, so a
# finite float64 such as 1e300 that would be stored as inf (or 1e-50 stored as 0) is rejected.
STORED_FLOAT = np.float32


@dataclass(frozen=True)
class Rejection:
    """A quarantine verdict: `reason` is one of `REASONS`, `detail` says what was seen."""

    reason: str
    detail: str


def check_record(record: PersonRecord) -> Rejection | None:
    """The checks that need no image, in order: path, person id, non-finite numbers, `validate()`."""
    rejection = check_image_path(record.image) or check_text("person_id", record.person_id) or check_geometry(
        np.asarray(record.center), record.scale, record.joints, record.labelled, record.head_size
    )
    if rejection is None and (problems := record.validate()):
        rejection = Rejection(INVALID_RECORD, "; ".join(problems))
    return rejection


def check_text(name: str, value: object) -> Rejection | None:
    """Rejects a text field that is not a str, holds a NUL byte or cannot be encoded as UTF-8
    (e.g. a lone surrogate from a JSON `\\udc80` escape): parquet strings are UTF-8, and a NUL
    truncates a path at the operating system."""
    reason = INVALID_IMAGE_NAME if name == "image" else INVALID_RECORD
    if not isinstance(value, str):
        return Rejection(reason, f"{name} is a {type(value).__name__}, not a string")
    if "\0" in value:
        return Rejection(reason, f"{name} {printable(value)!r} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return Rejection(reason, f"{name} {printable(value)!r} is not valid UTF-8 text ({exc.reason})")
    return None


def printable(value: object) -> str:
    """`value` as text that UTF-8 (and so parquet) can always store: unencodable characters and
    NUL become backslash escapes; anything that is not a str is shown by its repr."""
    if not isinstance(value, str):
        value = repr(value)
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\0", "\\x00")


def check_image_path(image: str) -> Rejection | None:
    """Rejects an image name that is not clean text (`check_text`), empty, absolute (POSIX or
    Windows) or contains `..`.

    Purely lexical: the path must name a file *under* the image root, whatever the root is.
    Symlinks that lead out of the root are caught where the file is opened (`prepare_batch`).
    """
    if (rejection := check_text("image", image)) is not None:
        return rejection
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
    """Rejects numbers that are not finite *as stored* (float32) where the contract needs finite ones.

    Args:
        center: (2,) image px. scale: person height / 200 px, must be finite and > 0 in float32.
        joints: (16, 2) image px; only the labelled rows must be finite (unlabelled are NaN).
        labelled: (16,) bool. head_size: NaN means unknown and is allowed; inf, or a positive
            value that float32 turns into inf or 0, is not (a negative one is `validate`'s).
    """
    center32, scale32 = as_stored(center), as_stored(scale)
    if not np.all(np.isfinite(center32)):
        return Rejection(NON_FINITE, f"center {np.asarray(center).tolist()} is not finite as float32")
    if not (np.isfinite(scale32) and scale32 > 0):
        return Rejection(NON_FINITE, f"scale {float(scale)!r} is not a finite positive float32")
    bad = np.asarray(labelled, dtype=bool) & ~np.all(np.isfinite(as_stored(joints)), axis=-1)
    if bad.any():
        return Rejection(NON_FINITE, f"labelled joints {np.flatnonzero(bad).tolist()} are not finite as float32")
    head32 = as_stored(head_size)
    if np.isinf(head32) or (head_size > 0 and head32 == 0):
        return Rejection(NON_FINITE, f"head_size {float(head_size)!r} is not a finite positive float32")
    return None


def as_stored(values) -> np.ndarray:
    """`values` cast to the stored float type; overflow gives inf (checked by the caller)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(values, dtype=np.float64).astype(STORED_FLOAT)


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
