"""Compiling the network per block: the stem and each stack, each its own `torch.compile` graph.

Inductor fuses the memory-bound BatchNorm/ReLU/add chains between the convolutions into a few
loops. Compiling per block rather than the whole model lets all stacks share one compiled graph
(they are the same code on the same shapes), so compilation costs about the same for 8 stacks as
for 2.
"""

from __future__ import annotations

from shg_model.hourglass import StackedHourglass


def compile_blocks(model: StackedHourglass, **compile_kwargs) -> StackedHourglass:
    """Compiles ``model.stem`` and every ``model.stacks[i]`` in place and returns ``model``.

    Uses ``nn.Module.compile``, so parameter names, ``state_dict`` and ``parameters()`` are
    unchanged (no ``_orig_mod.`` prefix) and the model can still be wrapped in DDP or saved as
    usual. The merges between stacks (two 1x1 convolutions and adds) stay eager. Keyword
    arguments go to ``torch.compile`` (e.g. ``mode="max-autotune"``).
    """
    if not isinstance(model, StackedHourglass):
        raise TypeError(f"compile_blocks expects a StackedHourglass, got {type(model).__name__}")
    model.stem.compile(**compile_kwargs)
    for stack in model.stacks:
        stack.compile(**compile_kwargs)
    return model
