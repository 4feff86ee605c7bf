"""Where the pipeline's files live: a local path, a mounted shared file system or an object store
URI (`s3://bucket/prefix`, `gs://…`), all through one layer, `pyarrow.fs`.

`location(uri)` resolves a URI once into a `Location` (a pyarrow `FileSystem` and a path on it);
everything else (joining, listing, reading, writing) goes through that object, never through
string handling of paths. A plain path (no `scheme://`) is a local path, made absolute; a
`file://` URI is local too.

Object stores: `pyarrow.fs.FileSystem.from_uri` reads the standard AWS variables itself
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`,
`AWS_PROFILE`); pyarrow 25's S3FileSystem honours `AWS_ENDPOINT_URL`, so an S3-compatible server
(MinIO, moto, Ceph) needs no extra option here.

Atomic writes (`write_bytes_atomic`): on a local or mounted file system, temporary sibling +
fsync + rename (`shg_io.atomic`); on an object store, one PUT of the whole content (an object
is visible whole or not at all; a writer killed before the PUT completes leaves nothing). There is
no atomic rename of a folder on an object store, so a multi-file output (a prepared dataset)
commits by writing its manifest last: readers trust only the files a committed manifest names.

What stays local for a work dir URI (`local_state_dir(uri)`, one folder per URI under
`$SHG_STATE_DIR`, default `~/.local/state/shg/workdirs`): the work-dir lock (a `flock`, which
an object store cannot hold: two drivers on *different* machines are not kept apart), the
default sqlite MLflow store, the embedded synthetic dataset's source images, and the model
directories before they are copied to `<workdir>/models/`. Everything else (prepared data,
checkpoints and the run records beside them, workflow summaries, evaluation records, exported
model directories) goes to the URI.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from shg_io.atomic import write_bytes_atomic as _write_local_atomic


@dataclass(frozen=True)
class Location:
    """A file or folder: `path` on `filesystem`; `scheme` is "" for the local file system.

    `str(location)` / `.uri` is what a person (or Ray Train's `storage_path`) is given back: the
    plain path for a local location, `scheme://path` otherwise.
    """

    filesystem: pafs.FileSystem
    path: str
    scheme: str = ""

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.path}" if self.scheme else self.path

    def __str__(self) -> str:
        return self.uri

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        return Location(self.filesystem, posixpath.dirname(self.path.rstrip("/")), self.scheme)

    def __truediv__(self, part: str) -> Location:
        part = str(part)
        if part.startswith("/") or ".." in part.split("/"):
            raise ValueError(f"{part!r}: only relative names below {self.uri} can be joined")
        return Location(self.filesystem, posixpath.join(self.path, part), self.scheme)

    def local_path(self) -> Path:
        """The `Path` of a local location; a ValueError for an object store URI."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not on the local file system")
        return Path(self.path)

    def info(self) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def list(self) -> list[Location]:
        """What is directly in this folder, sorted by name; [] when the folder does not exist."""
        infos = self.filesystem.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return [Location(self.filesystem, i.path, self.scheme) for i in sorted(infos, key=lambda i: i.path)]

    def mkdir(self) -> None:
        """Creates the folder and its parents (on an object store: nothing to do, or a marker)."""
        self.filesystem.create_dir(self.path, recursive=True)

    def read_bytes(self) -> bytes:
        with self.filesystem.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_bytes_atomic(self, data: bytes, *, fsync: bool = True) -> None:
        """Writes the file so that a reader sees the old content or the new, never a part."""
        if self.is_local:
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_local_atomic(path, data, fsync=fsync)
            return
        # One PUT: pyarrow's S3 output stream uploads on close() (small files) or as a
        # multipart upload completed on close() (large ones); neither is visible before.
        stream = self.filesystem.open_output_stream(self.path)
        stream.write(data)
        stream.close()

    def write_text_atomic(self, text: str, *, fsync: bool = True) -> None:
        self.write_bytes_atomic(text.encode("utf-8"), fsync=fsync)

    def delete_file(self) -> None:
        """Removes the file; a file that is already gone is fine."""
        try:
            self.filesystem.delete_file(self.path)
        except FileNotFoundError:
            pass

    def delete_dir(self) -> None:
        """Removes the folder and everything in it; a folder that is already gone is fine."""
        try:
            self.filesystem.delete_dir(self.path)
        except FileNotFoundError:
            pass


def location(uri: str | Path | Location) -> Location:
    """Resolves `uri` once: a plain or `file://` path → the local file system (absolute path);
    `s3://bucket/prefix` and the other schemes pyarrow knows → that file system.

    Raises:
        ValueError: a URI whose scheme pyarrow cannot open (the message names it).
    """
    if isinstance(uri, Location):
        return uri
    text = str(uri)
    if "://" not in text:
        return Location(pafs.LocalFileSystem(), str(Path(text).expanduser().resolve()))
    scheme = text.split("://", 1)[0].lower()
    try:
        filesystem, path = pafs.FileSystem.from_uri(text)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid / ArrowIOError
        raise ValueError(
            f"cannot open {text!r}: {exc}. Use a local path, a mounted folder, or an object store URI "
            "such as s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY)."
        ) from exc
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Location(filesystem, str(Path(path).resolve()))
    return Location(filesystem, path.rstrip("/"), scheme)


def is_uri(value: str | Path) -> bool:
    """True for an object store (non-local) URI such as `s3://bucket/prefix`."""
    text = str(value)
    return "://" in text and not text.lower().startswith("file://")

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
