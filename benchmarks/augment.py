"""Benchmark of `dataprep.augment.augment_batch`: microseconds per augmented sample, against what
a small training step consumes.

Target (from the prepare/augment brief): one core of augmentation delivers at least 2x the
samples/s that one training worker (1 thread) consumes with a small model, so the Ray Data
stream never starves the loop. Rows are the 5 real MPII crops (`prepare_batch`, no Ray),
repeated under distinct person ids. Each input size is timed with the model size the `default`
and `smoke` profiles train at it. Exits 1 when the target is missed.

    flock /tmp/shg-heavy.lock .venv/bin/python benchmarks/augment.py [--batch 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dataprep.augment import AugmentConfig, augment_batch, center_batch
from dataprep.mpii import load_annotations
from dataprep.prepare import records_table
from dataprep.prepare_batch import prepare_batch
from dataprep.schema import PREPARED_SCHEMA

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mpii" / "images"
# (input_size, model channels, train batch size): the README `default` profile and the original
# paper's input with the same small model.
SETTINGS = ((128, 64, 16), (256, 64, 16))


def real_rows(batch: int) -> dict[str, np.ndarray]:
    records = load_annotations(IMAGES / "annotations_hrnet_format.json")
    table = prepare_batch(records_table(records), str(IMAGES), 95).select(PREPARED_SCHEMA.names)
    rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    pick = np.arange(batch) % len(table)
    out = {name: values[pick] for name, values in rows.items()}
    out["person_id"] = np.array([f"person_{i}" for i in range(batch)], dtype=object)
    return out


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def train_step_seconds(input_size: int, channels: int, batch: int, repeats: int) -> float:
    import torch

    from shg_model import HourglassConfig, StackedHourglass, heatmap_loss

    torch.set_num_threads(1)  # one Ray Train worker = one CPU here
    model = StackedHourglass(HourglassConfig(stacks=2, channels=channels))
    optimiser = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    images = torch.rand(batch, 3, input_size, input_size)
    target = torch.rand(batch, 16, input_size // 4, input_size // 4)
    weight = torch.ones(batch, 16)

    def step():
        optimiser.zero_grad()
        loss, _ = heatmap_loss(model(images), target, weight)
        loss.backward()
        optimiser.step()

    return best_seconds(step, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-ratio", type=float, default=2.0)
    args = parser.parse_args()
    rows = real_rows(args.batch)
    ok = True
    for input_size, channels, train_batch in SETTINGS:
        cfg = AugmentConfig(input_size=input_size, heatmap_size=input_size // 4)
        augment = best_seconds(lambda: augment_batch(rows, cfg, epoch=1), args.repeats) / args.batch
        center = best_seconds(lambda: center_batch(rows, cfg), args.repeats) / args.batch
        step = train_step_seconds(input_size, channels, train_batch, max(2, args.repeats // 2))
        produced, consumed = 1 / augment, train_batch / step
        ratio = produced / consumed
        ok &= ratio >= args.target_ratio
        print(f"input {input_size}: augment_batch {augment * 1e6:.0f} us/sample ({produced:.0f} samples/s "
              f"per core), center_batch {center * 1e6:.0f} us/sample; train step (2 stacks, "
              f"{channels} ch, batch {train_batch}, 1 thread) {step * 1e3:.0f} ms = {consumed:.1f} "
              f"samples/s; augmentation delivers {ratio:.1f}x")
    print(f"target >= {args.target_ratio:.0f}x what a training step consumes: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
