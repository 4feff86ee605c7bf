"""Heatmap decoding (argmax + quarter-pixel shift) and flip-averaged inference."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def decode(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak locations of heatmaps, as in the original Torch code.

    Args:
        heatmaps: (B, J, h, w).

    Returns:
        ``(coords, confidence)``: coords (B, J, 2) float32 ``[x, y]`` in heatmap pixels
        (0-based, pixel centres at integers; map to input pixels with
        ``inp = (hm + 0.5) * 4 - 0.5``), confidence (B, J) float32, the heatmap value at the peak.

    The peak is the argmax (the first one in row-major order on ties), moved 0.25 px towards
    the higher of its two neighbours in x, and likewise in y. As in the original code the
    shift is applied only when the peak is not on the heatmap border (in either axis); an
    axis whose two neighbours are equal is not shifted.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (B, J, h, w), got shape {tuple(heatmaps.shape)}")
    batch, joints, height, width = heatmaps.shape
    flat = heatmaps.detach().float().reshape(batch, joints, height * width)  # (B, J, h*w)
    confidence, index = flat.max(dim=-1)  # (B, J), (B, J)
    y, x = index // width, index % width  # (B, J) each
    interior = (x > 0) & (x < width - 1) & (y > 0) & (y < height - 1)  # (B, J)

    def value_at(dy: int, dx: int) -> torch.Tensor:
        yy = (y + dy).clamp(0, height - 1)
        xx = (x + dx).clamp(0, width - 1)
        return flat.gather(-1, (yy * width + xx)[..., None])[..., 0]  # (B, J)

    shift_x = torch.sign(value_at(0, 1) - value_at(0, -1))  # (B, J)
    shift_y = torch.sign(value_at(1, 0) - value_at(-1, 0))  # (B, J)
    shift = torch.stack([shift_x, shift_y], dim=-1) * 0.25 * interior[..., None]  # (B, J, 2)
    coords = torch.stack([x, y], dim=-1).float() + shift  # (B, J, 2)
    return coords, confidence


def check_flip_pairs(flip_pairs: Sequence[int], joints: int | None = None) -> list[int]:
    """Validate a left/right joint permutation (its own inverse; length J when given)."""
    pairs = [int(p) for p in flip_pairs]
    if sorted(pairs) != list(range(len(pairs))):
        raise ValueError(f"flip_pairs must be a permutation of 0..{len(pairs) - 1}, got {pairs}")
    if joints is not None and len(pairs) != joints:
        raise ValueError(f"flip_pairs has {len(pairs)} entries but the model outputs {joints} joints")
    if any(pairs[p] != i for i, p in enumerate(pairs)):
        raise ValueError(f"flip_pairs must be its own inverse (swap left/right pairs), got {pairs}")
    return pairs


def flip_average(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    flip_pairs: Sequence[int],
) -> torch.Tensor:
    """Last-stack heatmaps averaged with those of the horizontally flipped images.

    Args:
        model: a :class:`StackedHourglass` (or anything mapping (B, 3, H, W) to
            (B, S, J, h, w)); its mode (eval/train) and grad state are the caller's choice.
        images: (B, 3, H, W) normalised float images.
        flip_pairs: length-J permutation swapping left and right joints, e.g. MPII's
            ``(5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)``.

    Returns:
        (B, J, h, w) heatmaps in the frame of the unflipped images.

    ``model`` is called exactly once, on ``torch.cat([images, images.flip(-1)])`` (2B, 3, H, W):
    the first B outputs belong to the unflipped images, so a caller that wraps ``model`` can
    reuse them (e.g. for a validation loss) without a second pass. BatchNorm in train mode
    would therefore see both halves in one batch; use eval mode.

    No one-pixel shift is applied when flipping back. With pixel centres at integers, input
    column ``u`` of width W mirrors to ``W - 1 - u`` and heatmap column ``x`` of width w to
    ``w - 1 - x`` (because ``hm = (inp + 0.5) / 4 - 0.5``), so a plain flip of the heatmap is
    the exact inverse; the shift some code bases add compensates for a corner-aligned
    convention. Consequently a left/right-symmetric input gives an exactly symmetric result.
    """
    pairs = check_flip_pairs(flip_pairs)
    both = torch.cat([images, images.flip(-1)], dim=0)  # (2B, 3, H, W)
    last = model(both)[:, -1]  # (2B, J, h, w)
    check_flip_pairs(pairs, last.shape[1])
    plain, flipped = last.chunk(2, dim=0)  # (B, J, h, w) each
    unflipped = flipped.flip(-1)[:, pairs]  # (B, J, h, w), back in the original frame
    return (plain + unflipped) / 2
