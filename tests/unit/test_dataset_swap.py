"""Replacing a local prepared dataset: never a moment without it, and a kill at any point never
costs the last good copy. Real processes: a reader polling the folder while it is replaced, and
a writer killed (SIGKILL) between the two renames of the fallback swap."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dataprep.prepare.commit import clear_leftovers, move_into_place
from shg_io.atomic import temporary_sibling


def _dataset(path: Path, label: str) -> Path:
    path.mkdir()
    (path / "manifest.json").write_text(f'{{"label": "{label}"}}\n')
    return path


POLL = """
import sys, time
from pathlib import Path
manifest, misses, reads = Path(sys.argv[1]) / "manifest.json", 0, 0
print("polling", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    reads += 1
    try:
        manifest.read_text()
    except OSError:
        misses += 1
print(reads, misses, flush=True)
"""


def test_a_reader_never_finds_the_dataset_missing_while_it_is_replaced(tmp_path):
    out = _dataset(tmp_path / "prepared", "v0")
    reader = subprocess.Popen([sys.executable, "-c", POLL, str(out), "3"], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "polling"
    for version in range(1, 200):
        move_into_place(_dataset(temporary_sibling(out), f"v{version}"), out)
    reads, misses = map(int, reader.stdout.readline().split())
    reader.wait()
    assert reads > 1000 and misses == 0
    assert '"v199"' in (out / "manifest.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]  # the old copies are gone


KILLED_BETWEEN_RENAMES = """
import os, sys, time
from pathlib import Path
from shg_io.atomic import temporary_sibling
out = Path(sys.argv[1])
new = temporary_sibling(out)                      # the new dataset, complete
new.mkdir(); (new / "manifest.json").write_text('{"label": "new"}')
os.rename(out, temporary_sibling(out, "replaced"))  # the fallback swap's first rename ...
print("between", flush=True)
time.sleep(120)                                     # ... killed before the second
"""


def test_a_writer_killed_between_the_renames_leaves_the_last_good_copy_to_the_next_run(tmp_path):
    out = _dataset(tmp_path / "prepared", "good")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(out)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "between"
    writer.kill()
    writer.wait()
    assert not out.exists() and len(list(tmp_path.iterdir())) == 2  # the old copy and the new one aside
    said = []
    clear_leftovers(out, said.append)  # what the next prepare does first
    assert '"good"' in (out / "manifest.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]
    assert any("restored" in line for line in said)


def test_leftovers_from_another_host_are_removed_after_the_grace_period(tmp_path):
    out = _dataset(tmp_path / "prepared", "good")
    old = _dataset(tmp_path / ".prepared.partial-otherhost-4242-0123abcd", "half")
    fresh = _dataset(tmp_path / ".prepared.partial-otherhost-4243-4567cdef", "half")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    said = []
    clear_leftovers(out, said.append)
    assert not old.exists() and fresh.exists() and out.exists()  # a recent one may be a live writer's
    assert said == ["prepare: removed .prepared.partial-otherhost-4242-0123abcd, left by a run that did not finish"]
