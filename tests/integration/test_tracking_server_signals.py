"""`shg tracking-server` stopped by a signal takes its whole process tree with it.

The real command in a subprocess, on a free port of 127.0.0.1: once /health answers 200 the test
records every descendant of the shg process (the `mlflow server` process and its uvicorn), sends
the signal to the shg process by its PID (as `kill PID`, systemd or a container runtime do), and
then asserts that the port stops answering and that none of those PIDs is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from services import free_port

pytestmark = pytest.mark.slow


def _shg() -> str:
    import sys

    return str(Path(sys.executable).with_name("shg"))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "shg.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([_shg(), "tracking-server", "--port", str(port), "--workdir", str(tmp_path / "w"), *extra],
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while not _answers(url):
        if proc.poll() is not None:
            pytest.fail(f"shg tracking-server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"not ready after 120 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, url, log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_to_shg_stops_the_server_and_every_child(tmp_path, signum):
    proc, url, log = _start(tmp_path, "--no-auth")
    children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    try:
        assert children, "the mlflow server runs as a child of shg"
        os.kill(proc.pid, signum)
        proc.wait(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (_answers(url) or any(map(_alive, children))):
            time.sleep(0.5)
        assert not _answers(url), f"the port still answers /health after {signum.name} to shg"
        left = [pid for pid in children if _alive(pid)]
        assert not left, f"children of shg left running after {signum.name}: {left}"
    finally:
        for pid in children:  # never leave a server behind, also when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
