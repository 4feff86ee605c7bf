"""The options `compile_blocks` hands `torch.compile` (nothing is compiled here)."""

from __future__ import annotations

import pytest
import torch

from shg_model.compile import block_compile_options, compile_blocks, cpu_vector_bits


def test_the_vector_width_is_pinned_to_this_process_choice():
    assert cpu_vector_bits() in (0, 128, 256, 512)
    assert block_compile_options() == {"cpp.simdlen": cpu_vector_bits()}


def test_a_mode_becomes_its_options_beside_the_width():
    options = block_compile_options("max-autotune")
    assert options["max_autotune"] is True and options["cpp.simdlen"] == cpu_vector_bits()


def test_the_callers_options_win_including_an_explicit_width():
    assert block_compile_options(options={"cpp.simdlen": 256, "max_autotune": False}) == {
        "cpp.simdlen": 256, "max_autotune": False}


def test_compile_blocks_refuses_other_modules():
    with pytest.raises(TypeError, match="StackedHourglass"):
        compile_blocks(torch.nn.Linear(2, 2))
