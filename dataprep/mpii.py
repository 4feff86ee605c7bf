"""Loading MPII annotations in any of their common forms into `PersonRecord`s.

Forms (`format`):
- `mpii_json`: the JSON most PyTorch projects use (`.json` or `.json.gz`; has a split).
- `h5`: `valid.h5` of the original Torch code (validation people, no split).
- `hrnet_json`: the HRNet / COCO-style JSON (no split).
- `mat`: the official release `mpii_human_pose_v1_u12_1.mat` (training images only).
Each reader's module docstring in `dataprep/formats/` says what it found in the real files
(which coordinates are 1-based, which center/scale are raw). Every record comes out 0-based with
the adjusted center/scale, applied exactly once.
"""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

from dataprep.formats import h5 as h5_form
from dataprep.formats import hrnet_json, mat, mpii_json
from dataprep.formats.limits import DEFAULT_MAX_ANNOTATION_BYTES, parse_json, read_capped
from dataprep.formats.common import (
    HEAD_SEGMENT_TO_HEAD_SIZE,
    AnnotationFormatError,
    AnnotationSet,
    MalformedEntry,
)
from dataprep.records import SPLITS, PersonRecord

__all__ = [
    "FORMATS",
    "HEAD_SEGMENT_TO_HEAD_SIZE",
    "AnnotationFormatError",
    "AnnotationSet",
    "MalformedEntry",
    "detect_format",
    "load_annotations",
    "read_annotations",
]

FORMATS = ("mpii_json", "h5", "hrnet_json", "mat")
_log = logging.getLogger(__name__)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_MAT5_MAGIC = b"MATLAB 5.0 MAT-file"


def load_annotations(path: str | Path, format: str | None = None, split: str | None = None) -> list[PersonRecord]:
    """The people of an MPII annotation file, in file order.

    Args:
        path: the annotation file.
        format: one of FORMATS; None detects it from the content.
        split: for `mpii_json`, None keeps both splits and "train"/"val" keeps that one; for
            `h5` and `hrnet_json`, which have no split, the split given to every record
            (None means "val": both files hold validation people); for `mat`, None or
            "train" (the release's annotated images are the training set).
    Returns:
        PersonRecords (0-based image px, adjusted center/scale). Records with bad values are
        kept for `PersonRecord.validate` / quarantine; people that a file lists without
        joints are left out and counted (see `read_annotations`, which returns the counts).
    Raises:
        AnnotationFormatError: the file cannot be read as the (detected) form, or an entry is
            malformed; the message names the file, the entry and what was expected. (Use
            `read_annotations` to get the readable people and the malformed entries instead.)
    """
    loaded = read_annotations(path, format=format, split=split)
    if loaded.malformed:
        first = loaded.malformed[0].detail
        more = len(loaded.malformed) - 1
        raise AnnotationFormatError(first + (f" (and {more} more malformed entries)" if more else ""))
    if loaded.skipped:
        _log.info("%s: left out %s", path, dict(loaded.skipped))
    return loaded.records


def read_annotations(path: str | Path, format: str | None = None, split: str | None = None, *,
                     max_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES) -> AnnotationSet:
    """Like `load_annotations`, also returning the form read, the counts of people left out and
    the malformed entries (which do not stop the rest of the file from being read).

    `max_bytes` caps what the file may expand to (`dataprep.formats.limits`); past it the file
    is refused with a message naming the file, the cap and the setting that raises it.
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise AnnotationFormatError(f"{path}: unknown annotation format {format!r}; expected one of {FORMATS}")
    if split is not None and split not in SPLITS:
        raise AnnotationFormatError(f"{path}: unknown split {split!r}; expected one of {SPLITS} or None")
    if not path.is_file():
        raise AnnotationFormatError(f"{path}: annotation file not found")
    kind = _kind_from_bytes(path)
    if kind == "json":
        data = _read_json(path, max_bytes)  # parsed once, for detection and reading
        kind = format or _json_kind(data, path)
        if kind == "mpii_json":
            return mpii_json.read(data, path, split=split)
        if kind == "hrnet_json":
            return hrnet_json.read(data, path, split=split or "val")
        raise AnnotationFormatError(f"{path}: a JSON file, but format={kind!r} is not a JSON form")
    if format is not None and format != kind:
        raise AnnotationFormatError(f"{path}: format={format!r} was asked for, but the file is {kind}")
    if kind == "h5":
        return h5_form.read(path, split=split or "val", max_bytes=max_bytes)
    return mat.read(path, split=split, max_bytes=max_bytes)


def detect_format(path: str | Path) -> str:
    """The form of an annotation file, from its first bytes (and, for JSON, its first entry)."""
    path = Path(path)
    kind = _kind_from_bytes(path)
    return _json_kind(_read_json(path, DEFAULT_MAX_ANNOTATION_BYTES), path) if kind == "json" else kind


def _kind_from_bytes(path: Path) -> str:
    """"h5", "mat" or "json" (plain or gzipped) from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(128)
    except OSError as exc:
        raise AnnotationFormatError(f"{path}: cannot open ({exc})") from exc
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if head.startswith(_MAT5_MAGIC):
        return "mat"
    if head.startswith(_GZIP_MAGIC) or head.lstrip()[:1] in (b"[", b"{"):
        return "json"
    raise AnnotationFormatError(
        f"{path}: unknown annotation file; expected MPII JSON (.json/.json.gz), valid.h5 "
        f"(HDF5), the HRNet JSON or the official release .mat (MATLAB 5.0)"
    )


def _json_kind(data: object, path: Path) -> str:
    if mpii_json.entries_of(data) is not None:
        return "mpii_json"
    if hrnet_json.entries_of(data) is not None:
        return "hrnet_json"
    raise AnnotationFormatError(
        f"{path}: JSON, but neither the MPII JSON form (a list of entries with joint_self) nor "
        f"the HRNet form (a list of entries with joints and joints_vis)"
    )


def _read_json(path: Path, max_bytes: int) -> object:
    """Parsed JSON or gzipped JSON (told apart by the gzip magic, not the file name), read
    within `max_bytes`; over-long integers and over-deep entries are left to the entry readers
    to quarantine (`dataprep.formats.limits.parse_json`)."""
    gz = False
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == _GZIP_MAGIC
        text = read_capped(path, gz=gz, max_bytes=max_bytes).decode("utf-8")
        return parse_json(text, path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError, zlib.error) as exc:
        raise AnnotationFormatError(f"{path}: not valid {'gzipped ' if gz else ''}JSON ({exc})") from exc
