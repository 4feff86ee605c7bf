"""Synthetic people: kinematics against hand-computed positions, camera handedness, painting."""

from __future__ import annotations

import numpy as np
import pytest

from dataprep.joints import JOINT_INDEX as J
from dataprep.synth import body as B
from dataprep.synth.paint import capsule
from dataprep.synth.person import MAX_PARTS, PART_ID, head_box, make_figure, moved, paint_figure


def test_neutral_pose_matches_the_segment_lengths():
    shape = B.BodyShape()  # torso 1.85, neck 0.35, thigh 1.6, shin 1.5, arms 1.05 + 0.9
    p = B.pose_points(shape, B.Pose())
    np.testing.assert_allclose(p[J["thorax"]], [0, 1.85, 0], atol=1e-12)
    np.testing.assert_allclose(p[J["upper_neck"]], [0, 2.2, 0], atol=1e-12)
    np.testing.assert_allclose(p[J["head_top"]], [0, 3.2, 0], atol=1e-12)
    np.testing.assert_allclose(p[J["r_hip"]], [-0.42, 0, 0], atol=1e-12)  # right = -x
    np.testing.assert_allclose(p[J["l_ankle"]], [0.42, -3.1, 0], atol=1e-12)
    np.testing.assert_allclose(p[J["l_shoulder"]], [0.68, 1.73, 0], atol=1e-12)
    np.testing.assert_allclose(p[J["r_wrist"]], [-0.68, 1.73 - 1.95, 0], atol=1e-12)
    assert shape.standing_height() == pytest.approx(p[J["head_top"], 1] - p[J["r_ankle"], 1])


def test_hips_knees_and_elbows_bend_the_anatomical_way():
    p = B.pose_points(B.BodyShape(), B.Pose(hip_flex=(90, 0), knee=(90, 0), elbow=(0, 90),
                                            shoulder_abd=(90, 0)))
    # sitting right leg: thigh straight forward (+z), shin hanging straight down
    np.testing.assert_allclose(p[J["r_knee"]] - p[J["r_hip"]], [0, 0, 1.6], atol=1e-12)
    np.testing.assert_allclose(p[J["r_ankle"]] - p[J["r_knee"]], [0, -1.5, 0], atol=1e-12)
    # left elbow bent 90 degrees: forearm points forward
    np.testing.assert_allclose(p[J["l_wrist"]] - p[J["l_elbow"]], [0, 0, 0.9], atol=1e-12)
    # right arm abducted 90 degrees: straight out to the person's right (-x)
    np.testing.assert_allclose(p[J["r_elbow"]] - p[J["r_shoulder"]], [-1.05, 0, 0], atol=1e-12)


def test_sampled_poses_respect_the_joint_limits():
    rng = np.random.default_rng(0)
    for _ in range(300):
        pose = B.sample_pose(rng)
        for name, (lo, hi) in B.LIMITS.items():
            values = np.atleast_1d(getattr(pose, name))
            assert ((values >= lo) & (values <= hi)).all(), name


def test_camera_facing_puts_the_right_side_on_the_image_left():
    p = B.pose_points(B.BodyShape(), B.Pose())
    front = p @ B.camera_rotation(yaw=0.0, pitch=0.0).T
    back = p @ B.camera_rotation(yaw=180.0, pitch=0.0).T
    assert front[J["r_shoulder"], 0] < front[J["l_shoulder"], 0]  # image x grows to the right
    assert back[J["r_shoulder"], 0] > back[J["l_shoulder"], 0]
    assert front[J["head_top"], 1] < front[J["r_ankle"], 1]  # image y grows downward
    assert front[B.FACE, 2] < front[J["upper_neck"], 2]  # the face is nearer the camera
    assert back[B.FACE, 2] > back[J["upper_neck"], 2]


def test_capsule_covers_its_axis_and_nothing_past_its_radius():
    mask = capsule((10, 10), (30, 10), 4.0, 4.0, height=40, width=50)
    full = np.zeros((40, 50))
    full[mask.rows, mask.cols] = mask.alpha
    assert full[10, 10:31].min() == 1.0 and full[14, 20] == pytest.approx(0.5)
    assert full[16, 20] == 0.0 and full[10, 36] == 0.0
    assert capsule((-50, -50), (-40, -40), 3, 3, height=40, width=50) is None


def _painted(yaw: float, seed: int, pose: B.Pose | None = None):
    rng = np.random.default_rng(seed)
    figure = moved(make_figure(rng, 240.0, yaw=yaw, pitch=0.0, roll=0.0, pose=pose), (200.0, 160.0))
    image = np.full((340, 400, 3), 128.0, np.float32)
    labels = np.zeros((340, 400), np.uint16)
    paint_figure(image, labels, figure, slot=0, rng=rng)
    return figure, image, labels


@pytest.mark.parametrize("yaw", [0.0, 180.0])
def test_left_limbs_are_painted_darker_than_right_ones(yaw):
    """The learnable left/right cue: the same garment is lighter on the right, darker on the left."""
    for seed in range(8):
        _, image, labels = _painted(yaw, seed)
        grey = image.mean(axis=2)
        for limb in ("thigh", "upper_arm"):
            right, left = (labels == PART_ID[f"{s}_{limb}"] + 1 for s in "rl")
            if right.sum() > 30 and left.sum() > 30:
                assert grey[right].mean() > grey[left].mean(), (seed, limb)


def test_every_part_is_painted_with_its_label():
    figure, image, labels = _painted(0.0, 3)
    painted = set(np.unique(labels)) - {0}
    assert painted <= {PART_ID[p] + 1 for p in PART_ID}
    assert {PART_ID["torso"] + 1, PART_ID["head"] + 1} <= painted
    assert labels.max() < MAX_PARTS
    assert (image[labels > 0] != 128.0).any(axis=1).mean() > 0.95
    # the head box of PCKh is the box around the painted head (as MPII's annotators drew it)
    ys, xs = np.nonzero(labels == PART_ID["head"] + 1)
    x1, y1, x2, y2 = head_box(figure)
    assert x1 - 1 <= xs.min() and xs.max() <= x2 + 1 and y1 - 1 <= ys.min() and ys.max() <= y2 + 1
    assert xs.min() <= x1 + 2 and xs.max() >= x2 - 2 and ys.min() <= y1 + 2 and ys.max() >= y2 - 2


@pytest.mark.parametrize("yaw,arm_on_top", [(0.0, True), (180.0, False)])
def test_parts_are_painted_far_to_near(yaw, arm_on_top):
    """Right arm raised straight forward, left thigh lifted forward: toward the camera they cover
    the torso; from behind, the torso covers them (and the wrist is then not visible)."""
    pose = B.Pose(shoulder_flex=(90.0, 0.0), hip_flex=(0.0, 90.0), shoulder_abd=(0.0, 20.0))
    figure, _, labels = _painted(yaw, 0, pose)
    # an arm pointing along the view axis projects onto its shoulder; a 90-degree thigh onto its hip
    for joint, parts in (("r_wrist", ("r_upper_arm", "r_forearm", "r_hand")),
                         ("l_knee", ("l_thigh", "l_shin", "l_foot"))):
        x, y = np.round(figure.points[J[joint]]).astype(int)
        on_top = labels[y, x] in {PART_ID[p] + 1 for p in parts}
        assert on_top == arm_on_top, joint
        if not arm_on_top:
            assert labels[y, x] == PART_ID["torso"] + 1
