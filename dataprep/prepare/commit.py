"""The commit of a prepared dataset: a rename into place locally; on an object store the
manifest, written last, names the files, and files no manifest names are removed after."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dataprep.prepare.manifest import PreparedManifest
from dataprep.prepare.config import MANIFEST
from dataprep.prepared_writer import QUARANTINE
from dataprep.schema import SPLITS
from shg_io.atomic import (
    dead_replaced_copies,
    exchange_paths,
    fsync_path,
    remove_stale_leftovers,
    temporary_sibling,
)
from shg_io.storage import Location


def move_into_place(tmp: Path, out: Path) -> None:
    """Puts the complete, fsynced `tmp` in place as `out`; the parent folder is fsynced so the
    new name is durable.

    An existing `out` (checked to be replaceable) is swapped with `tmp` in one atomic step
    (`exchange_paths`): `out` is never missing, and a kill at any point leaves a complete
    dataset under `out` (the old copy, then under the temporary name, is a leftover). Where the
    file system cannot swap, `out` is renamed aside and `tmp` in; a kill between the two renames
    leaves `out` missing, and `recover_out` puts the old copy back before anything is removed.
    """
    if not out.exists():
        os.rename(tmp, out)
    elif not any(out.iterdir()):
        out.rmdir()
        os.rename(tmp, out)
    elif exchange_paths(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old copy
    else:
        old = temporary_sibling(out, "replaced")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    fsync_path(out.parent)


def clear_leftovers(out: Path, log) -> None:
    """What a run does beside a local `out` before writing: `recover_out`, then removes the
    leftovers of writers that are gone (`remove_stale_leftovers`: this host's dead pids, other
    hosts' after a grace period)."""
    recover_out(out, log)
    for leftover in remove_stale_leftovers(out):
        log(f"prepare: removed {leftover.name}, left by a run that did not finish")


def recover_out(out: Path, log) -> None:
    """Before a run clears leftovers beside `out`: when `out` is missing because a swap was
    killed between its renames, the newest old copy a dead writer moved aside takes the name
    back, so the last good dataset is never deleted as a leftover."""
    if out.exists():
        return
    for copy in dead_replaced_copies(out):
        if (copy / MANIFEST).is_file():
            os.rename(copy, out)
            fsync_path(out.parent)
            log(f"prepare: restored {out} from {copy.name}, moved aside by a run killed while it replaced it")
            return


def generation_files(root: Location, generation: str) -> dict[str, list[Location]]:
    """This run's parquet files under `root`, per destination, sorted by name."""
    prefix = f"part-{generation}-"
    return {
        name: [f for f in (root / name).list() if f.name.startswith(prefix) and f.name.endswith(".parquet")]
        for name in (*SPLITS, QUARANTINE)
    }


def committed_files(out: Location) -> dict[str, tuple[str, ...]]:
    """The files the manifest now at `out` names ({} when there is none or it cannot be read)."""
    try:
        return PreparedManifest.from_json(json.loads((out / MANIFEST).read_text())).files
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def remove_uncommitted(out: Location, manifest: PreparedManifest,
                       previous: dict[str, tuple[str, ...]] | None = None) -> None:
    """On an object store, after the manifest is committed: deletes every parquet file under
    `out` that neither it nor `previous` (the manifest it replaced) names: a killed run's, and
    the generation before the previous one. The previous dataset's files stay until the next
    commit, so a reader that read the old manifest a moment ago still finds its files."""
    previous = previous or {}
    for name, committed in manifest.files.items():
        keep = {*committed, *previous.get(name, ())}
        for f in (out / name).list():
            if f.name.endswith(".parquet") and f.name not in keep:
                f.delete_file()
