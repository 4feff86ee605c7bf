"""The synthetic person's body: proportions, sampled joint angles and 3D forward kinematics.

Lengths are in *head lengths* `H` (upper neck to head top, as MPII measures the head). The body
frame is right-handed: +x points to the person's **left**, +y up, +z forward (where the chest
faces); the pelvis is the origin. Joint angles follow a kinematic tree with anatomical limits:
pelvis -> hips -> knees -> ankles; pelvis -> thorax -> neck -> head top; thorax -> shoulders ->
elbows -> wrists. `pose_points` returns the 16 MPII joints (order of `dataprep.joints`) plus the
extra points the renderer needs (hand and foot tips, the facing direction of the head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataprep.joints import JOINT_INDEX

R_ANKLE, R_KNEE, R_HIP = JOINT_INDEX["r_ankle"], JOINT_INDEX["r_knee"], JOINT_INDEX["r_hip"]
L_HIP, L_KNEE, L_ANKLE = JOINT_INDEX["l_hip"], JOINT_INDEX["l_knee"], JOINT_INDEX["l_ankle"]
PELVIS, THORAX = JOINT_INDEX["pelvis"], JOINT_INDEX["thorax"]
UPPER_NECK, HEAD_TOP = JOINT_INDEX["upper_neck"], JOINT_INDEX["head_top"]
R_WRIST, R_ELBOW, R_SHOULDER = JOINT_INDEX["r_wrist"], JOINT_INDEX["r_elbow"], JOINT_INDEX["r_shoulder"]
L_SHOULDER, L_ELBOW, L_WRIST = JOINT_INDEX["l_shoulder"], JOINT_INDEX["l_elbow"], JOINT_INDEX["l_wrist"]

# Extra (non-MPII) points appended after the 16 joints by `pose_points`.
R_HAND, L_HAND, R_TOE, L_TOE = 16, 17, 18, 19
FACE = 20  # a point one head length in front of the head centre (where the face looks)
NUM_POINTS = 21


@dataclass(frozen=True)
class BodyShape:
    """Segment lengths (in head lengths) and limb radii (in head lengths) of one person."""

    neck: float = 0.35
    torso: float = 1.85
    hip_half: float = 0.42
    shoulder_half: float = 0.68
    shoulder_drop: float = 0.12  # shoulders sit a little below the thorax point
    thigh: float = 1.60
    shin: float = 1.50
    upper_arm: float = 1.05
    forearm: float = 0.90
    hand: float = 0.32
    foot: float = 0.42
    build: float = 1.0  # multiplies every limb radius

    def standing_height(self) -> float:
        """Head top to ankles of the upright figure, in head lengths (the MPII "person height")."""
        return 1.0 + self.neck + self.torso + self.thigh + self.shin


def sample_shape(rng: np.random.Generator) -> BodyShape:
    """Per-person proportions: each length within about +-8 % of the default, build 0.8-1.3."""
    base = BodyShape()
    jitter = lambda v: float(v * rng.uniform(0.92, 1.08))  # noqa: E731
    return BodyShape(
        neck=jitter(base.neck), torso=jitter(base.torso), hip_half=jitter(base.hip_half),
        shoulder_half=jitter(base.shoulder_half), shoulder_drop=base.shoulder_drop,
        thigh=jitter(base.thigh), shin=jitter(base.shin), upper_arm=jitter(base.upper_arm),
        forearm=jitter(base.forearm), hand=base.hand, foot=base.foot,
        build=float(rng.uniform(0.8, 1.3)),
    )


@dataclass(frozen=True)
class Pose:
    """Joint angles in degrees. Index 0 of each pair is the person's right side, 1 the left.

    Hip/shoulder `flex` swings the limb forward (toward +z), `abd` outward; `twist` turns the
    limb about its own axis (it sets the plane the knee/elbow bends in); `knee` bends the shin
    backward, `elbow` the forearm forward. The torso leans forward (`lean`), sideways (`bend`) and
    turns the shoulders against the hips (`turn`); the head nods, tilts and turns.
    """

    hip_flex: tuple[float, float] = (0.0, 0.0)
    hip_abd: tuple[float, float] = (0.0, 0.0)
    hip_twist: tuple[float, float] = (0.0, 0.0)
    knee: tuple[float, float] = (0.0, 0.0)
    shoulder_flex: tuple[float, float] = (0.0, 0.0)
    shoulder_abd: tuple[float, float] = (0.0, 0.0)
    shoulder_twist: tuple[float, float] = (0.0, 0.0)
    elbow: tuple[float, float] = (0.0, 0.0)
    lean: float = 0.0
    bend: float = 0.0
    turn: float = 0.0
    nod: float = 0.0
    tilt: float = 0.0
    head_turn: float = 0.0


# Anatomical limits (degrees) every sampled pose is clipped to.
LIMITS = {
    "hip_flex": (-30.0, 120.0), "hip_abd": (-10.0, 45.0), "hip_twist": (-30.0, 30.0),
    "knee": (0.0, 145.0), "shoulder_flex": (-50.0, 180.0), "shoulder_abd": (0.0, 160.0),
    "shoulder_twist": (-70.0, 70.0), "elbow": (0.0, 150.0), "lean": (-20.0, 50.0),
    "bend": (-20.0, 20.0), "turn": (-30.0, 30.0), "nod": (-30.0, 35.0), "tilt": (-25.0, 25.0),
    "head_turn": (-50.0, 50.0),
}


def sample_pose(rng: np.random.Generator) -> Pose:
    """A random plausible pose from a mixture: standing/walking (50 %), free activity such as
    sport or dance (35 %), crouching/sitting (15 %). Every angle is clipped to `LIMITS`."""
    u = lambda lo, hi, n=2: tuple(float(v) for v in rng.uniform(lo, hi, n))  # noqa: E731
    family = rng.choice(3, p=[0.5, 0.35, 0.15])
    if family == 0:  # standing / walking: one leg forward, the other back; arms mostly low
        stride = rng.uniform(-35, 35)
        angles = dict(
            hip_flex=(stride, -stride * rng.uniform(0.3, 1.0)), hip_abd=u(0, 12),
            knee=u(0, 35), shoulder_flex=tuple(rng.normal(0, 35, 2)), shoulder_abd=u(5, 45),
            elbow=u(0, 110), lean=rng.uniform(-8, 15),
        )
    elif family == 1:  # free activity over the whole range
        angles = dict(
            hip_flex=u(-25, 100), hip_abd=u(0, 40), knee=tuple(140 * rng.beta(1.2, 2.0, 2)),
            shoulder_flex=u(-40, 175), shoulder_abd=u(0, 150), elbow=u(0, 145),
            lean=rng.uniform(-15, 40),
        )
    else:  # crouching / sitting / kneeling
        angles = dict(
            hip_flex=u(60, 115), hip_abd=u(0, 35), knee=u(70, 145),
            shoulder_flex=u(-20, 110), shoulder_abd=u(0, 60), elbow=u(10, 140),
            lean=rng.uniform(0, 45),
        )
    angles.update(
        hip_twist=u(-15, 15), shoulder_twist=u(-60, 60), bend=rng.uniform(-12, 12),
        turn=rng.uniform(-25, 25), nod=rng.uniform(-20, 30), tilt=rng.uniform(-18, 18),
        head_turn=rng.uniform(-45, 45),
    )
    clipped = {}
    for name, value in angles.items():
        lo, hi = LIMITS[name]
        clipped[name] = tuple(float(np.clip(v, lo, hi)) for v in value) if isinstance(
            value, tuple) else float(np.clip(value, lo, hi))
    return Pose(**clipped)


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """(3, 3) right-handed rotation by `degrees` about the unit vector `axis` (Rodrigues)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    a = np.deg2rad(degrees)
    c, s, t = np.cos(a), np.sin(a), 1.0 - np.cos(a)
    return np.array([
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ])


X, Y, Z = np.eye(3)
DOWN = -Y


def _limb(frame: np.ndarray, side: float, flex: float, abd: float, twist: float,
          bend: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directions (upper segment, lower segment, limb's forward) of a limb hanging from `frame`.

    The limb starts pointing down; `abd` swings it outward (toward `side` * x), then `flex`
    forward (toward +z), `twist` turns it about its own axis. `bend` (degrees, signed) rotates the
    lower segment about the limb's lateral axis: negative bends it forward (elbow), positive
    backward (knee).
    """
    r = frame @ rotation(X, -flex) @ rotation(Z, side * abd) @ rotation(Y, twist)
    upper = r @ DOWN
    lower = rotation(r @ X, bend) @ upper
    forward = rotation(r @ X, bend) @ (r @ Z)
    return upper, lower, forward


def pose_points(shape: BodyShape, pose: Pose) -> np.ndarray:
    """(NUM_POINTS, 3) body-frame positions in head lengths: the 16 MPII joints then extras."""
    p = np.zeros((NUM_POINTS, 3))
    spine = rotation(Z, pose.bend) @ rotation(X, pose.lean)
    chest = spine @ rotation(Y, pose.turn)  # shoulders turned against the hips
    p[PELVIS] = 0.0
    p[THORAX] = spine @ (shape.torso * Y)
    head = chest @ rotation(X, pose.nod) @ rotation(Z, pose.tilt) @ rotation(Y, pose.head_turn)
    p[UPPER_NECK] = p[THORAX] + shape.neck * (chest @ Y)
    p[HEAD_TOP] = p[UPPER_NECK] + head @ Y
    p[FACE] = p[UPPER_NECK] + 0.5 * (head @ Y) + head @ Z

    for side, hip, knee, ankle, toe, i in ((-1, R_HIP, R_KNEE, R_ANKLE, R_TOE, 0),
                                           (1, L_HIP, L_KNEE, L_ANKLE, L_TOE, 1)):
        p[hip] = side * shape.hip_half * X
        thigh, shin, forward = _limb(np.eye(3), side, pose.hip_flex[i], pose.hip_abd[i],
                                     side * pose.hip_twist[i], pose.knee[i])
        p[knee] = p[hip] + shape.thigh * thigh
        p[ankle] = p[knee] + shape.shin * shin
        p[toe] = p[ankle] + shape.foot * forward + 0.1 * shin

    for side, sh, el, wr, hand, i in ((-1, R_SHOULDER, R_ELBOW, R_WRIST, R_HAND, 0),
                                      (1, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND, 1)):
        p[sh] = p[THORAX] + chest @ (side * shape.shoulder_half * X - shape.shoulder_drop * Y)
        upper, fore, _ = _limb(chest, side, pose.shoulder_flex[i], pose.shoulder_abd[i],
                               side * pose.shoulder_twist[i], -pose.elbow[i])
        p[el] = p[sh] + shape.upper_arm * upper
        p[wr] = p[el] + shape.forearm * fore
        p[hand] = p[wr] + shape.hand * fore
    return p


def camera_rotation(yaw: float, pitch: float) -> np.ndarray:
    """(3, 3) body frame -> camera frame (x right, y down, z away from the camera).

    yaw 0 faces the camera (the person's left appears on the image's right), yaw 180 faces away;
    `pitch` tilts the camera up/down (degrees).
    """
    facing_camera = np.diag([1.0, -1.0, -1.0])  # left -> +x, up -> -y, forward -> toward camera
    return rotation(X, pitch) @ facing_camera @ rotation(Y, yaw)
