"""Data side: `shg prepare` rows/s, parquet bytes per row, and the training stream's rate.

On a small synthetic set from `shg synth` (``dataprep.synth.generate``) and a private local Ray
cluster with 2 CPUs:

- ``prepare_rows_s``: ``dataprep.prepare.run_prepare`` end to end (read annotations, decode,
  crop, JPEG-encode, render targets, write parquet), rows over wall seconds, Ray start-up
  excluded; ``parquet_bytes_per_row``: bytes of all train + val parquet files over their rows.
- ``stream_img_s``: the training stream exactly as training builds it
  (``pipelines.training.data_stream.train_dataset`` with its epoch clock: parquet → JPEG decode →
  augmentation → heatmaps, in Ray Data tasks), consumed with ``iter_torch_batches`` like the
  loop does: images over the epochs' wall time, start-up included (the first epoch's wait for its first batch is
  ``stream_first_batch_s``). Nothing else runs meanwhile; in training the stream shares the
  CPUs with the workers, which is why the target asks for 2x.
- ``train_consume_img_s``: what training consumes at the `default` profile
  (``pipelines.config.profiles``): the profile's model, input size and batch, one training step per
  worker with one thread each (a Ray Train worker gets one CPU here), times the number of
  workers. ``stream_over_train`` is the ratio (target >= 2).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.timing import interleaved_medians

PROFILE = "synthetic"


def profile_config():
    """The ExperimentConfig the `synthetic` profile (the README main job) trains."""
    from pipelines.config.run import resolve_run_config

    return resolve_run_config(PROFILE).experiment()


def measure_train_consumption(rounds: int = 3) -> dict[str, float]:
    """Images/s the `synthetic` profile's training consumes: workers x batch / 1-thread step time."""
    import torch

    from benchmarks.training import TrainStep
    from shg_model import StackedHourglass

    cfg = profile_config()
    size, batch = cfg.data.input_size, cfg.train.batch_size
    model = StackedHourglass(cfg.model).train()
    images = torch.rand(batch, 3, size, size) - 0.5
    target = torch.rand(batch, cfg.model.joints, size // 4, size // 4)
    weight = torch.ones(batch, cfg.model.joints)
    step = TrainStep(model, (images, target, weight), lr=cfg.train.lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds = interleaved_medians({"step": step}, rounds)["step"]
    finally:
        torch.set_num_threads(threads)
    return {
        "train_consume_img_s": cfg.train.workers * batch / seconds,
        "train_consume_step_s": seconds,
    }


def profile_people() -> int:
    """People in the `synthetic` profile's synthetic set (its `synth.people`)."""
    from pipelines.config.run import resolve_run_config

    return resolve_run_config(PROFILE).synth.people


def measure_data_pipeline(
    people: int | None = None, stream_epochs: int = 2, rounds: int = 3
) -> dict[str, float]:
    """All figures of this module (see the module docstring); starts and stops a local Ray.

    ``people`` defaults to the `default` profile's synthetic set size.
    """
    import ray

    from dataprep.prepare import PrepareConfig, run_prepare
    from dataprep.synth import SynthConfig, generate
    from pipelines.training.data_stream import start_epoch_clock, train_dataset
    from pipelines.runtime.ray_cluster import connect

    people = people or profile_people()
    figures: dict[str, float] = {}
    cfg = profile_config()
    with tempfile.TemporaryDirectory(prefix="shg-bench-") as tmp:
        synth_dir, prepared = Path(tmp) / "synth", Path(tmp) / "prepared"
        generate(SynthConfig(people=people, workers=2), synth_dir)
        started_ray = not ray.is_initialized()
        connect(num_cpus=2)
        try:
            started = time.perf_counter()
            manifest = run_prepare(
                PrepareConfig(
                    annotations=str(synth_dir / "annotations.json"),
                    images=str(synth_dir / "images"),
                    out=str(prepared),
                ),
                log=lambda message: None,
            )
            seconds = time.perf_counter() - started
            rows = manifest.rows["train"] + manifest.rows["val"]
            files = list((prepared / "train").glob("*.parquet")) + list((prepared / "val").glob("*.parquet"))
            figures["prepare_rows"] = float(rows)
            figures["prepare_rows_s"] = rows / seconds
            figures["parquet_bytes_per_row"] = sum(f.stat().st_size for f in files) / rows

            clock_name = f"shg-bench-clock-{uuid.uuid4().hex[:8]}"
            clock = start_epoch_clock(clock_name)  # held here: the actor lives while we do
            dataset = train_dataset(prepared, cfg.data, clock_name, shuffle_seed=cfg.train.seed)
            images, seconds, first = 0, 0.0, 0.0
            for epoch in range(stream_epochs):  # one pass of the dataset per epoch, as training
                ray.get(clock.set.remote(epoch))
                started = time.perf_counter()
                batches = dataset.iter_torch_batches(
                    batch_size=cfg.train.batch_size, prefetch_batches=2,
                    local_shuffle_buffer_size=max(4 * cfg.train.batch_size, 64),
                )
                for batch in batches:
                    if not images:
                        first = time.perf_counter() - started
                    images += len(batch["image"])
                seconds += time.perf_counter() - started
            figures["stream_img_s"] = images / seconds
            figures["stream_first_batch_s"] = first
            del clock
        finally:
            if started_ray:
                ray.shutdown()
    figures.update(measure_train_consumption(rounds))
    figures["stream_over_train"] = figures["stream_img_s"] / figures["train_consume_img_s"]
    return figures
