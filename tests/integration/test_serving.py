"""The registered champion served the way MLflow users serve models, with shg not importable.

A tiny model is logged and registered as `stacked-hourglass@champion` in a real sqlite store;
a Python environment that has every dependency but not shg (a venv whose site path is this
environment's site-packages without the editable install's finder) then loads it with
`mlflow.pyfunc.load_model` and serves it with `mlflow models serve --env-manager local`, and
a REST request with an image and two person boxes is answered in original image px.
"""

from __future__ import annotations

import base64
import json
import os
import site
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.inference.model_dir import ModelCard
from pipelines.inference.people import box_to_center_scale, decode_image, predict_people
from shg_model import HourglassConfig, StackedHourglass

PHOTO = Path(__file__).resolve().parents[3] / "shared" / "data" / "photos" / "man_running.jpg"
MODEL_NAME = "stacked-hourglass"
BOXES = [[40, 30, 300, 480], [200.5, 10.0, 500.0, 360.0]]  # JSON integers are fine too


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """(tracking uri, model, card): a tiny model registered as stacked-hourglass@champion."""
    from pipelines.tracking.registry import register_model

    import mlflow

    folder = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("serving", artifact_location=(folder / "art").as_uri())
    torch.manual_seed(3)
    cfg = HourglassConfig(stacks=1, channels=16)
    model, card = StackedHourglass(cfg).eval(), ModelCard.for_config(cfg, input_size=64, heatmap_size=16)
    run_id = client.create_run(experiment).info.run_id
    version = register_model(model, card, tracking_uri=uri, run_id=run_id, name=MODEL_NAME)
    client.set_registered_model_alias(MODEL_NAME, "champion", version)
    return uri, model, card


@pytest.fixture(scope="module")
def python_without_shg(tmp_path_factory) -> Path:
    """A python with this environment's packages on its path but not shg: a fresh venv whose
    `.pth` names our site-packages (a plain path entry, so the editable install's own `.pth`
    finder there is not run)."""
    venv = tmp_path_factory.mktemp("venv-without-shg")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_dirs = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (target,) = venv.glob("lib/python*/site-packages")
    (target / "deps-without-shg.pth").write_text("\n".join(site_dirs) + "\n")
    python = venv / "bin" / "python"
    # `mlflow models serve` execs `uvicorn` from PATH: that venv's own, not ours (whose python
    # would import shg through the editable install).
    (venv / "bin" / "uvicorn").write_text(f"#!{python}\nfrom uvicorn.main import main\nmain()\n")
    (venv / "bin" / "uvicorn").chmod(0o755)
    return python


def _clean_env(uri: str, python: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_", "VIRTUAL_ENV"))}
    return env | {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,
                  "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}"}


def _expected(model, card, image: np.ndarray, boxes) -> list[tuple[np.ndarray, np.ndarray]]:
    return predict_people(model, card, [image] * len(boxes), [box_to_center_scale(b) for b in boxes])


def _photo_b64() -> tuple[str, np.ndarray]:
    """The shared photo of a runner when the checkout has `../shared`, else a drawn stick figure
    (what is in the picture does not matter to serving, only that it is a real JPEG)."""
    if PHOTO.is_file():
        data = PHOTO.read_bytes()
    else:
        import cv2

        canvas = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        for a, b in (((160, 40), (160, 120)), ((160, 120), (120, 200)), ((160, 120), (200, 200)),
                     ((160, 60), (110, 100)), ((160, 60), (210, 100))):
            cv2.line(canvas, a, b, (20, 20, 20), 9)
        cv2.circle(canvas, (160, 30), 14, (200, 170, 150), -1)
        ok, jpeg = cv2.imencode(".jpg", canvas)
        assert ok
        data = jpeg.tobytes()
    return base64.b64encode(data).decode("ascii"), decode_image(data, "photo.jpg")


LOAD_AND_PREDICT = """
import importlib.util, json, sys
import numpy as np
assert importlib.util.find_spec("pipelines") is None, "shg must not be importable here"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/stacked-hourglass@champion")
image_b64, boxes = open("image.b64").read(), json.load(open("boxes.json"))
frame = pd.DataFrame({"image": [image_b64, np.load("image.npy")], "boxes": [boxes, None]})
out = model.predict(frame)
import pipelines
print(json.dumps({"pipelines": pipelines.__file__, "rows": out.to_dict("records"),
                  "heavy": [m for m in ("ray", "albumentations") if m in sys.modules]}))
"""


def test_pyfunc_loads_and_predicts_where_shg_is_not_importable(champion, python_without_shg, tmp_path):
    uri, model, card = champion
    image_b64, image = _photo_b64()
    (tmp_path / "image.b64").write_text(image_b64)
    (tmp_path / "boxes.json").write_text(json.dumps(BOXES))
    small = np.ascontiguousarray(image[::8, ::8])  # a uint8 array input, no box: the whole image
    np.save(tmp_path / "image.npy", small)
    done = subprocess.run([str(python_without_shg), "-c", LOAD_AND_PREDICT], cwd=tmp_path,
                          env=_clean_env(uri, python_without_shg), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the code came with the model, not from this checkout, and nothing heavy was imported
    assert Path(result["pipelines"]).parts[-3:] == ("code", "pipelines", "__init__.py")
    assert not Path(result["pipelines"]).resolve().is_relative_to(Path(__file__).resolve().parents[2])
    assert result["heavy"] == []
    rows = result["rows"]
    assert [(r["image_index"], r["person_index"]) for r in rows] == [(0, 0), (0, 1), (1, 0)]
    whole = [-0.5, -0.5, small.shape[1] - 0.5, small.shape[0] - 0.5]
    expected = _expected(model, card, image, BOXES) + _expected(model, card, small, [whole])
    for row, box, (keypoints, confidence) in zip(rows, BOXES + [whole], expected):
        assert row["box"] == [float(v) for v in box]
        assert row["joint_names"] == list(card.joint_names)
        np.testing.assert_allclose(row["keypoints"], keypoints, atol=1e-3)
        np.testing.assert_allclose(row["confidence"], confidence, atol=1e-5)
        assert row["score"] == pytest.approx(float(np.mean(confidence)), abs=1e-5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post_json(url: str, body: dict, timeout_s: float = 60.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.mark.slow
def test_mlflow_models_serve_answers_an_image_and_two_boxes(champion, python_without_shg, tmp_path):
    from pipelines.tracking.server import stop_server

    uri, model, card = champion
    image_b64, image = _photo_b64()
    port = _free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [str(python_without_shg), "-m", "mlflow", "models", "serve", "-m",
         f"models:/{MODEL_NAME}@champion", "--env-manager", "local", "-h", "127.0.0.1",
         "-p", str(port), "--workers", "1"],
        cwd=tmp_path, env=_clean_env(uri, python_without_shg), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "mlflow models serve not ready after 120 s"
            time.sleep(0.5)
        status, body = _post_json(base + "/invocations", {
            "dataframe_split": {"columns": ["image", "boxes"], "data": [[image_b64, BOXES]]},
            "params": {"flip": True}})
        assert status == 200, body
        rows = body["predictions"]
        assert [(r["image_index"], r["person_index"]) for r in rows] == [(0, 0), (0, 1)]
        for row, (keypoints, confidence) in zip(rows, _expected(model, card, image, BOXES)):
            assert row["joint_names"] == list(card.joint_names)
            np.testing.assert_allclose(row["keypoints"], keypoints, atol=1e-3)
            np.testing.assert_allclose(row["confidence"], confidence, atol=1e-5)
        # keypoints are in original image px: each lies in its box's network square
        for row, box in zip(rows, BOXES):
            center, scale = box_to_center_scale(box)
            assert np.all(np.abs(np.array(row["keypoints"]) - center) <= 100 * scale + 1)

        status, body = _post_json(base + "/invocations", {
            "dataframe_records": [{"image": image_b64, "boxes": [[10, 10, 5, 50]]}]})
        assert status >= 400 and "row 0 box 0" in json.dumps(body), body
    finally:
        stop_server(proc)
