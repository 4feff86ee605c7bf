"""The training progress line: a fixed total, a smoothed rate, the ETA of the limit that ends
training first, validation's own progress, and labels saying which PCKh is which."""

from __future__ import annotations

import math

import pytest

from pipelines.training.progress import (SmoothedRate, Update, evaluation_label, format_update,
                                         training_eta, validation_label)


def test_smoothed_rate_by_hand():
    rate = SmoothedRate(tau_s=10.0)
    assert rate.update(0, 0.0) == 0.0  # no interval yet
    assert rate.update(10, 1.0) == 10.0  # the first interval is taken as it is
    # 20 images in 1 s: 10 + (1 - e^-0.1) * (20 - 10) = 10.951626
    assert rate.update(30, 2.0) == pytest.approx(10 + (1 - math.exp(-0.1)) * 10)
    assert rate.rate == pytest.approx(10.951626, abs=1e-6)
    rate.pause()  # 98 s of validation: not training
    assert rate.update(30, 100.0) == pytest.approx(10.951626, abs=1e-6)
    # an epoch's slow first step (10 images in 5 s = 2/s) moves it by its share of the time only:
    # 10.951626 + (1 - e^-0.5) * (2 - 10.951626) = 7.429...
    assert rate.update(40, 105.0) == pytest.approx(10.951626 + (1 - math.exp(-0.5)) * (2 - 10.951626))
    assert rate.rate > 7.0  # not the 2/s of the slow step
    with pytest.raises(ValueError, match="tau_s"):
        SmoothedRate(0)


def test_eta_is_whichever_limit_ends_training_first():
    # 21,120 images left at 48/s = 440 s; budget 540 s, 250 s spent: 290 s left -> the budget
    update = Update(images=10560, images_total=31680, images_per_s=48.0, budget_s=540.0, trained_s=250.0)
    assert training_eta(update) == (290.0, "time budget")
    # the recipe ends first at 96/s: 220 s
    assert training_eta(Update(images=10560, images_total=31680, images_per_s=96.0,
                               budget_s=540.0, trained_s=250.0)) == (220.0, "recipe")
    assert training_eta(Update(images=10, images_total=100, images_per_s=5.0)) == (18.0, "recipe")
    assert training_eta(Update(images=0, images_total=100, budget_s=60.0)) == (60.0, "time budget")
    assert training_eta(Update(images=0, images_total=100)) == (None, "recipe")


def test_a_budgeted_training_line_keeps_the_recipes_total_and_shows_the_budget():
    update = Update(phase="train", epoch=2, epochs=9, step=1320, images=10560, images_total=31680,
                    images_per_s=48.0, loss_per_stack=(0.00441, 0.00392), val_total=73.14,
                    val_label="flip, bf16, 480 people", budget_s=540.0, trained_s=250.0)
    assert format_update(update, 300.0) == (
        "train epoch 3/9 step 1320 | 10,560/31,680 images (33 %) | 48.0 img/s | 4m10s of 9m00s budget | "
        "loss 0.0044/0.0039 | val PCKh (flip, bf16, 480 people) 73.1 % | 5m00s elapsed, ETA 4m50s (time budget)")


def test_a_validation_line_counts_people():
    update = Update(phase="validating", epoch=2, epochs=9, step=1320, images=10560, images_total=31680,
                    val_done=224, val_people=480, val_per_s=8.0)
    # 256 people left at 8/s = 32 s
    assert format_update(update, 61.0) == (
        "validating epoch 3/9 step 1320 | 224/480 people (47 %) | 8.0 people/s | "
        "1m01s elapsed, validation ETA 32s")
    assert format_update(Update(phase="validating", val_done=0, val_people=2958), 1.0) == (
        "validating epoch 1/1 step 0 | 0/2,958 people (0 %) | 1s elapsed, validation ETA ?")


def test_labels_say_which_pckh_is_which():
    assert validation_label(flip=True, precision="bf16", people=480, subset=False) == "flip, bf16, 480 people"
    assert validation_label(flip=False, precision="fp32", people=400, subset=True) == \
        "no flip, fp32, 400 people (first by id)"
    assert evaluation_label(flip=True, people=480) == "flip test, fp32, best checkpoint, whole val split: 480 people"
    assert evaluation_label(flip=True, people=None) == "flip test, fp32, best checkpoint, whole val split"
