"""The stored crop's margin covers the paper's augmentation range: no black corners."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataprep.augment import AugmentConfig, augment_pipeline, augment_sample, sample_seed
from dataprep.schema import CROP_BOX_SCALE, CROP_MARGIN, CROP_SIZE, INPUT_SIZE, required_box_scale


def test_required_box_scale_by_hand():
    assert required_box_scale(0, 1.0) == pytest.approx(1.0)
    assert required_box_scale(30, 0.75) == pytest.approx((math.sqrt(3) / 2 + 0.5) / 0.75)  # 1.8214
    assert required_box_scale(-30, 0.75) == required_box_scale(30, 0.75)
    assert required_box_scale(90, 1.0) == pytest.approx(math.sqrt(2))  # 45 deg is the widest


def test_stored_crop_covers_the_paper_range():
    cfg = AugmentConfig()
    assert required_box_scale(cfg.rotation_deg, cfg.scale_min) <= CROP_BOX_SCALE
    assert CROP_SIZE == INPUT_SIZE * CROP_BOX_SCALE and CROP_MARGIN == (CROP_SIZE - INPUT_SIZE) // 2


def test_extreme_augmentation_sees_only_stored_pixels():
    """A white stored crop, zoom 0.75 and rotations up to 30 deg: no black pixel in any input."""
    cfg = AugmentConfig(scale_min=0.75, scale_max=0.75, flip_prob=0.0, color_prob=0.0)
    transform = augment_pipeline(cfg, CROP_SIZE)
    crop = np.full((CROP_SIZE, CROP_SIZE, 3), 255, np.uint8)
    points, labelled = np.full((16, 2), CROP_SIZE / 2), np.ones(16, bool)
    for i in range(12):
        image, _, _ = augment_sample(transform, sample_seed(0, 0, f"p{i}"), crop, points, labelled)
        assert image.shape == (INPUT_SIZE, INPUT_SIZE, 3)
        assert image.min() >= 250, f"sample {i}: {int((image.min(-1) < 250).sum())} dark px"
