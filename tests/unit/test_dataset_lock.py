"""The prepared dataset's lock across real processes: one writer (`shg prepare`, the workflow's
prepare step) or any number of readers (`shg train`, the workflow after its prepare step), and a
busy message that names the holder. Each holder is a separate Python process; killing it
releases its hold (flock)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.orchestration.lock import WorkflowBusy, dataset_lock

HOLD = """
import sys, time
from pipelines.orchestration.lock import dataset_lock
with dataset_lock(sys.argv[1], sys.argv[2], write=sys.argv[3] == "write") as hold:
    if sys.argv[4] == "then-read":
        print("wrote", flush=True)
        sys.stdin.readline()
        hold.to_read(sys.argv[2])
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(dataset: Path, command: str, mode: str, then: str = "") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(dataset), command, mode, then or "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == ("wrote" if then else "held")
    return proc


def _end(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def test_a_prepare_is_refused_while_a_training_reads_the_dataset_naming_it(tmp_path):
    dataset = tmp_path / "prepared"
    reader = _hold(dataset, "shg train", "read")
    try:
        with pytest.raises(WorkflowBusy, match=f"being read \\(shg train, pid {reader.pid} on .*prepare into another --out"):
            with dataset_lock(dataset, "shg prepare", write=True):
                pass
        with dataset_lock(dataset, "shg train", write=False):  # readers share it
            pass
    finally:
        _end(reader)
    with dataset_lock(dataset, "shg prepare", write=True):  # free once the reader is gone
        pass


def test_a_training_is_refused_while_a_prepare_writes_the_dataset_naming_it(tmp_path):
    dataset = tmp_path / "prepared"
    writer = _hold(dataset, "shg prepare", "write")
    try:
        for write in (False, True):
            with pytest.raises(WorkflowBusy, match=f"{dataset} is being written.*shg prepare, pid {writer.pid}"):
                with dataset_lock(dataset, "shg train", write=write):
                    pass
    finally:
        _end(writer)
    with dataset_lock(dataset, "shg train", write=False):
        pass


def test_the_workflow_turns_its_write_into_a_read_with_no_writer_in_between(tmp_path):
    """`shg run` prepares (exclusive), then trains on what it prepared (shared): afterwards
    another reader may join, a writer still may not."""
    dataset = tmp_path / "prepared"
    run = _hold(dataset, "shg run", "write", then="then-read")
    try:
        with pytest.raises(WorkflowBusy, match="being written"):
            with dataset_lock(dataset, "shg train", write=False):
                pass
        run.stdin.write("\n")
        run.stdin.flush()
        assert run.stdout.readline().strip() == "held"
        with dataset_lock(dataset, "shg train", write=False):
            pass
        with pytest.raises(WorkflowBusy, match=f"being read \\(shg run, pid {run.pid}"):
            with dataset_lock(dataset, "shg prepare", write=True):
                pass
    finally:
        _end(run)


def test_a_reader_that_died_is_not_named_and_holds_nothing(tmp_path):
    dataset = tmp_path / "prepared"
    reader = _hold(dataset, "shg train", "read")
    _end(reader)  # SIGKILL: its holder file stays, its flock is gone
    assert list((tmp_path / ".prepared.holders").iterdir())
    with dataset_lock(dataset, "shg prepare", write=True):
        pass
