"""Where a run's MLflow store is, and whether it answers.

Default store: `sqlite:///<storage>/mlflow.db` with artifacts under `<storage>/mlartifacts`;
`--tracking-uri` or `MLFLOW_TRACKING_URI` overrides it. Every function takes the store's URI
explicitly: no process-wide MLflow state.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path


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
    from mlflow import MlflowClient  # heavy (seconds): loaded when a store is opened

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as err:  # the stores raise many types; all mean "not usable"
        raise TrackingUnavailable(
            f"MLflow tracking store {uri} cannot be opened ({type(err).__name__}: {err}). Fix "
            "--tracking-uri / MLFLOW_TRACKING_URI. Nothing was trained."
        ) from None


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
