"""Recipe probe: how fast does a training recipe learn, per image seen? (one process, no Ray)

    .venv/bin/python -m benchmarks.recipe_probe PREPARED --images 28000 --every 4000 \
        [--batch 16] [--val-people 400] [KEY=VALUE ...]

Trains the model of an `ExperimentConfig` (the `synthetic` profile's model/data/optimiser keys,
then the given overrides) on a prepared dataset in this process, with the same augmentation
(`augment_batch`), loss, bf16/channels_last path and flip-tested PCKh validation as
`shg train`, and prints PCKh@0.5 every `--every` images. Learning per image seen is what the
probe compares; its images/s is that of one process with all cores, not of 2 Ray workers.
This is how the `synthetic` profile (the README main job) was chosen (docs/RECIPES.md); it is not part of the test run.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared")
    parser.add_argument("--images", type=int, default=28000, help="images to train on")
    parser.add_argument("--every", type=int, default=4000, help="validate every this many images")
    parser.add_argument("--batch", type=int, default=16, help="images per optimiser step")
    parser.add_argument("--val-people", type=int, default=400, help="first N val people by id")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", default="synthetic", help="recipe file the overrides apply to")
    parser.add_argument("overrides", nargs="*", help="ExperimentConfig KEY=VALUE, after the profile")
    args = parser.parse_intermixed_args(argv)

    import pyarrow.parquet as pq
    import torch

    from dataprep.augment import augment_batch
    from dataprep.joints import FLIP_PERMUTATION
    from pipelines.training.data_stream import TRAIN_COLUMNS, load_validation
    from pipelines.runtime.prepared import split_files
    from pipelines.config.run import resolve_run_config
    from pipelines.training.device import autocast_dtype
    from shg_model.pixels import normalise
    from pipelines.training.optim import build_optimizer
    from pipelines.training.validation import validate
    from shg_model import StackedHourglass, heatmap_loss

    cfg = resolve_run_config(args.profile, None, args.overrides).experiment()
    torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.train.seed)
    table = pq.ParquetDataset(split_files(args.prepared, "train")).read(columns=TRAIN_COLUMNS)
    rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in TRAIN_COLUMNS}
    val = load_validation(args.prepared, dataclasses.replace(cfg.data, enabled=False), args.val_people)
    model = StackedHourglass(cfg.model)
    optimizer = build_optimizer(model, cfg.train)
    amp = autocast_dtype(cfg.train, on_gpu=False)
    rng = np.random.default_rng(cfg.train.seed)
    print(f"probe: {table.num_rows} train rows, {len(val)} val people, batch {args.batch}, "
          f"overrides {args.overrides}", flush=True)

    seen, epoch, train_s, next_val, losses = 0, 0, 0.0, args.every, []
    order, pos = rng.permutation(table.num_rows), 0
    while seen < args.images:
        if pos + args.batch > len(order):
            order, pos, epoch = rng.permutation(table.num_rows), 0, epoch + 1
        index = order[pos:pos + args.batch]
        pos += args.batch
        batch = augment_batch({k: v[index] for k, v in rows.items()}, cfg.data, epoch)
        start = time.perf_counter()
        images = normalise(torch.from_numpy(batch["image"]))  # (B, 3, S, S)
        if cfg.model.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            pred = model(images)  # (B, stacks, J, S/4, S/4)
        loss, _ = heatmap_loss(pred, torch.from_numpy(batch["heatmaps"]), torch.from_numpy(batch["weight"]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_s += time.perf_counter() - start
        seen += len(index)
        losses.append(loss.item())
        if seen >= next_val or seen >= args.images:
            next_val += args.every
            result = validate(model, val, FLIP_PERMUTATION, flip=True, autocast_dtype=amp)
            parts = " ".join(f"{k} {result.table[k]:5.1f}" for k in
                             ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"))
            print(f"seen {seen:6d}  {seen / train_s:5.1f} img/s  loss {np.mean(losses[-50:]):.5f}  "
                  f"PCKh Total {result.table['Total']:5.1f}  ({parts})", flush=True)


if __name__ == "__main__":
    main()
