"""The locks: two shg commands never write one work dir at once (`shg run` and `shg train`
lock the work dir / `train.storage`), and a prepared dataset is never replaced while a command
reads it (`dataset_lock`: `shg prepare` writes, `shg train` reads, `shg run` writes then reads).

The lock is a local `flock` file. For a work dir on an object store it lives in the work dir's
local state folder (`shg_io.storage.local_state_dir`, keyed by the URI): it keeps
apart workflows started on the same machine, not on different ones (an object store offers no
lock; run one scheduler per work dir URI).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from shg_io.clock import utc_iso
from shg_io.storage import Location, local_state_dir


class WorkflowBusy(RuntimeError):
    """Another workflow holds the work-dir lock; this one did nothing."""


@contextmanager
def workdir_lock(workdir: Path, command: str = "shg run", lock_name: str = ".workflow.lock") -> Iterator[None]:
    """Holds `workdir/<lock_name>` (flock, non-blocking) for the duration of the block;
    `workdir` is a local folder (for a work dir URI, its `local_state_dir`).

    flock is released by the kernel when the holder dies, so a crashed run never leaves a stale
    lock. The file records the holder (`command`, pid, host, start time) for the busy message.

    Raises:
        WorkflowBusy: another process holds it; names the holder and the lock file.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / lock_name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "unknown holder"
            raise WorkflowBusy(
                f"another shg command is running in {workdir} ({holder}); two never write one "
                f"work dir at once. Wait for it, or use another folder. Lock: {path}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{command}, pid {os.getpid()} on {os.uname().nodename} since {utc_iso()}".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- the prepared dataset: one writer, or any number of readers ---------------------------------


class DatasetHold:
    """What `dataset_lock` holds; `to_read()` turns a writer's hold into a reader's."""

    def __init__(self, dataset: str, readers_fd: int, holder_file: Path, stack: ExitStack) -> None:
        self.dataset, self._fd, self._holder_file, self._stack = dataset, readers_fd, holder_file, stack
        self.mode = "write"

    def to_read(self, command: str) -> None:
        """Done writing, now reading (`shg run` after its prepare step): other readers may join,
        a writer still may not. The writer mutex is kept until the shared lock is held, so no
        writer gets in between."""
        if self.mode == "read":
            return
        fcntl.flock(self._fd, fcntl.LOCK_SH)  # converting: only readers could be waiting
        self._holder_file.write_text(_holder_line(command))
        self._stack.close()  # the writer mutex: a writer now finds the readers' lock busy
        self.mode = "read"


def _holder_line(command: str) -> str:
    return f"{command}, pid {os.getpid()} on {os.uname().nodename} since {utc_iso()}"


def _readers(holders: Path) -> list[str]:
    """The readers recorded beside a dataset whose process still runs (on this host)."""
    found = []
    for entry in sorted(holders.glob("*")) if holders.is_dir() else []:
        host, _, pid = entry.name.rpartition("-")
        if host == os.uname().nodename and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            continue  # died without removing its file: not a holder
        try:
            found.append(entry.read_text().strip() or entry.name)
        except OSError:
            continue
    return found


@contextmanager
def dataset_lock(dataset: str | Path | Location, command: str, *, write: bool) -> Iterator[DatasetHold]:
    """Holds the prepared dataset `dataset` (a folder or URI) for writing (exclusive: `shg
    prepare`, the workflow's prepare step) or reading (shared: `shg train`, the workflow's
    train/evaluate/register) for the duration of the block.

    Files beside the dataset (for a URI, beside its local state folder; see `workdir_lock` for
    what that covers): `.<name>.prepare.lock`, the writers' mutex (the one lock `shg prepare`
    took before), `.<name>.readers.lock` (flock: readers shared, the writer exclusive) and
    `.<name>.holders/`, one file per reader naming it for the busy message. flock is released by
    the kernel when a holder dies.

    Raises:
        WorkflowBusy: a writer holds it (for either mode), or readers hold it (for writing);
            the message names the holders and the dataset.
    """
    state = local_state_dir(dataset)
    folder, name = state.parent, state.name
    folder.mkdir(parents=True, exist_ok=True)
    shown = str(dataset)
    holders = folder / f".{name}.holders"
    with ExitStack() as stack:
        writer_mutex = ExitStack()
        stack.callback(writer_mutex.close)
        if write:
            try:
                writer_mutex.enter_context(workdir_lock(folder, command, lock_name=f".{name}.prepare.lock"))
            except WorkflowBusy as busy:
                raise WorkflowBusy(f"the prepared dataset {shown} is being written: {busy}") from None
        fd = os.open(folder / f".{name}.readers.lock", os.O_RDWR | os.O_CREAT, 0o644)
        stack.callback(os.close, fd)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if write else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            if write:
                readers = "; ".join(_readers(holders)) or "an unrecorded reader"
                raise WorkflowBusy(
                    f"the prepared dataset {shown} is being read ({readers}); replacing it now would "
                    f"change the data under that run. Wait for it to finish, or prepare into another "
                    f"--out. Lock: {folder / f'.{name}.readers.lock'}") from None
            writer = (folder / f".{name}.prepare.lock").read_text().strip() if \
                (folder / f".{name}.prepare.lock").exists() else ""
            raise WorkflowBusy(
                f"the prepared dataset {shown} is being written ({writer or 'unknown holder'}); "
                f"reading it now could mix two versions of the data. Wait for it to finish, or use "
                f"another dataset. Lock: {folder / f'.{name}.readers.lock'}") from None
        stack.callback(fcntl.flock, fd, fcntl.LOCK_UN)
        holders.mkdir(exist_ok=True)
        holder_file = holders / f"{os.uname().nodename}-{os.getpid()}"
        if not write:
            holder_file.write_text(_holder_line(command))
        stack.callback(holder_file.unlink, missing_ok=True)
        hold = DatasetHold(shown, fd, holder_file, writer_mutex)
        yield hold
