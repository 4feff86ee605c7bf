"""The Ray Data job of `shg prepare`: decode, crop and render in a task pool, write from the tasks.

The job runs on the Ray cluster this process is connected to; dataprep never starts Ray itself
(callers connect first, through `pipelines.runtime.ray_cluster.connect`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from dataprep.prepare.config import PrepareConfig
from dataprep.prepare_batch import prepare_batch
from dataprep.prepared_writer import write_batch
from shg_io.storage import Location, is_uri


class RayNotConnected(RuntimeError):
    """`run_prepare` was called in a process that is not connected to a Ray cluster."""


def require_ray():
    """The `ray` module of a process connected to a cluster; `RayNotConnected` otherwise."""
    import ray  # heavy (about a second): only the job needs it, not the config or the checks

    if not ray.is_initialized():
        raise RayNotConnected(
            "run_prepare needs a Ray connection and this process has none: call "
            "pipelines.runtime.ray_cluster.connect(address) first (None starts a local cluster); "
            "dataprep does not start Ray itself."
        )
    return ray


def write_from_tasks(table: pa.Table, cfg: PrepareConfig, target: Location, generation: str):
    """Runs the Ray Data job over the record table: `prepare_batch` in a task pool as wide as the
    cluster, then `write_batch`, which writes the rows under `target` from the tasks (files of
    at most `rows_per_file` rows). Yields the small `SUMMARY_SCHEMA` batches the driver tallies.

    The tasks get `target` with its file system object (an S3 file system carries its
    endpoint); credentials come from the workers' own environment (AWS_* variables or roles)."""
    ray = require_ray()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    blocks = [table.slice(i, cfg.block_rows) for i in range(0, len(table), cfg.block_rows)]
    ds = ray.data.from_arrow(blocks).map_batches(
        prepare_batch,
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        fn_kwargs={
            # a URI travels as it is: each task opens it on its own node (no shared volume needed)
            "image_root": cfg.images if is_uri(cfg.images) else str(Path(cfg.images).resolve()),
            "jpeg_quality": cfg.jpeg_quality,
            "max_image_pixels": cfg.max_image_pixels,
            "max_image_bytes": cfg.max_image_bytes,
            "max_decode_s": cfg.max_decode_s,
        },
        compute=ray.data.TaskPoolStrategy(size=min(cpus, len(blocks))),
        num_cpus=1,
    ).map_batches(
        write_batch,
        batch_size=cfg.rows_per_file,
        batch_format="pyarrow",
        fn_kwargs={"out": target, "generation": generation, "rows_per_file": cfg.rows_per_file},
        # Writing (zstd, I/O) is light next to decoding: like the driver's writer before it, it
        # runs beside the prepare tasks (no CPU reserved), one task at a time (one batch of
        # `rows_per_file` rows in memory).
        compute=ray.data.TaskPoolStrategy(size=1),
        num_cpus=0,
    )
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
