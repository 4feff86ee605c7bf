"""The prepared dataset's manifest (`OUT/manifest.json`): what `run_prepare` returns and commits.

One frozen dataclass is what crosses from `shg prepare` to training, evaluation and the
registry; `to_json` writes it and `from_json` reads it back, also from the manifests of older
versions (see `PreparedManifest.from_json`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class ManifestError(ValueError):
    """A manifest file that this version cannot read; the message names the file and the fix."""


@dataclass(frozen=True)
class PreparedManifest:
    """Counts, fingerprint, layout and files of a prepared dataset.

    Attributes:
        fingerprint: SHA-256 over the sorted (person_id, row digest) pairs (`dataprep.prepare`).
        rows_in: people read (malformed entries included) = sum(rows) + quarantined.
        rows: prepared rows per split, {"train": n, "val": n}.
        quarantined: rows written to quarantine/; quarantined_by_reason: {reason: rows}.
        config: the `PrepareConfig` of the run, as recorded (field: value).
        schema, quarantine_schema: {column: arrow type} of the prepared and quarantine files.
        crop_size, crop_box_scale, input_size, heatmap_size, heatmap_sigma: the stored layout.
        joint_names, flip_permutation: the joint order of `keypoints` and `heatmaps`.
        files: {destination: [parquet file names]}, the committed files (train, val, quarantine).
        bytes: {destination: data bytes}; bytes_per_row: of train + val (None without rows).
        seconds, rows_per_s: end to end; decode_rows_per_s: the Ray job alone.
        created_utc: ISO 8601 UTC time of the commit.
        annotation_format: the annotation form read (None: a manifest older than the field).
        loader_left_out: {why: entries} the loader left out on purpose (not people).
        head_sizes: the `--head-sizes` match report, or None.
        head_size_sources: {split: {source: people}} over the people read (None: older manifest).
    """

    fingerprint: str
    rows_in: int
    rows: dict[str, int]
    quarantined: int
    quarantined_by_reason: dict[str, int]
    config: dict[str, Any]
    schema: dict[str, str]
    quarantine_schema: dict[str, str]
    crop_size: int
    crop_box_scale: float
    input_size: int
    heatmap_size: int
    heatmap_sigma: float
    joint_names: tuple[str, ...]
    flip_permutation: tuple[int, ...]
    files: dict[str, tuple[str, ...]]
    bytes: dict[str, int]
    bytes_per_row: float | None
    seconds: float
    rows_per_s: float
    decode_rows_per_s: float
    created_utc: str
    # added after the first release of the format: absent from older manifests
    annotation_format: str | None = None
    loader_left_out: dict[str, int] = field(default_factory=dict)
    head_sizes: dict[str, Any] | None = None
    head_size_sources: dict[str, dict[str, int]] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of `manifest.json` (lists for tuples)."""
        out = dataclasses.asdict(self)
        out["joint_names"] = list(self.joint_names)
        out["flip_permutation"] = list(self.flip_permutation)
        out["files"] = {name: list(found) for name, found in self.files.items()}
        return out

    @classmethod
    def from_json(cls, values: Any, *, source: str = "manifest") -> PreparedManifest:
        """The manifest of a JSON object read from `source` (named in errors).

        Manifests of every earlier version load: the fields they lack have defaults above. A
        missing required key or a key this version does not know is a `ManifestError`.
        """
        if not isinstance(values, dict):
            raise ManifestError(f"{source}: a manifest is a JSON object, found {type(values).__name__}; "
                                "re-run `shg prepare`")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ManifestError(f"{source}: unknown manifest keys {unknown} (written by a newer or "
                                "another program?); re-run `shg prepare` with this version")
        required = [name for name, f in known.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ManifestError(f"{source}: manifest keys missing: {missing}; re-run `shg prepare`")
        values = dict(values)
        values["joint_names"] = tuple(values["joint_names"])
        values["flip_permutation"] = tuple(values["flip_permutation"])
        values["files"] = {name: tuple(found) for name, found in values["files"].items()}
        return cls(**values)
