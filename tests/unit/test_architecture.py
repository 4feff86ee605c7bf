"""The architecture holds: import contracts (pyproject `[tool.importlinter]`) checked by import-linter.

shg_model imports nothing of ours and no ray/mlflow; dataprep no torch/mlflow; only
pipelines.tracking imports mlflow; pipelines' sub-packages form layers (cli → orchestration →
training | evaluation (siblings) → tracking → inference | runtime | figures → config) with no import back up,
function-level imports included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lint(config: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    result = _lint()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_broken_contract_is_reported(tmp_path):
    # The same linter on a contract this code base breaks on purpose: training imports config.
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["pipelines"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "upside down"\ntype = "layers"\n'
        'layers = ["pipelines.config", "pipelines.training"]\n'
    )
    result = _lint(config)
    assert result.returncode != 0
    assert "upside down BROKEN" in result.stdout
