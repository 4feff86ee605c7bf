"""What a training worker computes with: CPU threads and the autocast dtype (input normalisation
is the model's contract: `shg_model.pixels.normalise`)."""

from __future__ import annotations

import torch

from pipelines.config.experiment import TrainConfig


def autocast_dtype(train: TrainConfig, on_gpu: bool) -> torch.dtype | None:
    """The autocast dtype without measuring (`auto`: bf16 on GPU, fp32 on CPU); for tools that
    run one process (the recipe probe). Training resolves `auto` by measurement
    (`pipelines.training.precision`)."""
    return amp_dtype(train.amp if train.amp != "auto" else ("bf16" if on_gpu else "off"))


def amp_dtype(mode: str) -> torch.dtype | None:
    """`off` | `bf16` | `fp16` → the autocast dtype, None for plain fp32."""
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def cpu_threads(node_cpus: int, local_workers: int) -> int:
    """Torch threads of a CPU worker: its share of the node's CPUs (at least 1). Ray's own
    default is one thread per worker whatever the share, which leaves a lone worker on a
    2-core machine using half of it."""
    return max(1, node_cpus // max(1, local_workers))

