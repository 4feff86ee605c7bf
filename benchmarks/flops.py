"""FLOPs per sample of a profile's model, and what a training recipe costs in all.

`python -m benchmarks.flops [--profile mpii]` prints the forward and the training-step
(forward + backward) FLOPs per sample, counted by `torch.utils.flop_counter.FlopCounterMode`
(convolutions and matrix products, 2 FLOPs per multiply-add; BatchNorm, ReLU, additions and the
optimiser step are not counted), and the profile's total: every training sample once per epoch
plus the per-epoch validation (flip testing doubles it). The count does not depend on the
machine; turning it into hours needs a measured rate, which this does not guess.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from shg_model.hourglass import HourglassConfig, StackedHourglass


@dataclass(frozen=True)
class ModelFlops:
    """FLOPs of one sample at `input_size` x `input_size`."""

    forward: int
    train_step: int  # forward + backward (no gradient for the input image)


def model_flops(cfg: HourglassConfig, input_size: int, *, batch: int = 2) -> ModelFlops:
    """Counts one forward pass (eval mode) and one forward + backward (train mode) per sample."""
    torch.manual_seed(0)
    model = StackedHourglass(cfg)
    images = torch.zeros(batch, 3, input_size, input_size)  # (B, 3, H, W); values do not matter
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    forward = counter.get_total_flops()
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(images).square().mean().backward()
    return ModelFlops(forward=forward // batch, train_step=counter.get_total_flops() // batch)


def recipe_flops(flops: ModelFlops, *, train_people: int, val_people: int, epochs: int,
                 val_every: int, val_flip: bool) -> int:
    """Training passes plus the validations a recipe runs (every `val_every` epochs and the last)."""
    validations = sum(1 for e in range(1, epochs + 1) if e % max(val_every, 1) == 0 or e == epochs)
    per_validation = val_people * flops.forward * (2 if val_flip else 1)
    return epochs * train_people * flops.train_step + validations * per_validation


def main(argv: list[str] | None = None) -> None:
    from pipelines.config.run import resolve_run_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="mpii")
    parser.add_argument("--train-people", type=int, default=22_246, help="MPII's training split")
    parser.add_argument("--val-people", type=int, default=2_958, help="MPII's validation split")
    args = parser.parse_args(argv)
    # The profile's model and recipe; the data paths only satisfy the real-data check.
    cfg = resolve_run_config(args.profile, values=["prepare.annotations=-", "prepare.images=-"])
    flops = model_flops(cfg.model, cfg.data.input_size)
    total = recipe_flops(flops, train_people=args.train_people, val_people=args.val_people,
                         epochs=cfg.train.epochs, val_every=cfg.train.val_every, val_flip=cfg.train.val_flip)
    print(f"profile {args.profile}: {cfg.model}, input {cfg.data.input_size} px, batch {cfg.train.batch_size}")
    print(f"forward      {flops.forward / 1e9:10.2f} GFLOP per sample")
    print(f"train step   {flops.train_step / 1e9:10.2f} GFLOP per sample "
          f"({flops.train_step * cfg.train.batch_size / 1e12:.3f} TFLOP per step of {cfg.train.batch_size})")
    print(f"recipe       {total / 1e15:10.1f} PFLOP: {cfg.train.epochs} epochs of {args.train_people:,} people, "
          f"validation of {args.val_people:,} (flip {cfg.train.val_flip}) every {cfg.train.val_every}")
    print(f"hours at a sustained R TFLOP/s: {total / 1e12 / 3600:.1f} / R")


if __name__ == "__main__":
    main()
