"""`shg pckh` on the real MPII validation ground truth."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from dataprep import pckh
from pipelines.cli.app import build_app


@pytest.fixture(scope="module")
def truth(mpii_dir):
    return mpii_dir / "detections_our_format.mat", pckh.load_mpii_ground_truth(
        mpii_dir / "detections_our_format.mat")


def run(*args):
    return CliRunner().invoke(build_app(), ["pckh", *map(str, args)])


def test_ground_truth_as_predictions_scores_100(truth, tmp_path):
    mat, gt = truth
    pred = np.nan_to_num(gt.joints)  # missing joints: any finite value, they are skipped
    np.save(tmp_path / "p.npy", pred)
    result = run("--pred", tmp_path / "p.npy", "--gt", mat, "--json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.output)
    assert {k: table[k] for k in pckh.TABLE_KEYS} == {k: 100.0 for k in pckh.TABLE_KEYS}
    assert len(table["per_joint"]) == 16 and table["threshold"] == 0.5


def test_text_table_and_threshold(truth, tmp_path):
    mat, gt = truth
    np.save(tmp_path / "p.npy", gt.predictions)
    result = run("--pred", tmp_path / "p.npy", "--gt", mat, "--threshold", "0.1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("PCKh@0.1 (official MPII")
    assert lines[1].split() == list(pckh.TABLE_KEYS)
    expected = pckh.pckh_table(gt.predictions, gt.joints, gt.missing, gt.head_size, 0.1)
    assert lines[2].split()[-1] == f"{expected['Total']:.1f}"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p[:100], "100 rows but .* has 2958 people"),
        (lambda p: p.reshape(2958, 32), r"shape \(2958, 32\), expected \(N, 16, 2\)"),
        (lambda p: np.where(np.arange(2958)[:, None, None] == 7, np.nan, p), "non-finite .* row 7"),
    ],
)
def test_bad_predictions_name_the_file_and_fix(truth, tmp_path, make, message):
    mat, gt = truth
    np.save(tmp_path / "bad.npy", make(gt.predictions))
    result = run("--pred", tmp_path / "bad.npy", "--gt", mat)
    assert result.exit_code != 0
    assert "bad.npy" in result.output
    assert re.search(message, result.output), result.output


def test_missing_files(tmp_path, truth):
    mat, _ = truth
    result = run("--pred", tmp_path / "none.npy", "--gt", mat)
    assert result.exit_code != 0 and "none.npy: no such file" in result.output
    (tmp_path / "junk.npy").write_text("not numpy")
    result = run("--pred", tmp_path / "junk.npy", "--gt", mat)
    assert result.exit_code != 0 and "cannot read a .npy" in result.output
