"""benchmarks.flops against counts worked out from the layers themselves."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.flops import ModelFlops, model_flops, recipe_flops
from shg_model.hourglass import HourglassConfig, StackedHourglass


def _conv_flops(cfg: HourglassConfig, size: int) -> tuple[int, int]:
    """(all convolutions, the stem's first one) of one sample: 2 x output elements x MACs each."""
    model = StackedHourglass(cfg).eval()
    counts: list[int] = []

    def hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        k_h, k_w = module.kernel_size
        counts.append(2 * output[0].numel() * module.in_channels // module.groups * k_h * k_w)

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return sum(counts), counts[0]


def test_stem_convolution_by_hand():
    # 7x7/2 from 3 to 64 channels at 256 px: 128 x 128 x 64 outputs of 3 x 49 multiply-adds.
    _, stem = _conv_flops(HourglassConfig(stacks=1, channels=16, depth=1), 256)
    assert stem == 2 * 128 * 128 * 64 * 3 * 49 == 308_281_344


def test_forward_and_training_step_match_the_layers():
    cfg = HourglassConfig(stacks=2, channels=16, depth=2)
    convs, stem = _conv_flops(cfg, 64)
    flops = model_flops(cfg, 64)
    assert flops.forward == convs
    # backward: input and weight gradients of every convolution, each as costly as its forward,
    # except that no gradient flows into the image through the stem's first convolution
    assert flops.train_step == 3 * convs - stem


def test_recipe_counts_training_and_validations():
    f = ModelFlops(forward=10, train_step=30)
    # 4 epochs, validation after epochs 2 and 4, flip testing doubling each validation
    assert recipe_flops(f, train_people=5, val_people=3, epochs=4, val_every=2, val_flip=True) \
        == 4 * 5 * 30 + 2 * 3 * 10 * 2
    # an epoch count that is not a multiple still validates at the end
    assert recipe_flops(f, train_people=5, val_people=3, epochs=3, val_every=2, val_flip=False) \
        == 3 * 5 * 30 + 2 * 3 * 10
