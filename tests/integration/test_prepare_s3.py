"""`shg prepare` into an object store (a real S3 server: moto on 127.0.0.1) and read back: the
same rows and fingerprint as a local prepare of the same input, committed by the manifest, and
a second prepare into the same prefix replaces the first's files.

The Ray work runs in a child process with its own local Ray, started after the S3 variables
are set (Ray's workers take their environment from the cluster, not from the test process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from s3_server import s3_client, s3_server

from dataprep.augment import AugmentConfig
from shg_io.storage import location
from pipelines.runtime.prepared import read_manifest, split_files, split_source
from pipelines.training.data_stream import load_validation

REPO = Path(__file__).resolve().parents[2]

_PREPARE = r"""
import json, sys
import ray
from dataprep.prepare import PrepareConfig, run_prepare
from pipelines.runtime.prepared import split_files
from pipelines.runtime.ray_cluster import connect
annotations, images, local_out, s3_out = sys.argv[1:5]
connect(num_cpus=2)
quiet = lambda line: None
local = run_prepare(PrepareConfig(annotations=annotations, images=images, out=local_out), log=quiet)
from shg_io.storage import location
# a first prepare killed before its commit: its data files, no manifest
(location(s3_out) / "val" / "part-dead0000-0-00000.parquet").write_bytes_atomic(b"PAR1 half a file")
first = run_prepare(PrepareConfig(annotations=annotations, images=images, out=s3_out, block_rows=2), log=quiet)
second = run_prepare(PrepareConfig(annotations=annotations, images=images, out=s3_out, batch_size=1), log=quiet)
ray_rows = ray.data.read_parquet(split_files(s3_out, "val")).count()  # Ray's workers read the URIs
keys_after_second = sorted(f.name for f in (location(s3_out) / "val").list())
third = run_prepare(PrepareConfig(annotations=annotations, images=images, out=s3_out), log=quiet)
print(json.dumps({"local": local.to_json(), "first": first.to_json(), "second": second.to_json(), "ray_rows": ray_rows,
                  "third": third.to_json(), "val_after_second": keys_after_second}))
"""


@pytest.fixture(scope="module")
def bucket():
    with s3_server() as name:
        yield name


def test_prepare_to_s3_reads_back_like_local(bucket, mpii_dir, tmp_path):
    images = mpii_dir / "images"
    s3_out = f"s3://{bucket}/datasets/prepared"
    result = subprocess.run(
        [sys.executable, "-c", _PREPARE, str(images / "annotations_hrnet_format.json"), str(images),
         str(tmp_path / "local"), s3_out],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    manifests = json.loads(result.stdout.strip().splitlines()[-1])
    local, first, second = manifests["local"], manifests["first"], manifests["second"]

    # Same input, any parallelism, any storage: the same fingerprint and counts.
    assert first["fingerprint"] == second["fingerprint"] == local["fingerprint"]
    assert second["rows"] == local["rows"] == {"train": 0, "val": 5} and second["rows_in"] == 5
    assert manifests["ray_rows"] == 5

    # The killed first prepare's leftover did not make the prefix refused, and its file is gone;
    # after the second commit the first's files stay (a reader may hold the first manifest), and
    # the third commit removes them, keeping the second's.
    assert not set(first["files"]["val"]) & set(second["files"]["val"])
    assert manifests["val_after_second"] == sorted([*first["files"]["val"], *second["files"]["val"]])
    third = manifests["third"]
    keys = sorted(o["Key"] for o in s3_client().list_objects_v2(Bucket=bucket, Prefix="datasets/")["Contents"]
                  if not o["Key"].endswith("/"))  # pyarrow keeps emptied "folders" as marker objects
    kept = sorted(f"datasets/prepared/{name}/{f}" for m in (second, third) for name, files in m["files"].items()
                  for f in files)
    assert keys == sorted([*kept, "datasets/prepared/manifest.json"])
    assert read_manifest(s3_out).to_json() == third

    # Read back through the layer: the same rows as the local dataset.
    filesystem, paths = split_source(s3_out, "val")
    remote = pq.ParquetDataset(paths, filesystem=filesystem).read().sort_by("person_id")
    here = pq.read_table(tmp_path / "local" / "val").sort_by("person_id")
    assert remote.num_rows == 5 and remote.column_names == here.column_names
    assert repr(remote.to_pylist()) == repr(here.to_pylist())  # repr: NaN (unlabelled joints) == NaN
    assert all(f.startswith(f"{s3_out}/val/part-") for f in split_files(s3_out, "val"))
    assert load_validation(s3_out, AugmentConfig()).fingerprint == \
        load_validation(tmp_path / "local", AugmentConfig()).fingerprint


def test_only_files_named_by_the_committed_manifest_are_read(bucket, tmp_path):
    # A killed prepare leaves data files but no new manifest: readers must not see them.
    from pipelines.runtime.prepared import PreparedDataError

    root = location(f"s3://{bucket}/half")
    (root / "val" / "part-dead0000-0-00000.parquet").write_bytes_atomic(b"PAR1 half a file")
    with pytest.raises(PreparedDataError, match="not a prepared dataset"):
        split_files(root, "val")


def test_prepare_reads_its_images_from_s3(bucket, mpii_dir, tmp_path):
    """`shg prepare --images s3://bucket/mpii/images`: the prepare tasks read the real MPII images
    from the object store (no shared volume) and write the same rows as from the local folder;
    an image missing from the prefix quarantines its people, as a missing local file does."""
    images = mpii_dir / "images"
    client = s3_client()
    jpgs = sorted(images.glob("*.jpg"))
    if not jpgs:
        pytest.skip(f"no real MPII images (*.jpg) in {images}")
    for jpg in jpgs:
        client.upload_file(str(jpg), bucket, f"mpii/images/{jpg.name}")
    annotations = images / "annotations_hrnet_format.json"

    def prepare(source: str, out: Path) -> dict:
        result = subprocess.run(
            [sys.executable, "-m", "pipelines.cli.app", "prepare", "--annotations", str(annotations),
             "--images", source, "--out", str(out)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
        return read_manifest(out).to_json()

    remote, local = prepare(f"s3://{bucket}/mpii/images", tmp_path / "from-s3"), prepare(str(images), tmp_path / "local")
    assert remote["rows"] == local["rows"] == {"train": 0, "val": 5} and remote["quarantined"] == 0
    assert remote["fingerprint"] == local["fingerprint"]
    here = pq.read_table(tmp_path / "local" / "val").sort_by("person_id")
    there = pq.read_table(tmp_path / "from-s3" / "val").sort_by("person_id")
    assert repr(there.to_pylist()) == repr(here.to_pylist())

    client.delete_object(Bucket=bucket, Key=f"mpii/images/{jpgs[0].name}")
    missing = prepare(f"s3://{bucket}/mpii/images", tmp_path / "one-missing")
    assert missing["quarantined"] >= 1 and missing["rows"]["val"] == 5 - missing["quarantined"]
    reasons = pq.read_table(tmp_path / "one-missing" / "quarantine").column("reason").to_pylist()
    assert set(reasons) == {"missing_image"}


def test_prepare_refuses_an_images_prefix_with_nothing_under_it(bucket, mpii_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.app", "prepare", "--annotations",
         str(mpii_dir / "images" / "annotations_hrnet_format.json"), "--images", f"s3://{bucket}/nothing/here",
         "--out", str(tmp_path / "out")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"images folder not found: s3://{bucket}/nothing/here" in result.stderr
