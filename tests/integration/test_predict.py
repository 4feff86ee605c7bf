"""`shg predict`: image reading (grey, PNG, EXIF), box geometry, JSON + overlay outputs."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dataprep.geometry import apply_affine
from pipelines.inference import model_dir as saved_model
from pipelines.tracking import model_io
from pipelines.evaluation import predict
from pipelines.cli.app import build_app
from pipelines.inference.keypoints import predict_keypoints
from shg_model import HourglassConfig, StackedHourglass

PHOTOS = predict.Path(__file__).resolve().parents[3] / "shared" / "data" / "photos"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = HourglassConfig(stacks=1, channels=8, depth=2)
    card = saved_model.ModelCard.for_config(cfg, input_size=64, heatmap_size=16)
    return saved_model.save_model_dir(StackedHourglass(cfg), card, tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two real photos (JPEG, PNG) plus a greyscale JPEG and an EXIF-rotated JPEG made here."""
    if not PHOTOS.is_dir():
        pytest.skip(f"{PHOTOS} not found")
    folder = tmp_path_factory.mktemp("photos")
    jpeg = shutil.copy(PHOTOS / "man_running.jpg", folder / "runner.jpg")
    png = shutil.copy(PHOTOS / "h36m.png", folder / "h36m.png")
    rgb = np.asarray(Image.open(PHOTOS / "043789989.jpg").convert("RGB"))[::4, ::4]
    Image.fromarray(rgb).convert("L").save(folder / "grey.jpg")
    exif = Image.new("RGB", (80, 40)).getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 80x40, shown 40x80
    Image.fromarray(rgb[:40, :80]).save(folder / "rotated.jpg", exif=exif)
    return [str(p) for p in (jpeg, png, folder / "grey.jpg", folder / "rotated.jpg")]


def test_read_image_grey_png_exif(photos, tmp_path):
    grey = predict.read_image_rgb(photos[2])
    assert grey.ndim == 3 and grey.shape[2] == 3 and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    assert predict.read_image_rgb(photos[3]).shape == (80, 40, 3)  # displayed orientation
    # RGB order: a pure red PNG reads as (255, 0, 0).
    Image.fromarray(np.full((4, 4, 4), (255, 0, 0, 128), np.uint8), "RGBA").save(tmp_path / "red.png")
    np.testing.assert_array_equal(predict.read_image_rgb(tmp_path / "red.png")[0, 0], [255, 0, 0])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(ValueError, match="broken.jpg: not an image"):
        predict.read_image_rgb(tmp_path / "broken.jpg")


def test_default_box_hand_computed():
    center, scale = predict.default_box(640, 480)
    np.testing.assert_array_equal(center, [319.5, 239.5])
    assert scale == pytest.approx(4.0)  # 1.25 * 640 / 200


def test_crop_input_puts_a_blob_where_the_affine_says():
    yy, xx = np.mgrid[0:300, 0:400]
    blob = 255 * np.exp(-((xx - 250.0) ** 2 + (yy - 120.0) ** 2) / (2 * 8.0**2))
    image = np.repeat(blob[..., None], 3, axis=2).astype(np.uint8)
    crop, affine = predict.crop_input(image, np.array([200.0, 150.0]), 1.0, 64)  # 200 px box
    expected = apply_affine(affine, np.array([250.0, 120.0]))
    # 64 / 200 = 0.32 crop px per image px about the centres: (50 * 0.32 + 31.5, -30 * 0.32 + 31.5)
    np.testing.assert_allclose(expected, [47.5, 21.9])
    weight = crop[..., 0].astype(np.float64)
    cy, cx = (np.mgrid[0:64, 0:64] * weight).sum(axis=(1, 2)) / weight.sum()
    np.testing.assert_allclose([cx, cy], expected, atol=0.1)


def test_config_refuses_clashing_stems_and_bad_scale():
    with pytest.raises(ValueError, match="both write a.json"):
        predict.PredictConfig(images=("x/a.jpg", "y/a.png"), model="m", out="o")
    with pytest.raises(ValueError, match="scale must be a positive"):
        predict.PredictConfig(images=("a.jpg",), model="m", out="o", scale=0.0)


def test_run_predict_writes_json_and_overlay(photos, model_dir, tmp_path):
    cfg = predict.PredictConfig(images=tuple(photos), model=str(model_dir), out=str(tmp_path / "out"))
    docs = predict.run_predict(cfg, log=lambda line: None)
    model, card = model_io.load_model_dir(model_dir)
    for path, doc in zip(photos, docs):
        stem = predict.Path(path).stem
        assert json.loads((tmp_path / "out" / f"{stem}.json").read_text()) == doc
        image = predict.read_image_rgb(path)
        assert (doc["height"], doc["width"]) == image.shape[:2]
        (person,) = doc["people"]  # no box: one person filling the image
        assert person["box"] is None
        assert [k["name"] for k in person["keypoints"]] == list(card.joint_names)
        overlay = cv2.imread(str(tmp_path / "out" / f"{stem}.png"))
        assert overlay.shape == image.shape
        # Independent recomputation: crop, predict in input px, map back by the inverse affine.
        crop, affine = predict.crop_input(image, np.array(person["center"]), person["scale"], 64)
        coords, conf = predict_keypoints(model, crop[None], card.flip_pairs)
        back = apply_affine(np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2], coords[0])
        got = np.array([[k["x"], k["y"]] for k in person["keypoints"]])
        np.testing.assert_allclose(got, back, atol=1e-6)
        np.testing.assert_allclose([k["confidence"] for k in person["keypoints"]], conf[0], atol=1e-6)


def test_cli_with_center_and_scale(photos, model_dir, tmp_path):
    result = CliRunner().invoke(build_app(), [
        "predict", photos[0], "--model", str(model_dir), "--out", str(tmp_path),
        "--center", "250", "260", "--scale", "2.5", "--no-flip"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "runner.json").read_text())
    assert doc["people"][0]["center"] == [250.0, 260.0] and doc["people"][0]["scale"] == 2.5
    missing = CliRunner().invoke(build_app(), [
        "predict", str(tmp_path / "nope.jpg"), "--model", str(model_dir), "--out", str(tmp_path)])
    assert missing.exit_code != 0 and "nope.jpg" in missing.output


def _independent(model, card, image, box):
    """Keypoints of the person in `box` [x0, y0, x1, y1], recomputed by hand: the network square
    of side 1.25 x the longer box side around the box centre, predicted, mapped back."""
    x0, y0, x1, y1 = box
    center, scale = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), 1.25 * max(x1 - x0, y1 - y0) / 200
    crop, affine = predict.crop_input(image, center, scale, card.input_size)
    coords, conf = predict_keypoints(model, crop[None], card.flip_pairs)
    return apply_affine(np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2], coords[0]), conf[0]


def test_box_to_center_scale_hand_computed():
    center, scale = predict.box_to_center_scale([10, 20, 110, 220])
    np.testing.assert_array_equal(center, [60.0, 120.0])
    assert scale == pytest.approx(1.25)  # 1.25 * 200 / 200
    with pytest.raises(ValueError, match="empty"):
        predict.box_to_center_scale([10, 20, 5, 220])


def test_cli_two_boxes_write_two_people_and_coco_results(photos, model_dir, tmp_path):
    boxes = [(40.0, 30.0, 300.0, 480.0), (200.0, 10.5, 500.0, 360.0)]
    result = CliRunner().invoke(build_app(), [
        "predict", photos[0], "--model", str(model_dir), "--out", str(tmp_path),
        "--box", *map(str, boxes[0]), "--box", *map(str, boxes[1])])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "runner.json").read_text())
    results = json.loads((tmp_path / "coco_keypoints.json").read_text())
    model, card = model_io.load_model_dir(model_dir)
    image = predict.read_image_rgb(photos[0])
    assert [p["box"] for p in doc["people"]] == [list(b) for b in boxes]
    assert [r["image_id"] for r in results] == ["runner", "runner"]
    for person, result, box in zip(doc["people"], results, boxes):
        keypoints, conf = _independent(model, card, image, box)
        got = np.array([[k["x"], k["y"]] for k in person["keypoints"]])
        np.testing.assert_allclose(got, keypoints, atol=1e-6)
        flat = np.array(result["keypoints"]).reshape(16, 3)  # COCO: [x, y, v] per joint
        np.testing.assert_allclose(flat[:, :2], keypoints, atol=1e-3)
        np.testing.assert_allclose(flat[:, 2], conf, atol=1e-3)
        assert result["category_id"] == 1 and result["score"] == pytest.approx(float(np.mean(conf)))
    bad = CliRunner().invoke(build_app(), ["predict", photos[0], "--model", str(model_dir),
                                           "--out", str(tmp_path), "--box", "1", "2", "3", "x"])
    assert bad.exit_code != 0 and "four numbers" in bad.output


def _detections(tmp_path):
    """Two people in image 42, one in image "7"; plus records to skip."""
    records = [
        {"image_id": 42, "bbox": [40, 30, 260, 450], "score": 0.9, "category_id": 1},
        {"image_id": 42, "bbox": [200, 10, 300, 350], "score": 0.5, "category_id": 1},
        {"image_id": "7", "bbox": [10, 10, 100, 200], "score": 0.8, "category_id": 1},
        {"image_id": 42, "bbox": [0, 0, 50, 50], "score": 0.99, "category_id": 3},  # a car
        {"image_id": 42, "bbox": [0, 0, 50, 50], "score": 0.05, "category_id": 1},  # below --min-score
        {"image_id": 42, "bbox": [0, 0, -5, 50], "score": 0.9, "category_id": 1},  # quarantined
        {"image_id": 99, "bbox": [0, 0, 50, 50], "score": 0.9, "category_id": 1},  # no such image
    ]
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(records))
    return path


def test_detections_matched_to_file_stems(photos, model_dir, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    first = shutil.copy(photos[0], folder / "000000000042.jpg")
    second = shutil.copy(photos[1], folder / "7.png")
    lines = []
    cfg = predict.PredictConfig(images=(str(first), str(second)), model=str(model_dir),
                                out=str(tmp_path / "out"), detections=str(_detections(tmp_path)),
                                min_score=0.1)
    docs = predict.run_predict(cfg, log=lines.append)
    assert [len(d["people"]) for d in docs] == [2, 1]
    assert [p["detection_score"] for p in docs[0]["people"]] == [0.9, 0.5]
    assert docs[0]["people"][0]["box"] == [40.0, 30.0, 300.0, 480.0]  # COCO [x, y, w, h] -> corners
    results = json.loads((tmp_path / "out" / "coco_keypoints.json").read_text())
    assert [r["image_id"] for r in results] == [42, 42, 7]
    conf0 = [k["confidence"] for k in docs[0]["people"][0]["keypoints"]]
    assert results[0]["score"] == pytest.approx(0.9 * np.mean(conf0))
    assert "4 person detections; skipped 1 of other categories, 1 below score 0.1, quarantined 1" in lines[0]
    assert "record 5" in lines[0] and "skipped 1 detections of 1 image ids" in lines[1]


def test_detections_with_a_coco_image_list(photos, model_dir, tmp_path):
    folder = tmp_path / "val2017"
    folder.mkdir()
    shutil.copy(photos[0], folder / "000000000042.jpg")
    shutil.copy(photos[1], folder / "seven.png")
    image_list = tmp_path / "instances.json"
    image_list.write_text(json.dumps({"images": [{"id": 42, "file_name": "000000000042.jpg"},
                                                 {"id": 7, "file_name": "seven.png"},
                                                 {"id": 5, "file_name": "absent.jpg"}]}))
    result = CliRunner().invoke(build_app(), [
        "predict", "--model", str(model_dir), "--out", str(tmp_path / "out"),
        "--detections", str(_detections(tmp_path)), "--image-list", str(image_list),
        "--image-dir", str(folder)])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "coco_keypoints.json").read_text())
    assert sorted(r["image_id"] for r in results) == [7, 42, 42, 42]  # no --min-score: 3 in 42
    assert (tmp_path / "out" / "seven.png").is_file()
    both = CliRunner().invoke(build_app(), [
        "predict", photos[0], "--model", str(model_dir), "--out", str(tmp_path),
        "--detections", str(_detections(tmp_path)), "--box", "1", "2", "3", "4"])
    assert both.exit_code != 0 and "give one of them" in both.output


def test_champion_found_in_the_local_store_without_flags(photos, model_dir, tmp_path, monkeypatch):
    """`shg predict photo.jpg` in the folder where `shg run` wrote runs/: the default model
    models:/stacked-hourglass@champion resolves against runs/mlflow.db; --tracking-uri from elsewhere."""
    from mlflow import MlflowClient

    from pipelines.tracking.registry import register_model

    workdir = tmp_path / "project"
    uri = f"sqlite:///{workdir / 'runs' / 'mlflow.db'}"
    (workdir / "runs").mkdir(parents=True)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(workdir / "runs" / "art").as_uri())
    model, card = model_io.load_model_dir(model_dir)
    version = register_model(model, card, tracking_uri=uri, run_id=client.create_run(experiment).info.run_id)
    client.set_registered_model_alias("stacked-hourglass", "champion", version)

    monkeypatch.chdir(workdir)
    result = CliRunner().invoke(build_app(), ["predict", photos[0], "--out", "out"])
    assert result.exit_code == 0, result.output
    expected = json.loads((workdir / "out" / "runner.json").read_text())["people"]

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(build_app(), ["predict", photos[0], "--out", "out2", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out2" / "runner.json").read_text())["people"] == expected
    missing = CliRunner().invoke(build_app(), ["predict", photos[0], "--out", "out3"])
    assert missing.exit_code != 0 and "no MLflow store at" in missing.output
    assert not (tmp_path / "runs").exists()  # the failed look-up made no empty store
    # shg evaluate resolves its --model against the same stores (it fails here before any Ray work)
    evaluate = CliRunner().invoke(build_app(), ["evaluate", "--model", "models:/nobody@champion",
                                                "--data", str(tmp_path), "--tracking-uri", uri])
    assert evaluate.exit_code != 0 and f"models:/nobody@champion from {uri}" in evaluate.output
    evaluate = CliRunner().invoke(build_app(), ["evaluate", "--model", "models:/stacked-hourglass@champion",
                                                "--data", str(tmp_path)])
    assert evaluate.exit_code != 0 and "no MLflow store at" in evaluate.output
