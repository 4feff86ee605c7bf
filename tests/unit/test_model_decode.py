"""decode and flip_average against hand-worked heatmaps."""

from __future__ import annotations

import pytest
import torch

from shg_model import HourglassConfig, StackedHourglass, check_flip_pairs, decode, flip_average

MPII_FLIP = (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)


def _peak(h: int, w: int, x: int, y: int, value: float = 1.0) -> torch.Tensor:
    hm = torch.zeros(1, 1, h, w)
    hm[0, 0, y, x] = value
    return hm


def test_plain_peak_no_shift_when_neighbours_equal():
    coords, conf = decode(_peak(8, 10, x=6, y=3, value=0.9))
    torch.testing.assert_close(coords, torch.tensor([[[6.0, 3.0]]]))
    torch.testing.assert_close(conf, torch.tensor([[0.9]]))


@pytest.mark.parametrize(
    "neighbour, expected",
    [
        ((3, 7), [6.25, 3.0]),  # right neighbour higher -> +x
        ((3, 5), [5.75, 3.0]),  # left  -> -x
        ((4, 6), [6.0, 3.25]),  # below -> +y
        ((2, 6), [6.0, 2.75]),  # above -> -y
    ],
)
def test_quarter_shift_towards_higher_neighbour(neighbour, expected):
    hm = _peak(8, 10, x=6, y=3)
    hm[0, 0, neighbour[0], neighbour[1]] = 0.5
    coords, _ = decode(hm)
    torch.testing.assert_close(coords, torch.tensor([[expected]]))


def test_shift_in_both_axes_and_batch_layout():
    hm = torch.zeros(2, 3, 6, 6)
    hm[1, 2, 2, 4] = 1.0
    hm[1, 2, 2, 3] = 0.6  # left higher than right (0)
    hm[1, 2, 3, 4] = 0.3  # below higher than above (0)
    coords, conf = decode(hm)
    assert coords.shape == (2, 3, 2) and conf.shape == (2, 3)
    torch.testing.assert_close(coords[1, 2], torch.tensor([3.75, 2.25]))
    assert conf[1, 2] == 1.0


@pytest.mark.parametrize("x, y", [(0, 3), (9, 3), (6, 0), (6, 7)])
def test_no_shift_on_the_border(x, y):
    hm = _peak(8, 10, x=x, y=y)
    hm[0, 0, min(y + 1, 7), x] = 0.5
    hm[0, 0, y, min(x + 1, 9) if x < 9 else x - 1] = 0.5
    coords, _ = decode(hm)
    torch.testing.assert_close(coords, torch.tensor([[[float(x), float(y)]]]))


def test_decode_rejects_wrong_ndim():
    with pytest.raises(ValueError, match=r"\(B, J, h, w\)"):
        decode(torch.zeros(4, 4))


def _mirrored(images: torch.Tensor) -> torch.Tensor:
    return (images + images.flip(-1)) / 2


def test_flip_average_of_symmetric_input_is_symmetric():
    torch.manual_seed(0)  # only the weight init of this throwaway model
    model = StackedHourglass(HourglassConfig(stacks=2, channels=16, joints=16, depth=2)).eval()
    images = _mirrored(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        out = flip_average(model, images, MPII_FLIP)
        plain = model(images)[:, -1]
    assert out.shape == (2, 16, 8, 8)
    mirror = out.flip(-1)[:, list(MPII_FLIP)]
    torch.testing.assert_close(mirror, out, rtol=1e-5, atol=1e-6)
    # The network alone is not flip-equivariant, so the check above is not vacuous.
    assert not torch.allclose(plain.flip(-1)[:, list(MPII_FLIP)], plain, atol=1e-4)


def test_flip_average_is_exact_inverse_for_an_equivariant_model():
    # A "model" that is exactly flip-equivariant with identity pairs: flip averaging must
    # return its output unchanged (any one-pixel shift would break this).
    def pooled(images: torch.Tensor) -> torch.Tensor:
        hm = torch.nn.functional.avg_pool2d(images[:, :2], 4)  # (B, 2, h, w)
        return hm[:, None]  # (B, 1, 2, h, w)

    images = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(flip_average(pooled, images, (0, 1)), pooled(images)[:, -1])


@pytest.mark.parametrize(
    "pairs, fragment",
    [((0, 0, 1), "permutation"), ((1, 2, 0), "own inverse"), ((1, 0), "outputs 16 joints")],
)
def test_bad_flip_pairs(pairs, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_flip_pairs(pairs, 16 if len(pairs) == 2 else None)


def test_flip_average_calls_model_once_with_unflipped_half_first():
    calls = []

    def recording(images: torch.Tensor) -> torch.Tensor:
        calls.append(images.clone())
        return torch.nn.functional.avg_pool2d(images[:, :2], 4)[:, None]  # (N, 1, 2, h, w)

    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    flip_average(recording, images, (1, 0))
    assert len(calls) == 1 and calls[0].shape == (6, 3, 16, 16)
    torch.testing.assert_close(calls[0][:3], images, rtol=0, atol=0)
    torch.testing.assert_close(calls[0][3:], images.flip(-1), rtol=0, atol=0)
