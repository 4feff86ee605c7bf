"""The commit of a prepared dataset: a rename into place locally; on an object store the
manifest, written last, names the files, and files no manifest names are removed after."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dataprep.prepare.manifest import PreparedManifest
from dataprep.prepared_writer import QUARANTINE
from dataprep.schema import SPLITS
from shg_io.atomic import fsync_path, temporary_sibling
from shg_io.storage import Location


def move_into_place(tmp: Path, out: Path) -> None:
    """Renames the complete, fsynced `tmp` to `out`; an existing `out` (checked to be
    replaceable) is moved aside first and deleted only after; the parent folder is fsynced so
    the new name is durable."""
    if not out.exists():
        os.rename(tmp, out)
    elif not any(out.iterdir()):
        out.rmdir()
        os.rename(tmp, out)
    else:
        old = temporary_sibling(out, "replaced")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    fsync_path(out.parent)


def generation_files(root: Location, generation: str) -> dict[str, list[Location]]:
    """This run's parquet files under `root`, per destination, sorted by name."""
    prefix = f"part-{generation}-"
    return {
        name: [f for f in (root / name).list() if f.name.startswith(prefix) and f.name.endswith(".parquet")]
        for name in (*SPLITS, QUARANTINE)
    }


def remove_uncommitted(out: Location, manifest: PreparedManifest) -> None:
    """On an object store, after the manifest is committed: deletes every parquet file under
    `out` that it does not name (an earlier dataset's, or a killed run's)."""
    for name, committed in manifest.files.items():
        for f in (out / name).list():
            if f.name.endswith(".parquet") and f.name not in committed:
                f.delete_file()
