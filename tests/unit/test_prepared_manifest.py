"""The prepared dataset's manifest as a typed value: written and read back unchanged, the
manifests of older versions load, and a file this version cannot read names itself."""

from __future__ import annotations

import json

import pytest

from dataprep.prepare import ManifestError, PreparedManifest
from pipelines.runtime.prepared import PreparedDataError, read_manifest

# The keys of the first manifest format (dataprep/prepare.py at b8a03f5), with small values.
FIRST_FORMAT = {
    "fingerprint": "sha256:" + "ab" * 32, "rows_in": 7, "rows": {"train": 4, "val": 2}, "quarantined": 1,
    "quarantined_by_reason": {"missing_image": 1}, "config": {"out": "/x/out", "jpeg_quality": 95},
    "schema": {"person_id": "string"}, "quarantine_schema": {"reason": "string"},
    "crop_size": 480, "crop_box_scale": 1.875, "input_size": 256, "heatmap_size": 64, "heatmap_sigma": 1.0,
    "joint_names": ["r_ankle", "r_knee"], "flip_permutation": [1, 0],
    "files": {"train": ["part-a-00000.parquet"], "val": ["part-a-00001.parquet"], "quarantine": []},
    "bytes": {"train": 400, "val": 200, "quarantine": 50}, "bytes_per_row": 100.0,
    "seconds": 1.5, "rows_per_s": 4.67, "decode_rows_per_s": 6.0, "created_utc": "2026-11-25T08:20:53Z",
}
LATER_KEYS = {"annotation_format": "hrnet_json", "loader_left_out": {"no_joints": 2},
              "head_sizes": None, "head_size_sources": {"val": {"head_box": 2}}}


def test_the_first_format_loads_with_defaults_for_later_fields():
    manifest = PreparedManifest.from_json(FIRST_FORMAT)
    assert manifest.rows == {"train": 4, "val": 2} and manifest.quarantined == 1
    assert manifest.files["val"] == ("part-a-00001.parquet",)
    assert manifest.annotation_format is None and manifest.loader_left_out == {}
    assert manifest.head_sizes is None and manifest.head_size_sources is None


def test_the_current_format_round_trips_through_json():
    values = {**FIRST_FORMAT, **LATER_KEYS}
    manifest = PreparedManifest.from_json(json.loads(json.dumps(values)))
    assert manifest.to_json() == values
    assert manifest.joint_names == ("r_ankle", "r_knee") and manifest.flip_permutation == (1, 0)


@pytest.mark.parametrize("change, message", [
    (lambda m: {**m, "colour": "red"}, r"m\.json: unknown manifest keys \['colour'\]"),
    (lambda m: {k: v for k, v in m.items() if k != "files"}, r"m\.json: manifest keys missing: \['files'\]"),
    (lambda m: [m], r"m\.json: a manifest is a JSON object, found list"),
])
def test_a_manifest_this_version_cannot_read_names_its_file(change, message):
    with pytest.raises(ManifestError, match=message):
        PreparedManifest.from_json(change(FIRST_FORMAT), source="m.json")


def test_read_manifest_names_the_file_of_a_bad_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({**FIRST_FORMAT, "colour": "red"}))
    with pytest.raises(PreparedDataError, match=rf"{tmp_path}/manifest\.json: unknown manifest keys"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(FIRST_FORMAT))
    assert read_manifest(tmp_path) == PreparedManifest.from_json(FIRST_FORMAT)
