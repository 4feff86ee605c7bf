"""Real shuffling on a real local Ray: each epoch a new order, the same seed the same order, and
two epochs' batches far from identical (benchmarks/shuffle.py measures it on the default set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ray_local) -> Path:
    from dataprep.prepare import PrepareConfig, run_prepare
    from dataprep.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("shuffle-data")
    generate(SynthConfig(people=60, seed=7, val_fraction=0.1, workers=1), root / "synth")
    run_prepare(PrepareConfig(annotations=str(root / "synth" / "annotations.json"),
                              images=str(root / "synth" / "images"), out=str(root / "prepared")),
                log=lambda _: None)
    return root / "prepared"


def _block_keys(prepared, seed: int, epochs: int) -> list[np.ndarray]:
    """Per pass, the keys in the order the stream yields them, blocks kept in order."""
    import ray
    from ray.data import DataContext

    from dataprep.augment import AugmentConfig
    from pipelines.training.data_stream import start_epoch_clock, train_dataset

    context = DataContext.get_current()
    saved = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # what train.deterministic sets
    try:
        name = f"test-shuffle-clock-{seed}"
        clock = start_epoch_clock(name)
        ds = train_dataset(prepared, AugmentConfig(input_size=32, heatmap_size=8), name,
                           shuffle_seed=seed, batch_size=4, rows_per_block=8)
        (shard,) = ds.streaming_split(1, equal=True)
        out = []
        for epoch in range(epochs):
            ray.get(clock.set.remote(epoch))
            out.append(np.concatenate([b["key"] for b in shard.iter_batches(batch_size=4, batch_format="numpy")]))
        ray.kill(clock)
        return out
    finally:
        context.execution_options.preserve_order = saved


def test_each_epoch_a_new_block_order_and_the_same_seed_the_same_orders(prepared):
    first = _block_keys(prepared, seed=3, epochs=2)
    again = _block_keys(prepared, seed=3, epochs=2)
    other = _block_keys(prepared, seed=4, epochs=1)
    assert sorted(first[0].tolist()) == sorted(first[1].tolist()), "every sample once per epoch"
    assert not np.array_equal(first[0], first[1]), "epoch 1 walks the blocks in another order"
    for epoch in (0, 1):
        np.testing.assert_array_equal(first[epoch], again[epoch])  # same seed, same order per epoch
    assert not np.array_equal(first[0], other[0])


def test_consecutive_epochs_share_few_batch_pairs(prepared):
    from benchmarks.shuffle import epoch_keys
    from pipelines.training.data_stream import shared_pair_fraction

    # (On this 54-row set the 512-row buffer holds the whole epoch; the default set's figure,
    # before and after, comes from `python -m benchmarks.shuffle`.)
    first, second = epoch_keys(str(prepared), batch_size=4, epochs=2, seed=0, before=False, clock_name="t-after")
    assert sum(map(len, first)) == sum(map(len, second)) >= 50
    assert shared_pair_fraction(first, second) < 0.25
