"""The storage layer (`shg_io.storage`) on the local file system and on a real S3 server
(moto in server mode, `tests/s3_server.py`): one API for both, atomic small-file writes, and a
killed writer never leaves a committed half-file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3_server import s3_client, s3_server

from shg_io.atomic import remove_stale_leftovers
from shg_io.storage import Location, is_uri, location

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bucket():
    with s3_server() as name:
        yield name


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> Location:
    if request.param == "local":
        return location(tmp_path / "store")
    bucket = request.getfixturevalue("bucket")
    return location(f"s3://{bucket}/{tmp_path.name}")


def test_uris_resolve_to_one_location_type(tmp_path, bucket):
    local = location(tmp_path / "a")
    assert local.is_local and local.uri == str(tmp_path / "a") and not is_uri(tmp_path)
    assert location(f"file://{tmp_path}/a") == local
    remote = location(f"s3://{bucket}/w/")
    assert not remote.is_local and remote.uri == f"s3://{bucket}/w" and is_uri(remote.uri)
    assert (remote / "data" / "manifest.json").uri == f"s3://{bucket}/w/data/manifest.json"
    assert (remote / "data").parent == remote and (remote / "data").name == "data"
    with pytest.raises(ValueError, match="relative"):
        remote / "../elsewhere"
    with pytest.raises(ValueError, match="cannot open"):
        location("nosuchscheme://bucket/x")


def test_write_read_list_delete(root):
    assert not root.exists() and root.list() == []
    (root / "b.json").write_text_atomic('{"b": 2}\n')
    (root / "sub" / "a.txt").write_bytes_atomic(b"alpha")
    assert (root / "b.json").read_text() == '{"b": 2}\n' and (root / "sub" / "a.txt").read_bytes() == b"alpha"
    assert [f.name for f in root.list()] == ["b.json", "sub"]
    assert root.is_dir() and (root / "sub").is_dir() and (root / "b.json").is_file()
    (root / "b.json").write_text_atomic("replaced")  # overwrite: the new content, whole
    assert (root / "b.json").read_text() == "replaced"
    (root / "b.json").delete_file()
    (root / "b.json").delete_file()  # already gone: fine
    assert not (root / "b.json").exists()
    root.delete_dir()
    assert not (root / "sub" / "a.txt").exists()


_WRITER = r"""
import os, sys, time
from shg_io.storage import location
if sys.argv[2] == "stall-before-commit":  # the local commit is the rename after the fsync
    os.fsync = lambda fd: time.sleep(600)
location(sys.argv[1]).write_bytes_atomic(b"x" * int(sys.argv[3]))
"""


def _start_writer(uri: str, mode: str, size: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, uri, mode, str(size)], cwd=REPO,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the writer never got there"
        time.sleep(0.01)


def test_local_writer_killed_before_commit_leaves_old_content(tmp_path):
    target = tmp_path / "summary.json"
    location(target).write_text_atomic("old")
    writer = _start_writer(str(target), "stall-before-commit", 1 << 20)
    try:
        _wait_for(lambda: any(p.name.startswith(".summary.json.partial-") for p in tmp_path.iterdir()))
        assert target.read_text() == "old"  # written, not committed: invisible
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert target.read_text() == "old"
    assert len(remove_stale_leftovers(target)) == 1  # the dead writer's temporary file
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_s3_writer_killed_mid_upload_commits_nothing(bucket):
    key = f"killed/{time.time_ns()}/big.bin"
    client = s3_client()
    # 200 MB goes up as a multipart upload of several parts; completed only at the end.
    writer = _start_writer(f"s3://{bucket}/{key}", "plain", 200 << 20)
    try:
        _wait_for(lambda: any(u["Key"] == key for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])))
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL  # killed mid-upload, not finished
    assert not location(f"s3://{bucket}/{key}").exists()
    assert client.list_objects_v2(Bucket=bucket, Prefix="killed/").get("KeyCount") == 0


def test_s3_small_write_is_one_put_visible_whole(bucket):
    target = location(f"s3://{bucket}/whole/manifest.json")
    writer = _start_writer(target.uri, "plain", 3 << 20)
    assert writer.wait(timeout=60) == 0
    assert target.read_bytes() == b"x" * (3 << 20)
