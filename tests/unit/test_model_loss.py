"""heatmap_loss: masked multi-stack MSE against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from shg_model import heatmap_loss


def test_value_by_hand():
    # B=1, S=2, J=2, 1x2 heatmaps. Stack 0 is off by 1 on one pixel of joint 0; stack 1 by 2
    # on both pixels of joint 0. Joint 1 is exact.
    target = torch.zeros(1, 2, 1, 2)
    pred = torch.zeros(1, 2, 2, 1, 2)
    pred[0, 0, 0, 0, 0] = 1.0
    pred[0, 1, 0] = 2.0
    loss, per_stack = heatmap_loss(pred, target, torch.ones(1, 2))
    # joint-0 pixel means: 0.5 and 4; divided by 2 labelled joints.
    torch.testing.assert_close(per_stack, torch.tensor([0.25, 2.0]))
    torch.testing.assert_close(loss, torch.tensor(1.125))


def test_normalised_by_labelled_joints():
    # The same per-joint error gives the same loss whether 1 or 3 joints are labelled.
    pred = torch.ones(2, 1, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    one, _ = heatmap_loss(pred, target, torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    all_, _ = heatmap_loss(pred, target, torch.ones(2, 3))
    torch.testing.assert_close(one, torch.tensor(1.0))
    torch.testing.assert_close(all_, torch.tensor(1.0))


def test_unlabelled_joint_changes_nothing():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 4, 8, 8, generator=gen, requires_grad=True)
    target = torch.rand(2, 4, 8, 8, generator=gen)
    weight = torch.ones(2, 4)
    weight[1, 2] = 0.0

    def loss_and_grad(t):
        pred.grad = None
        loss, per_stack = heatmap_loss(pred, t, weight)
        loss.backward()
        return loss.detach(), per_stack.detach(), pred.grad.clone()

    ref = loss_and_grad(target)
    changed = target.clone()
    changed[1, 2] = torch.rand(8, 8, generator=gen) * 100
    nan = target.clone()
    nan[1, 2] = float("nan")
    for other in (loss_and_grad(changed), loss_and_grad(nan)):
        for a, b in zip(ref, other):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (ref[2][1, :, 2] == 0).all()


def test_no_labelled_joint_gives_zero_not_nan():
    loss, per_stack = heatmap_loss(torch.ones(1, 2, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3))
    assert loss.item() == 0.0 and (per_stack == 0).all()


def test_float32_under_autocast():
    pred = torch.rand(1, 2, 3, 4, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, per_stack = heatmap_loss(pred, torch.rand(1, 3, 4, 4), torch.ones(1, 3))
    assert loss.dtype == per_stack.dtype == torch.float32


@pytest.mark.parametrize(
    "pred, target, weight",
    [
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(1, 3)),
        (torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 3, 8, 8), torch.ones(1, 3)),
        (torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(1, 16)),
    ],
)
def test_shape_mismatch_raises(pred, target, weight):
    with pytest.raises(ValueError, match="must be"):
        heatmap_loss(pred, target, weight)
