"""Mid-epoch checkpoints, as pure parts: when one is due, what it saves, what an epoch reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.training.loop import Cadence, epoch_summary
from pipelines.training.resume import EpochProgress


def test_cadence_by_steps_and_by_minutes():
    steps = Cadence(steps=5)
    steps.restart(10, 0.0)
    assert [s for s in range(10, 21) if steps.due(s, 1e9)] == [15, 16, 17, 18, 19, 20]
    minutes = Cadence(minutes=2.0)
    minutes.restart(0, 100.0)
    assert not minutes.due(1000, 219.9) and minutes.due(1, 220.0)
    both = Cadence(steps=100, minutes=1.0)
    both.restart(0, 0.0)
    assert both.due(3, 61.0) and both.due(100, 1.0) and not both.due(99, 59.0)
    assert not any(Cadence().due(s, 1e12) for s in range(0, 10_000, 997))  # off by default


def test_progress_adds_stretches_and_survives_a_checkpoint_round_trip(tmp_path):
    from pipelines.training.checkpoints import load_state, save_state

    first = EpochProgress(4, 2).plus(np.array([7, 9]), torch.tensor([2.0, 3.0, 1.0, 2.0], dtype=torch.float64),
                                     seconds=1.5, wait_s=0.5, compute_s=1.0)
    both = first.plus(np.array([-3]), torch.tensor([1.0, 1.0, 0.5, 0.5], dtype=torch.float64),
                      seconds=0.5, wait_s=0.25, compute_s=0.25)
    assert both.keys.tolist() == [7, 9, -3] and both.sums.tolist() == [3.0, 4.0, 1.5, 2.5]
    assert (both.seconds, both.wait_s, both.compute_s) == (2.0, 0.75, 1.25)
    save_state(tmp_path, {"model_config": {}, "model": {}, "epoch": 3, "global_step": 9,
                          "in_epoch": both.state_dict()})
    back = EpochProgress.from_state(load_state(tmp_path)["in_epoch"])  # torch.load(weights_only)
    assert back.epoch == 4 and back.keys.tolist() == [7, 9, -3] and back.keys.dtype == np.int64
    assert back.sums.tolist() == both.sums.tolist() and back.seconds == 2.0


def test_epoch_summary_means_and_sample_accounting():
    # 4 images, loss sum 10 (mean 2.5), stack sums 6 and 4; 2 s, 0.5 s waiting, 1.5 s computing;
    # key 5 trained twice, 3 unique keys of 4 training rows
    progress = EpochProgress(0, keys=np.array([5, 6, 5, 8]), sums=torch.tensor([4.0, 10.0, 6.0, 4.0], dtype=torch.float64),
                             seconds=2.0, wait_s=0.5, compute_s=1.5)
    out = epoch_summary(progress, train_rows=4, stopped=False)
    assert out["epoch/loss"] == 2.5 and out["epoch/loss/stack_0"] == 1.5 and out["epoch/loss/stack_1"] == 1.0
    assert out["epoch/images_per_s"] == 2.0 and out["epoch/data_wait_fraction"] == 0.25
    assert (out["epoch/samples"], out["epoch/samples_repeated"], out["epoch/samples_missed"]) == (4, 1, 1)
    assert "epoch/samples_missed" not in epoch_summary(progress, train_rows=4, stopped=True)


def test_sample_keys_are_stable_across_processes():
    from pipelines.training.data_stream import sample_keys

    # pinned: BLAKE2b-64 of the UTF-8 person_id, little-endian signed; a change here would make
    # every saved mid-epoch checkpoint name other samples
    assert sample_keys(["a", "000001_0"]).tolist() == [3405396810240292928, 2019181621466872739]
    assert sample_keys([]).dtype == np.int64 and sample_keys(np.array(["a"], dtype=object))[0] == 3405396810240292928


@pytest.mark.parametrize("bad", [{"checkpoint_every_steps": -1}, {"checkpoint_every_minutes": -0.5}])
def test_negative_cadence_is_refused(bad):
    from pipelines.config.experiment import TrainConfig
    from pipelines.config.overrides import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_every"):
        TrainConfig(**bad)


def test_resume_carries_the_time_already_spent_training(tmp_path):
    """`train.max_minutes` counts restarts too: a checkpoint saves the training seconds so far,
    and a run its budget stopped does not train again when restarted from it."""
    import ray.train

    from pipelines.config.experiment import load_config
    from pipelines.training.optim import LrSchedule, build_optimizer
    from pipelines.training.resume import checkpoint_state, resume
    from shg_model import StackedHourglass

    cfg = load_config(None, ["model.stacks=1", "model.channels=8", "model.depth=1", "train.epochs=5",
                             "train.max_minutes=2"])
    model = StackedHourglass(cfg.model)
    optimizer, schedule = build_optimizer(model, cfg.train), LrSchedule(1e-3, 0.5)

    def saved(name: str, **kwargs):
        from pipelines.training.checkpoints import save_state

        folder = tmp_path / name
        folder.mkdir()
        save_state(folder, checkpoint_state(cfg, model, optimizer, schedule, global_step=12,
                                            metrics={}, **kwargs))
        return ray.train.Checkpoint.from_directory(folder)

    mid = resume(saved("mid", epochs_done=1, in_epoch=EpochProgress(1, 1), train_seconds=75.5),
                 cfg, model, optimizer, schedule)
    assert (mid.start_epoch, mid.global_step, mid.train_seconds) == (1, 12, 75.5)
    over = resume(saved("over", epochs_done=2, stopped_by="max_minutes", train_seconds=120.2), cfg, model, optimizer, schedule)
    assert (over.start_epoch, over.train_seconds) == (5, 120.2)  # no epoch left to run
    assert resume(None, cfg, model, optimizer, schedule).train_seconds == 0.0


def test_a_run_its_time_budget_stopped_is_repeated_for_its_steps():
    from pipelines.orchestration.rerun import pinned_steps

    tags = {"train.stopped_by": "max_minutes", "train.stopped_at_step": "713"}
    assert pinned_steps(tags) == ("train.max_minutes=0", "train.max_steps=713")
    assert pinned_steps({"train.stopped_by": "max_steps", "train.stopped_at_step": "5"}) == ()
    assert pinned_steps({}) == ()
    early = {**tags, "train.lr_dropped_early_at_step": "540"}  # the budget's lr drop, repeated at its step
    assert pinned_steps(early) == ("train.max_minutes=0", "train.max_steps=713", "train.lr_drop_at_step=540")


@pytest.mark.parametrize("path", [("bf16", "channels_last", False), ("off", "nchw", False), ("fp16", "nchw", True)])
def test_a_rerun_trains_on_the_speed_path_the_original_chose(path):
    # `auto` measures again and may choose differently (bf16 and fp32 give different losses):
    # the recorded choice's tags become overrides that resolve to exactly that path.
    from pipelines.config.run import resolve_run_config
    from pipelines.orchestration.rerun import pinned_speed_path
    from pipelines.training.precision import Path, SpeedChoice

    amp, layout, compiled = path
    tags = SpeedChoice(Path(amp, layout, compiled), reason="measured").tags()
    cfg = resolve_run_config("smoke", values=list(pinned_speed_path(tags))).train
    assert (cfg.amp, cfg.layout, cfg.compile) == (amp, layout, "on" if compiled else "off")
    assert pinned_speed_path({}) == ()  # a run that recorded no choice: nothing pinned
    assert pinned_speed_path({"shg.speed.amp": "auto", "shg.speed.layout": "nchw"}) == ()


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_a_negative_time_budget_is_refused(bad):
    from pipelines.config.experiment import TrainConfig
    from pipelines.config.overrides import ConfigError

    with pytest.raises(ConfigError, match="max_minutes"):
        TrainConfig(max_minutes=bad)


def _trained_checkpoint(tmp_path, cfg, model, optimizer, schedule):
    """A checkpoint of `model`/`optimizer` after two RMSprop steps (state tensors exist)."""
    import ray.train

    from pipelines.training.checkpoints import save_state
    from pipelines.training.resume import checkpoint_state
    from shg_model import heatmap_loss

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        loss, _ = heatmap_loss(model(images), torch.rand(2, 16, 4, 4), torch.ones(2, 16))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_state(tmp_path, checkpoint_state(cfg, model, optimizer, schedule, epochs_done=1, global_step=2, metrics={}))
    return ray.train.Checkpoint.from_directory(tmp_path)


def _state_placement(optimizer) -> set[tuple[str, torch.dtype]]:
    """(device, dtype) of every optimiser state tensor but the scalar `step`."""
    return {(str(v.device), v.dtype) for s in optimizer.state.values() for k, v in s.items()
            if isinstance(v, torch.Tensor) and not (k == "step" and v.dim() == 0)}


def test_a_restore_puts_the_optimiser_state_where_the_parameters_are(tmp_path):
    """The worker places the model (`prepare_model`: to CUDA on a GPU) and *then* restores, so
    RMSprop's state follows the parameters (`Optimizer.load_state_dict` puts it on each
    parameter's device and dtype at load time). A CPU has no second device that keeps the
    parameter objects (`.to("meta")` replaces them), so float64 stands in for CUDA: a placement
    that changes the parameters in place and that the state must follow. Restoring first and
    placing after leaves the state behind (on a GPU: the first step fails on a device mismatch)."""
    from pipelines.config.experiment import load_config
    from pipelines.training.optim import LrSchedule, build_optimizer
    from pipelines.training.resume import restore_placed, resume
    from shg_model import StackedHourglass

    cfg = load_config(None, ["model.stacks=1", "model.channels=8", "model.depth=1", "train.optimizer=rmsprop"])
    model = StackedHourglass(cfg.model)
    checkpoint = _trained_checkpoint(tmp_path, cfg, model, build_optimizer(model, cfg.train), LrSchedule(1e-3, 0.5))

    def fresh():
        m = StackedHourglass(cfg.model)
        return m, build_optimizer(m, cfg.train), LrSchedule(1e-3, 0.5)

    def place(m):
        return m.to(torch.float64)

    wrong, wrong_opt, schedule = fresh()  # the old order: restore, then place
    resume(checkpoint, cfg, wrong, wrong_opt, schedule)
    place(wrong)
    assert _state_placement(wrong_opt) == {("cpu", torch.float32)}  # left behind: what the order fixes

    placed, optimizer, schedule = fresh()
    forward, position = restore_placed(checkpoint, cfg, placed, optimizer, schedule, place=place)
    assert forward is placed and position.global_step == 2 and position.start_epoch == 1
    assert {p.dtype for p in placed.parameters()} == {torch.float64}
    assert len(optimizer.state) == len(list(placed.parameters()))
    assert _state_placement(optimizer) == {("cpu", torch.float64)}


def test_state_to_parameters_moves_tensors_but_not_the_scalar_step():
    from pipelines.training.resume import state_to_parameters

    layer = torch.nn.Linear(2, 2, device="meta")
    optimizer = torch.optim.RMSprop(layer.parameters())
    for p in layer.parameters():
        optimizer.state[p] = {"step": torch.tensor(3.0), "square_avg": torch.zeros(p.shape)}
    state_to_parameters(optimizer)
    assert {s["square_avg"].device.type for s in optimizer.state.values()} == {"meta"}
    assert {s["step"].device.type for s in optimizer.state.values()} == {"cpu"}


def test_a_stretch_sums_losses_on_the_device_as_the_host_sums_did():
    """The loop keeps the losses on the training device and reads them back only when it logs;
    the sums equal the host arithmetic they replace (images, loss·images, per-stack loss·images
    in float64), so CPU runs log the same numbers as before."""
    from pipelines.training.loop import _Stretch

    stretch = _Stretch(stacks=2, start=0.0)
    steps = [(6, torch.tensor(0.123456789), torch.tensor([0.2, 0.0469])), (5, torch.tensor(3.5e-4), torch.tensor([1e-3, 2e-4]))]
    host = torch.zeros(4, dtype=torch.float64)
    for n, loss, per_stack in steps:
        stretch.add(n, loss, per_stack)
        host += torch.cat([torch.tensor([n, loss.item() * n]), per_stack.double() * n])  # the former arithmetic
    assert torch.equal(stretch.sums(), host) and stretch.loss_sums.device.type == "cpu"
