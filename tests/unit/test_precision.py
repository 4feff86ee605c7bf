"""Choosing the training path (precision, layout, compilation): hand-made timings in, choice out,
and one real measurement of a tiny model."""

from __future__ import annotations

import pytest
import torch

from pipelines.config.experiment import ConfigError, TrainConfig
from pipelines.training.precision import (
    Path, SpeedChoice, Timing, choose, eager_candidates, fastest, gpu_choice, measure_path, native_bf16,
    resolve, worth_compiling)
from shg_model import HourglassConfig

FP32 = Path("off", "nchw")
BF16_CL = Path("bf16", "channels_last")
FP32_CL_COMPILED = Path("off", "channels_last", compiled=True)


def test_avx2_cpu_keeps_fp32_when_bf16_is_slow():
    # the AVX2-only figures: fp32 6.3 images/s, bf16 + channels_last 3.2
    choice = choose([Timing(FP32, 6.3), Timing(BF16_CL, 3.2)])
    assert choice.path == FP32
    assert choice.reason.startswith("baseline")


def test_native_bf16_cpu_takes_bf16():
    choice = choose([Timing(FP32, 10.0), Timing(BF16_CL, 25.0)])
    assert choice.path == BF16_CL
    assert choice.reason == "2.50x fp32-nchw"


def test_a_gain_inside_the_noise_keeps_the_baseline():
    assert fastest([Timing(FP32, 10.0), Timing(BF16_CL, 10.4)]).path == FP32  # +4 % < 5 %
    assert fastest([Timing(FP32, 10.0), Timing(BF16_CL, 10.6)]).path == BF16_CL  # +6 %


def test_compiled_path_wins_only_when_faster():
    eager = [Timing(FP32, 10.0), Timing(BF16_CL, 2.0)]
    won = choose(eager, Timing(FP32_CL_COMPILED, 12.0, first_step_s=120.0))
    assert won.path == FP32_CL_COMPILED
    assert won.reason == "compiled: 1.20x fp32-nchw, compile 120 s"
    lost = choose(eager, Timing(FP32_CL_COMPILED, 10.2, first_step_s=120.0))
    assert lost.path == FP32
    assert "compiled only 10.2" in lost.reason


def test_compiling_is_tried_only_for_long_runs():
    eager = Timing(FP32, 10.0)
    # 6,000 images at 10/s = 600 s = 4 x 150 s: just worth the bet; 5,000 images (500 s) is not
    assert worth_compiling(eager, 6000, compile_s_estimate=150.0)
    assert not worth_compiling(eager, 5000, compile_s_estimate=150.0)


def test_candidates_follow_fixed_settings():
    assert eager_candidates("auto", "auto") == [FP32, BF16_CL]
    assert eager_candidates("off", "auto") == [FP32]
    assert eager_candidates("auto", "nchw") == [FP32]
    assert eager_candidates("bf16", "auto") == [BF16_CL]
    assert eager_candidates("off", "channels_last") == [Path("off", "channels_last")]  # asked for
    # no native bf16 (AVX2 only): auto does not measure bf16; asking for it still does
    assert eager_candidates("auto", "auto", bf16_native=False) == [FP32]
    assert eager_candidates("bf16", "auto", bf16_native=False) == [BF16_CL]


def test_gpu_choice_is_bf16_where_supported_else_fp16():
    assert gpu_choice("auto", "auto", "auto", bf16_supported=True).path == Path("bf16", "channels_last")
    assert gpu_choice("auto", "auto", "auto", bf16_supported=False).path == Path("fp16", "channels_last")
    assert gpu_choice("off", "nchw", "on", bf16_supported=True).path == Path("off", "nchw", compiled=True)


def test_choice_records_tags_and_rates():
    choice = SpeedChoice(FP32, "baseline", (Timing(FP32, 6.3, 0.4), Timing(BF16_CL, 3.2, 1.8)), 9.5)
    assert choice.tags()["shg.speed.path"] == "fp32-nchw"
    assert choice.tags()["shg.speed.compile"] == "false"
    assert choice.metrics() == {"speed/measure_s": 9.5,
                                "speed/images_per_s/fp32-nchw": 6.3, "speed/first_step_s/fp32-nchw": 0.4,
                                "speed/images_per_s/bf16-channels_last": 3.2,
                                "speed/first_step_s/bf16-channels_last": 1.8}


def test_config_rejects_unknown_modes():
    with pytest.raises(ConfigError, match="layout in auto"):
        TrainConfig(layout="nhwc")
    with pytest.raises(ConfigError, match="compile in auto"):
        TrainConfig(compile="yes")


def test_measure_path_counts_timed_steps_after_one_warm_up():
    calls = []
    timing = measure_path(lambda: calls.append(1), FP32, steps=3, batch_size=4)
    assert len(calls) == 4
    assert timing.images_per_s > 0 and timing.path == FP32


def test_real_measurement_on_a_tiny_model_returns_the_initial_weights():
    cfg = HourglassConfig(stacks=1, channels=8, joints=4, depth=1)
    torch.manual_seed(0)
    choice, model = resolve(cfg, "auto", "auto", "auto", batch_size=2, input_size=16,
                            images_per_worker=8,
                            make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=0.1))
    # bf16 is measured where the CPU has it natively; 8 images are not worth compiling
    expected = [FP32, BF16_CL] if native_bf16() else [FP32]
    assert [t.path for t in choice.timings] == expected
    assert all(t.images_per_s > 0 for t in choice.timings)
    assert choice.path in expected
    assert choice.measure_s > 0
    torch.manual_seed(0)
    from shg_model import StackedHourglass

    fresh = StackedHourglass(cfg).state_dict()
    for key, value in model.state_dict().items():  # the measurement's Adam steps are undone
        torch.testing.assert_close(value, fresh[key], rtol=0, atol=0)


def test_nothing_is_measured_when_everything_is_fixed():
    cfg = HourglassConfig(stacks=1, channels=8, joints=4, depth=1)
    choice, model = resolve(cfg, "off", "channels_last", "off", batch_size=2, input_size=16,
                            images_per_worker=8, make_optimizer=lambda m: torch.optim.Adam(m.parameters()))
    assert choice.path == Path("off", "channels_last") and choice.timings == ()
    assert choice.reason == "fixed by config"
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("capability, native", [
    ((6, 1), False), ((7, 0), False), ((7, 5), False),  # P100/GTX 10x0, V100, T4: bf16 emulated
    ((8, 0), True), ((8, 6), True), ((8, 9), True), ((9, 0), True), ((10, 0), True),  # A100, A10/3090, L4, H100/H200, B200
])
def test_amp_auto_on_a_gpu_takes_bf16_only_where_it_is_native(capability, native):
    from pipelines.training.precision import bf16_native_on_gpu

    assert bf16_native_on_gpu(capability) is native
    assert gpu_choice("auto", "auto", "off", bf16_supported=bf16_native_on_gpu(capability)).path.amp == \
        ("bf16" if native else "fp16")
    assert bf16_native_on_gpu(capability, rocm=True)  # every ROCm GPU has bf16


def test_cuda_bf16_check_asks_without_emulation(monkeypatch):
    """A V100 (7.0) where torch would *emulate* bf16: `is_bf16_supported()` says True by default;
    asked with emulation off (and by capability) it is not native, so amp=auto takes fp16.
    Without CUDA (this machine) the answer is False."""
    from pipelines.training.precision import cuda_bf16_native

    assert torch.cuda.is_available() or cuda_bf16_native() is False
    asked = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return including_emulation  # the emulating V100

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.version, "hip", None)
    assert cuda_bf16_native() is False and asked == [False]
