"""Models in MLflow: load a model from a directory or any MLflow model URI; log one as a pyfunc.

The files are the model directory of `pipelines.inference.model_dir` (`card.json` + `weights.pt`),
carried as the artifacts of a "models from code" pyfunc (`pipelines/tracking/pyfunc.py`), so
loading never unpickles code. The pyfunc also carries the few pure modules it imports
(`MODEL_CODE`, as MLflow `code_paths`) and pinned pip requirements: `mlflow models serve` and
`mlflow.pyfunc.load_model` work where shg is not installed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.inference.model_dir import CARD_FILE, WEIGHTS_FILE, ModelCard, load_model_dir, save_model_dir

PYFUNC_CODE = Path(__file__).with_name("pyfunc.py")
DEFAULT_WORKDIR = "runs"  # where `shg run` keeps its local store unless told otherwise


def model_store_uri(tracking_uri: str | None = None, workdir: str | Path = DEFAULT_WORKDIR) -> str:
    """The store MLflow model URIs resolve against: `tracking_uri`, else `$MLFLOW_TRACKING_URI`,
    else the local store `shg run` writes under `./runs` (`sqlite:///<cwd>/runs/mlflow.db`).

    Raises FileNotFoundError when it falls back to a local store that does not exist (opening
    it would create an empty one and then report the model as unknown).
    """
    from pipelines.tracking.store import default_tracking_uri, resolve_tracking_uri

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
    import mlflow

    from pipelines.tracking.registry import use_tracking_uri

    store = model_store_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="shg-model-") as tmp, use_tracking_uri(store):
        try:
            path = mlflow.artifacts.download_artifacts(artifact_uri=str(uri_or_dir), dst_path=tmp)
        except Exception as err:  # MLflow raises several types for unknown runs/models/aliases
            raise ValueError(f"cannot download model {uri_or_dir} from {store}: {err}") from err
        return load_model_dir(path, map_location)


MODEL_INPUT_COLUMNS = ("image", "boxes")
MODEL_OUTPUT_COLUMNS = ("image_index", "person_index", "box", "keypoints", "confidence", "joint_names", "score")
# What the served model imports, by package: the pure modules only (no ray, mlflow, albumentations).
MODEL_CODE: dict[str, tuple[str, ...]] = {
    "shg_model": ("__init__.py", "decode.py", "hourglass.py", "layers.py", "loss.py"),
    "dataprep": ("__init__.py", "geometry.py", "joints.py"),
    "pipelines": ("__init__.py",),
    "pipelines/inference": ("__init__.py", "keypoints.py", "model_dir.py", "people.py"),
}
REQUIRED_DISTRIBUTIONS = ("torch", "numpy", "pandas", "opencv-python-headless", "mlflow")


def stage_model_code(directory: str | Path) -> list[str]:
    """Copies the modules of `MODEL_CODE` into `directory` as packages; returns the top-level
    package folders to log as `code_paths` (MLflow puts their parent on sys.path at load)."""
    import shutil

    import shg_model

    root = Path(shg_model.__file__).resolve().parents[1]  # the checkout, or site-packages
    directory = Path(directory)
    for package, files in MODEL_CODE.items():
        (directory / package).mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copy2(root / package / name, directory / package / name)
    return sorted({str(directory / package.split("/")[0]) for package in MODEL_CODE})


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model: what the staged code and the pyfunc import."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in REQUIRED_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:  # e.g. opencv-python instead of the headless wheel
            pins.append(dist)
    return pins


def input_example(card: ModelCard):
    """A one-row DataFrame: a mid-grey PNG (base64) of the input size, one person box covering it."""
    import base64

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


def log_model(model: nn.Module, card: ModelCard, name: str = "model",
              registered_model_name: str | None = None) -> str:
    """Logs the model to the active MLflow run as a self-contained pyfunc; returns its model URI.

    The pyfunc ("models from code", `pyfunc.py`) takes one row per image, `image` (base64
    JPEG/PNG, bytes or a uint8 array) and optional `boxes` ([x0, y0, x1, y1] image px per
    person), and returns one row per person with `keypoints` (J x [x, y] original image px),
    `confidence`, `joint_names` and `score`; param `flip` (default True). It carries the modules
    it imports (`MODEL_CODE`, as code_paths) and pinned pip requirements, so it loads and serves
    (`mlflow models serve`) where shg is not installed. Also registers it under
    `registered_model_name` when given.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_model needs an active MLflow run: call it inside mlflow.start_run()")
    with tempfile.TemporaryDirectory(prefix="shg-model-") as tmp:
        save_model_dir(model, card, Path(tmp) / "files")
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_CODE),
            artifacts={"card": str(Path(tmp) / "files" / CARD_FILE),
                       "weights": str(Path(tmp) / "files" / WEIGHTS_FILE)},
            code_paths=stage_model_code(Path(tmp) / "code"),
            signature=_signature(card),
            input_example=input_example(card),
            registered_model_name=registered_model_name,
            pip_requirements=pip_requirements(),
        )
    return info.model_uri
