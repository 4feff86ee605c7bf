"""Augmentation and the validation centre crop (`dataprep.augment`), on real prepared rows (the 5
MPII images through `prepare_batch`, no Ray) and on synthetic crops with known keypoints."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dataprep.augment import (
    AugmentConfig,
    augment_batch,
    augment_pipeline,
    augment_sample,
    center_batch,
    sample_seed,
)
from dataprep.crops import encode_jpeg
from dataprep.geometry import apply_affine, input_to_heatmap
from dataprep.heatmaps import dequantize_heatmaps
from dataprep.joints import FLIP_PERMUTATION, NUM_JOINTS
from dataprep.mpii import load_annotations
from dataprep.prepare import records_table
from dataprep.prepare_batch import prepare_batch
from dataprep.schema import CROP_MARGIN, CROP_SIZE, PREPARED_SCHEMA

FLIP = np.asarray(FLIP_PERMUTATION)
FLIP_ONLY = AugmentConfig(rotation_deg=0.0, scale_min=1.0, scale_max=1.0, flip_prob=1.0, color_prob=0.0)
NO_FLIP = AugmentConfig(rotation_deg=0.0, scale_min=1.0, scale_max=1.0, flip_prob=0.0, color_prob=0.0)


def _numpy_batch(table: pa.Table) -> dict[str, np.ndarray]:
    """What Ray Data's numpy batch format gives for these columns (lists as object arrays)."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


@pytest.fixture(scope="module")
def real_batch(mpii_dir) -> dict[str, np.ndarray]:
    images = mpii_dir / "images"
    records = load_annotations(images / "annotations_hrnet_format.json")
    table = prepare_batch(records_table(records), str(images), 95)
    assert table.column("reason").null_count == len(table)
    return _numpy_batch(table.select(PREPARED_SCHEMA.names))


def _synthetic_batch(points: np.ndarray, labelled: np.ndarray, person_id: str = "synthetic") -> dict:
    """One stored crop, black with a white 5x5 dot at every labelled keypoint (crop px)."""
    crop = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for (x, y), on in zip(points.round().astype(int), labelled):
        if on:
            crop[y - 2 : y + 3, x - 2 : x + 3] = 255
    return {
        "person_id": np.array([person_id], dtype=object),
        "crop_jpeg": np.array([encode_jpeg(crop, 100)], dtype=object),
        "keypoints": np.asarray(points, np.float32).reshape(1, -1),
        "labelled": np.asarray(labelled, np.uint8).reshape(1, -1),
    }


def _spread_points() -> np.ndarray:
    """16 distinct integer points within 70 px (x and y) of the crop centre, left-right
    asymmetric: any +-30 deg rotation and 1.25 zoom keeps them in the 256 input (< 128 px)."""
    rng = np.random.default_rng(7)
    return rng.integers(90, 230, size=(NUM_JOINTS, 2)).astype(float) + (CROP_MARGIN - 32)


def test_config_is_checked():
    with pytest.raises(ValueError, match="multiple of 8"):
        AugmentConfig(input_size=100, heatmap_size=25)
    with pytest.raises(ValueError, match="heatmap_size must be input_size / 4 = 64"):
        AugmentConfig(heatmap_size=32)
    with pytest.raises(ValueError, match="scale_min"):
        AugmentConfig(scale_min=1.5)


def test_sample_seed_depends_on_seed_epoch_and_person_only():
    assert sample_seed(0, 1, "a") == sample_seed(0, 1, "a")
    assert len({sample_seed(0, 1, "a"), sample_seed(1, 1, "a"), sample_seed(0, 2, "a"), sample_seed(0, 1, "b")}) == 4


def test_flip_swaps_right_and_left_joints():
    points, labelled = _spread_points(), np.ones(NUM_JOINTS, bool)
    labelled[[0, 11]] = False  # r_ankle, r_elbow unlabelled: their flags must move too
    batch = _synthetic_batch(points, labelled)
    flipped, plain = augment_batch(batch, FLIP_ONLY, epoch=0), center_batch(batch, FLIP_ONLY)
    np.testing.assert_array_equal(flipped["image"][0], plain["image"][0][:, ::-1])
    np.testing.assert_array_equal(flipped["weight"][0], plain["weight"][0][FLIP])
    assert flipped["weight"][0][[5, 14]].tolist() == [0.0, 0.0]  # l_ankle, l_elbow now
    # the right wrist (10) of the flipped person is the mirrored left wrist (15), and so on
    np.testing.assert_allclose(flipped["heatmaps"][0], plain["heatmaps"][0][FLIP][:, :, ::-1], atol=1e-6)
    y, x = np.unravel_index(flipped["heatmaps"][0, 10].argmax(), (64, 64))
    y15, x15 = np.unravel_index(plain["heatmaps"][0, 15].argmax(), (64, 64))
    assert (x, y) == (63 - x15, y15)


def test_flip_twice_is_identity():
    points, labelled = _spread_points(), np.ones(NUM_JOINTS, bool)
    labelled[3] = False
    crop = np.random.default_rng(1).integers(0, 255, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    transform = augment_pipeline(FLIP_ONLY, CROP_SIZE)
    once_image, once_points, once_labelled = augment_sample(transform, 1, crop, points, labelled)
    padded = np.pad(once_image, ((CROP_MARGIN, CROP_MARGIN), (CROP_MARGIN, CROP_MARGIN), (0, 0)))
    twice_image, twice_points, twice_labelled = augment_sample(
        transform, 2, padded, once_points + CROP_MARGIN, once_labelled
    )
    inner = slice(CROP_MARGIN, CROP_SIZE - CROP_MARGIN)
    np.testing.assert_array_equal(twice_image, crop[inner, inner])
    np.testing.assert_array_equal(twice_labelled, labelled)
    np.testing.assert_allclose(twice_points[labelled], points[labelled] - CROP_MARGIN, atol=1e-9)
    assert not np.allclose(once_points[labelled], twice_points[labelled])


def test_each_sample_is_seeded_by_seed_epoch_and_person(real_batch):
    cfg = AugmentConfig(seed=3)
    whole = augment_batch(real_batch, cfg, epoch=5)
    order = [4, 1, 3]
    part = augment_batch({k: v[order] for k, v in real_batch.items()}, cfg, epoch=5)
    for name in ("image", "heatmaps", "weight"):
        np.testing.assert_array_equal(part[name], whole[name][order])
    assert part["person_id"].tolist() == real_batch["person_id"][order].tolist()
    other_epoch = augment_batch(real_batch, cfg, epoch=6)
    other_seed = augment_batch(real_batch, AugmentConfig(seed=4), epoch=5)
    for other in (other_epoch, other_seed):
        assert all(not np.array_equal(other["image"][i], whole["image"][i]) for i in range(5))


def test_heatmap_peaks_and_image_follow_the_augmented_keypoints():
    points, labelled = _spread_points(), np.ones(NUM_JOINTS, bool)
    cfg = AugmentConfig(color_prob=0.0, seed=11)
    for person in range(6):
        batch = _synthetic_batch(points, labelled, person_id=f"p{person}")
        out = augment_batch(batch, cfg, epoch=0)
        seed = sample_seed(cfg.seed, 0, f"p{person}")
        crop = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)  # only the keypoints matter here
        _, moved, moved_labelled = augment_sample(augment_pipeline(cfg, CROP_SIZE), seed, crop, points, labelled)
        on_map = input_to_heatmap(moved)
        for j in np.flatnonzero(out["weight"][0]):
            nearest = np.floor(on_map[j] + 0.5).astype(int)
            hm = out["heatmaps"][0, j]
            assert hm[nearest[1], nearest[0]] == hm.max() > 0.5
            x, y = np.round(moved[j]).astype(int)
            assert out["image"][0, y, x].min() > 100  # the dot drawn at joint j moved there too
        assert np.array_equal(out["weight"][0] > 0, moved_labelled)  # all stay in frame here


def test_joints_pushed_out_of_the_frame_get_weight_zero():
    points, labelled = _spread_points(), np.ones(NUM_JOINTS, bool)
    points[0] = (CROP_MARGIN + 8.0, CROP_SIZE / 2)  # inside the centre crop (input x = 8) ...
    points[1] = (CROP_MARGIN - 27.0, CROP_SIZE / 2)  # ... and outside it (input x = -27)
    batch = _synthetic_batch(points, labelled)
    plain = center_batch(batch, NO_FLIP)
    assert plain["weight"][0][:2].tolist() == [1.0, 0.0]
    assert plain["heatmaps"][0, 1].max() == 0
    zoomed = augment_batch(batch, AugmentConfig(rotation_deg=0.0, scale_min=1.25, scale_max=1.25,
                                                flip_prob=0.0, color_prob=0.0), epoch=0)
    # input x 8 -> 127.5 + 1.25 * (8 - 127.5) = -21.9 input px: pushed out by the zoom
    assert zoomed["weight"][0][:2].tolist() == [0.0, 0.0]
    assert zoomed["heatmaps"][0, :2].max() == 0
    assert zoomed["weight"][0][2:].tolist() == [1.0] * (NUM_JOINTS - 2)


def test_center_batch_matches_the_stored_targets_and_maps_back_to_the_image(real_batch):
    out = center_batch(real_batch, AugmentConfig())
    stored = dequantize_heatmaps(np.stack([np.frombuffer(b, np.uint8) for b in real_batch["heatmaps"]]))
    np.testing.assert_allclose(out["heatmaps"], stored.reshape(out["heatmaps"].shape), atol=1 / 510 + 1e-6)
    for i in range(5):
        keypoints = np.asarray(real_batch["keypoints"][i], float).reshape(NUM_JOINTS, 2)
        labelled = np.asarray(real_batch["labelled"][i], bool)
        in_input = apply_affine(out["crop_to_input"][i], keypoints)
        np.testing.assert_allclose(in_input, keypoints - CROP_MARGIN)
        in_image = apply_affine(out["input_to_image"][i], in_input)
        np.testing.assert_allclose(in_image[labelled], out["joints_image"][i][labelled], atol=1e-2)
    assert out["image"].shape == (5, 256, 256, 3) and out["image"].dtype == np.uint8


def test_disabled_augmentation_is_the_centre_crop(real_batch):
    cfg = AugmentConfig(enabled=False)
    off, plain = augment_batch(real_batch, cfg, epoch=9), center_batch(real_batch, cfg)
    assert set(off) == {"image", "heatmaps", "weight", "person_id"}
    for name in ("image", "heatmaps", "weight"):
        np.testing.assert_array_equal(off[name], plain[name])


def test_smaller_input_keeps_the_box_and_the_frames():
    points, labelled = _spread_points(), np.ones(NUM_JOINTS, bool)
    batch = _synthetic_batch(points, labelled)
    cfg = AugmentConfig(input_size=128, heatmap_size=32)
    out = center_batch(batch, cfg)
    assert out["image"].shape == (1, 128, 128, 3) and out["heatmaps"].shape == (1, NUM_JOINTS, 32, 32)
    expected = 0.5 * (points - (CROP_SIZE - 1) / 2) + (128 - 1) / 2  # half the px, same centre
    np.testing.assert_allclose(apply_affine(out["crop_to_input"][0], points), expected)
    for j in range(NUM_JOINTS):
        nearest = np.floor(input_to_heatmap(expected[j]) + 0.5).astype(int)
        assert out["heatmaps"][0, j, nearest[1], nearest[0]] == out["heatmaps"][0, j].max()
    augmented = augment_batch(batch, AugmentConfig(input_size=128, heatmap_size=32, seed=1), epoch=0)
    assert augmented["image"].shape == (1, 128, 128, 3)


def test_zoom_is_the_same_for_x_and_y():
    points, labelled = _spread_points(), np.ones(NUM_JOINTS, bool)
    cfg = AugmentConfig(rotation_deg=0.0, flip_prob=0.0, color_prob=0.0)
    crop = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
    zooms = []
    for seed in range(5):
        _, moved, _ = augment_sample(augment_pipeline(cfg, CROP_SIZE), seed, crop, points, labelled)
        ratio = (moved - 127.5) / (points - (CROP_SIZE - 1) / 2)  # about the centres of input and crop
        assert np.allclose(ratio, ratio[0, 0], atol=1e-4), ratio  # albumentations works in float32
        zooms.append(ratio[0, 0])
    assert 0.75 <= min(zooms) < max(zooms) <= 1.25


@pytest.mark.parametrize("cfg", [AugmentConfig(), AugmentConfig(input_size=128, heatmap_size=32),
                                 AugmentConfig(enabled=False),
                                 AugmentConfig(rotation_deg=0.0, scale_min=1.25, scale_max=1.25, flip_prob=0.0)])
def test_keypoints_for_the_device_render_the_same_targets(real_batch, cfg):
    """The stream ships keypoints + weights (`augment_keypoints_batch`) and the training device
    draws the maps (`shg_model.targets`): the same images and weights, and maps within 1e-6 of
    `augment_batch`'s, on the 5 real crops and a synthetic one with joints pushed off the map."""
    import torch

    from dataprep.augment import augment_keypoints_batch
    from shg_model.targets import render_heatmaps

    points = _spread_points()
    points[0] = (CROP_MARGIN + 8.0, CROP_SIZE / 2)  # pushed off the map by the 1.25 zoom
    points[1] = (CROP_MARGIN - 27.0, CROP_SIZE / 2)  # outside the centre crop
    for batch in (real_batch, _synthetic_batch(points, np.ones(NUM_JOINTS, bool))):
        full = augment_batch(batch, cfg, epoch=4)
        light = augment_keypoints_batch(batch, cfg, epoch=4)
        np.testing.assert_array_equal(light["image"], full["image"])
        np.testing.assert_array_equal(light["weight"], full["weight"])
        assert light["keypoints"].dtype == np.float64 and np.isfinite(light["keypoints"]).all()
        drawn = render_heatmaps(torch.from_numpy(light["keypoints"]), torch.from_numpy(light["weight"]) > 0,
                                cfg.heatmap_size, cfg.sigma)
        np.testing.assert_allclose(drawn.numpy(), full["heatmaps"], rtol=0, atol=1e-6)
        assert full["heatmaps"].max() > 0.5
