"""Compiling the network per block: the stem and each stack, each its own `torch.compile` graph.

Inductor fuses the memory-bound BatchNorm/ReLU/add chains between the convolutions into a few
loops. Compiling per block rather than the whole model lets all stacks share one compiled graph
(they are the same code on the same shapes), so compilation costs about the same for 8 stacks as
for 2.

Inductor writes CPU loops for one vector width (256 bits for AVX2, 512 for AVX-512; lowered by
``ATEN_CPU_CAPABILITY``), but its on-disk graph cache (torch 2.13) does not key on that width:
a graph cached by a process that chose 256 bits was handed to one that builds its kernels for
512, whose 16-float stores then overran 8-float loops ("double free or corruption", SIGABRT),
and the reverse gave outputs off by 1e24. Any cache shared between such processes does this: a
run emulating the AVX2 kind (``ATEN_CPU_CAPABILITY=avx2``) on an AVX-512 machine, then a normal
run; or one cache directory on a file system shared by different CPUs. So every block is
compiled with ``cpp.simdlen`` pinned to the width this process picked: the width is part of the
cache key, and each width gets graphs written for it.
"""

from __future__ import annotations

from typing import Any

from torch._inductor import list_mode_options
from torch._inductor.cpu_vec_isa import pick_vec_isa

from shg_model.hourglass import StackedHourglass


def cpu_vector_bits() -> int:
    """The SIMD width Inductor generates CPU code for in this process: 512 (AVX-512), 256
    (AVX2), or 0 (scalar loops), after ``ATEN_CPU_CAPABILITY``."""
    return pick_vec_isa().bit_width()


def block_compile_options(mode: str | None = None,
                          options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``torch.compile`` options for one block: ``mode``'s options (``torch.compile`` takes
    a mode or options, not both), then ``options``, with ``cpp.simdlen`` pinned to
    :func:`cpu_vector_bits` unless ``options`` sets it."""
    merged = dict(list_mode_options(mode)) if mode is not None else {}
    merged.update(options or {})
    merged.setdefault("cpp.simdlen", cpu_vector_bits())
    return merged


def compile_blocks(model: StackedHourglass, mode: str | None = None,
                   options: dict[str, Any] | None = None, **compile_kwargs) -> StackedHourglass:
    """Compiles ``model.stem`` and every ``model.stacks[i]`` in place and returns ``model``.

    Uses ``nn.Module.compile``, so parameter names, ``state_dict`` and ``parameters()`` are
    unchanged (no ``_orig_mod.`` prefix) and the model can still be wrapped in DDP or saved as
    usual. The merges between stacks (two 1x1 convolutions and adds) stay eager. ``mode``,
    ``options`` and other keyword arguments go to ``torch.compile`` (e.g.
    ``mode="max-autotune"``), the vector width pinned as the module docstring explains.
    """
    if not isinstance(model, StackedHourglass):
        raise TypeError(f"compile_blocks expects a StackedHourglass, got {type(model).__name__}")
    pinned = block_compile_options(mode, options)
    model.stem.compile(options=pinned, **compile_kwargs)
    for stack in model.stacks:
        stack.compile(options=pinned, **compile_kwargs)
    return model
