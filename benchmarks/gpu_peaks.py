"""The GPUs' published dense peaks, for the GPU check's model FLOP utilisation."""

from __future__ import annotations

# Dense (no sparsity) tensor-core peaks, TFLOP/s, from the vendors' data sheets; the first name
# found in `torch.cuda.get_device_name()` wins (so "A100" is looked up before "A10").
DENSE_PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.0, "tf32": 494.5, "fp32": 67.0}),  # H200 SXM
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    ("H100", {"bf16": 989.0, "tf32": 494.5, "fp32": 67.0}),  # H100 SXM
    ("B200", {"bf16": 2250.0, "tf32": 1100.0, "fp32": 80.0}),
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.0, "tf32": 183.0, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    ("A10G", {}),  # AWS's A10 variant: no published tensor peak; MFU against the measured matmul only
    ("A10", {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2}),
    ("V100", {"fp16": 125.0, "fp32": 15.7}),  # no native bf16
    ("T4", {"fp16": 65.0, "fp32": 8.1}),
)


def dense_peak(name: str) -> dict[str, float]:
    """The dense peaks of the GPU called `name` ({} when it is not in the table)."""
    for key, peaks in DENSE_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return peaks
    return {}
