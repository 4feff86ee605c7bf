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

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.formats.common import (
    AnnotationFormatError,
    AnnotationSet,
    adjust_raw_center_scale,
    head_size_from_segment,
    to_zero_based,
)
from dataprep.joints import NUM_JOINTS
from dataprep.records import PersonRecord

FORMAT = "hrnet_json"
REQUIRED = ("image", "center", "scale", "joints", "joints_vis")


def entries_of(data: Any) -> list | None:
    """The entry list of a parsed file, or None when it does not look like this form."""
    if isinstance(data, list) and data and isinstance(data[0], dict) and "joints_vis" in data[0]:
        return data
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
    records = []
    for row, entry in enumerate(entries):
        try:
            missing = [k for k in REQUIRED if k not in entry]
            if missing:
                raise KeyError(f"missing {missing}")
            raw = np.asarray(entry["joints"], dtype=np.float64)
            vis = np.asarray(entry["joints_vis"], dtype=np.float64).reshape(-1)
            if raw.shape != (NUM_JOINTS, 2) or vis.shape != (NUM_JOINTS,):
                raise ValueError(f"joints {raw.shape} / joints_vis {vis.shape}, expected (16, 2) / (16,)")
            cx, cy = (float(v) for v in np.asarray(entry["center"], dtype=np.float64).reshape(2))
            scale = float(entry["scale"])
            image = str(entry["image"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AnnotationFormatError(
                f"{path}: entry {row} is not an HRNet MPII person ({type(exc).__name__}: {exc}); "
                f"each entry needs {', '.join(REQUIRED)}"
            ) from exc
        labelled = vis > 0
        joints = to_zero_based(raw)
        cx, cy, scale = adjust_raw_center_scale(cx, cy, scale)
        if image not in sizes:
            sizes[image] = _image_size(root / image)
        per_image[image] += 1
        head_size = head_size_from_segment(joints, labelled)
        records.append(
            PersonRecord(
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
        )
    return AnnotationSet(records, FORMAT, Counter())


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header without decoding it; (0, 0) when not found."""
    if not path.is_file():
        return 0, 0
    try:
        from PIL import Image  # reads the header only; Pillow comes with matplotlib
    except ImportError:
        return 0, 0
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except OSError:
        return 0, 0
