"""`shg evaluate --export`: predictions in detections_our_format.mat's order score what evaluate printed."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from dataprep import schema
from dataprep.mpii import read_annotations
from dataprep.official import SOURCE_MAT, apply_official_head_sizes
from dataprep.prepare import records_table
from dataprep.prepare_batch import prepare_batch
from pipelines.cli.app import build_app
from dataprep import pckh
from pipelines.evaluation import export
from pipelines.inference import model_dir as model_io
from shg_model import HourglassConfig, StackedHourglass


def test_official_predictions_by_hand():
    pred = np.arange(2 * 16 * 2, dtype=np.float64).reshape(2, 16, 2)
    out = export.official_predictions(pred, np.array([2, -1]), n_rows=3)
    assert out.shape == (3, 16, 2)
    np.testing.assert_array_equal(out[2], pred[0] + 1.0)  # 0-based -> MATLAB's 1-based
    assert np.isnan(out[:2]).all()


@pytest.mark.parametrize("suffix", [".npy", ".mat"])
def test_write_and_read_round_trip(tmp_path, suffix):
    preds = np.random.default_rng(0).uniform(0, 100, (4, 16, 2))
    export.write_predictions(tmp_path / f"p{suffix}", preds)
    np.testing.assert_array_equal(export.read_predictions(tmp_path / f"p{suffix}"), preds)
    with pytest.raises(ValueError, match="must end in"):
        export.write_predictions(tmp_path / "p.txt", preds)


@pytest.fixture(scope="module")
def prepared(mpii_dir, tmp_path_factory):
    """The 5 real validation images, prepared with the official head sizes of the .mat."""
    images = mpii_dir / "images"
    records = read_annotations(images / "annotations_hrnet_format.json").records
    records, report = apply_official_head_sizes(records, mpii_dir / "detections_our_format.mat")
    assert report["matched"] == len(records) == 5
    rows = prepare_batch(records_table(records), str(images), jpeg_quality=90)
    rows = rows.select(schema.PREPARED_SCHEMA.names).cast(schema.PREPARED_SCHEMA)
    assert set(rows.column(schema.HEAD_SIZE_SOURCE).to_pylist()) == {SOURCE_MAT}
    out = tmp_path_factory.mktemp("prepared")
    (out / "val").mkdir()
    pq.write_table(rows, out / "val" / "part-0.parquet")
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(1)
    cfg = HourglassConfig(stacks=1, channels=8, depth=4)
    return model_io.save_model_dir(StackedHourglass(cfg), model_io.ModelCard.for_config(cfg),
                                   tmp_path_factory.mktemp("m") / "tiny")


def _json(output: str) -> dict:
    """The JSON table: from the line that is just "{" (log lines before it may hold braces)."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def test_exported_file_scores_what_evaluate_printed(ray_local, mpii_dir, prepared, model_dir, tmp_path):
    gt = mpii_dir / "detections_our_format.mat"
    runner = CliRunner()
    result = runner.invoke(build_app(), ["evaluate", "--model", str(model_dir), "--data", str(prepared),
                                         "--export", str(tmp_path / "pred.mat"), "--gt", str(gt), "--json"])
    assert result.exit_code == 0, result.output
    assert "exported 5 of 2958 ground-truth people" in result.output
    printed = _json(result.output)
    preds = export.read_predictions(tmp_path / "pred.mat")
    assert preds.shape == (2958, 16, 2) and (~np.isnan(preds).all(axis=(1, 2))).sum() == 5
    np.save(tmp_path / "pred.npy", preds)  # the .npy export is the same array (test above)
    for suffix in (".mat", ".npy"):
        scored = runner.invoke(build_app(), ["pckh", "--pred", str(tmp_path / f"pred{suffix}"), "--gt", str(gt),
                                             "--only-predicted", "--json"])
        assert scored.exit_code == 0, scored.output
        table = _json(scored.output)
        assert {k: table[k] for k in pckh.TABLE_KEYS} == {k: printed[k] for k in pckh.TABLE_KEYS}
    strict = runner.invoke(build_app(), ["pckh", "--pred", str(tmp_path / "pred.npy"), "--gt", str(gt)])
    assert strict.exit_code != 0 and "--only-predicted" in strict.output


def test_export_needs_the_ground_truth(prepared, model_dir, tmp_path):
    result = CliRunner().invoke(build_app(), ["evaluate", "--model", str(model_dir), "--data", str(prepared),
                                              "--export", str(tmp_path / "p.npy")])
    assert result.exit_code != 0 and "--export needs --gt" in result.output
