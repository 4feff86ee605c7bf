"""The HRNet / COCO-style MPII JSON: a list of {`image`, `center`, `scale`, `joints` 16 x [x, y],
`joints_vis` 16}.

What the numbers say (checked on mpii/images/annotations_hrnet_format.json against valid.h5
and the MPII JSON for the same people): `center`/`scale` are the *raw* MPII objpos/scale
(valid.h5 center = center + (0, 15 scale), valid.h5 scale = 1.25 scale), and coordinates are
1-based (joints equal valid.h5 `part`). HRNet's own loader adjusts and subtracts 1 after
reading, so this reader does the same: adjusted once, shifted to 0-based.
`joints_vis` marks labelled joints (missing ones are stored as (-1, -1) with joints_vis 0);
there is no occlusion flag. No split in the file, no image size: width/height are read from
the image header when the image sits beside the JSON (or under `image_root`), else 0.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.formats.common import (
    ENTRY_ERRORS,
    AnnotationFormatError,
    MalformedEntry,
    AnnotationSet,
    adjust_raw_center_scale,
    head_size_from_segment,
    to_zero_based,
)
from dataprep.formats.limits import UnreadableValue
from dataprep.joints import NUM_JOINTS
from dataprep.quarantine import check_image_path
from dataprep.records import PersonRecord

FORMAT = "hrnet_json"
REQUIRED = ("image", "center", "scale", "joints", "joints_vis")


def entries_of(data: Any) -> list | None:
    """The entry list of a parsed file, or None when it does not look like this form."""
    if isinstance(data, list) and any(isinstance(e, dict) and "joints_vis" in e for e in data[:100]):
        return data  # a malformed first entry does not hide the form; it is quarantined
    return None


def read(data: Any, path: str | Path, split: str = "val", image_root: str | Path | None = None) -> AnnotationSet:
    """Records of a parsed HRNet-style file, all with `split`."""
    entries = entries_of(data)
    if entries is None:
        raise AnnotationFormatError(
            f"{path}: expected the HRNet MPII JSON form, a list of entries with fields "
            f"{', '.join(REQUIRED)}"
        )
    root = Path(image_root) if image_root is not None else Path(path).parent
    sizes: dict[str, tuple[int, int]] = {}
    per_image: Counter = Counter()
    records, malformed = [], []
    for row, entry in enumerate(entries):
        try:
            record = _record(entry, split, root, sizes, per_image)
        except ENTRY_ERRORS as exc:
            image = entry.get("image") if isinstance(entry, dict) else None
            malformed.append(
                MalformedEntry(
                    person_id=f"entry{row}",
                    image=image if isinstance(image, str) else "",
                    split=split,
                    detail=(
                        f"{path}: entry {row} is not an HRNet MPII person ({type(exc).__name__}: "
                        f"{exc}); each entry needs {', '.join(REQUIRED)}"
                    ),
                )
            )
            continue
        records.append(record)
    return AnnotationSet(records, FORMAT, Counter(), malformed)


def _record(entry: Any, split: str, root: Path, sizes: dict, per_image: Counter) -> PersonRecord:
    if isinstance(entry, UnreadableValue):  # nested too deep to parse (dataprep.formats.limits)
        raise ValueError(entry.what)
    if not isinstance(entry, dict):
        raise TypeError(f"expected an object, got {type(entry).__name__}")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise KeyError(f"missing {missing}")
    image = entry["image"]
    if not isinstance(image, str):
        raise TypeError(f"image is a {type(image).__name__}, expected a string")
    raw = np.asarray(entry["joints"], dtype=np.float64)
    vis = np.asarray(entry["joints_vis"], dtype=np.float64).reshape(-1)
    if raw.shape != (NUM_JOINTS, 2) or vis.shape != (NUM_JOINTS,):
        raise ValueError(f"joints {raw.shape} / joints_vis {vis.shape}, expected (16, 2) / (16,)")
    cx, cy = (float(v) for v in np.asarray(entry["center"], dtype=np.float64).reshape(2))
    scale = float(entry["scale"])
    labelled = vis > 0
    joints = to_zero_based(raw)
    cx, cy, scale = adjust_raw_center_scale(cx, cy, scale)
    if image not in sizes:
        sizes[image] = _image_size(root, image)
    per_image[image] += 1
    head_size = head_size_from_segment(joints, labelled)
    return PersonRecord(
        person_id=f"{Path(image).stem}_{per_image[image]}",
        image=image,
        width=sizes[image][0],
        height=sizes[image][1],
        center=(cx - 1.0, cy - 1.0),
        scale=scale,
        joints=joints,
        labelled=labelled,
        head_size=head_size,
        split=split,
        head_size_source="head_segment" if head_size == head_size else "",
    )


def _image_size(root: Path, image: str) -> tuple[int, int]:
    """(width, height) from the image header without decoding it; (0, 0) when unknown.

    Best effort: a name that is not a clean relative path, a file that is not a regular file
    (a named pipe would block) or a header Pillow cannot read all give (0, 0), and `shg prepare`
    then checks the image itself.
    """
    if check_image_path(image) is not None:
        return 0, 0
    path = root / image
    if not path.is_file():
        return 0, 0
    from PIL import Image  # reads the header only

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the size is all we want
            with Image.open(path) as im:
                return int(im.width), int(im.height)
    except Exception:  # noqa: BLE001 - any unreadable header means "size unknown"
        return 0, 0
