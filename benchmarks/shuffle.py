"""How far two consecutive epochs' batches are from independent, through the real training stream.

    flock /tmp/shg-heavy.lock .venv/bin/python -m benchmarks.shuffle PREPARED [--batch 8]

Streams two epochs of a prepared set as the training loop does (`train_dataset` with its epoch
clock, one `streaming_split`, `iter_torch_batches` with the loop's local shuffle buffer seeded by
the epoch) and prints `shared_pair_fraction` of epoch 0 against epoch 1: the share of sample
pairs that met in a batch in epoch 0 and meet again in epoch 1. `before` is the stream as it
was (one fixed block order for every pass, a 64-row buffer), `after` the stream as it is;
`independent` is what two unrelated random batchings give, (batch - 1) / (rows - 1). Inputs are
made at 64 px: which sample lands in which batch does not depend on the input size.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


def epoch_keys(prepared: str, *, batch_size: int, epochs: int, seed: int, before: bool,
               clock_name: str, input_size: int = 64) -> list[list[np.ndarray]]:
    """Per epoch, the sample keys of each batch the loop would receive (one worker)."""
    import ray

    from dataprep.augment import AugmentConfig
    from pipelines.training.data_stream import (_mix, augment_for_training, shuffle_buffer_rows,
                                                start_epoch_clock, train_dataset, train_rows)

    cfg = AugmentConfig(input_size=input_size, heatmap_size=input_size // 4)
    clock = start_epoch_clock(clock_name)
    if before:  # the stream until now: a fixed block order, a 64-row buffer
        ds = train_rows(prepared).randomize_block_order(seed=_mix(seed, 0)).map_batches(
            augment_for_training, fn_kwargs={"cfg": cfg, "clock_name": clock_name},
            batch_size=32, batch_format="numpy")
        buffer = max(4 * batch_size, 64)
    else:
        ds = train_dataset(prepared, cfg, clock_name, shuffle_seed=seed)
        buffer = shuffle_buffer_rows(batch_size)
    (shard,) = ds.streaming_split(1, equal=True)
    out = []
    for epoch in range(epochs):
        ray.get(clock.set.remote(epoch))
        out.append([batch["key"].numpy() for batch in shard.iter_torch_batches(
            batch_size=batch_size, local_shuffle_buffer_size=buffer, local_shuffle_seed=seed + epoch)])
    ray.kill(clock)
    return out


def measure_shuffle(prepared: str, *, batch_size: int = 8, seed: int = 0) -> dict[str, float]:
    """`shuffle_{before,after}_shared_pairs` (epoch 0 against 1) and `shuffle_independent_pairs`."""
    from pipelines.training.data_stream import shared_pair_fraction

    figures = {}
    for name, before in (("before", True), ("after", False)):
        first, second = epoch_keys(prepared, batch_size=batch_size, epochs=2, seed=seed, before=before,
                                   clock_name=f"shg-shuffle-bench-{name}")
        figures[f"shuffle_{name}_shared_pairs"] = shared_pair_fraction(first, second)
        rows = sum(len(k) for k in first)
    figures["shuffle_independent_pairs"] = (batch_size - 1) / (rows - 1)
    figures["shuffle_rows"] = float(rows)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    for name, value in measure_shuffle(args.prepared, batch_size=args.batch, seed=args.seed).items():
        print(f"{name:32s} {value:.4f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
