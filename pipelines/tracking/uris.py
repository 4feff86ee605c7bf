"""Where a run's MLflow store is, and whether it answers.

Default store: `sqlite:///<storage>/mlflow.db` with artifacts under `<storage>/mlartifacts`;
`--tracking-uri` or `MLFLOW_TRACKING_URI` overrides it. Every function takes the store's URI
explicitly: no process-wide MLflow state. The artifact root of a new experiment is always
explicit (`artifact_root_for`): MLflow's own default for a store without a server is `./mlruns`
under whatever folder the process happens to run in.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from shg_io.storage import Location, local_state_dir


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


def artifact_root_for(uri: str, storage: str | Path | Location, configured: str = "") -> str | None:
    """The artifact location a new experiment of store `uri` gets (an existing one keeps its own).

    `configured` (`train.artifact_root`), a path or URI, wins. Otherwise: for the work dir's own
    sqlite store, `<local folder of storage>/mlartifacts` (the work dir stays self-contained);
    for an MLflow server (http/https), None: the server's artifact root, which it proxies
    (`mlflow-artifacts:/`, `shg tracking-server --artifacts-destination`); for any other store
    (another sqlite file, PostgreSQL, a file store) `<storage>/mlartifacts`, on the object store
    when `storage` is a URI there. A local folder is returned as an absolute `file://` URI.
    """
    if configured:
        return storage_uri(configured)[1]
    if uri.startswith(("http://", "https://")):
        return None
    if uri.startswith("sqlite:///") and uri == default_tracking_uri(local_state_dir(storage)):
        return (local_state_dir(storage) / "mlartifacts").as_uri()
    return storage_uri(storage)[1].rstrip("/") + "/mlartifacts"


def storage_uri(where: str | Path | Location) -> tuple[str, str]:
    """`(scheme, uri)` of a path or URI, without opening it: `("local", "file:///abs/path")` for
    a local path (relative ones against the current folder), `("s3", "s3://bucket/prefix")` for an
    object store URI as given, never a URI read as a path (`file:///<cwd>/s3:/...`)."""
    if isinstance(where, Location):
        return ("local", Path(where.path).resolve().as_uri()) if where.is_local else (where.scheme, where.uri)
    text = str(where)
    if "://" in text and not text.startswith("file://"):
        return text.split("://", 1)[0].lower(), text
    local = text[len("file://"):] if text.startswith("file://") else text
    return "local", Path(local).expanduser().resolve().as_uri()


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raises TrackingUnavailable unless the store at `uri` answers (called before training).

    HTTP servers are probed at `/health` with a short timeout (MLflow's own client would retry
    for minutes), then asked one read with this process's login (`_check_login`): `/health`
    answers anyone, so a server that logs users in would otherwise refuse the run's first write
    only; database and file stores are opened and queried once.
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
        _check_login(uri, os.environ, timeout_s=timeout_s)
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


def _check_login(uri: str, environ: Mapping[str, str], *, timeout_s: float) -> None:
    """Raises TrackingUnavailable when the server at `uri` refuses this process's login (HTTP 401):
    none given, or a wrong user or password. The login is MLflow's client's own: basic auth from
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, else a bearer MLFLOW_TRACKING_TOKEN. Any
    other answer is left to the run (a server without authentication answers 200)."""
    headers = {}
    if environ.get("MLFLOW_TRACKING_USERNAME") and environ.get("MLFLOW_TRACKING_PASSWORD"):
        login = f"{environ['MLFLOW_TRACKING_USERNAME']}:{environ['MLFLOW_TRACKING_PASSWORD']}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
    elif environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = "Bearer " + environ["MLFLOW_TRACKING_TOKEN"]
    probe = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(probe, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError as err:
        if err.code != 401:
            return
    except (urllib.error.URLError, OSError):
        return  # it answered /health a moment ago: the run's own client retries and reports
    if headers.get("Authorization", "").startswith("Basic"):
        who = f"user {environ['MLFLOW_TRACKING_USERNAME']!r} with MLFLOW_TRACKING_PASSWORD"
    else:
        who = "MLFLOW_TRACKING_TOKEN" if headers else "no login (no MLFLOW_TRACKING_USERNAME / _PASSWORD)"
    raise TrackingUnavailable(
        f"MLflow tracking server {uri} answered 401 to {who}: it logs users in. A training job logs in as "
        "the gate account: set MLFLOW_TRACKING_USERNAME=gate and MLFLOW_TRACKING_PASSWORD to its password "
        "(for `shg tracking-server`: SHG_TRACKING_GATE_PASSWORD or <workdir>/tracking-auth/gate.password). "
        "Nothing was trained."
    )


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
