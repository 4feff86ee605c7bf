"""Benchmark of `shg prepare` (`dataprep.prepare.run_prepare`) on a local Ray cluster: rows/s,
parquet bytes per row, driver memory.

The 5 real MPII images are linked under `--people` distinct names (one person per image, so
every row pays a full image decode, a little worse than MPII's ~1.4 people per image), with
their real annotations, each copy's box jittered a little so that no two rows are equal. Prints rows/s end to end and for the Ray stage, bytes per row by
column, and the driver's peak RSS, which must not grow with `--people` (streaming, bounded
memory): run it at two sizes to see that.

    flock /tmp/shg-heavy.lock .venv/bin/python benchmarks/prepare.py [--people 1000] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dataprep.prepare import PrepareConfig, run_prepare

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mpii" / "images"


def make_inputs(folder: Path, people: int) -> Path:
    """An HRNet-form annotation file with `people` entries over linked copies of the 5 images."""
    entries = json.loads((IMAGES / "annotations_hrnet_format.json").read_text())
    images = folder / "images"
    images.mkdir()
    out = []
    rng = np.random.default_rng(0)
    for i in range(people):
        entry = entries[i % len(entries)]
        name = f"{i:06d}_{entry['image']}"
        os.symlink(IMAGES / entry["image"], images / name)
        # a slightly different box per copy, so no two rows (crops, heatmaps) are byte-equal and
        # parquet's dictionary or zstd cannot fold repeats into an unrealistic bytes/row
        center = (np.asarray(entry["center"]) + rng.uniform(-8, 8, 2)).tolist()
        out.append({**entry, "image": name, "center": center, "scale": entry["scale"] * rng.uniform(0.95, 1.05)})
    (folder / "annotations.json").write_text(json.dumps(out))
    return folder / "annotations.json"


def column_bytes(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in sorted(folder.glob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                column = meta.row_group(g).column(c)
                name = column.path_in_schema.split(".")[0]
                sizes[name] = sizes.get(name, 0) + column.total_compressed_size
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    import ray  # heavy: only for the shutdown at the end

    from pipelines.runtime.ray_cluster import connect

    connect(num_cpus=args.cpus)  # a local cluster, auth Ray's default (token)
    with tempfile.TemporaryDirectory() as tmp:
        annotations = make_inputs(Path(tmp), args.people)
        cfg = PrepareConfig(annotations=str(annotations), images=str(Path(tmp) / "images"), out=f"{tmp}/out")
        start = time.perf_counter()
        manifest = run_prepare(cfg)
        seconds = time.perf_counter() - start
        sizes = column_bytes(Path(tmp) / "out" / "val")
    ray.shutdown()
    rows = manifest.rows["val"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.people} people on {args.cpus} CPUs: {seconds:.1f} s = {args.people / seconds:.1f} rows/s end to "
          f"end (Ray stage {manifest.decode_rows_per_s:.1f} rows/s); driver peak RSS {peak_mib:.0f} MiB")
    print(f"parquet: {manifest.bytes_per_row:.0f} bytes/row; by column (bytes/row): "
          + ", ".join(f"{k}={v / rows:.0f}" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])))
    return 0 if rows + manifest.quarantined == args.people else 1


if __name__ == "__main__":
    sys.exit(main())
