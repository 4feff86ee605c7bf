"""Half-written files never wedge a later run: the synthetic dataset killed mid-write (a real
subprocess, SIGKILL), and the leftovers a killed `shg prepare` leaves (real folders named as a
dead writer's), are cleaned or ignored by the next run, which succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shg_io.atomic import remove_stale_leftovers, temporary_sibling
from dataprep.synth.config import SynthConfig
from dataprep.synth.writer import ANNOTATIONS, IMAGES, MANIFEST, generate

ROOT = Path(__file__).resolve().parents[2]
CFG = SynthConfig(people=150, seed=3, workers=1)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _as_dead_writer(path: Path, kind: str = "partial") -> Path:
    """A temporary sibling name of `path` as a writer with a dead pid would have made it."""
    name = temporary_sibling(path, kind).name
    prefix, _, rest = name.rpartition(f"-{os.getpid()}-")
    return path.with_name(f"{prefix}-{_dead_pid()}-{rest}")


def test_synth_killed_mid_write_is_finished_by_the_next_run(tmp_path):
    out = tmp_path / "synth"
    script = (
        "import sys; from dataprep.synth.config import SynthConfig; from dataprep.synth.writer import generate;"
        f"generate(SynthConfig(people={CFG.people}, seed={CFG.seed}, workers=1), sys.argv[1])"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not (out / IMAGES).is_dir() or len(list((out / IMAGES).iterdir())) < 5:
        assert proc.poll() is None, "the writer finished before it could be killed; raise CFG.people"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / MANIFEST).exists()  # written last: a killed run is never taken as complete
    assert not any(p.stat().st_size == 0 for p in (out / IMAGES).glob("*.jpg"))  # renamed whole
    _as_dead_writer(out / IMAGES / "000000001.jpg").write_bytes(b"\xff\xd8")  # a torn temp file

    summary = generate(CFG, out)  # no --overwrite needed: only a killed run's own files are there
    assert summary["people"] == CFG.people
    assert not [p.name for p in (out / IMAGES).iterdir() if p.name.startswith(".")]  # leftovers gone
    clean = tmp_path / "clean"
    generate(CFG, clean)
    assert (out / ANNOTATIONS).read_bytes() == (clean / ANNOTATIONS).read_bytes()
    assert sorted(p.name for p in (out / IMAGES).iterdir()) == sorted(p.name for p in (clean / IMAGES).iterdir())


def test_synth_still_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate(SynthConfig(people=2, workers=1), tmp_path)


def test_prepare_leftovers_of_a_dead_writer_are_removed_and_a_live_ones_kept(tmp_path):
    out = tmp_path / "prepared"
    dead_partial = _as_dead_writer(out)
    dead_replaced = _as_dead_writer(out, "replaced")
    live_partial = temporary_sibling(out)  # this process: still "running"
    for folder in (dead_partial, dead_replaced, live_partial):
        (folder / "val").mkdir(parents=True)
        (folder / "val" / "part-00000.parquet").write_bytes(b"PAR1 half")
    unrelated = tmp_path / ".prepared.partial-notes"  # not our pattern: never touched
    unrelated.mkdir()
    removed = remove_stale_leftovers(out)
    assert sorted(removed) == sorted([dead_partial, dead_replaced])
    assert live_partial.is_dir() and unrelated.is_dir()
    assert not dead_partial.exists() and not dead_replaced.exists()
