"""A training run's input: the prepared dataset, logged as an MLflow dataset and as tags."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

from dataprep.prepare import PreparedManifest
from pipelines.tracking.tracker import Tracker
from pipelines.tracking.uris import storage_uri
from shg_io.storage import Location

# Imported where used: mlflow (about a second to load: only the calls that talk to the store pay
# for it)

DATA_FINGERPRINT_TAG = "data.fingerprint"  # a prepared dataset's fingerprint (train + val)
VAL_FINGERPRINT_TAG = "data.val_fingerprint"  # the validation rows a run was scored on


def dataset_source(data: str | Path | Location) -> tuple[str, str]:
    """`(source_type, uri)` MLflow records for a prepared dataset: `("local", "file:///abs/path")`
    for a folder, `("s3", "s3://bucket/prefix")` (the scheme) for an object store URI, never a
    URI read as a relative path (`file:///<cwd>/s3:/...`)."""
    return storage_uri(data)


def log_dataset(tracker: Tracker, manifest: PreparedManifest, data: str | Path | Location,
                val_fingerprint: str | None = None, *, context: str = "training") -> None:
    """Logs the prepared dataset as the run's input (digest = the manifest fingerprint, source =
    its real URI, `dataset_source`); with `val_fingerprint`, also the data tags a training run
    carries."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source_type, uri = dataset_source(data)
    profile = {"rows": manifest.rows, "quarantined": manifest.quarantined}
    if val_fingerprint is not None:
        profile["val_fingerprint"] = val_fingerprint
    dataset = Dataset(
        name=uri.rstrip("/").rpartition("/")[2] or "prepared",
        digest=manifest.fingerprint[:36],
        source_type=source_type,
        source=json.dumps({"uri": uri}),
        schema=json.dumps({"columns": manifest.schema}, default=str),
        profile=json.dumps(profile, default=str),
    )
    tracker.client.log_inputs(tracker.run_id, datasets=[
        DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])])
    if val_fingerprint is not None:
        tracker.set_tags({DATA_FINGERPRINT_TAG: manifest.fingerprint, VAL_FINGERPRINT_TAG: val_fingerprint,
                          "data.path": uri if source_type != "local" else unquote(uri[len("file://"):])})
