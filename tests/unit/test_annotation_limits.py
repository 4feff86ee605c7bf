"""Whole-file rejections that must not happen: one entry with a 5,000-digit integer or nested past
the parser's recursion limit is quarantined on its own; files that expand past the size cap
(gzip, HDF5, .mat) are refused with a message naming the file, the cap and the setting."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from dataprep.formats.common import AnnotationFormatError
from dataprep.mpii import read_annotations


def _entry(person: int, **changes) -> dict:
    entry = {"img_paths": "a.jpg", "objpos": [80.0, 55.0], "scale_provided": 0.4,
             "joint_self": [[40.0 + 5 * j, 30.0 + 4 * j, 1.0] for j in range(16)], "isValidation": 1.0,
             "annolist_index": person, "people_index": 1}
    return {**entry, **changes}


def _file_with(tmp_path, middle: str, *, root: bool = False):
    """Three entries as JSON text, the second one written by hand as `middle`."""
    text = "[" + ", ".join([json.dumps(_entry(1)), middle, json.dumps(_entry(3))]) + "]"
    if root:
        text = '{"root": ' + text + "}"
    path = tmp_path / "annotations.json"
    path.write_text(text)
    return path


def test_an_integer_of_5000_digits_quarantines_its_entry_only(tmp_path):
    huge = "9" * 5000  # past Python's 4,300-digit int-str limit: int() raises ValueError
    middle = json.dumps(_entry(2)).replace('"scale_provided": 0.4', f'"scale_provided": {huge}')
    loaded = read_annotations(_file_with(tmp_path, middle))
    assert [r.person_id for r in loaded.records] == ["1_1", "3_1"]
    assert [m.person_id for m in loaded.malformed] == ["2_1"]
    assert "5,000 digits" in loaded.malformed[0].detail and "entry 1" in loaded.malformed[0].detail


def test_an_integer_of_5000_digits_in_a_joint_quarantines_its_entry_only(tmp_path):
    middle = json.dumps(_entry(2)).replace("[45.0, 34.0, 1.0]", "[" + "1" * 5000 + ", 34.0, 1.0]")
    loaded = read_annotations(_file_with(tmp_path, middle))
    assert [r.person_id for r in loaded.records] == ["1_1", "3_1"]
    assert "int-str conversion limit" in loaded.malformed[0].detail


@pytest.mark.parametrize("root", [False, True])
def test_an_entry_nested_past_the_recursion_limit_is_quarantined_alone(tmp_path, root):
    deep = 100_000  # far past sys.getrecursionlimit()
    middle = json.dumps(_entry(2)).replace('"objpos": [80.0, 55.0]', '"objpos": ' + "[" * deep + "]" * deep)
    loaded = read_annotations(_file_with(tmp_path, middle, root=root))
    assert [r.person_id for r in loaded.records] == ["1_1", "3_1"]
    assert len(loaded.malformed) == 1 and loaded.malformed[0].person_id == "entry1"
    assert f"nested {deep + 1:,} levels deep" in loaded.malformed[0].detail


def test_a_gzip_stream_that_expands_past_the_cap_is_refused_naming_file_cap_and_setting(tmp_path):
    path = tmp_path / "bomb.json.gz"
    with gzip.open(path, "wb") as f:  # ~40 KB on disk, 40 MB expanded
        f.write(b"[" + b" " * (40 * 2**20) + b"]")
    assert path.stat().st_size < 200_000
    with pytest.raises(AnnotationFormatError, match=r"bomb\.json\.gz: the gzip stream expands to more than .* "
                                                    r"over the annotation size cap of 10,485,760 bytes; raise --max-annotation-bytes"):
        read_annotations(path, max_bytes=10 * 2**20)


def test_a_plain_file_over_the_cap_is_refused(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps([_entry(n) for n in range(50)]))
    with pytest.raises(AnnotationFormatError, match="big.json: the file has .* over the annotation size cap of 1,000"):
        read_annotations(path, max_bytes=1000)
    assert len(read_annotations(path).records) == 50  # under the default cap


def test_an_h5_whose_datasets_declare_more_than_the_cap_is_refused_before_reading(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "valid.h5"
    n = 200_000
    with h5py.File(path, "w") as f:  # compressed zeros: small on disk, 51 MB declared for "part"
        f["imgname"] = np.array([b"a.jpg"] * 3)
        f["center"] = np.full((3, 2), 50.0)
        f["scale"] = np.ones(3)
        f.create_dataset("part", shape=(n, 16, 2), dtype="f8", compression="gzip", chunks=(1000, 16, 2))
        f["normalize"] = np.full(3, 10.0)
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(AnnotationFormatError, match=r"valid\.h5: its datasets declare .* over the annotation size cap of 1,048,576 bytes"):
        read_annotations(path, max_bytes=2**20)


def test_a_mat_file_that_expands_past_the_cap_is_refused(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "release.mat"
    scipy_io.savemat(path, {"RELEASE": np.zeros((2000, 2000))}, do_compression=True)  # 32 MB of zeros
    assert path.stat().st_size < 2**20
    with pytest.raises(AnnotationFormatError, match=r"release\.mat: its elements expand to more than .* cap of 4,194,304 bytes; raise --max-annotation-bytes"):
        read_annotations(path, max_bytes=4 * 2**20)
