"""The tiny workflow run that several test files share (made once per test session): the smoke
profile shrunk to 24 synthetic people and a 1-stack 8-channel hourglass, one deterministic worker."""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines.orchestration.plan import WorkflowConfig

# One deterministic worker and a loss logged every step: `shg rerun --check` can compare runs.
TINY = (
    "synth.people=24", "synth.workers=1", "model.stacks=1", "model.channels=8", "train.epochs=1",
    "train.workers=1", "train.batch_size=7", "train.val_max_people=8", "train.log_every=1",
    "train.deterministic=true",
)  # fmt: skip
VENV_BIN = Path(sys.executable).parent
_SHARED: dict[str, tuple] = {}


def run_tiny_once(root: Path):
    """The shared tiny workflow run: (WorkflowConfig, WorkflowResult), made once per session.

    A plain cache rather than a fixture alone, so that test_rerun.py and test_tracking_server.py
    use the same run as test_workflow.py.
    """
    from pipelines.orchestration.workflow import run_workflow

    if "tiny" not in _SHARED:
        cfg = WorkflowConfig(profile="smoke", workdir=str(root / "tiny-workdir"), overrides=TINY)
        _SHARED["tiny"] = (cfg, run_workflow(cfg))
    return _SHARED["tiny"]
