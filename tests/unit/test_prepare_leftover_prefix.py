"""A prepare killed before its commit leaves its data files and no manifest: the next prepare into
that folder/prefix writes over them, while a folder holding anything else is still refused."""

from __future__ import annotations

import pytest

from dataprep.prepare import PrepareConfig, PrepareConfigError, check_config


def _cfg(tmp_path, out):
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "images").mkdir(exist_ok=True)
    return PrepareConfig(annotations=str(tmp_path / "a.json"), images=str(tmp_path / "images"), out=str(out))


def test_only_a_dead_generations_files_may_be_written_over(tmp_path):
    out = tmp_path / "prepared"
    (out / "val").mkdir(parents=True)
    (out / "val" / "part-dead0000-0-00000.parquet").write_bytes(b"PAR1 half a file")
    (out / "quarantine").mkdir()
    (out / "quarantine" / "part-dead0000-screened-00000.parquet").write_bytes(b"PAR1")
    check_config(_cfg(tmp_path, out))  # no refusal


@pytest.mark.parametrize("stranger", ["notes.txt", "val/mine.csv", "train/part-x-1.parquet"])
def test_anything_else_in_the_folder_is_still_refused(tmp_path, stranger):
    out = tmp_path / "prepared"
    (out / "val").mkdir(parents=True)
    (out / "val" / "part-dead0000-0-00000.parquet").write_bytes(b"PAR1")
    (out / stranger).parent.mkdir(parents=True, exist_ok=True)
    (out / stranger).write_text("someone else's")
    with pytest.raises(PrepareConfigError, match="non-empty folder that is not a prepared dataset"):
        check_config(_cfg(tmp_path, out))
