"""`PersonRecord`: one annotated person, the unit every loader returns and `prepare` consumes.

Frames and units: image px, 0-based, pixel centres at integers (MPII's 1-based coordinates are
converted once, in the loaders). `scale` is person height / 200 px, already adjusted for
cropping (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from dataprep.joints import NUM_JOINTS

SPLITS = ("train", "val")
MAX_IMAGE_SIDE = 2**31 - 1  # width/height are stored as int32-range integers


@dataclasses.dataclass(frozen=True, eq=False)
class PersonRecord:
    """One person in one image.

    Attributes:
        person_id: stable id from the source annotation (unique within a dataset).
        image: image path relative to the image root.
        width, height: image size in px (0 when the source does not say).
        center: (x, y) adjusted person centre, image px.
        scale: adjusted person height / 200 px; the standard crop box is 200*scale px square.
        joints: (16, 2) float64 image px in MPII joint order; unlabelled rows are NaN.
        labelled: (16,) bool, True when the joint has a ground-truth position.
        head_size: PCKh normaliser in image px (0.6 x head-box diagonal); NaN when unknown.
        split: "train" or "val".
        head_size_source: how head_size was obtained ("head_box", "h5_normalize",
            "head_segment" (estimated from upper_neck-head_top), or "" when unknown).
        visible_flag: (16,) bool MPII "not occluded" flag when the format has one, else None.
    """

    person_id: str
    image: str
    width: int
    height: int
    center: tuple[float, float]
    scale: float
    joints: np.ndarray
    labelled: np.ndarray
    head_size: float
    split: str
    head_size_source: str = ""
    visible_flag: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Normalise types once so every consumer can rely on them; arrays are made read-only
        # because the dataclass is frozen.
        joints = np.array(self.joints, dtype=np.float64).reshape(-1, 2)
        labelled = np.array(self.labelled, dtype=bool).reshape(-1)
        if labelled.shape == joints.shape[:1]:  # a mismatch is reported by validate()
            joints[~labelled] = np.nan
        joints.setflags(write=False)
        labelled.setflags(write=False)
        object.__setattr__(self, "joints", joints)
        object.__setattr__(self, "labelled", labelled)
        if self.visible_flag is not None:
            vis = np.array(self.visible_flag, dtype=bool).reshape(-1)
            vis.setflags(write=False)
            object.__setattr__(self, "visible_flag", vis)
        cx, cy = self.center
        object.__setattr__(self, "center", (float(cx), float(cy)))
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "head_size", float(self.head_size))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def validate(self) -> list[str]:
        """Problems that make the record unusable for training/evaluation; [] when it is fine."""
        problems = []
        if not self.person_id:
            problems.append("person_id is empty")
        if not self.image:
            problems.append("image path is empty")
        if self.split not in SPLITS:
            problems.append(f"split {self.split!r} is not one of {SPLITS}")
        if not all(math.isfinite(v) for v in self.center):
            problems.append(f"center {self.center} is not finite")
        if not (math.isfinite(self.scale) and self.scale > 0):
            problems.append(f"scale {self.scale} must be finite and > 0")
        if not (0 <= self.width <= MAX_IMAGE_SIDE and 0 <= self.height <= MAX_IMAGE_SIDE):
            problems.append(f"image size {self.width}x{self.height} is outside 0..{MAX_IMAGE_SIDE}")
        if self.joints.shape != (NUM_JOINTS, 2):
            problems.append(f"joints have shape {self.joints.shape}, expected ({NUM_JOINTS}, 2)")
        if self.labelled.shape != (NUM_JOINTS,):
            problems.append(f"labelled has shape {self.labelled.shape}, expected ({NUM_JOINTS},)")
        if self.joints.shape == (NUM_JOINTS, 2) and self.labelled.shape == (NUM_JOINTS,):
            if not self.labelled.any():
                problems.append("no labelled joints")
            elif not np.isfinite(self.joints[self.labelled]).all():
                problems.append("a labelled joint has non-finite coordinates")
        if self.visible_flag is not None and self.visible_flag.shape != (NUM_JOINTS,):
            problems.append(f"visible_flag has shape {self.visible_flag.shape}")
        if not (math.isnan(self.head_size) or self.head_size > 0):
            problems.append(f"head_size {self.head_size} must be > 0 or NaN (unknown)")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists and floats; NaN stays float NaN)."""
        return {
            "person_id": self.person_id,
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "center": list(self.center),
            "scale": self.scale,
            "joints": self.joints.tolist(),
            "labelled": self.labelled.tolist(),
            "head_size": self.head_size,
            "split": self.split,
            "head_size_source": self.head_size_source,
            "visible_flag": None if self.visible_flag is None else self.visible_flag.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PersonRecord:
        """Inverse of `to_dict`; raises KeyError naming a missing field, TypeError on extras."""
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise TypeError(f"PersonRecord.from_dict: unknown fields {sorted(extra)}")
        return cls(**d)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PersonRecord):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        # NaN-aware: joints of unlabelled rows and an unknown head_size are NaN on both sides.
        return all(_same(a[k], b[k]) for k in a)

    __hash__ = None  # type: ignore[assignment]  # holds arrays

    def __reduce__(self):
        # Rebuild through __init__ so unpickled copies (Ray workers) get read-only arrays too.
        return (type(self), tuple(getattr(self, f.name) for f in dataclasses.fields(self)))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
            return False
        return all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def records_to_dicts(records: list[PersonRecord]) -> list[dict[str, Any]]:
    """`PersonRecord.to_dict` over a list."""
    return [r.to_dict() for r in records]


def records_from_dicts(dicts: list[dict[str, Any]]) -> list[PersonRecord]:
    """`PersonRecord.from_dict` over a list."""
    return [PersonRecord.from_dict(d) for d in dicts]
