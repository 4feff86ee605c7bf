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
    return files


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
