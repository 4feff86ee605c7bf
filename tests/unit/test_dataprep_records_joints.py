"""The joint tables: order, flip permutation, skeleton and PCKh groups are consistent."""

from __future__ import annotations

from dataprep.joints import (
    FLIP_PERMUTATION,
    JOINT_INDEX,
    JOINT_NAMES,
    NUM_JOINTS,
    PCKH_GROUPS,
    SCORED_JOINTS,
    SKELETON,
    UBODY_JOINTS,
)


def test_mpii_order():
    assert NUM_JOINTS == 16
    assert JOINT_NAMES[0] == "r_ankle" and JOINT_NAMES[9] == "head_top" and JOINT_NAMES[15] == "l_wrist"
    assert JOINT_INDEX["upper_neck"] == 8


def test_flip_swaps_left_and_right_names():
    for i, j in enumerate(FLIP_PERMUTATION):
        a, b = JOINT_NAMES[i], JOINT_NAMES[j]
        if a[:2] in ("l_", "r_"):
            assert b == {"l_": "r_", "r_": "l_"}[a[:2]] + a[2:]
        else:
            assert a == b
        assert FLIP_PERMUTATION[j] == i  # an involution


def test_skeleton_is_a_tree_over_all_joints():
    assert len(SKELETON) == NUM_JOINTS - 1
    assert {k for bone in SKELETON for k in bone} == set(range(NUM_JOINTS))
    flipped = {tuple(sorted((FLIP_PERMUTATION[a], FLIP_PERMUTATION[b]))) for a, b in SKELETON}
    assert flipped == {tuple(sorted(bone)) for bone in SKELETON}  # left/right symmetric


def test_pckh_groups():
    assert sorted(k for g in PCKH_GROUPS.values() for k in g) == sorted(SCORED_JOINTS)
    assert set(SCORED_JOINTS) == set(range(16)) - {6, 7}
    assert set(UBODY_JOINTS) == set(PCKH_GROUPS["Shoulder"] + PCKH_GROUPS["Elbow"] + PCKH_GROUPS["Wrist"])
    assert all(JOINT_NAMES[a][2:] == JOINT_NAMES[b][2:] for n, (a, b) in PCKH_GROUPS.items() if n != "Head")
