"""`compile_blocks` checked in a fresh interpreter: run as a script by tests/integration/test_compile.py.

Inductor's generated C++ runs inside the process that compiles it. In the product that process is
a fresh Ray Train worker; in the suite it would be pytest's own process, which by then holds a Ray
driver, MLflow's threads and every native library the earlier tests loaded. A native crash there
(SIGABRT while a compiled block frees a buffer, say) ends the whole run with no message.
Here it ends this script, and the test reports its exit status and stderr.
Exits 0 when the compiled model keeps its parameter names and gives the eager model's outputs.
"""

from __future__ import annotations

import faulthandler
import sys

import torch

from shg_model import HourglassConfig, StackedHourglass
from shg_model.compile import compile_blocks


def main() -> int:
    faulthandler.enable()
    torch.manual_seed(0)
    cfg = HourglassConfig(stacks=2, channels=8, joints=4, depth=1, channels_last=True)
    eager, compiled = StackedHourglass(cfg).eval(), StackedHourglass(cfg).eval()
    compiled.load_state_dict(eager.state_dict())
    keys = list(compiled.state_dict())
    compile_blocks(compiled)
    if list(compiled.state_dict()) != keys:
        print("compile_blocks renamed parameters", file=sys.stderr)
        return 1
    images = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(images), eager(images), rtol=1e-4, atol=1e-5)
    print(f"compiled blocks match eager ({torch.backends.cpu.get_cpu_capability()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
