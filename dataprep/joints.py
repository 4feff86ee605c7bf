"""The 16 MPII joints: names in MPII order, the left/right flip permutation, the skeleton.

Everything in the project indexes joints in this order (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

JOINT_NAMES: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

# After a horizontal flip, joint i of the flipped person is joint FLIP_PERMUTATION[i] of the
# original (left and right swap; the centre line maps to itself). It is its own inverse.
FLIP_PERMUTATION: tuple[int, ...] = (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)

# Bones as (parent, child) joint-index pairs, for drawing.
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 6),  # right leg: ankle-knee-hip-pelvis
    (5, 4), (4, 3), (3, 6),  # left leg
    (6, 7), (7, 8), (8, 9),  # pelvis-thorax-neck-head top
    (10, 11), (11, 12), (12, 7),  # right arm: wrist-elbow-shoulder-thorax
    (15, 14), (14, 13), (13, 7),  # left arm
)

# The rows of the official MPII PCKh table and the joints each one averages. Pelvis (6) and
# thorax (7) are not scored.
PCKH_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (8, 9),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}
UBODY_JOINTS: tuple[int, ...] = (10, 11, 12, 13, 14, 15)
SCORED_JOINTS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)
