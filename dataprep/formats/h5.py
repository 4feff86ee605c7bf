"""`valid.h5` of the original Torch Stacked Hourglass code: the 2,958 validation people.

Datasets read: `imgname` (N,), `center` (N, 2), `scale` (N,), `part` (N, 16, 2), `visible`
(N, 16) (MPII's is_visible flag, not "labelled"), `normalize` (N,) = head size; optional
`index`, `person` (0-based annolist / annorect indices, used for the person id). Coordinates are
1-based; center/scale are already adjusted (checked: they equal the MPII JSON's objpos/scale
after y += 15 s, s *= 1.25 to 0.0075 px), so they are not adjusted again. The file has no split.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from dataprep.formats.common import (
    ENTRY_ERRORS,
    AnnotationFormatError,
    AnnotationSet,
    MalformedEntry,
    labelled_from_raw,
    to_zero_based,
)
from dataprep.formats.limits import DEFAULT_MAX_ANNOTATION_BYTES, check_h5_size
from dataprep.joints import NUM_JOINTS
from dataprep.records import PersonRecord

FORMAT = "h5"
REQUIRED = ("imgname", "center", "scale", "part", "normalize")


def read(path: str | Path, split: str = "val", *, max_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES) -> AnnotationSet:
    """Records of a valid.h5-style file, all with `split`; refused when its datasets declare
    more than `max_bytes` (`dataprep.formats.limits.check_h5_size`)."""
    import h5py  # only this form needs it

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise AnnotationFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        check_h5_size(f, path, max_bytes)
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise AnnotationFormatError(
                f"{path}: expected the valid.h5 form with datasets {', '.join(REQUIRED)} "
                f"(optional visible, index, person); missing {missing}, found {sorted(f)}"
            )
        data = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
    # Undecodable bytes stay as surrogates: that person is quarantined (invalid_image_name), not the file.
    names = [
        n.decode("utf-8", "surrogateescape") if isinstance(n, bytes) else str(n)
        for n in np.asarray(data["imgname"]).reshape(-1)
    ]
    n = len(names)
    shapes = {"center": (n, 2), "scale": (n,), "part": (n, NUM_JOINTS, 2), "normalize": (n,)}
    if "visible" in data:
        shapes["visible"] = (n, NUM_JOINTS)
    for key, shape in shapes.items():
        if np.shape(data[key]) != shape:
            raise AnnotationFormatError(
                f"{path}: dataset {key!r} has shape {np.shape(data[key])}, expected {shape} "
                f"(one row per imgname)"
            )
    try:
        part = np.asarray(data["part"], dtype=np.float64)
        center = to_zero_based(data["center"])
        scales = np.asarray(data["scale"], dtype=np.float64)
        normalize = np.asarray(data["normalize"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnnotationFormatError(f"{path}: center, scale, part and normalize must be numeric ({exc})") from exc
    labelled = labelled_from_raw(part)
    joints = to_zero_based(part)
    visible = np.asarray(data["visible"]) > 0 if "visible" in data else None
    has_ids = "index" in data and "person" in data
    per_image: Counter = Counter()
    records, malformed = [], []
    for i, image in enumerate(names):
        try:
            if has_ids:  # same id as the MPII JSON / official release: 1-based annolist_annorect
                person_id = f"{int(data['index'][i]) + 1}_{int(data['person'][i]) + 1}"
            else:
                person_id = f"{Path(image).stem}_{per_image[image] + 1}"
            record = PersonRecord(
                person_id=person_id,
                image=image,
                width=0,  # not in the file
                height=0,
                center=(center[i, 0], center[i, 1]),
                scale=scales[i],
                joints=joints[i],
                labelled=labelled[i],
                head_size=normalize[i],
                split=split,
                head_size_source="h5_normalize",
                visible_flag=None if visible is None else visible[i],
            )
        except ENTRY_ERRORS as exc:
            malformed.append(
                MalformedEntry(f"row{i}", image, split, f"{path}: row {i} is not a person ({type(exc).__name__}: {exc})")
            )
            continue
        per_image[image] += 1
        records.append(record)
    return AnnotationSet(records, FORMAT, Counter(), malformed)
