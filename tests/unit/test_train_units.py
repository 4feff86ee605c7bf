"""Pure parts of training: lr schedule, input normalisation, checkpoints, mean-pose baseline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipelines.training.checkpoints import CheckpointMismatchError, load_state, save_state
from pipelines.config.experiment import TrainConfig
from pipelines.training.device import autocast_dtype
from shg_model.pixels import normalise
from pipelines.training.optim import LrSchedule
from pipelines.training.data_stream import ValidationSet
from pipelines.training.validation import mean_pose, mean_pose_baseline, validate
from shg_model import HourglassConfig, StackedHourglass


def test_lr_drops_at_configured_epochs():
    schedule = LrSchedule(lr=1.0, factor=0.2, drop_epochs=(2, 4))
    lrs = [schedule.after_epoch(epoch, None) for epoch in range(5)]
    # after epoch 1 (2 done) and epoch 3 (4 done) the lr is multiplied by 0.2
    assert lrs == pytest.approx([1.0, 0.2, 0.2, 0.04, 0.04])


def test_lr_drops_on_plateau_and_round_trips():
    schedule = LrSchedule(lr=1.0, factor=0.5, patience=2)
    assert schedule.after_epoch(0, 50.0) == 1.0  # new best
    assert schedule.after_epoch(1, 49.0) == 1.0  # 1 bad epoch
    assert schedule.after_epoch(2, 50.0) == 0.5  # 2 bad epochs (ties do not count as better)
    again = LrSchedule(lr=9.0, factor=0.5, patience=2)
    again.load_state_dict(schedule.state_dict())
    assert again.state_dict() == {"lr": 0.5, "best": 50.0, "bad_epochs": 0, "budget_fraction": 0.0,
                                  "drop_step": 0, "early_drops": 0}


def test_the_budget_takes_the_next_listed_drop_early_once_and_the_epoch_then_skips_it():
    schedule = LrSchedule(lr=1.0, factor=0.2, drop_epochs=(7,), budget_fraction=0.75)
    assert not schedule.early_drop_due(3, spent_fraction=0.74, step=10)
    assert schedule.early_drop_due(3, spent_fraction=0.75, step=10)
    assert schedule.take_early_drop() == pytest.approx(0.2)
    assert not schedule.early_drop_due(3, spent_fraction=0.9, step=11)  # once per run
    # epochs 3..5 end with no drop; epoch 6's end (7 epochs done) was the listed drop: skipped
    assert [schedule.after_epoch(e, None) for e in range(3, 8)] == pytest.approx([0.2] * 5)
    again = LrSchedule(lr=1.0, factor=0.2, drop_epochs=(7,), budget_fraction=0.75)
    again.load_state_dict(schedule.state_dict())  # a restart after the drop does not drop again
    assert again.lr == pytest.approx(0.2) and not again.early_drop_due(5, spent_fraction=0.99, step=20)


def test_the_budget_drop_waits_for_a_listed_drop_ahead_and_is_off_at_zero():
    after = LrSchedule(lr=1.0, factor=0.2, drop_epochs=(2,), budget_fraction=0.5)
    after.after_epoch(0, None)
    after.after_epoch(1, None)  # the listed drop (2 epochs done) happened on time
    assert after.lr == pytest.approx(0.2) and not after.early_drop_due(2, spent_fraction=0.9, step=30)
    off = LrSchedule(lr=1.0, factor=0.2, drop_epochs=(7,))
    assert not off.early_drop_due(0, spent_fraction=0.99, step=5)
    during = LrSchedule(lr=1.0, factor=0.2, drop_epochs=(2,), budget_fraction=0.5)
    during.after_epoch(0, None)
    assert during.early_drop_due(1, spent_fraction=0.6, step=5)  # epoch 1 ends with the listed drop
    during.take_early_drop()
    assert during.after_epoch(1, None) == pytest.approx(0.2)  # not 0.04


def test_normalise_matches_the_model_card():
    images = torch.tensor([[[[0, 255, 51]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
    out = normalise(images)
    assert out.shape == (1, 3, 1, 1)
    assert out.flatten().tolist() == pytest.approx([-0.5, 0.5, 0.2 - 0.5])


def test_amp_is_off_on_cpu_by_default():
    assert autocast_dtype(TrainConfig(), on_gpu=False) is None
    assert autocast_dtype(TrainConfig(), on_gpu=True) is torch.bfloat16
    assert autocast_dtype(TrainConfig(amp="fp16"), on_gpu=True) is torch.float16


def test_mean_pose_by_hand():
    keypoints = np.array([[[0.0, 0.0], [10.0, 10.0]],
                          [[2.0, 4.0], [np.nan, np.nan]],
                          [[4.0, 8.0], [20.0, 30.0]]])
    labelled = np.array([[True, True], [True, False], [True, True]])
    # joint 0: mean of (0,0), (2,4), (4,8) = (2, 4); joint 1: mean of (10,10), (20,30) = (15, 20)
    np.testing.assert_allclose(mean_pose(keypoints, labelled), [[2.0, 4.0], [15.0, 20.0]])
    never = mean_pose(keypoints[:, :1].repeat(2, 1), np.array([[True, False]] * 3))
    np.testing.assert_allclose(never, [[2.0, 4.0], [2.0, 4.0]])  # falls back to the mean joint


def _validation_set_with_unknown_head_size() -> ValidationSet:
    """Two people, identity input->image affine; person 1 has no head size (NaN)."""
    rng = np.random.default_rng(0)
    joints = rng.uniform(10, 50, size=(2, 16, 2))
    return ValidationSet(
        images=np.zeros((2, 64, 64, 3), np.uint8), heatmaps=np.zeros((2, 16, 16, 16), np.float32),
        weight=np.ones((2, 16), np.float32), input_to_image=np.tile(np.eye(2, 3), (2, 1, 1)),
        joints_image=joints, labelled=np.ones((2, 16), bool), head_size=np.array([4.0, np.nan]),
        person_id=np.array(["a", "b"]), fingerprint="x")


def test_mean_pose_baseline_skips_a_person_without_head_size():
    val = _validation_set_with_unknown_head_size()
    table = mean_pose_baseline(val.joints_image[0], val)  # person 0's own pose
    assert table["Total"] == 100.0  # person 1 (NaN head size) is skipped, not an error


def test_validation_runs_with_a_person_without_head_size():
    torch.manual_seed(0)
    model = StackedHourglass(HourglassConfig(stacks=1, channels=8, depth=2))
    result = validate(model, _validation_set_with_unknown_head_size(), list(range(16)), batch_size=2)
    assert result.pred.shape == (2, 16, 2) and 0.0 <= result.table["Total"] <= 100.0
    assert np.isfinite(result.loss_per_stack).all()


def _state(cfg: HourglassConfig) -> dict:
    model = StackedHourglass(cfg)
    return {"model_config": dataclasses.asdict(cfg), "model": model.state_dict(), "epoch": 0,
            "global_step": 5, "optimizer": {}, "rng": {"torch": torch.get_rng_state()}}


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    cfg = HourglassConfig(stacks=1, channels=8, depth=1)
    save_state(tmp_path, _state(cfg))
    state = load_state(tmp_path, expected=dataclasses.replace(cfg, channels_last=True))  # layout only
    assert state["global_step"] == 5
    with pytest.raises(CheckpointMismatchError, match=r"model.channels: checkpoint 8 vs config 16") as err:
        load_state(tmp_path, expected=dataclasses.replace(cfg, channels=16, stacks=2))
    assert "model.stacks: checkpoint 1 vs config 2" in str(err.value)
    with pytest.raises(FileNotFoundError, match="not a shg training checkpoint"):
        load_state(tmp_path / "nowhere")


def test_a_run_folder_of_another_store_is_not_resumed(tmp_path):
    """The same `shg train` with another --tracking-uri trains in its own folder, and says so."""
    from mlflow import MlflowClient

    from pipelines.tracking.run_records import RunRecord
    from pipelines.training.driver import run_name_in_store

    first, second = (f"sqlite:///{tmp_path / name}.db" for name in ("first", "second"))
    experiment = MlflowClient(first).create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run_id = MlflowClient(first).create_run(experiment).info.run_id
    RunRecord(run_id, first, "e", status="finished", result={"x": 1}).write(tmp_path / "shg-abc")
    said = []
    assert run_name_in_store(tmp_path, "shg-abc", first, said.append) == "shg-abc"  # its own store: resume
    assert said == []
    other = run_name_in_store(tmp_path, "shg-abc", second, said.append)
    assert other.startswith("shg-abc-") and other != "shg-abc"
    assert "not a run of" in said[0] and second in said[0]
    assert run_name_in_store(tmp_path, "shg-abc", second, said.append) == other  # deterministic
    # A record naming a run its own store no longer has is not trusted either.
    RunRecord("0" * 32, first, "e", status="finished").write(tmp_path / "shg-gone")
    assert run_name_in_store(tmp_path, "shg-gone", first, said.append) != "shg-gone"


def test_cpu_worker_threads_share_the_node():
    from pipelines.training.device import cpu_threads

    assert cpu_threads(2, 1) == 2  # one worker on 2 cores: both (Ray would give it 1)
    assert cpu_threads(2, 2) == 1
    assert cpu_threads(16, 3) == 5
    assert cpu_threads(1, 4) == 1  # never 0


def test_a_rerun_takes_the_early_drop_at_the_pinned_step():
    schedule = LrSchedule(lr=1.0, factor=0.2, drop_epochs=(7,), drop_step=120)
    assert not schedule.early_drop_due(4, spent_fraction=0.0, step=119)
    assert schedule.early_drop_due(4, spent_fraction=0.0, step=120)
    assert schedule.take_early_drop() == pytest.approx(0.2)
    assert not schedule.early_drop_due(4, spent_fraction=0.0, step=121)
