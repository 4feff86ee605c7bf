"""Training step of ``shg_model`` against a published implementation, side by side.

The published one is ``pytorch-stacked-hourglass`` on PyPI (Aiden Nibali's packaging of Wei
Yang's PyTorch port of the paper's network: ``stacked_hourglass.model.hg``, 256 features, one
bottleneck per level). It is an optional benchmark extra, never a runtime dependency:

    .venv/bin/pip install -e '.[bench]'
    flock /tmp/shg-heavy.lock .venv/bin/python -m benchmarks --only published

Same stacks, batch, input size, loss (mean squared heatmap error of every stack against the same
target), optimiser (RMSprop, the paper's) and machine. Only the network module is loaded
(``stacked_hourglass/model.py``): the package's ``__init__`` also imports its MPII predictor,
whose data dependencies the network does not need. The figures:

- ``published_<S>stack_fp32_ratio``: plain fp32 NCHW ``shg_model`` over the published model;
- ``published_<S>stack_fast_ratio``: ``shg_model`` on the path ``train.amp/layout=auto``
  chooses on this machine (``pipelines.training.precision``) over the published model in fp32
  (the published package has no speed path of its own).

Ratios are images/s over images/s (>1: ``shg_model`` is faster).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path


def load_published_model():
    """The published ``stacked_hourglass.model`` module, loaded without its package ``__init__``.

    Raises ImportError (with the install command) when the `bench` extra is not installed.
    """
    spec = importlib.util.find_spec("stacked_hourglass")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pytorch-stacked-hourglass is not installed: .venv/bin/pip install -e '.[bench]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "model.py"
    module_spec = importlib.util.spec_from_file_location("_published_stacked_hourglass_model", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    return module


def _rate(model, images, target, *, amp: str = "off", steps: int = 3) -> float:
    """Training images/s of `model` (list or (B, S, J, h, w) output), after one warm-up step."""
    import torch

    optimizer = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    dtype = {"off": None, "bf16": torch.bfloat16}[amp]

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            out = model(images)
        pred = torch.stack(out, 1) if isinstance(out, list) else out  # (B, S, J, h, w)
        loss = ((pred.float() - target.unsqueeze(1)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(images) / (time.perf_counter() - start)


def measure_published(stack_counts=(2, 8), *, batch: int = 8, size: int = 256, steps: int = 3) -> dict[str, float]:
    """Images/s of both implementations and their ratios, per stack count (see the docstring)."""
    import torch

    from pipelines.training.precision import resolve
    from shg_model import HourglassConfig, StackedHourglass

    try:
        published = load_published_model()
    except ImportError as err:  # an optional extra: say so, measure nothing
        print(f"         skipped: {err}", flush=True)
        return {}
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=g) - 0.5  # (B, 3, H, W)
    target = torch.rand(batch, 16, size // 4, size // 4, generator=g) * 0.1  # (B, J, H/4, W/4)
    figures: dict[str, float] = {}
    for stacks in stack_counts:
        theirs = published.hg(num_stacks=stacks, num_blocks=1, num_classes=16)
        cfg = HourglassConfig(stacks=stacks, channels=256)
        theirs_rate = _rate(theirs, images, target, steps=steps)
        ours_rate = _rate(StackedHourglass(cfg), images, target, steps=steps)
        choice, fast = resolve(cfg, "auto", "auto", "off", batch_size=batch, input_size=size,
                               images_per_worker=0, make_optimizer=lambda m: torch.optim.RMSprop(m.parameters()))
        fast_images = images.contiguous(memory_format=torch.channels_last) if choice.path.layout == "channels_last" else images
        fast_rate = _rate(fast, fast_images, target, amp=choice.path.amp, steps=steps)
        prefix = f"published_{stacks}stack"
        figures.update({
            f"{prefix}_images_per_s": theirs_rate,
            f"{prefix}_shg_fp32_images_per_s": ours_rate,
            f"{prefix}_shg_fast_images_per_s": fast_rate,
            f"{prefix}_fp32_ratio": ours_rate / theirs_rate,
            f"{prefix}_fast_ratio": fast_rate / theirs_rate,
            f"{prefix}_fast_bf16": float(choice.path.amp == "bf16"),
        })
        print(f"         {stacks} stacks: published {theirs_rate:.2f}, shg fp32 {ours_rate:.2f}, "
              f"shg {choice.path.name} {fast_rate:.2f} images/s", flush=True)
    return figures
