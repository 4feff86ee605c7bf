"""MLflow tracking of a training run: one MLflow run per training run, however many workers.

The driver resolves the store, checks it is reachable before any training starts, and creates
the run, or resumes it when the run directory remembers one (`RunRecord`, a small JSON file in
the Ray Train run folder). Rank 0 of the worker group logs metrics and artifacts to that run id
through a `Tracker`; the other ranks log nothing.

Default store: `sqlite:///<storage>/mlflow.db` with artifacts under `<storage>/mlartifacts`;
`--tracking-uri` or `MLFLOW_TRACKING_URI` overrides it. Every function takes the store's URI
explicitly and builds its own client: no process-wide MLflow state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dataprep.prepare import PreparedManifest
from shg_io.storage import Location, location

RUN_RECORD = "shg_run.json"
DATA_FINGERPRINT_TAG = "data.fingerprint"  # a prepared dataset's fingerprint (train + val)
VAL_FINGERPRINT_TAG = "data.val_fingerprint"  # the validation rows a run was scored on
# One experiment for every run of the project: `shg run` workflows (a parent run with nested
# prepare/train/evaluate/register runs) and standalone `shg train` runs alike.
DEFAULT_EXPERIMENT = "shg"


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be reached; nothing was trained."""


def default_tracking_uri(storage: str | Path) -> str:
    """The local store of a run directory (or work dir): `sqlite:///<storage>/mlflow.db`."""
    return f"sqlite:///{Path(storage).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, storage: str | Path) -> str:
    """`uri`, else `$MLFLOW_TRACKING_URI`, else the sqlite store under `storage`."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return default_tracking_uri(storage)


def default_artifact_root(uri: str, storage: str | Path) -> str | None:
    """Artifact folder for a new experiment: `<storage>/mlartifacts` for the local sqlite store
    (keeps the run directory self-contained); None (the server's choice) otherwise."""
    if uri == default_tracking_uri(storage):
        return (Path(storage).resolve() / "mlartifacts").as_uri()
    return None


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raises TrackingUnavailable unless the store at `uri` answers (called before training).

    HTTP servers are probed at `/health` with a short timeout (MLflow's own client would retry
    for minutes); database and file stores are opened and queried once.
    """
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as reply:
                if reply.status != 200:
                    raise TrackingUnavailable(f"{uri}/health answered HTTP {reply.status}")
        except (urllib.error.URLError, OSError) as err:
            raise TrackingUnavailable(
                f"MLflow tracking server {uri} is unreachable ({err}). Start it (e.g. `shg "
                "tracking-server`), fix --tracking-uri / MLFLOW_TRACKING_URI, or leave both unset "
                "to use the local sqlite store. Nothing was trained."
            ) from None
        return
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    from mlflow import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as err:  # the stores raise many types; all mean "not usable"
        raise TrackingUnavailable(
            f"MLflow tracking store {uri} cannot be opened ({type(err).__name__}: {err}). Fix "
            "--tracking-uri / MLFLOW_TRACKING_URI. Nothing was trained."
        ) from None


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a run directory remembers between driver restarts (`<run dir>/shg_run.json`, beside
    the run's checkpoints: a local folder or an object store URI, so a driver on another machine
    finds it)."""

    mlflow_run_id: str
    tracking_uri: str
    experiment: str
    model_config: dict[str, Any] | None = None  # the HourglassConfig the run trains
    status: str = "running"  # running | finished
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


def how_to_open(uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person sees run `run_id`: its URL on a server store; for the local sqlite store,
    the command that serves it (`shg tracking-server --workdir <folder>`) and the URL then."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}"
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')}/{path}"
    if uri.startswith("sqlite:///") and uri.endswith("/mlflow.db"):
        folder = uri[len("sqlite:///"):-len("/mlflow.db")]
        return (f"to see it: `shg tracking-server --workdir {folder}`, then open "
                f"http://127.0.0.1:5000/{path}")
    return f"store {uri}, experiment {experiment_id}"


def log_speed_choice(tracker: "Tracker", choice: Any, step: int = 0) -> None:
    """Records a training speed choice (`pipelines.training.precision.SpeedChoice`, or anything
    with `tags()` and `metrics()`): the chosen path as `shg.speed.*` tags (tags, not params,
    because a resumed run measures again and may choose differently), the measured images/s of
    every candidate as `speed/*` metrics at `step`."""
    tracker.set_tags(choice.tags())
    tracker.log_metrics(choice.metrics(), step)


class Tracker:
    """Logs to one existing MLflow run by id (usable on any process: driver or rank 0)."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.client = MlflowClient(tracking_uri)

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, timestamp_ms: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        batch = [Metric(k, float(v), now, int(step)) for k, v in metrics.items() if v == v]  # no NaN
        for start in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
            self.client.log_batch(self.run_id, metrics=batch[start:start + 900], synchronous=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_text(v)) for k, v in params.items()]
        for start in range(0, len(items), 90):  # params: at most 100 per batch
            self.client.log_batch(self.run_id, params=items[start:start + 90], synchronous=True)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()],
                              synchronous=True)

    def log_figure(self, figure, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, artifact_file)
        plt.close(figure)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, values: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, values, artifact_file)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """`(step, value)` of every logged value of `key`, the last value per step, by step."""
        latest: dict[int, tuple[int, float]] = {}
        for m in self.client.get_metric_history(self.run_id, key):
            if m.step not in latest or m.timestamp >= latest[m.step][0]:
                latest[m.step] = (m.timestamp, m.value)
        return [(step, value) for step, (_, value) in sorted(latest.items())]


def run_tags(tracking_uri: str, run_id: str) -> dict[str, str]:
    """The tags of run `run_id` in the store at `tracking_uri`."""
    from mlflow import MlflowClient

    return dict(MlflowClient(tracking_uri).get_run(run_id).data.tags)


def run_exists(tracking_uri: str, run_id: str) -> bool:
    """Whether the store at `tracking_uri` holds run `run_id`."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException:
        return False
    return True


def start_or_resume_run(*, tracking_uri: str, experiment: str, run_name: str, run_dir: Path | Location,
                        storage: Path, model_config: dict[str, Any]) -> tuple[str, bool]:
    """The MLflow run id of this training run: remembered in `run_dir`, else a new run.

    Returns:
        (run_id, resumed). A resumed run is set back to RUNNING.
    Raises:
        TrackingUnavailable: the run directory names a run that the store does not have (e.g.
            another --tracking-uri than the first attempt used).
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    record = RunRecord.read(run_dir)
    if record is not None:
        try:
            client.get_run(record.mlflow_run_id)
        except Exception:
            raise TrackingUnavailable(
                f"{run_dir / RUN_RECORD} names MLflow run {record.mlflow_run_id} in "
                f"{record.tracking_uri}, which {tracking_uri} does not have. Resume with "
                f"--tracking-uri {record.tracking_uri}, or start a new run (train.run_name)."
            ) from None
        client.update_run(record.mlflow_run_id, status="RUNNING")
        return record.mlflow_run_id, True
    experiment_id = ensure_experiment(client, experiment, default_artifact_root(tracking_uri, storage))
    run = client.create_run(experiment_id, run_name=run_name, tags=standard_tags())
    RunRecord(run.info.run_id, tracking_uri, experiment, model_config).write(run_dir)
    return run.info.run_id, False


def ensure_experiment(client, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (with `artifact_location`) when the store lacks it."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def standard_tags() -> dict[str, str]:
    """MLflow's own run tags, as `mlflow.start_run` would set them: `mlflow.user`,
    `mlflow.source.name` / `mlflow.source.type`, and `mlflow.source.git.commit` from this
    checkout (MLflow looks for git only beside the entry script, which for an installed `shg`
    is not the checkout; unknown revisions are left out)."""
    from mlflow.tracking.context.registry import resolve_tags

    from pipelines.tracking.provenance import git_revision

    tags = dict(resolve_tags())
    commit = git_revision(Path(__file__).resolve().parents[2])["git.commit"]
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


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


def system_tags(*, workers: int, use_gpu: bool) -> dict[str, str]:
    """Workers, devices, library versions and the git revision, as run tags."""
    import torch

    from pipelines.tracking.provenance import (
        provenance,  # one definition of a repeatable run
    )

    tags = provenance()
    tags.update({
        "train.workers": str(workers),
        "train.device": "cuda" if use_gpu else "cpu",
        "train.gpu_name": torch.cuda.get_device_name(0) if use_gpu and torch.cuda.is_available() else "",
        "train.cpu_count": str(os.cpu_count()),
        "train.platform": platform.platform(),
    })
    return tags


@contextlib.contextmanager
def system_metrics(tracking_uri: str, run_id: str, *, resumed: bool = False, sampling_interval_s: float = 10.0,
                   log=print) -> Iterator[None]:
    """MLflow's system metrics (`system/cpu_utilization_percentage`, `system/system_memory_usage_megabytes`,
    disk, network and, where there is one, GPU) logged to run `run_id` every `sampling_interval_s`
    while the block runs, sampled on this node. A resumed run continues its steps. Without psutil
    (MLflow's sampler needs it) the block runs unmonitored and says so."""
    try:
        import psutil  # noqa: F401  (MLflow's CPU and memory monitors)
    except ImportError:
        log("system metrics off: install psutil (pip install psutil) to log CPU/memory use")
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=sampling_interval_s, resume_logging=resumed,
                                   tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def finish_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Marks the MLflow run FINISHED (or FAILED / KILLED)."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri).set_terminated(run_id, status=status)


def _param_text(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = json.dumps(value) if not isinstance(value, str) else value
    return text[:6000]
