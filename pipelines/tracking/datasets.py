"""A training run's input: the prepared dataset, logged as an MLflow dataset and as tags."""

from __future__ import annotations

import json
from pathlib import Path

from dataprep.prepare import PreparedManifest
from pipelines.tracking.tracker import Tracker

DATA_FINGERPRINT_TAG = "data.fingerprint"  # a prepared dataset's fingerprint (train + val)
VAL_FINGERPRINT_TAG = "data.val_fingerprint"  # the validation rows a run was scored on


def log_dataset(tracker: Tracker, manifest: PreparedManifest, data: str | Path, val_fingerprint: str) -> None:
    """Logs the prepared dataset as the run's input (digest = the manifest fingerprint)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    profile = {"rows": manifest.rows, "quarantined": manifest.quarantined,
               "val_fingerprint": val_fingerprint}
    dataset = Dataset(
        name=Path(data).resolve().name or "prepared",
        digest=manifest.fingerprint[:36],
        source_type="local",
        source=json.dumps({"uri": Path(data).resolve().as_uri()}),
        schema=json.dumps({"columns": manifest.schema}, default=str),
        profile=json.dumps(profile, default=str),
    )
    tracker.client.log_inputs(tracker.run_id, datasets=[
        DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])
    tracker.set_tags({DATA_FINGERPRINT_TAG: manifest.fingerprint, VAL_FINGERPRINT_TAG: val_fingerprint,
                      "data.path": str(Path(data).resolve())})
