"""The pipeline's storage: `dataprep.storage` (one `pyarrow.fs` layer for local paths, mounted
shared folders and object store URIs such as `s3://bucket/prefix`), and the local state folder
that a work dir on an object store keeps on the machine that runs the driver.

`dataprep.storage` is the implementation (it lives in `dataprep` because `dataprep` may not
import `pipelines`); this module re-exports it for the pipeline and adds `local_state_dir`.

What stays local for a work dir URI (`local_state_dir(uri)`, one folder per URI under
`$SHG_STATE_DIR`, default `~/.local/state/shg/workdirs`): the work-dir lock (a `flock`, which
an object store cannot hold: two drivers on *different* machines are not kept apart), the
default sqlite MLflow store, the embedded synthetic dataset's source images (`shg prepare`
reads images from a local or mounted folder), the Ray Train run records (`shg_run.json`, which
name the MLflow run a restarted driver resumes; `pipelines.tracking.store.RunRecord` reads
local paths), and the model directories before they are copied to `<workdir>/models/`.
Everything else (prepared data, checkpoints, workflow summaries, evaluation records, exported
model directories) goes to the URI.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from dataprep.storage import Location, is_uri, location

__all__ = ["Location", "copy_folder", "is_uri", "local_folder", "local_state_dir", "location"]


def local_state_dir(workdir: str | Path | Location) -> Path:
    """The local folder for what a work dir keeps on this machine: the work dir itself when it
    is local; for an object store URI, a folder named after the URI (readable prefix + hash)
    under `$SHG_STATE_DIR` (default `~/.local/state/shg/workdirs`)."""
    where = location(workdir)
    if where.is_local:
        return where.local_path()
    root = Path(os.environ.get("SHG_STATE_DIR") or Path.home() / ".local" / "state" / "shg" / "workdirs")
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", where.uri)[:80]
    return root / f"{readable}-{hashlib.sha256(where.uri.encode()).hexdigest()[:12]}"


def copy_folder(source: str | Path | Location, destination: str | Path | Location) -> None:
    """Copies every file under `source` to the same relative path under `destination` (any
    file systems, e.g. a local model directory to `s3://…/models/<run>`)."""
    src, dst = location(source), location(destination)
    if src.uri == dst.uri:
        return
    if dst.is_local:
        dst.mkdir()
    pafs.copy_files(src.path, dst.path, source_filesystem=src.filesystem, destination_filesystem=dst.filesystem)


@contextmanager
def local_folder(folder: str | Path | Location) -> Iterator[Path]:
    """The folder as a local `Path` for the duration of the block: itself when local, else a
    temporary copy (e.g. a checkpoint in S3 for `torch.load`), removed afterwards."""
    where = location(folder)
    if where.is_local:
        yield where.local_path()
        return
    with tempfile.TemporaryDirectory(prefix="shg-fetch-") as tmp:
        copy_folder(where, tmp)
        yield Path(tmp)
