"""Reading a prepared dataset's layout: its manifest and the parquet files of each split.

The dataset may be a local folder or an object store URI (`shg_io.storage`). Only the files
its committed `manifest.json` names are read: on an object store the manifest is written last,
so files of a run that is still writing, or that was killed, are never seen. A local folder
without a manifest (one made by hand) is read by listing its split folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dataprep.prepare import MANIFEST, ManifestError, PreparedManifest
from dataprep.schema import CROP_BOX_SCALE
from shg_io.storage import Location, location

__all__ = ["MANIFEST", "PreparedDataError", "PreparedManifest", "check_crop_layout", "read_manifest",
           "split_files", "split_source"]


class PreparedDataError(ValueError):
    """The --data folder is not a usable prepared dataset; the message says what to run."""


def split_source(data: str | Path | Location, split: str) -> tuple[pafs.FileSystem, list[str]]:
    """The file system and the paths on it of one split's parquet files (the manifest's, sorted),
    for `pyarrow.parquet` and `ray.data.read_parquet(paths, filesystem=...)`; a clear error when
    there are none."""
    root = location(data)
    folder = root / split
    if (root / MANIFEST).is_file() or not root.is_local:
        # the committed file list; on an object store nothing else is trusted
        names = read_manifest(root).files.get(split)
    else:  # a local folder without a manifest (renamed into place whole, or made by hand)
        names = None
    if names is None:
        names = [f.name for f in folder.list() if f.name.endswith(".parquet")]
    paths = [(folder / name).path for name in sorted(names)]
    if not paths:
        raise PreparedDataError(
            f"{folder}: no parquet files. Pass --data the folder written by `shg prepare --out` "
            "(it holds train/, val/ and manifest.json)."
        )
    check_crop_layout(paths[0], filesystem=root.filesystem)
    return root.filesystem, paths


def split_files(data: str | Path | Location, split: str) -> list[str]:
    """The parquet files of one split as paths (local) or URIs (object store), sorted."""
    root = location(data)
    filesystem, paths = split_source(root, split)
    return [str(Location(filesystem, p, root.scheme)) for p in paths]


def check_crop_layout(path: str | Path, filesystem: pafs.FileSystem | None = None) -> None:
    """Raises PreparedDataError when a parquet file was prepared with another stored-crop
    layout (`shg.crop_box_scale` in its schema metadata) than this code reads: its stored-crop
    px would be misread (datasets made before the crop margin grew from 1.25 to 1.875 boxes)."""
    metadata = pq.read_schema(path, filesystem=filesystem).metadata or {}
    stored = metadata.get(b"shg.crop_box_scale", b"").decode()
    if stored != str(CROP_BOX_SCALE):
        raise PreparedDataError(
            f"{path}: prepared with stored crops of {stored or 'unknown'} x the person box, this "
            f"version reads {CROP_BOX_SCALE} x; re-run `shg prepare` on the annotations"
        )


def read_manifest(data: str | Path | Location) -> PreparedManifest:
    """`OUT/manifest.json` of a prepared dataset (counts, fingerprint, config, files); the
    manifests of earlier versions load too (`PreparedManifest.from_json`)."""
    path = location(data) / MANIFEST
    if not path.is_file():
        raise PreparedDataError(
            f"{path} not found: {data} is not a prepared dataset. Run `shg prepare --out {data}` "
            "first (or `shg synth` then `shg prepare` for the synthetic data)."
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PreparedDataError(f"{path} is not valid JSON ({err}); re-run `shg prepare`") from None
    try:
        return PreparedManifest.from_json(manifest, source=str(path))
    except ManifestError as err:
        raise PreparedDataError(str(err)) from None
