"""The `frontier` benchmark section at tiny sizes: it runs end to end and returns its figures."""

from __future__ import annotations

import pytest
import torch

from benchmarks.__main__ import SECTIONS
from benchmarks.frontier import Candidate, measure_frontier, step_gflop
from benchmarks.training import StepShape, make_batch
from shg_model import StackedHourglass

TINY = (Candidate(2, 16, 16, 32, depth=2), Candidate(1, 16, 8, 32, depth=2))


def test_frontier_section_is_registered():
    assert "frontier" in SECTIONS


def test_tiny_frontier_returns_positive_figures():
    threads = torch.get_num_threads()
    figures = measure_frontier(TINY, threads=1, batch=2, rounds=1, peak_sizes=(64,))
    assert torch.get_num_threads() == threads  # restored
    assert figures["frontier_threads"] == 1.0 and figures["frontier_peak_gflop_s"] > 0
    for candidate in TINY:
        for figure in ("img_s", "gflop_per_img", "mfu"):
            assert figures[f"frontier_{candidate.name}_{figure}"] > 0, figure
    assert set(figures) == {"frontier_threads", "frontier_peak_gflop_s"} | {
        f"frontier_{c.name}_{f}" for c in TINY for f in ("img_s", "gflop_per_img", "mfu")}
    # a narrower stem and one stack do less work per image
    assert figures["frontier_s1_c16_t8_32px_gflop_per_img"] < figures["frontier_s2_c16_t16_32px_gflop_per_img"]


def test_step_flops_are_per_image_linear_and_include_the_backward():
    candidate = Candidate(1, 16, 8, 32, depth=2)
    model = StackedHourglass(candidate.model_config())
    per_batch = {b: step_gflop(model, make_batch(StepShape(stacks=1, channels=16, depth=2, batch=b, size=32)))
                 for b in (2, 4)}
    assert per_batch[4] == pytest.approx(2 * per_batch[2], rel=1e-6)
    # the 7x7 convolution alone: 2 x 3*49 x 4 channels x 16x16 outputs x 2 images, forward only
    assert per_batch[2] * 1e9 > 2 * 3 * 49 * 4 * 16 * 16 * 2


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="batch"):
        measure_frontier(TINY, batch=1)
