"""Reading a prepared dataset's layout: its manifest and the parquet files of each split."""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"
class PreparedDataError(ValueError):
    """The --data folder is not a usable prepared dataset; the message says what to run."""


def split_files(data: str | Path, split: str) -> list[str]:
    """The parquet files of one split, sorted; a clear error when there are none."""
    folder = Path(data) / split
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        raise PreparedDataError(
            f"{folder}: no parquet files. Pass --data the folder written by `shg prepare --out` "
            "(it holds train/, val/ and manifest.json)."
        )
    check_crop_layout(files[0])
    return files


def check_crop_layout(path: str | Path) -> None:
    """Raises PreparedDataError when a parquet file was prepared with another stored-crop
    layout (`shg.crop_box_scale` in its schema metadata) than this code reads: its stored-crop
    px would be misread (datasets made before the crop margin grew from 1.25 to 1.875 boxes)."""
    import pyarrow.parquet as pq

    from dataprep.schema import CROP_BOX_SCALE

    metadata = pq.read_schema(path).metadata or {}
    stored = metadata.get(b"shg.crop_box_scale", b"").decode()
    if stored != str(CROP_BOX_SCALE):
        raise PreparedDataError(
            f"{path}: prepared with stored crops of {stored or 'unknown'} x the person box, this "
            f"version reads {CROP_BOX_SCALE} x; re-run `shg prepare` on the annotations"
        )


def read_manifest(data: str | Path) -> dict:
    """`OUT/manifest.json` of a prepared dataset (counts, fingerprint, config)."""
    path = Path(data) / MANIFEST
    if not path.is_file():
        raise PreparedDataError(
            f"{path} not found: {data} is not a prepared dataset. Run `shg prepare --out {data}` "
            "first (or `shg synth` then `shg prepare` for the synthetic data)."
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PreparedDataError(f"{path} is not valid JSON ({err}); re-run `shg prepare`") from None
    if "fingerprint" not in manifest:
        raise PreparedDataError(f"{path} has no 'fingerprint'; re-run `shg prepare`")
    return manifest
