"""Files and folders that appear whole or not at all, and the leftovers of writers that died.

A writer puts its bytes under a temporary name in the destination's own folder (same file
system, so the final `os.replace` is atomic), fsyncs them, renames, then fsyncs the folder so
the rename itself survives a power cut. Temporary names carry the writer's host and pid
(`.NAME.partial-HOST-PID-RANDOM`), so a later run can tell the leftovers of a dead writer,
which it removes, from the work of a live one, which it leaves alone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from pathlib import Path

# `.{name}.{kind}-{host}-{pid}-{hex8}`; kind is "partial" (being written) or "replaced" (an old
# copy moved aside, deleted once the new one is in place).
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|replaced)-(?P<host>[^-/]*)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64]


def temporary_sibling(path: Path, kind: str = "partial") -> Path:
    """A fresh name beside `path` that marks it as this process's work in progress."""
    return path.with_name(f".{path.name}.{kind}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_leftovers(path: Path) -> list[Path]:
    """Removes the temporary siblings of `path` whose writer (same host) is no longer running.

    Leftovers of a live process, or of another host (a shared file system), are left alone:
    they are never read, since only the final name is. Returns what was removed.
    """
    return remove_stale_leftovers_in(path.parent, name=path.name)


def remove_stale_leftovers_in(folder: Path, name: str | None = None) -> list[Path]:
    """`remove_stale_leftovers` for every final name in `folder` (or only `name`)."""
    removed = []
    if not folder.is_dir():
        return removed
    for candidate in folder.iterdir():
        match = _LEFTOVER.match(candidate.name)
        if not match or (name is not None and match["name"] != name) or match["host"] != _host():
            continue
        if _pid_alive(int(match["pid"])):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def fsync_path(path: Path) -> None:
    """fsync one file or folder (a folder's fsync makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (files first, then their folders)."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Writes `path` so that a reader (or a crash) sees the old content or the new, never a part."""
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_path(path.parent)


def write_text_atomic(path: Path, text: str, *, fsync: bool = True) -> None:
    """`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)
