"""What this machine can do at best: fp32 matmul FLOP/s and memory-write bandwidth."""

from __future__ import annotations

import numpy as np

from benchmarks.timing import interleaved_medians


def measure_matmul_peak(sizes: tuple[int, ...] = (1024, 2048), rounds: int = 5) -> dict[str, float]:
    """fp32 square matmul FLOP/s (2 n^3 per product) with torch's default threads.

    Returns ``{"matmul_fp32_gflop_s": best over sizes of the median}``: the denominator of the
    training step's fraction of peak. A large square GEMM is the most efficient thing the BLAS
    does, so it stands for the machine's practical fp32 peak.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    operands = {n: (torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)) for n in sizes}
    medians = interleaved_medians(
        {str(n): (lambda a=a, b=b: torch.mm(a, b)) for n, (a, b) in operands.items()}, rounds
    )
    best = max(2 * n**3 / medians[str(n)] for n in sizes)
    return {"matmul_fp32_gflop_s": best / 1e9}


def measure_write_bandwidth(nbytes: int = 64 << 20, rounds: int = 5) -> dict[str, float]:
    """Bandwidth of filling a fresh ``nbytes`` float32 array with zeros (allocate + write), GB/s."""
    count = nbytes // 4

    def fill() -> np.ndarray:
        out = np.empty(count, np.float32)
        out.fill(0.0)
        return out

    median = interleaved_medians({"fill": fill}, rounds)["fill"]
    return {"write_gb_s": nbytes / median / 1e9}
