"""`shg evaluate`: Ray Data batch inference on prepared rows of the 5 real MPII images."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from dataprep import schema
from dataprep.augment import AugmentConfig, center_batch
from dataprep.mpii import read_annotations
from dataprep.prepare import records_table
from dataprep.prepare_batch import prepare_batch
from pipelines.evaluation import evaluate
from pipelines.inference import model_dir as saved_model
from pipelines.tracking import model_io
from dataprep import pckh
from pipelines.cli.app import build_app
from pipelines.inference.keypoints import predict_keypoints, to_image_px
from shg_model import HourglassConfig, StackedHourglass


@pytest.fixture(scope="module")
def prepared(mpii_dir, tmp_path_factory):
    """A prepared dataset (val only, two parquet files) made by dataprep's own batch function."""
    images = mpii_dir / "images"
    records = read_annotations(images / "annotations_hrnet_format.json").records
    rows = prepare_batch(records_table(records), str(images), jpeg_quality=90)
    assert rows.column(schema.REASON).null_count == len(rows)  # all five accepted
    rows = rows.select(schema.PREPARED_SCHEMA.names).cast(schema.PREPARED_SCHEMA)
    out = tmp_path_factory.mktemp("prepared")
    (out / "val").mkdir()
    pq.write_table(rows.slice(0, 3), out / "val" / "part-0.parquet")
    pq.write_table(rows.slice(3), out / "val" / "part-1.parquet")
    return out, rows


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = HourglassConfig(stacks=1, channels=8, depth=4)  # the real 256 px input, tiny width
    return saved_model.save_model_dir(StackedHourglass(cfg), saved_model.ModelCard.for_config(cfg),
                                   tmp_path_factory.mktemp("m") / "tiny")


def test_score_of_the_truth_is_100(prepared):
    _, rows = prepared
    joints = np.stack(rows.column(schema.JOINTS_IMAGE).to_numpy(zero_copy_only=False))
    columns = {
        "pred": np.nan_to_num(joints),
        schema.JOINTS_IMAGE: joints,
        schema.LABELLED: np.stack(rows.column(schema.LABELLED).to_numpy(zero_copy_only=False)).astype(bool),
        schema.HEAD_SIZE: rows.column(schema.HEAD_SIZE).to_numpy(),
    }
    table = evaluate.score(columns)
    assert table["Total"] == 100.0 and table["UBody"] == 100.0
    columns["pred"] = columns["pred"] + 0.5 * columns[schema.HEAD_SIZE][:, None]  # 0.71 head sizes off
    assert evaluate.score(columns)["Total"] == 0.0


def test_ray_evaluation_matches_local_inference(ray_local, prepared, model_dir):
    data, rows = prepared
    cfg = evaluate.EvaluateConfig(model=str(model_dir), data=str(data), batch_size=2)
    result = evaluate.run_evaluate(cfg, log=lambda line: None)
    assert result.rows == 5
    assert set(pckh.TABLE_KEYS) <= set(result.table)

    # The same rows through center_batch + predict_keypoints + to_image_px, without Ray.
    batch = {name: rows.column(name).to_numpy(zero_copy_only=False) for name in rows.column_names}
    centred = center_batch(batch, AugmentConfig(enabled=False))
    model, card = model_io.load_model(model_dir)
    coords, conf = predict_keypoints(model, centred["image"], card.flip_pairs)
    expected = to_image_px(coords, centred["input_to_image"])
    order = np.argsort(batch[schema.PERSON_ID])
    predictions = result.predictions
    np.testing.assert_array_equal(predictions.person_id, batch[schema.PERSON_ID][order])
    np.testing.assert_allclose(predictions.confidence, conf[order], atol=1e-4)
    # A random tiny network has near-tied heatmap neighbours, so float noise (batch size,
    # threads) may flip the sign of a quarter-pixel shift: 0.5 heatmap px = 2 input px.
    diff = np.abs(predictions.pred - expected[order])
    input_px = np.abs(centred["input_to_image"][order, 0, 0])[:, None, None]
    assert (diff <= 1e-4).mean() > 0.9
    assert (diff <= 2 * input_px + 1e-4).all()


def test_cli_json_and_errors(ray_local, prepared, model_dir, tmp_path):
    data, _ = prepared
    runner = CliRunner()
    result = runner.invoke(build_app(), ["evaluate", "--model", str(model_dir), "--data", str(data),
                                         "--json", "--no-flip"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.output[result.output.index("{"):])
    assert table["rows"] == 5 and len(table["per_joint"]) == 16 and 0 <= table["Total"] <= 100
    empty = runner.invoke(build_app(), ["evaluate", "--model", str(model_dir), "--data", str(tmp_path)])
    assert empty.exit_code != 0 and "no parquet files" in empty.output
    bad_split = runner.invoke(build_app(), ["evaluate", "--model", str(model_dir), "--data", str(data),
                                            "--split", "test"])
    assert bad_split.exit_code != 0 and "split must be one of" in bad_split.output
    # 2 one-CPU actors on this 2-CPU cluster would leave the parquet reads no CPU: a hang, refused
    hang = runner.invoke(build_app(), ["evaluate", "--model", str(model_dir), "--data", str(data),
                                       "--actors", "2"])
    assert hang.exit_code != 0 and "would hang" in hang.output and "actors x cpus_per_actor <= 1" in hang.output


def test_an_actor_pool_must_leave_a_cpu_for_reading():
    from pipelines.evaluation.evaluate import pool_leaves_no_reader

    assert pool_leaves_no_reader(2, 1, 1.0) is None and pool_leaves_no_reader(16, 3, 5.0) is None
    assert "2 of the cluster's 2 CPUs" in pool_leaves_no_reader(2, 2, 1.0)
    assert pool_leaves_no_reader(2, 1, 1.5) is not None  # 0.5 CPU left: a read task needs 1
    assert pool_leaves_no_reader(0, 4, 1.0) is None  # no CPUs yet (an autoscaling head): no verdict
