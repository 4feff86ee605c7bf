"""The MPII JSON most PyTorch pose projects use: one entry per annotated person.

Entry fields read: `img_paths`, `objpos` [x, y], `scale_provided`, `joint_self` (16 x [x, y,
is_visible]), `isValidation`; optional `img_width`, `img_height`, `annolist_index` and
`people_index` (1-based indices into the official release, used for the person id) and
`head_box` [x1, y1, x2, y2] (written by `shg synth`). Coordinates are 1-based; objpos/scale are
raw (adjusted here, once). The file is a list of entries or {"root": [...]}.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.formats.common import (
    ENTRY_ERRORS,
    AnnotationFormatError,
    AnnotationSet,
    MalformedEntry,
    adjust_raw_center_scale,
    head_size_from_box,
    head_size_from_segment,
    labelled_from_raw,
    to_zero_based,
)
from dataprep.formats.limits import UnreadableValue
from dataprep.joints import NUM_JOINTS
from dataprep.records import PersonRecord

FORMAT = "mpii_json"
REQUIRED = ("img_paths", "objpos", "scale_provided", "joint_self", "isValidation")


def entries_of(data: Any) -> list | None:
    """The entry list of a parsed file, or None when it does not look like this form."""
    if isinstance(data, dict) and isinstance(data.get("root"), list):
        data = data["root"]
    if isinstance(data, list) and any(isinstance(e, dict) and "joint_self" in e for e in data[:100]):
        return data  # a malformed first entry does not hide the form; it is quarantined
    return None


def read(data: Any, path: str | Path, split: str | None = None) -> AnnotationSet:
    """Records of a parsed MPII JSON file; `split` None keeps both splits, else only that one."""
    entries = entries_of(data)
    if entries is None:
        raise AnnotationFormatError(
            f"{path}: expected the MPII JSON form, a list of person entries (or {{'root': [...]}}) "
            f"with fields {', '.join(REQUIRED)}"
        )
    records, malformed, per_image = [], [], Counter()
    for row, entry in enumerate(entries):
        try:
            record = _record(entry, per_image)
        except ENTRY_ERRORS as exc:
            malformed.append(_malformed(entry, row, path, exc))
            continue
        if split is None or record.split == split:
            records.append(record)
    return AnnotationSet(records, FORMAT, Counter(), malformed)


def _malformed(entry: Any, row: int, path: str | Path, exc: Exception) -> MalformedEntry:
    """What can still be said about an entry that is not a readable person."""
    get = entry.get if isinstance(entry, dict) else (lambda key, default=None: default)
    image = get("img_paths")
    person_id = f"entry{row}"
    index, people_index = get("annolist_index"), get("people_index")
    if all(isinstance(v, (int, float)) and math.isfinite(v) and float(v).is_integer() for v in (index, people_index)):
        person_id = f"{int(index)}_{int(people_index)}"  # the id it would have had
    validation = get("isValidation")
    return MalformedEntry(
        person_id=person_id,
        image=image if isinstance(image, str) else "",
        split={0: "train", 1: "val"}.get(validation, "") if isinstance(validation, (int, float)) else "",
        detail=(
            f"{path}: entry {row} is not an MPII JSON person ({type(exc).__name__}: {exc}); "
            f"each entry needs {', '.join(REQUIRED)} with joint_self 16 x [x, y, visible]"
        ),
    )


def _record(entry: dict, per_image: Counter) -> PersonRecord:
    if isinstance(entry, UnreadableValue):  # nested too deep to parse (dataprep.formats.limits)
        raise ValueError(entry.what)
    if not isinstance(entry, dict):
        raise TypeError(f"expected an object, got {type(entry).__name__}")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise KeyError(f"missing {missing}")
    if not isinstance(entry["img_paths"], str):
        raise TypeError(f"img_paths is a {type(entry['img_paths']).__name__}, expected a string")
    raw = np.asarray(entry["joint_self"], dtype=np.float64)
    if raw.shape not in ((NUM_JOINTS, 3), (NUM_JOINTS, 2)):
        raise ValueError(f"joint_self has shape {raw.shape}, expected ({NUM_JOINTS}, 3)")
    labelled = labelled_from_raw(raw[:, :2])
    joints = to_zero_based(raw[:, :2])
    ox, oy = (float(v) for v in np.asarray(entry["objpos"], dtype=np.float64).reshape(2))
    cx, cy, scale = adjust_raw_center_scale(ox, oy, float(entry["scale_provided"]))
    image = entry["img_paths"]
    if entry.get("head_box") is not None:
        head_size, source = head_size_from_box(*np.asarray(entry["head_box"], dtype=np.float64).reshape(4)), "head_box"
    else:
        head_size = head_size_from_segment(joints, labelled)
        source = "head_segment" if not math.isnan(head_size) else ""
    width, height = int(entry.get("img_width", 0)), int(entry.get("img_height", 0))
    split = "val" if float(entry["isValidation"]) else "train"
    if "annolist_index" in entry and "people_index" in entry:
        person_id = f"{int(entry['annolist_index'])}_{int(entry['people_index'])}"
    else:  # counted only once the entry has proved readable, so ids do not shift
        per_image[image] += 1
        person_id = f"{Path(image).stem}_{per_image[image]}"
    return PersonRecord(
        person_id=person_id,
        image=image,
        width=width,
        height=height,
        center=(cx - 1.0, cy - 1.0),
        scale=scale,
        joints=joints,
        labelled=labelled,
        head_size=head_size,
        split=split,
        head_size_source=source,
        visible_flag=(raw[:, 2] > 0) if raw.shape[1] == 3 else None,
    )
