"""The training stream's shuffle arithmetic: the local buffer size and the shared-pair measure."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.training.data_stream import shared_pair_fraction, shuffle_buffer_rows


def test_shuffle_buffer_rows():
    assert shuffle_buffer_rows(8) == 512
    assert shuffle_buffer_rows(16) == 1024
    assert shuffle_buffer_rows(1) == 512
    with pytest.raises(ValueError, match="batch_size"):
        shuffle_buffer_rows(0)


def test_shared_pair_fraction_by_hand():
    first = [np.array([1, 2, 3]), np.array([4, 5, 6])]  # 3 + 3 = 6 pairs
    assert shared_pair_fraction(first, first) == 1.0
    assert shared_pair_fraction(first, [np.array([1, 4]), np.array([2, 5]), np.array([3, 6])]) == 0.0
    # (1,2) together again, and (4,5),(4,6),(5,6): 4 of 6
    assert shared_pair_fraction(first, [np.array([1, 2, 6]), np.array([3, 4, 5])]) == pytest.approx(2 / 6)
    assert shared_pair_fraction(first, [np.array([1, 2]), np.array([3]), np.array([4, 5, 6])]) == pytest.approx(4 / 6)
    # a sample missing from the second epoch shares nothing
    assert shared_pair_fraction(first, [np.array([1, 2])]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="no pairs"):
        shared_pair_fraction([np.array([1]), np.array([2])], first)
