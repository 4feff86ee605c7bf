"""The stem's width (`HourglassConfig.stem_channels`): the paper's by default, scalable with the network."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipelines.inference.model_dir import ModelCard
from pipelines.training.checkpoints import CheckpointMismatchError, check_model_config
from shg_model import HourglassConfig, StackedHourglass, parameter_count
from shg_model.hourglass import Stem


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_stem_is_the_papers():
    stem = Stem(256)
    assert HourglassConfig().stem_channels == 128
    assert (stem.conv.out_channels, stem.res1.skip.out_channels, stem.res3.skip.out_channels) == (64, 128, 256)


def test_scaled_stem_parameter_count_by_hand():
    # stem_channels T=8, channels C=16, joints 4, depth 1, one stack.
    # stem: 7x7 conv 3->4: 3*4*49+4 = 592; its BN: 8;
    #   Residual(4, 8): BN 2*(4+4+4)=24, convs (4*4+4)+(4*4*9+4)+(4*8+8)=208, skip 4*8+8=40 -> 272;
    #   Residual(8, 8): BN 2*(8+4+4)=32, convs (8*4+4)+(4*4*9+4)+(4*8+8)=224 -> 256;
    #   Residual(8, 16): BN 2*(8+8+8)=48, convs (8*8+8)+(8*8*9+8)+(8*16+16)=800, skip 144 -> 992;
    #   stem = 592+8+272+256+992 = 2120.
    # stack: Residual(16,16) = BN 64 + convs 136+584+144 = 928; hourglass depth 1 = 4*928 = 3712;
    #   + residual 928 + 1x1 conv-BN (256+16+32=304) + heatmaps 16*4+4=68 -> 5012.
    cfg = HourglassConfig(stacks=1, channels=16, joints=4, depth=1, stem_channels=8)
    model = StackedHourglass(cfg)
    assert _n_params(model.stem) == 2120
    assert parameter_count(cfg) == _n_params(model) == 2120 + 5012


@pytest.mark.parametrize("stem_channels", [8, 32, 64, 128])
def test_closed_form_matches_the_built_network(stem_channels):
    cfg = HourglassConfig(stacks=2, channels=16, joints=4, depth=2, stem_channels=stem_channels)
    assert parameter_count(cfg) == _n_params(StackedHourglass(cfg))


def test_scaled_stem_shapes():
    stem = Stem(24, 16)
    x = torch.randn(2, 3, 64, 32)
    half = torch.nn.functional.relu(stem.bn(stem.conv(x)))
    assert half.shape == (2, 8, 32, 16)  # (B, T/2, H/2, W/2)
    assert stem(x).shape == (2, 24, 16, 8)  # (B, C, H/4, W/4)
    model = StackedHourglass(HourglassConfig(stacks=2, channels=24, joints=5, depth=2, stem_channels=16))
    assert model(torch.randn(2, 3, 64, 32)).shape == (2, 2, 5, 16, 8)


@pytest.mark.parametrize("bad", [0, 6, 130, True, 64.0])
def test_stem_channels_must_be_a_positive_multiple_of_4(bad):
    with pytest.raises(ValueError, match="stem_channels"):
        HourglassConfig(stem_channels=bad)


def test_cards_and_checkpoints_without_the_field_mean_the_papers_stem():
    old = dataclasses.asdict(HourglassConfig(stacks=2, channels=64))
    del old["stem_channels"]
    stored = ModelCard.for_config(HourglassConfig(stacks=2, channels=64)).to_dict()
    card = ModelCard.from_dict({**stored, "model_config": old})
    assert card.hourglass_config().stem_channels == 128
    check_model_config(old, HourglassConfig(stacks=2, channels=64), where="old")  # no mismatch
    with pytest.raises(CheckpointMismatchError, match="model.stem_channels: checkpoint 128 vs config 64"):
        check_model_config(old, HourglassConfig(stacks=2, channels=64, stem_channels=64), where="old")
