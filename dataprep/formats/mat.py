"""The official MPII release, `mpii_human_pose_v1_u12_1.mat` (MATLAB v5).

Structure read: `RELEASE.annolist(i).image.name`; `RELEASE.annolist(i).annorect(j)` with
`x1, y1, x2, y2` (head box), `objpos.x/.y`, `scale`, `annopoints.point(k)` with `id` (0-based
MPII joint index), `x`, `y`, `is_visible`; `RELEASE.img_train(i)` (1 = annotated training image,
0 = test image without joints). Coordinates are 1-based and objpos/scale raw: shifted to
0-based and adjusted once here. Person ids are "i_j" (1-based), the same as the MPII JSON's
annolist_index/people_index. People left out are counted in `AnnotationSet.skipped`:
`test_image` (rects of img_train = 0 images) and `no_joints` (train rects without annopoints).
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
    to_zero_based,
)
from dataprep.formats.limits import DEFAULT_MAX_ANNOTATION_BYTES, check_mat_size
from dataprep.joints import NUM_JOINTS
from dataprep.records import PersonRecord

# Imported where used: scipy (only .mat files need it)

FORMAT = "mat"


def read(path: str | Path, split: str | None = None, *,
         max_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES) -> AnnotationSet:
    """People of annotated (img_train = 1) images, all with split "train"; refused when its
    elements expand past `max_bytes` (`dataprep.formats.limits.check_mat_size`)."""
    import scipy.io

    if split not in (None, "train"):
        raise AnnotationFormatError(
            f"{path}: the official MPII release has annotated training images only (no "
            f"{split!r} split); use split=None or 'train', or the MPII JSON for the validation split"
        )
    check_mat_size(path, max_bytes)
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except NotImplementedError as exc:  # MATLAB v7.3 files are HDF5
        raise AnnotationFormatError(f"{path}: MATLAB v7.3 file; save it with -v7 (scipy reads v5-v7)") from exc
    except (ValueError, TypeError, OSError) as exc:
        raise AnnotationFormatError(f"{path}: not a readable MATLAB v5 .mat file ({exc})") from exc
    release = mat.get("RELEASE")
    if release is None or not hasattr(release, "annolist") or not hasattr(release, "img_train"):
        raise AnnotationFormatError(
            f"{path}: expected the official MPII release (a struct RELEASE with fields annolist "
            f"and img_train), found variables {sorted(k for k in mat if not k.startswith('__'))}"
        )
    annolist = _items(release.annolist)
    img_train = np.atleast_1d(np.asarray(release.img_train)).reshape(-1)
    if len(img_train) != len(annolist):
        raise AnnotationFormatError(
            f"{path}: RELEASE.img_train has {len(img_train)} entries but annolist has "
            f"{len(annolist)}; expected one flag per image"
        )
    records, skipped, malformed = [], Counter(), []
    for i, (entry, train) in enumerate(zip(annolist, img_train), start=1):
        rects = _items(getattr(entry, "annorect", None))
        if not int(train):
            skipped["test_image"] += len(rects)
            continue
        name = getattr(getattr(entry, "image", None), "name", None)
        for j, rect in enumerate(rects, start=1):
            points = _items(getattr(_field(rect, "annopoints"), "point", None))
            if not points:
                skipped["no_joints"] += 1
                continue
            try:
                if not isinstance(name, str):
                    raise TypeError(f"annolist({i}).image.name is {type(name).__name__}, expected a string")
                records.append(_record(rect, points, name, f"{i}_{j}"))
            except ENTRY_ERRORS as exc:
                malformed.append(
                    MalformedEntry(
                        person_id=f"{i}_{j}",
                        image=name if isinstance(name, str) else "",
                        split="train",
                        detail=(
                            f"{path}: annolist({i}).annorect({j}) is not an MPII person "
                            f"({type(exc).__name__}: {exc}); expected image.name and "
                            f"annopoints.point(k).id/x/y"
                        ),
                    )
                )
    return AnnotationSet(records, FORMAT, skipped, malformed)


def _record(rect: Any, points: list, image: str, person_id: str) -> PersonRecord:
    raw = np.full((NUM_JOINTS, 2), np.nan)
    visible = np.zeros(NUM_JOINTS, bool)
    for p in points:
        k = int(_scalar(p.id))
        if not 0 <= k < NUM_JOINTS:
            raise ValueError(f"joint id {k} outside 0..{NUM_JOINTS - 1}")
        raw[k] = _scalar(p.x), _scalar(p.y)
        visible[k] = _flag(_field(p, "is_visible"))
    labelled = np.isfinite(raw).all(axis=1)  # the release lists only annotated joints
    objpos, scale = _field(rect, "objpos"), _scalar(_field(rect, "scale"))
    ox, oy = (_scalar(_field(objpos, "x")), _scalar(_field(objpos, "y")))
    cx, cy, scale = adjust_raw_center_scale(ox, oy, scale)
    box = [_scalar(_field(rect, k)) for k in ("x1", "y1", "x2", "y2")]
    head_size = head_size_from_box(*box) if all(math.isfinite(v) for v in box) else math.nan
    return PersonRecord(
        person_id=person_id,
        image=image,
        width=0,  # the release does not store image sizes
        height=0,
        center=(cx - 1.0, cy - 1.0),
        scale=scale,
        joints=to_zero_based(raw),
        labelled=labelled,
        head_size=head_size,
        split="train",
        head_size_source="head_box" if math.isfinite(head_size) else "",
        visible_flag=visible,
    )


def _items(value: Any) -> list:
    """A MATLAB struct array squeezed by scipy (one struct, an array of them, or []) as a list."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1))
    return [value]


def _field(struct: Any, name: str) -> Any:
    """A struct field, None when the field is absent or empty ([] in MATLAB)."""
    value = getattr(struct, name, None)
    if isinstance(value, np.ndarray) and value.size == 0:
        return None
    return value


def _scalar(value: Any) -> float:
    """A numeric MATLAB scalar as float; NaN when absent or empty."""
    if value is None:
        return math.nan
    arr = np.asarray(value)
    if arr.size != 1:
        return math.nan
    return float(arr.reshape(()))


def _flag(value: Any) -> bool:
    """MPII's is_visible, stored as 0/1, '0'/'1' or [] in the release."""
    if value is None:
        return False
    arr = np.asarray(value)
    if arr.size != 1:
        return False
    item = arr.reshape(()).item()
    if isinstance(item, str):
        return item.strip() == "1"
    return bool(item)
