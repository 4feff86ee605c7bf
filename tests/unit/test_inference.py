"""Inference: normalisation, decoding to input px, flip symmetry, mapping back to image px."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dataprep.augment import AugmentConfig, center_batch
from dataprep.crops import crop_person, encode_jpeg
from dataprep.geometry import apply_affine, crop_transform, input_to_heatmap, invert_affine
from dataprep.heatmaps import render_heatmaps
from dataprep.joints import FLIP_PERMUTATION
from dataprep.schema import CROP_JPEG, CROP_TO_IMAGE, KEYPOINTS, LABELLED, PERSON_ID
from pipelines.inference import keypoints as inference
from shg_model import HourglassConfig, StackedHourglass


def test_normalise_uint8_and_float_images():
    images = np.zeros((2, 4, 8, 3), np.uint8)
    images[0, 1, 2] = (255, 0, 51)  # R, G, B at row 1, column 2
    x = inference.normalise_images(images)
    assert x.shape == (2, 3, 4, 8) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 1, 2], torch.tensor([0.5, -0.5, 0.2 - 0.5]))
    assert float(x[1].max()) == -0.5
    floats = images.astype(np.float32) / 255
    torch.testing.assert_close(inference.normalise_images(floats), x)
    tensor = torch.randn(1, 3, 8, 8)
    assert inference.normalise_images(tensor) is tensor


@pytest.mark.parametrize(
    "images, message",
    [
        (np.full((1, 8, 8, 3), 200.0, np.float32), r"float images must lie in \[0, 1\]"),
        (np.zeros((8, 8, 3), np.uint8), r"\(B, H, W, 3\)"),
        (np.zeros((1, 3, 8, 8), np.uint8), r"\(B, H, W, 3\)"),
        (torch.zeros(1, 8, 8, 3), r"normalised float \(B, 3, H, W\)"),
    ],
)
def test_bad_images_are_explained(images, message):
    with pytest.raises(ValueError, match=message):
        inference.normalise_images(images)


def test_keypoints_from_rendered_heatmaps_round_trip():
    # Input px that sit on heatmap pixel centres come back exactly: (41.5, 81.5) <-> hm (10, 20).
    points = np.array([[[41.5, 81.5], [1.5, 1.5], [253.5, 129.5]]])
    hm = input_to_heatmap(points)
    np.testing.assert_array_equal(hm[0, 0], [10, 20])
    maps = torch.from_numpy(render_heatmaps(hm, np.ones((1, 3), bool)))
    coords, conf = inference.keypoints_from_heatmaps(maps)
    np.testing.assert_array_equal(coords, points)
    np.testing.assert_array_equal(conf, np.ones((1, 3), np.float32))


def test_quarter_pixel_shift_in_input_px():
    # A peak at hm (10.3, 20): hm[20, 11] > hm[20, 9], so x moves to 10.25, y stays 20;
    # input px = (10.25 + 0.5) * 4 - 0.5 = 42.5 and (20 + 0.5) * 4 - 0.5 = 81.5.
    maps = torch.from_numpy(render_heatmaps(np.array([[[10.3, 20.0]]]), np.ones((1, 1), bool)))
    coords, _ = inference.keypoints_from_heatmaps(maps)
    np.testing.assert_array_equal(coords[0, 0], [42.5, 81.5])


def tiny_model() -> StackedHourglass:
    torch.manual_seed(0)
    return StackedHourglass(HourglassConfig(stacks=2, channels=8, depth=2))


def test_predict_keypoints_shapes_mode_and_grad():
    model = tiny_model().train()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    coords, conf = inference.predict_keypoints(model, images, FLIP_PERMUTATION)
    assert coords.shape == (3, 16, 2) and coords.dtype == np.float64
    assert conf.shape == (3, 16) and conf.dtype == np.float32
    assert ((coords >= -0.5) & (coords <= 63.5)).all()
    assert model.training  # its mode is given back
    assert all(p.grad is None for p in model.parameters())
    # Eval-mode results do not depend on the batch it came in.
    one, _ = inference.predict_keypoints(model, images[1:2], FLIP_PERMUTATION)
    np.testing.assert_allclose(one[0], coords[1], atol=1e-9)


def test_flip_testing_is_mirror_symmetric():
    """With flip averaging, a mirrored image gives mirrored keypoints, left and right swapped."""
    model = tiny_model()
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    coords, conf = inference.predict_keypoints(model, images, FLIP_PERMUTATION)
    mirrored, mconf = inference.predict_keypoints(model, images[:, :, ::-1], FLIP_PERMUTATION)
    perm = list(FLIP_PERMUTATION)
    np.testing.assert_allclose(mirrored[:, :, 0], 63 - coords[:, perm, 0], atol=1e-9)
    np.testing.assert_allclose(mirrored[:, :, 1], coords[:, perm, 1], atol=1e-9)
    np.testing.assert_allclose(mconf, conf[:, perm], rtol=1e-5)
    # Without flip averaging the network alone is not symmetric (sanity check of the test).
    plain, _ = inference.predict_keypoints(model, images, FLIP_PERMUTATION, flip=False)
    plain_m, _ = inference.predict_keypoints(model, images[:, :, ::-1], FLIP_PERMUTATION, flip=False)
    assert not np.allclose(plain_m[:, :, 0], 63 - plain[:, perm, 0])


def test_to_image_px_hand_computed():
    affine = np.array([[[2.0, 0.0, 10.0], [0.0, 3.0, -5.0]], [[0.0, -1.0, 7.0], [1.0, 0.0, 0.0]]])
    coords = np.array([[[1.0, 2.0]], [[1.0, 2.0]]])
    np.testing.assert_array_equal(inference.to_image_px(coords, affine), [[[12.0, 1.0]], [[5.0, 1.0]]])
    with pytest.raises(ValueError, match=r"\(2, 2, 3\)"):
        inference.to_image_px(coords, affine[:1])


def test_heatmap_peaks_map_back_to_the_original_image_joints():
    """image px -> stored crop (dataprep) -> centre crop + targets (center_batch) -> decode ->
    image px. Joints placed on heatmap pixel centres come back exactly."""
    center, scale = np.array([321.0, 247.0]), 1.3
    on_grid = 4 * np.random.default_rng(2).integers(2, 62, (16, 2)) + 1.5  # input px, hm integer
    joints = apply_affine(invert_affine(crop_transform(center, scale, 256)), on_grid)
    image = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cut = crop_person(image, center, scale, joints, np.ones(16, bool))
    batch = {
        PERSON_ID: np.array(["p0"]),
        CROP_JPEG: np.array([encode_jpeg(cut.crop, 90)], dtype=object),
        KEYPOINTS: cut.keypoints.reshape(1, 32).astype(np.float32),
        LABELLED: np.ones((1, 16), np.uint8),
        CROP_TO_IMAGE: cut.crop_to_image.reshape(1, 6).astype(np.float32),
    }
    centred = center_batch(batch, AugmentConfig(enabled=False))
    coords, conf = inference.keypoints_from_heatmaps(torch.from_numpy(centred["heatmaps"]))
    np.testing.assert_allclose(coords[0], on_grid, atol=1e-3)
    back = inference.to_image_px(coords, centred["input_to_image"])
    np.testing.assert_allclose(back[0], joints, atol=1e-3)  # float32 storage of the affine


def test_evaluation_actors_use_the_cores_on_a_cpu_pool_and_a_gpu_only_when_asked():
    from pipelines.evaluation.evaluate import EvaluateConfig, actor_threads

    # a 2-CPU cluster: one actor reserving 1 CPU (one stays free for the reads) runs 2 threads
    assert actor_threads(2, 1, 1.0, 0.0) == 2
    assert actor_threads(16, 3, 1.0, 0.0) == 5 and actor_threads(16, 2, 8.0, 0.0) == 8
    assert actor_threads(16, 4, 2.0, 1.0) == 2  # with a GPU: its reservation
    assert actor_threads(1, 1, 0.5, 0.0) == 1
    assert EvaluateConfig(model="m", data="d").gpus_per_actor == 0.0  # no GPU unless asked
    with pytest.raises(ValueError, match="gpus_per_actor"):
        EvaluateConfig(model="m", data="d", gpus_per_actor=-1)
