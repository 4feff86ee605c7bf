"""Ingest: how fast the training stream of the `mpii` profile feeds a training worker, per core.

End to end, as `pipelines.training.loop` consumes it: the stored parquet rows
(`pipelines.training.data_stream.train_dataset`, cached in blocks, shuffled block order,
`map_batches` augmentation in Ray Data tasks with the epoch clock), `iter_torch_batches` with the
loop's batch size, prefetch and local shuffle buffer, up to the host batch the loop receives.
What the loop then does before the forward pass (targets drawn from the keypoints,
`shg_model.targets`, and pixels normalised) runs on the training device, so it is timed apart
on one CPU thread (`ingest_device_prep_us_per_sample`: its cost where a CPU trains). Rows are the real MPII crops (`SHG_MPII_IMAGES`, default
``../shared/data/mpii/images``; the 5 images' people repeated under distinct ids) at the
profile's 256 px input and 64x64 targets; without them, people from `shg synth`.

Figures (steady state: each epoch's first `warm_batches` batches, and the wait for them, left
out; the start of an epoch is reported as ``ingest_epoch_start_s``):

- ``ingest_samples_per_s`` and ``ingest_samples_per_s_per_core`` (over the Ray cluster's CPUs,
  which the consumer shares);
- ``ingest_bytes_per_sample``: bytes of the tensors a training worker receives, per sample;
- ``augment_fn_samples_per_s_per_core``: the augmentation function alone
  (`augment_keypoints_batch`, as in `benchmarks/augment.py`: one process, best of repeats) with
  OpenCV on one thread (``augment_fn_all_threads_samples_per_s``: on all, as augment.py times it),
  and ``ingest_over_fn``, the stream's rate per core over it (aim >= 0.5);
- ``ingest_cores_per_gpu``: cores the stream needs to feed one GPU at ``gpu_samples_per_s``
  (``ingest_gpu_samples_per_s``; 1,000/s by default, or the bf16 batch-32 rate of the `gpu`
  section when it ran first).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

PROFILE = "mpii"
REPO = Path(__file__).resolve().parents[1]


def mpii_images() -> Path:
    """The folder of the real MPII sample images (`SHG_MPII_IMAGES` or ../shared/data/mpii/images)."""
    return Path(os.environ.get("SHG_MPII_IMAGES", REPO.parent / "shared" / "data" / "mpii" / "images"))


def profile_config():
    """The `mpii` profile's ExperimentConfig."""
    from pipelines.config.run import resolve_run_config

    return resolve_run_config(PROFILE).experiment()


def prepared_rows(people: int, workdir: Path) -> tuple[dict[str, np.ndarray], str]:
    """`people` prepared rows (numpy columns of `dataprep.schema.PREPARED_SCHEMA`) and where
    they come from: the real MPII crops repeated under distinct person ids, or a `shg synth` set."""
    from dataprep.mpii import load_annotations
    from dataprep.prepare import records_table
    from dataprep.prepare_batch import prepare_batch
    from dataprep.schema import PREPARED_SCHEMA

    images = mpii_images()
    annotations = images / "annotations_hrnet_format.json"
    if annotations.is_file():
        source, records, root = f"real MPII crops ({images})", load_annotations(annotations), images
    else:
        from dataprep.synth import SynthConfig, generate

        generate(SynthConfig(people=min(people, 64), workers=1), workdir / "synth")
        source, root = "shg synth people (no real MPII images found)", workdir / "synth" / "images"
        records = load_annotations(workdir / "synth" / "annotations.json")
    table = prepare_batch(records_table(records), str(root), 95)
    table = table.filter(table.column("reason").is_null()).select(PREPARED_SCHEMA.names)
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    pick = np.arange(people) % table.num_rows
    out = {name: values[pick] for name, values in columns.items()}
    out["person_id"] = np.array([f"bench_{i:06d}" for i in range(people)], dtype=object)
    return out, source


def write_prepared(rows: dict[str, np.ndarray], out: Path, rows_per_file: int = 4096) -> Path:
    """`out/train/*.parquet` (+ an empty val/) in the prepared layout the stream reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataprep.schema import PREPARED_SCHEMA

    (out / "train").mkdir(parents=True)
    (out / "val").mkdir()
    table = pa.table({name: rows[name] for name in PREPARED_SCHEMA.names}, schema=PREPARED_SCHEMA)
    for i, start in enumerate(range(0, table.num_rows, rows_per_file)):
        pq.write_table(table.slice(start, rows_per_file), out / "train" / f"part-{i:05d}.parquet")
    return out


def function_rate(rows: dict[str, np.ndarray], cfg, batch: int = 32, repeats: int = 3) -> dict[str, float]:
    """Samples/s of the augmentation function the stream maps, alone on one core (best of
    `repeats`, after a warm-up)."""
    import cv2

    from dataprep import augment

    # the stream's function; `augment_batch` on a tree from before the keypoint stream (before/after)
    fn = getattr(augment, "augment_keypoints_batch", augment.augment_batch)
    chunk = {name: values[:batch] for name, values in rows.items()}
    out, threads = {}, cv2.getNumThreads()
    # one core: OpenCV alone would spread a warp over every core (what benchmarks/augment.py times)
    for label, n in (("", 1), ("_all_threads", threads)):
        cv2.setNumThreads(n)
        try:
            fn(chunk, cfg, epoch=0)
            best = float("inf")
            for epoch in range(1, repeats + 1):
                started = time.perf_counter()
                fn(chunk, cfg, epoch=epoch)
                best = min(best, time.perf_counter() - started)
        finally:
            cv2.setNumThreads(threads)
        out[f"augment_fn{label}_us_per_sample"] = best / batch * 1e6
        out[f"augment_fn{label}_samples_per_s" + ("_per_core" if not label else "")] = batch / best
    return out


def device_prep(batch: dict, cfg) -> "object":
    """What the loop does to a received batch before the forward pass, on the training device
    (timed apart, here on one CPU thread: in the stream's loop it would compete with the
    stream's own tasks for the same cores, which a GPU's worker does not)."""
    import torch

    from shg_model.pixels import normalise

    if "keypoints" in batch:
        from shg_model.targets import render_heatmaps

        targets = render_heatmaps(batch["keypoints"], batch["weight"] > 0, cfg.data.heatmap_size, cfg.data.sigma)
    else:  # a stream that ships the maps (before they were drawn on the device)
        targets = batch["heatmaps"]
    return normalise(batch["image"]), targets, torch.as_tensor(batch["weight"])


def stream_rate(prepared: Path, cfg, *, epochs: int, warm_batches: int, rows_per_block: int,
                map_batch_size: int) -> dict[str, float]:
    """The end-to-end stream's steady-state figures (see the module docstring); needs Ray."""
    import ray
    import torch

    from pipelines.training.data_stream import start_epoch_clock, train_dataset

    train = cfg.train
    clock_name = f"shg-ingest-clock-{uuid.uuid4().hex[:8]}"
    clock = start_epoch_clock(clock_name)
    dataset = train_dataset(prepared, cfg.data, clock_name, shuffle_seed=train.seed,
                            batch_size=map_batch_size, rows_per_block=rows_per_block)
    samples, seconds, starts, nbytes, delivered, kept = 0, 0.0, [], 0, 0, []
    for epoch in range(epochs):
        ray.get(clock.set.remote(epoch))
        began = time.perf_counter()
        steady_from, count = None, 0
        batches = dataset.iter_torch_batches(
            batch_size=train.batch_size, device="cpu", prefetch_batches=2,
            local_shuffle_buffer_size=max(4 * train.batch_size, 64), local_shuffle_seed=train.seed + epoch)
        for i, batch in enumerate(batches):
            now = time.perf_counter()
            n = len(batch["key"])
            nbytes += sum(t.numel() * t.element_size() for t in batch.values())
            delivered += n
            keys = batch["key"].numpy()  # noqa: F841  (the loop keeps them on the host)
            if len(kept) < 20:
                kept.append(batch)
            if i + 1 == warm_batches:
                steady_from = time.perf_counter()
                starts.append(steady_from - began)
            elif steady_from is not None:
                count += n
        if steady_from is not None and count:
            samples += count
            seconds += time.perf_counter() - steady_from
    del clock
    if not samples:
        raise ValueError(f"ingest: no steady-state batches; give more people than {warm_batches} batches a pass")
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    rate = samples / seconds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        device_prep(kept[0], cfg)  # warm-up
        started = time.perf_counter()
        for batch in kept:
            device_prep(batch, cfg)
        prep_s, prep_n = time.perf_counter() - started, sum(len(b["key"]) for b in kept)
    finally:
        torch.set_num_threads(threads)
    return {
        "ingest_samples_per_s": rate,
        "ingest_cpus": cpus,
        "ingest_samples_per_s_per_core": rate / cpus,
        "ingest_bytes_per_sample": nbytes / max(delivered, 1),
        "ingest_epoch_start_s": float(np.median(starts)),
        "ingest_device_prep_us_per_sample": prep_s / max(prep_n, 1) * 1e6,
    }


def measure_ingest(people: int = 1536, *, epochs: int = 3, warm_batches: int = 8, cpus: int | None = None,
                   rows_per_block: int = 128, map_batch_size: int = 32,
                   gpu_samples_per_s: float | None = None, log=print) -> dict[str, float]:
    """All figures of this module; starts (and stops) a local Ray with `cpus` CPUs (default: the
    machine's) unless one is running."""
    import ray
    import torch

    from pipelines.runtime.ray_cluster import connect

    cfg = profile_config()
    figures: dict[str, float] = {"ingest_input_size": float(cfg.data.input_size),
                                 "ingest_heatmap_size": float(cfg.data.heatmap_size),
                                 "ingest_batch_size": float(cfg.train.batch_size)}
    with tempfile.TemporaryDirectory(prefix="shg-ingest-") as tmp:
        rows, source = prepared_rows(people, Path(tmp))
        log(f"ingest: {people} people from {source}; CPU capability {torch.backends.cpu.get_cpu_capability()}")
        prepared = write_prepared(rows, Path(tmp) / "prepared")
        figures.update(function_rate(rows, cfg.data))
        started_ray = not ray.is_initialized()
        connect(num_cpus=cpus or os.cpu_count())
        try:
            figures.update(stream_rate(prepared, cfg, epochs=epochs, warm_batches=warm_batches,
                                       rows_per_block=rows_per_block, map_batch_size=map_batch_size))
        finally:
            if started_ray:
                ray.shutdown()
    figures["ingest_over_fn"] = figures["ingest_samples_per_s_per_core"] / figures["augment_fn_samples_per_s_per_core"]
    rate = float(gpu_samples_per_s or 1000.0)
    figures["ingest_gpu_samples_per_s"] = rate
    figures["ingest_cores_per_gpu"] = rate / figures["ingest_samples_per_s_per_core"]
    return figures
