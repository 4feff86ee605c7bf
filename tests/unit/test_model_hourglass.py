"""StackedHourglass: config, shapes, parameter counts, gradient flow, bad input, fast paths."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from shg_model import HourglassConfig, Residual, StackedHourglass, heatmap_loss, parameter_count
from shg_model.layers import residual_parameter_count

SMALL = dict(channels=16, joints=4, depth=2)  # input multiple 16


def _images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_config_defaults_and_round_trip():
    cfg = HourglassConfig()
    assert (cfg.stacks, cfg.channels, cfg.joints, cfg.depth) == (2, 256, 16, 4)
    assert cfg.input_multiple == 64
    assert HourglassConfig(**dataclasses.asdict(cfg)) == cfg
    assert HourglassConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.stacks = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(stacks=0), "stacks must be >= 1"),
        (dict(channels=255), "channels must be even"),
        (dict(depth=2.0), "depth must be an int"),
        (dict(joints=True), "joints must be an int"),
        (dict(channels_last="yes"), "channels_last must be a bool"),
    ],
)
def test_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        HourglassConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown HourglassConfig keys \['nstack'\]"):
        HourglassConfig.from_dict({"nstack": 2})


@pytest.mark.parametrize("stacks", [1, 2, 4, 8])
def test_output_shape_every_stack(stacks):
    model = StackedHourglass(HourglassConfig(stacks=stacks, channels=8, joints=5, depth=4))
    images = _images(2, 64)
    out = model(images)
    assert out.shape == (2, stacks, 5, 16, 16)
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (2, stacks, 5, 16, 16)


def test_non_square_input():
    model = StackedHourglass(HourglassConfig(stacks=1, **SMALL))
    assert model(torch.randn(2, 3, 32, 48)).shape == (2, 1, 4, 8, 12)


@pytest.mark.parametrize(
    "stacks, millions", [(1, 3.43), (2, 6.57), (4, 12.86), (8, 25.43)]
)
def test_parameter_count_matches_original(stacks, millions):
    cfg = HourglassConfig(stacks=stacks)
    built = _n_params(StackedHourglass(cfg))
    assert built == parameter_count(cfg)
    assert abs(built / 1e6 - millions) / millions < 0.01


def test_parameter_count_closed_form_small_configs():
    for cfg in [HourglassConfig(stacks=3, channels=32, joints=7, depth=1), HourglassConfig(**SMALL)]:
        assert parameter_count(cfg) == _n_params(StackedHourglass(cfg))


def test_residual_parameter_count_by_hand():
    # Residual(4 -> 8), mid 4: BN 2*(4+4+4)=24; convs (16+4)+(144+4)+(32+8)=208; skip 32+8=40.
    assert residual_parameter_count(4, 8) == 272 == _n_params(Residual(4, 8))
    # Residual(8 -> 8), mid 4: BN 2*(8+4+4)=32; convs (32+4)+(144+4)+(32+8)=224; identity skip.
    assert residual_parameter_count(8, 8) == 256 == _n_params(Residual(8, 8))


def test_residual_skip_is_identity_for_equal_channels():
    block = Residual(8, 8)
    with torch.no_grad():
        block.block[-1].weight.zero_()
        block.block[-1].bias.zero_()
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)


def test_each_stack_trained_by_its_own_loss_term():
    cfg = HourglassConfig(stacks=3, **SMALL)
    model = StackedHourglass(cfg)
    images = _images(2, 32)
    target = torch.rand(2, cfg.joints, 8, 8)
    weight = torch.ones(2, cfg.joints)
    for s in range(cfg.stacks):
        model.zero_grad(set_to_none=True)
        _, per_stack = heatmap_loss(model(images), target, weight)
        per_stack[s].backward()
        for name, p in model.stacks[s].named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"stack {s}: {name} got no grad"
        assert all(p.grad.abs().sum() > 0 for p in model.stem.parameters())
        # A stack's loss depends on earlier stacks only, never on later ones.
        for later in model.stacks[s + 1 :]:
            assert all(p.grad is None or p.grad.abs().sum() == 0 for p in later.parameters())


@pytest.mark.parametrize(
    "images, fragment",
    [
        (torch.randn(3, 32, 32), r"shape \(B, 3, H, W\)"),
        (torch.randn(1, 1, 3, 32, 32), r"shape \(B, 3, H, W\)"),
        (torch.randn(2, 4, 32, 32), "3 input channels"),
        (torch.randn(2, 32, 32, 3), "3 input channels"),
        (torch.randn(2, 3, 32, 40), "multiples of 16"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "float images"),
    ],
)
def test_bad_input_raises_value_error(images, fragment):
    model = StackedHourglass(HourglassConfig(stacks=1, **SMALL))
    with pytest.raises(ValueError, match=fragment):
        model(images)


def _eval_pair(**extra) -> tuple[StackedHourglass, StackedHourglass]:
    """Two eval-mode models with the same weights, the second built with ``extra`` options."""
    base = StackedHourglass(HourglassConfig(stacks=2, **SMALL)).eval()
    other = StackedHourglass(HourglassConfig(stacks=2, **SMALL, **extra)).eval()
    other.load_state_dict(base.state_dict())
    return base, other


def test_channels_last_matches_fp32():
    base, fast = _eval_pair(channels_last=True)
    assert fast.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = _images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(images), base(images), rtol=1e-4, atol=1e-4)


def test_bf16_autocast_matches_fp32():
    base, _ = _eval_pair()
    images = _images(2, 32)
    with torch.no_grad():
        ref = base(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = base(images)
    assert low.dtype == torch.bfloat16
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.03, f"relative error {rel:.4f}"


def test_train_and_eval_return_the_same_type():
    model = StackedHourglass(HourglassConfig(stacks=2, **SMALL))
    images = _images(2, 32)
    train_out = model.train()(images)
    with torch.no_grad():
        eval_out = model.eval()(images)
    assert type(train_out) is type(eval_out) is torch.Tensor
    assert train_out.shape == eval_out.shape


def test_forward_captures_as_one_graph_under_torch_compile():
    # backend="eager" checks graph capture (no data-dependent Python control flow, no graph
    # breaks) without paying for code generation.
    model = StackedHourglass(HourglassConfig(stacks=2, channels=8, joints=4, depth=1))
    images = _images(2, 16)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(images), model(images), rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiples of 8"):
        torch.compile(model, backend="eager")(torch.randn(2, 3, 16, 20))
