"""The training stream on a real local Ray: the cached stream (rows read once, held in small
blocks) delivers exactly what the uncached one does, epoch by epoch; and a smoke run of the
recipe probe that trains on the same kind of prepared data without Ray."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataprep.augment import AugmentConfig


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ray_local) -> Path:
    from dataprep.prepare import PrepareConfig, run_prepare
    from dataprep.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("stream-data")
    generate(SynthConfig(people=40, seed=5, val_fraction=0.2, workers=1), root / "synth")
    run_prepare(PrepareConfig(annotations=str(root / "synth" / "annotations.json"),
                              images=str(root / "synth" / "images"), out=str(root / "prepared")),
                log=lambda _: None)
    return root / "prepared"


def _pass(dataset) -> list[str]:
    """One pass: a sorted digest per sample of image, keypoints (the targets) and weights."""
    digests = []
    for batch in dataset.iter_batches(batch_size=7, batch_format="numpy"):
        for i in range(len(batch["image"])):
            h = hashlib.sha256(batch["image"][i].tobytes())
            h.update(batch["keypoints"][i].tobytes())
            h.update(batch["weight"][i].tobytes())
            digests.append(h.hexdigest())
    return sorted(digests)


def test_cached_stream_matches_uncached_for_each_epoch(prepared):
    from pipelines.runtime.prepared import split_files
    from pipelines.training.data_stream import start_epoch_clock, train_dataset, train_rows

    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in split_files(prepared, "train"))
    cfg = AugmentConfig(input_size=64, heatmap_size=16)
    clock = start_epoch_clock("test-stream-clock")
    cached = train_dataset(prepared, cfg, "test-stream-clock", shuffle_seed=0, batch_size=4,
                           cache=True, rows_per_block=8)
    plain = train_dataset(prepared, cfg, "test-stream-clock", shuffle_seed=0, batch_size=4, cache=False)
    assert rows >= 24
    # the stored rows are held in ceil(rows / 8) blocks, before any augmentation runs
    assert train_rows(prepared, cache=True, rows_per_block=8).num_blocks() == math.ceil(rows / 8)

    passes = {}
    for epoch in (0, 1):
        clock.set.remote(epoch)
        passes[epoch] = (_pass(cached), _pass(plain))
    for epoch, (with_cache, without) in passes.items():
        assert len(with_cache) == rows, f"epoch {epoch}: every training person once"
        assert with_cache == without, f"epoch {epoch}: cached stream differs from the plain one"
    assert passes[0][0] != passes[1][0], "each epoch is augmented afresh"


def _pass_by_key(dataset) -> dict[int, str]:
    """One pass: key → digest of the sample's image, keypoints (the targets) and weights."""
    out = {}
    for batch in dataset.iter_batches(batch_size=7, batch_format="numpy"):
        for i in range(len(batch["key"])):
            h = hashlib.sha256(batch["image"][i].tobytes())
            h.update(batch["keypoints"][i].tobytes())
            h.update(batch["weight"][i].tobytes())
            out[int(batch["key"][i])] = h.hexdigest()
    return out


def test_a_resumed_epoch_streams_exactly_the_samples_not_yet_trained(prepared):
    """The clock's `done` keys (from a mid-epoch checkpoint) leave the stream; every other
    sample arrives once, augmented exactly as in the uninterrupted epoch."""
    import numpy as np
    import ray

    from pipelines.training.data_stream import start_epoch_clock, train_dataset

    cfg = AugmentConfig(input_size=64, heatmap_size=16)
    clock = start_epoch_clock("test-resume-clock")
    dataset = train_dataset(prepared, cfg, "test-resume-clock", shuffle_seed=0, batch_size=4, rows_per_block=8)
    ray.get(clock.set.remote(3))
    whole = _pass_by_key(dataset)
    done = np.array(sorted(whole)[::3], dtype=np.int64)  # a third "trained before the restart"
    ray.get(clock.set.remote(3, done))
    rest = _pass_by_key(dataset)
    assert set(rest) == set(whole) - set(done.tolist())
    assert all(rest[key] == whole[key] for key in rest)
    ray.get(clock.set.remote(3, np.array(sorted(whole), dtype=np.int64)))  # everything done
    assert _pass_by_key(dataset) == {}


def test_recipe_probe_runs_tiny(prepared, capsys):
    """Smoke run of `benchmarks.recipe_probe` (the tool behind docs/RECIPES.md) at tiny size."""
    from benchmarks.recipe_probe import main

    main([str(prepared), "--images", "8", "--every", "4", "--batch", "4", "--val-people", "4",
          "model.channels=16", "data.input_size=64", "train.amp=off"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("seen")]
    assert len(lines) == 2 and all("PCKh Total" in line for line in lines)
