"""PersonRecord: normalisation, validation and the dict round trip."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from dataprep.records import PersonRecord, records_from_dicts, records_to_dicts


def make(**overrides) -> PersonRecord:
    joints = np.arange(32, dtype=float).reshape(16, 2)
    labelled = np.ones(16, bool)
    labelled[[6, 7]] = False
    fields = dict(
        person_id="000001_0", image="000001.jpg", width=640, height=480, center=(320, 240.5),
        scale=1.5, joints=joints, labelled=labelled, head_size=40.0, split="train",
    )
    fields.update(overrides)
    return PersonRecord(**fields)


def test_types_are_normalised_and_unlabelled_rows_are_nan():
    r = make()
    assert r.center == (320.0, 240.5) and isinstance(r.center[0], float)
    assert r.joints.dtype == np.float64 and r.joints.shape == (16, 2)
    assert np.isnan(r.joints[[6, 7]]).all() and r.joints[0].tolist() == [0.0, 1.0]
    assert r.labelled.dtype == bool
    with pytest.raises(ValueError):
        r.joints[0, 0] = 5.0  # read-only: the record is frozen, its arrays too
    assert make().validate() == []


def test_input_arrays_are_copied():
    joints = np.zeros((16, 2))
    r = make(joints=joints)
    joints[0] = 99
    assert r.joints[0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "overrides, problem",
    [
        (dict(scale=0.0), "scale"),
        (dict(scale=float("nan")), "scale"),
        (dict(center=(float("nan"), 1.0)), "center"),
        (dict(split="test"), "split"),
        (dict(labelled=np.zeros(16, bool)), "no labelled joints"),
        (dict(joints=np.zeros((14, 2))), "joints have shape"),
        (dict(head_size=0.0), "head_size"),
        (dict(image=""), "image"),
    ],
)
def test_validate_names_the_problem(overrides, problem):
    problems = make(**overrides).validate()
    assert len(problems) == 1 and problem in problems[0], problems


def test_labelled_joint_with_nan_is_a_problem():
    joints = np.zeros((16, 2))
    joints[3] = np.nan
    assert "non-finite" in make(joints=joints).validate()[0]


def test_unknown_head_size_is_fine():
    assert make(head_size=float("nan")).validate() == []


def test_dict_round_trip_through_json():
    r = make(head_size=float("nan"), visible_flag=np.arange(16) % 2 == 0, head_size_source="")
    d = json.loads(json.dumps(r.to_dict()))  # NaN survives Python's json as a float
    back = PersonRecord.from_dict(d)
    assert back == r
    assert math.isnan(back.head_size) and back.visible_flag.tolist() == r.visible_flag.tolist()
    assert records_from_dicts(records_to_dicts([r, make()])) == [r, make()]
    assert back != make()


def test_pickle_round_trip_keeps_arrays_read_only():
    r = make(visible_flag=np.ones(16, bool))
    back = pickle.loads(pickle.dumps(r))
    assert back == r
    assert not back.joints.flags.writeable and not back.labelled.flags.writeable


def test_from_dict_rejects_unknown_fields():
    d = make().to_dict()
    d["colour"] = "red"
    with pytest.raises(TypeError, match="colour"):
        PersonRecord.from_dict(d)
