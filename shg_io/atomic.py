"""Files and folders that appear whole or not at all, and the leftovers of writers that died.

A writer puts its bytes under a temporary name in the destination's own folder (same file
system, so the final `os.replace` is atomic), fsyncs them, renames, then fsyncs the folder so
the rename itself survives a power cut. Temporary names carry the writer's host and pid
(`.NAME.partial-HOST-PID-RANDOM`), so a later run can tell the leftovers of a dead writer,
which it removes, from the work of a live one, which it leaves alone.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

# Leftovers written from another host (a shared file system) cannot be checked for a live
# writer; they are removed once this old (no preparation takes a day between writes).
FOREIGN_LEFTOVER_GRACE_S = 24 * 3600.0

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


def remove_stale_leftovers(path: Path, *, foreign_grace_s: float = FOREIGN_LEFTOVER_GRACE_S) -> list[Path]:
    """Removes the temporary siblings of `path` whose writer is gone: on this host, a writer
    whose pid no longer runs; from another host (a shared file system, where the pid cannot be
    checked), a leftover untouched for `foreign_grace_s` seconds. A live writer's work is left
    alone; leftovers are never read, since only the final name is. Returns what was removed.
    """
    return remove_stale_leftovers_in(path.parent, name=path.name, foreign_grace_s=foreign_grace_s)


def remove_stale_leftovers_in(folder: Path, name: str | None = None, *,
                              foreign_grace_s: float = FOREIGN_LEFTOVER_GRACE_S) -> list[Path]:
    """`remove_stale_leftovers` for every final name in `folder` (or only `name`)."""
    removed = []
    if not folder.is_dir():
        return removed
    for candidate in folder.iterdir():
        match = _LEFTOVER.match(candidate.name)
        if not match or (name is not None and match["name"] != name):
            continue
        if match["host"] == _host():
            if _pid_alive(int(match["pid"])):
                continue
        else:
            try:
                age = time.time() - candidate.lstat().st_mtime
            except OSError:
                continue
            if age < foreign_grace_s:
                continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def dead_replaced_copies(path: Path) -> list[Path]:
    """The `.replaced` siblings of `path` whose writer (this host) no longer runs, newest first:
    an old copy moved aside by a swap that was killed before the new copy took its name."""
    found = []
    for candidate in path.parent.iterdir() if path.parent.is_dir() else []:
        match = _LEFTOVER.match(candidate.name)
        if match and match["name"] == path.name and match["kind"] == "replaced" and \
                match["host"] == _host() and not _pid_alive(int(match["pid"])):
            found.append(candidate)
    return sorted(found, key=lambda p: p.lstat().st_mtime, reverse=True)


def exchange_paths(a: Path, b: Path) -> bool:
    """Swaps the names `a` and `b` in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`):
    at every instant each name holds one complete copy. False when the system or file system
    cannot (the caller then falls back to two renames)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a))


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
