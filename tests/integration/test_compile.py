"""`compile_blocks` compiled for real (Inductor, C++ on this CPU), each time in a child interpreter.

The child is a fresh process, as the product's Ray Train worker is, with its own Inductor cache
directory, so nothing cached on this machine before the suite is read (see tests/compile_check.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from torch._inductor.cpu_vec_isa import valid_vec_isa_list

COMPILE_CHECK = Path(__file__).resolve().parents[1] / "compile_check.py"
# How the docs emulate the AVX2 kind on an AVX-512 CPU.
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
AVX512 = {"ATEN_CPU_CAPABILITY": "avx512"}


def _check(cache: Path, isa: dict[str, str] | None = None) -> str:
    """Runs compile_check.py in a child with `cache` as its Inductor cache: in the suite's own
    environment, or with exactly the ISA variables in `isa`."""
    child_env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    if isa is not None:
        for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
            child_env.pop(name, None)
        child_env.update(isa)
    proc = subprocess.run([sys.executable, str(COMPILE_CHECK)], env=child_env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode} with {isa}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "compiled blocks match eager" in proc.stdout
    return proc.stdout.strip()


def test_compiled_blocks_keep_names_and_outputs(tmp_path):
    _check(tmp_path / "inductor")


def _inductor_builds_512_bit_kernels() -> bool:
    """This CPU and compiler can build AVX-512 kernels, whatever ATEN_CPU_CAPABILITY says."""
    return any(isa.bit_width() == 512 for isa in valid_vec_isa_list())


def test_a_graph_cached_at_one_vector_width_is_not_reused_at_another(tmp_path):
    """One cache, AVX2-emulated then native AVX-512 and back: without the pinned width the
    second run loaded the first's 8-float loops into 16-float kernels and aborted."""
    if not _inductor_builds_512_bit_kernels():  # asked here: it builds test kernels
        pytest.skip("needs an AVX-512 CPU to compile at two widths")
    cache = tmp_path / "inductor"
    seen = [_check(cache, AVX2), _check(cache, AVX512), _check(cache, AVX2)]
    assert seen == ["compiled blocks match eager (AVX2)", "compiled blocks match eager (AVX512)",
                    "compiled blocks match eager (AVX2)"]
