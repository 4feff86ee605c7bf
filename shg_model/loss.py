"""Intermediate-supervision heatmap loss: every stack is trained against the same target."""

from __future__ import annotations

import torch


def heatmap_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked heatmap MSE, averaged over stacks.

    Args:
        pred: (B, S, J, h, w) heatmaps of every stack (any float dtype).
        target: (B, J, h, w) target heatmaps, shared by all stacks.
        weight: (B, J) per-joint weight, normally 1 for a labelled joint and 0 otherwise.

    Returns:
        ``(loss, per_stack)``: a scalar and an (S,) tensor, both float32, ``loss =
        per_stack.mean()``. For stack s::

            per_stack[s] = sum_{b,j} weight[b,j] * mean_{y,x} (pred[b,s,j] - target[b,j])**2
                           / sum_{b,j} weight[b,j]

        i.e. the mean per-pixel squared error over labelled joints, so its scale does not depend
        on how many joints a batch has labelled (the original Torch code averaged over all
        joints instead, training unlabelled ones towards zero). With no labelled joint at all
        the loss is 0 (not NaN).

    A joint with weight 0 contributes nothing to the value or the gradient, even if its target
    holds garbage such as NaN. Computed in float32 even under ``torch.autocast``.
    """
    if pred.ndim != 5:
        raise ValueError(f"pred must be (B, S, J, h, w), got shape {tuple(pred.shape)}")
    batch, _, joints, height, width = pred.shape
    if tuple(target.shape) != (batch, joints, height, width):
        raise ValueError(
            f"target must be (B, J, h, w) = {(batch, joints, height, width)} to match pred "
            f"{tuple(pred.shape)}, got {tuple(target.shape)}"
        )
    if tuple(weight.shape) != (batch, joints):
        raise ValueError(
            f"weight must be (B, J) = {(batch, joints)} to match pred, got {tuple(weight.shape)}"
        )
    with torch.autocast(device_type=pred.device.type, enabled=False):
        weight = weight.float()
        labelled = (weight != 0)[:, :, None, None]  # (B, J, 1, 1)
        # Zero the ignored targets first: 0 * NaN would poison both the sum and the gradient.
        target = torch.where(labelled, target.float(), 0.0)  # (B, J, h, w)
        error = (pred.float() - target[:, None]).square().mean(dim=(-2, -1))  # (B, S, J)
        weighted = (error * weight[:, None, :]).sum(dim=(0, 2))  # (S,)
        per_stack = weighted / weight.sum().clamp_min(torch.finfo(torch.float32).tiny)  # (S,)
        return per_stack.mean(), per_stack
