"""`shg train` fails fast, before any training, on bad input (no Ray cluster is started)."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.cli.app import build_app


def test_not_a_prepared_dataset(tmp_path):
    result = CliRunner().invoke(build_app(), ["train", "--data", str(tmp_path), f"train.storage={tmp_path}"])
    assert result.exit_code == 2 and "not a prepared dataset" in result.output and "shg prepare" in result.output


def test_unknown_override_key_is_rejected(tmp_path):
    # config parsing comes first, so the data folder is not even looked at
    result = CliRunner().invoke(build_app(), ["train", "--data", str(tmp_path), "model.stack=2"])
    assert result.exit_code != 0
    assert "model.stack" in result.output and "model.stacks" in result.output
