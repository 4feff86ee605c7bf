"""Models in MLflow: load a model from a directory or any MLflow model URI; log one as a pyfunc.

The files are the model directory of `pipelines.inference.model_dir` (`card.json` + `weights.pt`),
carried as the artifacts of a "models from code" pyfunc (`pipelines/tracking/pyfunc.py`), so
loading never unpickles code. The pyfunc also carries the few pure modules it imports
(`MODEL_CODE`, as MLflow `code_paths`) and pinned pip requirements: `mlflow models serve` and
`mlflow.pyfunc.load_model` work where shg is not installed.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from torch import nn

import shg_model
from pipelines.inference.model_dir import CARD_FILE, WEIGHTS_FILE, ModelCard, load_model_dir, save_model_dir
from pipelines.tracking.uris import default_tracking_uri, resolve_tracking_uri

# Imported where used: mlflow, cv2, pandas (seconds to load: only logging or loading a model needs
# them, not a module that imports this one)

PYFUNC_CODE = Path(__file__).with_name("pyfunc.py")
DEFAULT_WORKDIR = "runs"  # where `shg run` keeps its local store unless told otherwise


def model_store_uri(tracking_uri: str | None = None, workdir: str | Path = DEFAULT_WORKDIR) -> str:
    """The store MLflow model URIs resolve against: `tracking_uri`, else `$MLFLOW_TRACKING_URI`,
    else the local store `shg run` writes under `./runs` (`sqlite:///<cwd>/runs/mlflow.db`).

    Raises FileNotFoundError when it falls back to a local store that does not exist (opening
    it would create an empty one and then report the model as unknown).
    """
    uri = resolve_tracking_uri(tracking_uri, workdir)
    if uri == default_tracking_uri(workdir) and not (Path(workdir).resolve() / "mlflow.db").is_file():
        raise FileNotFoundError(
            f"no MLflow store at {Path(workdir).resolve() / 'mlflow.db'}: run this from the folder "
            "where `shg run` wrote runs/, or pass --tracking-uri (e.g. sqlite:///path/runs/mlflow.db "
            "or http://127.0.0.1:5000), or set MLFLOW_TRACKING_URI"
        )
    return uri


def load_model(uri_or_dir: str | Path, map_location: str | torch.device = "cpu", *,
               tracking_uri: str | None = None):
    """`(model in eval mode, card)` from a local directory or an MLflow model URI.

    Accepts a directory from `save_model_dir`, a downloaded MLflow model directory, or any URI
    MLflow resolves: `runs:/<run_id>/<name>`, `models:/<name>@<alias>`, `models:/<name>/<version>`,
    `models:/<model_id>`, against the store `model_store_uri(tracking_uri)` (by default
    `$MLFLOW_TRACKING_URI`, else `./runs/mlflow.db`).
    """
    local = Path(str(uri_or_dir))
    if "://" not in str(uri_or_dir) and ":/" not in str(uri_or_dir):
        if not local.is_dir():
            raise FileNotFoundError(
                f"{local}: no such model directory; pass a directory from save_model_dir or an "
                "MLflow URI such as runs:/<run_id>/model or models:/<name>@champion"
            )
        return load_model_dir(local, map_location)
    store = model_store_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="shg-model-") as tmp:
        return load_model_dir(download_model(str(uri_or_dir), tmp, tracking_uri=store), map_location)


def download_model(uri: str, dst: str | Path, *, tracking_uri: str) -> str:
    """Downloads the MLflow model at `uri` (`runs:/`, `models:/<name>@<alias>`,
    `models:/<name>/<version>`, `models:/<model_id>`) from the store `tracking_uri` into `dst`;
    returns the local folder. Raises ValueError naming the URI and the store when it is unknown."""
    import mlflow

    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=resolve_model_uri(uri, tracking_uri),
                                                   dst_path=str(dst), tracking_uri=tracking_uri)
    except Exception as err:  # MLflow raises several types for unknown runs/models/aliases
        raise ValueError(f"cannot download model {uri} from {tracking_uri}: {err}") from err


def resolve_model_uri(uri: str, tracking_uri: str) -> str:
    """`models:/…` or `runs:/<run_id>/<model name>` → where that model's artifacts are, looked
    up in the store `tracking_uri` (MLflow 3.17 resolves both through the process-wide tracking
    and registry URIs instead); any other URI unchanged."""
    from mlflow import MlflowClient
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    if uri.startswith("runs:/"):  # runs:/<run_id>/<logged model name>[/path]: the run's output
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        name, _, inside = path.partition("/")
        outputs = client.get_run(run_id).outputs
        for output in (outputs.model_outputs if outputs else []):
            model = client.get_logged_model(output.model_id)
            if model.name == name:
                return model.artifact_location.rstrip("/") + (f"/{inside}" if inside else "")
        return uri  # a plain run artifact
    if not uri.startswith("models:"):
        return uri
    base, inside = ModelsArtifactRepository.split_models_uri(uri)
    found = get_model_name_and_version(client, base)
    if len(found) == 1:  # a logged model id
        location = client.get_logged_model(found[0]).artifact_location
    else:
        location = client.get_model_version_download_uri(*found)
    return location.rstrip("/") + (f"/{inside}" if inside else "")


MODEL_INPUT_COLUMNS = ("image", "boxes")
MODEL_OUTPUT_COLUMNS = ("image_index", "person_index", "box", "keypoints", "confidence", "joint_names", "score")
# What the served model imports, by package: the pure modules only (no ray, mlflow, albumentations).
MODEL_CODE: dict[str, tuple[str, ...]] = {
    "shg_model": ("__init__.py", "decode.py", "hourglass.py", "layers.py", "loss.py", "pixels.py"),
    "dataprep": ("__init__.py", "geometry.py", "joints.py"),
    "pipelines": ("__init__.py",),
    "pipelines/inference": ("__init__.py", "keypoints.py", "model_dir.py", "people.py"),
}
REQUIRED_DISTRIBUTIONS = ("torch", "numpy", "pandas", "opencv-python-headless", "mlflow")


def stage_model_code(directory: str | Path) -> list[str]:
    """Copies the modules of `MODEL_CODE` into `directory` as packages; returns the top-level
    package folders to log as `code_paths` (MLflow puts their parent on sys.path at load)."""
    root = Path(shg_model.__file__).resolve().parents[1]  # the checkout, or site-packages
    directory = Path(directory)
    for package, files in MODEL_CODE.items():
        (directory / package).mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copy2(root / package / name, directory / package / name)
    return sorted({str(directory / package.split("/")[0]) for package in MODEL_CODE})


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model: what the staged code and the pyfunc import."""
    pins = []
    for dist in REQUIRED_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:  # e.g. opencv-python instead of the headless wheel
            pins.append(dist)
    return pins


def input_example(card: ModelCard):
    """A one-row DataFrame: a mid-grey PNG (base64) of the input size, one person box covering it."""
    import cv2
    import pandas as pd

    size = card.input_size
    ok, png = cv2.imencode(".png", np.full((size, size, 3), 128, dtype=np.uint8))
    if not ok:
        raise RuntimeError("OpenCV could not encode the input example")
    return pd.DataFrame({"image": [base64.b64encode(png.tobytes()).decode("ascii")],
                         "boxes": [[[0.0, 0.0, float(size - 1), float(size - 1)]]]})


def _signature(card: ModelCard):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import AnyType, Array

    return ModelSignature(
        # AnyType: a base64 string over REST, or bytes / a uint8 array in process; numbers in
        # boxes may be JSON integers (Array(double) would refuse them).
        inputs=Schema([ColSpec(AnyType(), "image"),
                       ColSpec(Array(Array(AnyType())), "boxes", required=False)]),
        outputs=Schema([
            ColSpec("long", "image_index"), ColSpec("long", "person_index"),
            ColSpec(Array("double"), "box"), ColSpec(Array(Array("double")), "keypoints"),
            ColSpec(Array("double"), "confidence"), ColSpec(Array("string"), "joint_names"),
            ColSpec("double", "score"),
        ]),
        params=ParamSchema([ParamSpec("flip", "boolean", True)]),
    )


def log_model(model: nn.Module, card: ModelCard, *, tracking_uri: str, run_id: str, name: str = "model",
              step: int = 0) -> str:
    """Logs the model as a self-contained pyfunc MLflow LoggedModel of run `run_id` in the store
    `tracking_uri` (one explicit client, no process-wide MLflow state); returns `models:/<model_id>`.

    The pyfunc ("models from code", `pyfunc.py`) takes one row per image, `image` (base64
    JPEG/PNG, bytes or a uint8 array) and optional `boxes` ([x0, y0, x1, y1] image px per
    person), and returns one row per person with `keypoints` (J x [x, y] original image px),
    `confidence`, `joint_names` and `score`; param `flip` (default True). It carries the modules
    it imports (`MODEL_CODE`, as code_paths) and pinned pip requirements, so it loads and serves
    (`mlflow models serve`) where shg is not installed. The model is an output of the run at
    `step`: the run's metrics at that step show on the model's page (MLflow 3 LoggedModel).
    """
    import mlflow
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    logged = client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id,
                                        model_type="pose-estimation",
                                        params={"input_size": str(card.input_size),
                                                **{f"model.{k}": str(v) for k, v in card.model_config.items()}})
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
    with tempfile.TemporaryDirectory(prefix="shg-model-") as tmp:
        save_model_dir(model, card, Path(tmp) / "files")
        local = Path(tmp) / "mlflow-model"
        mlflow.pyfunc.save_model(
            path=str(local),
            python_model=str(PYFUNC_CODE),
            artifacts={"card": str(Path(tmp) / "files" / CARD_FILE),
                       "weights": str(Path(tmp) / "files" / WEIGHTS_FILE)},
            code_paths=stage_model_code(Path(tmp) / "code"),
            signature=_signature(card),
            input_example=input_example(card),
            pip_requirements=pip_requirements(),
            mlflow_model=Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                               run_id=run_id, model_id=logged.model_id),
        )
        client.log_model_artifacts(logged.model_id, str(local))
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}"
