"""The work-dir lock: two shg commands never write one work dir at once (`shg run` and
`shg train` lock the work dir / `train.storage`, `shg prepare` its `--out` folder).

The lock is a local `flock` file. For a work dir on an object store it lives in the work dir's
local state folder (`shg_io.storage.local_state_dir`, keyed by the URI): it keeps
apart workflows started on the same machine, not on different ones (an object store offers no
lock; run one scheduler per work dir URI).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shg_io.clock import utc_iso


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
