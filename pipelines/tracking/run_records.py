"""What a Ray Train run folder remembers between driver restarts (`shg_run.json`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from shg_io.storage import Location, location

RUN_RECORD = "shg_run.json"


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a run directory remembers between driver restarts (`<run dir>/shg_run.json`, beside
    the run's checkpoints: a local folder or an object store URI, so a driver on another machine
    finds it)."""

    mlflow_run_id: str
    tracking_uri: str
    experiment: str
    model_config: dict[str, Any] | None = None  # the HourglassConfig the run trains
    status: str = "running"  # running | trained (not yet recorded in MLflow) | finished
    result: dict[str, Any] | None = None

    @classmethod
    def read(cls, run_dir: str | Path | Location) -> RunRecord | None:
        path = location(run_dir) / RUN_RECORD
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, run_dir: str | Path | Location) -> None:
        folder = location(run_dir)
        if folder.is_local:
            folder.mkdir()
        # atomic: a driver killed mid-write leaves the old record
        (folder / RUN_RECORD).write_text_atomic(json.dumps(dataclasses.asdict(self), indent=2, default=str) + "\n")
