"""Smoke runs of every benchmark at tiny size, and the exact parts of the suite.

No timing is asserted here (timings live in `python -m benchmarks`): these check that each
measurement runs end to end on real parts and returns the figures it documents, and that the
baseline really is the same network as shg_model.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.__main__ import SECTIONS, format_table, machine, main, plan
from benchmarks.heatmaps import measure_heatmaps
from benchmarks.memory import measure_memory
from benchmarks.peak import measure_matmul_peak, measure_write_bandwidth
from benchmarks.reference import ReferenceStackedHourglass, copy_weights, parameter_total
from benchmarks.timing import interleaved_medians
from benchmarks.training import StepShape, build_pair, measure_training
from shg_model import HourglassConfig, StackedHourglass, parameter_count
from benchmarks.speed import SpeedConfig

TINY = StepShape(stacks=2, channels=16, depth=2, batch=2, size=64)
EAGER = SpeedConfig(compile=False)


@pytest.mark.parametrize("stacks", [1, 2, 8])
def test_reference_has_shg_models_parameter_count(stacks):
    cfg = HourglassConfig(stacks=stacks)
    assert parameter_total(ReferenceStackedHourglass(stacks)) == parameter_count(cfg)


@pytest.mark.parametrize("channels_last", [False, True])
def test_reference_weights_give_shg_models_outputs(channels_last):
    torch.manual_seed(0)
    reference = ReferenceStackedHourglass(2, channels=16, joints=5, depth=2)
    model = StackedHourglass(HourglassConfig(stacks=2, channels=16, joints=5, depth=2,
                                             channels_last=channels_last))
    copy_weights(reference, model)
    images = torch.randn(2, 3, 32, 32)
    for mode in ("train", "eval"):
        getattr(reference, mode)()
        getattr(model, mode)()
        with torch.no_grad():
            # Layout changes the summation order; BN over tiny batches amplifies it a little.
            torch.testing.assert_close(model(images), reference(images), rtol=1e-3, atol=1e-3)


def test_copy_weights_rejects_a_different_architecture():
    with pytest.raises(ValueError, match="shape mismatch"):
        copy_weights(ReferenceStackedHourglass(2, channels=16, depth=2),
                     StackedHourglass(HourglassConfig(stacks=2, channels=32, depth=2)))
    with pytest.raises(ValueError, match="state dicts differ"):
        copy_weights(ReferenceStackedHourglass(1, channels=16, depth=2),
                     StackedHourglass(HourglassConfig(stacks=2, channels=16, depth=2)))


def test_build_pair_starts_both_models_from_the_same_weights():
    baseline, fast = build_pair(TINY, EAGER)
    for (name, a), (_, b) in zip(baseline.state_dict().items(), fast.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_interleaved_medians_runs_each_contender_round_robin():
    calls = []
    medians = interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                  rounds=3, number=2, warmup=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())
    with pytest.raises(ValueError, match="rounds"):
        interleaved_medians({"a": lambda: None}, rounds=0)


def test_peak_measurements_return_positive_rates():
    assert measure_matmul_peak(sizes=(64,), rounds=1)["matmul_fp32_gflop_s"] > 0
    assert measure_write_bandwidth(nbytes=1 << 20, rounds=1)["write_gb_s"] > 0


def test_measure_training_tiny_eager():
    figures = measure_training(TINY, EAGER, rounds=1, matmul_gflop_s=100.0)
    for key in ("img_s", "baseline_img_s", "speedup", "peak_fraction", "baseline_peak_fraction"):
        assert figures[f"train_2stack_{key}"] > 0, key
    assert figures["infer_2stack_img_s"] > 0 and figures["infer_2stack_baseline_img_s"] > 0
    # Same weights, same batch, same fp32 maths up to layout: the losses agree.
    assert figures["train_2stack_loss_rel_diff"] < 1e-2
    # 3 x forward FLOPs of this tiny model, counted by hand for the stem's 7x7 conv alone:
    # 2 * (2 * 32 * 32) * 64 * 3 * 49 FLOPs forward is a lower bound.
    assert figures["train_2stack_gflop"] > 3 * 2 * 2 * 32 * 32 * 64 * 3 * 49 / 1e9


def test_measure_training_bf16_prefix_and_no_inference():
    figures = measure_training(TINY, SpeedConfig(compile=False, autocast_bf16=True), rounds=1,
                               inference=False, prefix="train_2stack_bf16")
    assert figures["train_2stack_bf16_img_s"] > 0
    assert not any(k.startswith("infer_") for k in figures)


def test_speed_config_rejects_non_bools():
    with pytest.raises(ValueError, match="compile"):
        SpeedConfig(compile="yes")


def test_measure_memory_tiny_in_subprocesses():
    figures = measure_memory(stacks=1, channels=8, depth=1, batch=1, size=16, compile=False)
    for variant in ("baseline", "fast"):
        assert figures[f"mem_1stack_{variant}_peak_rss_mib"] > 10  # python + torch at least
        assert figures[f"mem_1stack_{variant}_state_mib"] == pytest.approx(
            12 * parameter_count(HourglassConfig(stacks=1, channels=8, depth=1)) / 2**20)


def test_measure_heatmaps_small():
    figures = measure_heatmaps(people=4, rounds=1)
    assert figures["heatmap_us_per_person"] > 0 and figures["heatmap_dense_us_per_person"] > 0
    assert figures["heatmap_speedup"] == pytest.approx(
        figures["heatmap_dense_us_per_person"] / figures["heatmap_us_per_person"])


def test_table_marks_targets():
    table = format_table({"train_2stack_speedup": 2.5, "heatmap_over_write_bound": 3.0,
                          "machine_cpu": "AMD EPYC", "x": math.nan})
    lines = table.splitlines()
    assert "met" in lines[1] and "MISSED" in lines[2] and "AMD EPYC" in lines[3] and "nan" in lines[4]


def test_main_writes_flat_json(tmp_path):
    out = tmp_path / "figures.json"
    assert main(["--quick", "--only", "heatmaps", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["heatmap_speedup"] > 0 and "machine_cpu" in figures
    assert all(not isinstance(v, (dict, list)) for v in figures.values())


@pytest.mark.slow
def test_measure_data_pipeline_tiny(ray_local):
    from benchmarks.data_pipeline import measure_data_pipeline

    figures = measure_data_pipeline(people=60, stream_epochs=1, rounds=1)
    assert figures["prepare_rows"] > 0 and figures["prepare_rows_s"] > 0
    assert figures["parquet_bytes_per_row"] > 1000  # a JPEG crop and uint8 heatmaps per row
    assert figures["stream_img_s"] > 0 and figures["train_consume_img_s"] > 0
    assert figures["stream_over_train"] == pytest.approx(
        figures["stream_img_s"] / figures["train_consume_img_s"])


def test_profile_step_tiny_splits_the_step(capsys):
    from benchmarks.profile_step import profile_step

    split = profile_step(stacks=1, variant="baseline", rows=5, channels=8, depth=1, batch=1, size=16)
    assert 0 < split["conv_s"] <= split["step_s"] and 0 < split["conv_share"] <= 1
    assert "convolution" in capsys.readouterr().out


@pytest.mark.parametrize("section", SECTIONS)
def test_every_section_runs_in_its_tiny_form(section, tmp_path, ray_local):
    """`python -m benchmarks --tiny --only SECTION`: a renamed function, a broken import or a
    section that measures nothing fails here, not in the hands of a README reader."""
    out = tmp_path / "figures.json"
    assert main(["--tiny", "--only", section, "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    measured = set(figures) - set(machine()) - {"suite_seconds"}
    assert measured, f"section {section!r} returned no figures"
    assert all(isinstance(figures[k], (int, float)) for k in measured)


def test_tiny_plan_covers_every_section():
    assert {section for section, _, _ in plan(False, tiny=True)} == set(SECTIONS)


@pytest.mark.slow
def test_ingest_section_measures_the_mpii_stream_in_steady_state(ray_local, tmp_path, monkeypatch):
    """`--only ingest` at small size: the figures the issue names, under those names; the stream
    delivers keypoints, not maps (<= 200 KB a sample at 256 px)."""
    from benchmarks.ingest import measure_ingest

    figures = measure_ingest(people=96, epochs=1, warm_batches=3, log=lambda _: None)
    assert (figures["ingest_input_size"], figures["ingest_heatmap_size"]) == (256, 64)
    assert figures["ingest_samples_per_s_per_core"] > 0 and figures["augment_fn_samples_per_s_per_core"] > 0
    # image 256*256*3 + keypoints 16*2*8 + weight 16*4 + key 8 bytes
    assert figures["ingest_bytes_per_sample"] == 196608 + 256 + 64 + 8
    assert figures["ingest_cores_per_gpu"] == pytest.approx(1000.0 / figures["ingest_samples_per_s_per_core"])
    assert figures["ingest_over_fn"] == pytest.approx(
        figures["ingest_samples_per_s_per_core"] / figures["augment_fn_samples_per_s_per_core"])


@pytest.mark.slow
def test_gpu_check_cpu_form_runs_every_part(ray_local, tmp_path):
    """`python -m benchmarks --only gpu --device cpu`: the GPU check's four parts on a tiny model,
    so the script a GPU session runs (scripts/gpu_check.sh) cannot rot."""
    out = tmp_path / "gpu.json"
    assert main(["--only", "gpu", "--device", "cpu", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["gpu_on_cuda"] == 0.0 and figures["gpu_stacks"] == 2
    for batch in (2, 4):
        assert figures[f"gpu_fp32_b{batch}_images_per_s"] > 0 and figures[f"gpu_bf16_b{batch}_images_per_s"] > 0
    assert figures["gpu_step_gflop_per_sample"] > 0
    assert figures["gpu_bf16_loss_max_rel_diff"] < 0.1  # 30 steps of a tiny model in bf16
    assert figures["gpu_fp32_loss_last"] < figures["gpu_fp32_loss_first"]
    assert figures["gpu_ckpt_ok"] == 1.0 and figures["gpu_ckpt_state_on_device"] == 1.0
    assert figures["gpu_ckpt_resumed_step"] == 2 and figures["gpu_ckpt_loss_rel_diff"] < 1e-5
    assert 0.0 <= figures["gpu_stream_data_wait_share"] <= 1.0 and figures["gpu_stream_images_per_s"] > 0


def test_dense_peaks_are_looked_up_by_the_most_specific_name():
    from benchmarks.gpu_peaks import dense_peak

    assert dense_peak("NVIDIA H200")["bf16"] == dense_peak("NVIDIA H100 80GB HBM3")["bf16"] == 989.0
    assert dense_peak("NVIDIA H100 PCIe")["bf16"] == 756.0
    assert dense_peak("NVIDIA A100-SXM4-80GB")["bf16"] == 312.0 and dense_peak("NVIDIA A10")["bf16"] == 125.0
    assert dense_peak("NVIDIA A10G") == {} and dense_peak("Some Future GPU") == {}
    assert "bf16" not in dense_peak("Tesla V100-SXM2-16GB")  # bf16 only emulated there
