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

PHOTOS = predict.Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


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
    model, card = model_io.load_model(model_dir)
    for path, doc in zip(photos, docs):
        stem = predict.Path(path).stem
        assert json.loads((tmp_path / "out" / f"{stem}.json").read_text()) == doc
        image = predict.read_image_rgb(path)
        assert (doc["height"], doc["width"]) == image.shape[:2]
        assert [k["name"] for k in doc["keypoints"]] == list(card.joint_names)
        overlay = cv2.imread(str(tmp_path / "out" / f"{stem}.png"))
        assert overlay.shape == image.shape
        # Independent recomputation: crop, predict in input px, map back by the inverse affine.
        crop, affine = predict.crop_input(image, np.array(doc["center"]), doc["scale"], 64)
        coords, conf = predict_keypoints(model, crop[None], card.flip_pairs)
        back = apply_affine(np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2], coords[0])
        got = np.array([[k["x"], k["y"]] for k in doc["keypoints"]])
        np.testing.assert_allclose(got, back, atol=1e-6)
        np.testing.assert_allclose([k["confidence"] for k in doc["keypoints"]], conf[0], atol=1e-6)


def test_cli_with_center_and_scale(photos, model_dir, tmp_path):
    result = CliRunner().invoke(build_app(), [
        "predict", photos[0], "--model", str(model_dir), "--out", str(tmp_path),
        "--center", "250", "260", "--scale", "2.5", "--no-flip"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "runner.json").read_text())
    assert doc["center"] == [250.0, 260.0] and doc["scale"] == 2.5
    missing = CliRunner().invoke(build_app(), [
        "predict", str(tmp_path / "nope.jpg"), "--model", str(model_dir), "--out", str(tmp_path)])
    assert missing.exit_code != 0 and "nope.jpg" in missing.output
