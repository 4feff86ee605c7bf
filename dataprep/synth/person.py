"""One synthetic person: appearance, placement in the image, and painting it part by part.

A `Figure` is a posed body seen by an orthographic camera: `points` (NUM_POINTS, 2) in image px
(0-based) and `depth` (NUM_POINTS,) in px (larger is farther). Parts are painted far to near, so
limbs occlude each other as they would in 3D. The person's left limbs are painted darker and their
right limbs lighter than the garment colour: a consistent cue (like light from the person's right)
that lets a network tell left from right even when the figure faces away.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dataprep.synth import body as B
from dataprep.synth.paint import (
    SOLID,
    SPECKLE,
    STRIPES_ACROSS,
    STRIPES_ALONG,
    Texture,
    capsule,
    clip_to,
    fill,
    paint,
    polygon,
    random_colour,
)

# Imported where used: cv2 (OpenCV: only drawing a person needs it; the geometry stays cheap to
# import)

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 158], [224, 172, 130], [198, 134, 90],
                       [141, 85, 54], [92, 58, 40]], np.float32)
HAIR_COLOURS = np.array([[20, 15, 10], [60, 40, 25], [110, 75, 40], [200, 160, 90],
                         [150, 150, 150], [90, 30, 15]], np.float32)
LEFT_SHADE, RIGHT_LIGHT = 0.6, 0.3  # left side x0.6; right side 30 % of the way to white


@dataclass(frozen=True)
class Appearance:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    top: tuple[float, float, float]
    bottom: tuple[float, float, float]
    shoes: tuple[float, float, float]
    top_texture: Texture
    bottom_texture: Texture
    long_sleeves: bool
    long_legs: bool


def _texture(rng: np.random.Generator) -> Texture:
    kind = int(rng.choice([SOLID, STRIPES_ACROSS, STRIPES_ALONG, SPECKLE], p=[0.5, 0.25, 0.1, 0.15]))
    return Texture(kind, random_colour(rng), float(rng.uniform(5, 14)))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    jitter = lambda c: tuple(float(v) for v in np.clip(c + rng.normal(0, 12, 3), 0, 255))  # noqa: E731
    return Appearance(
        skin=jitter(SKIN_TONES[rng.integers(len(SKIN_TONES))]),
        hair=jitter(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]),
        top=random_colour(rng), bottom=random_colour(rng), shoes=random_colour(rng),
        top_texture=_texture(rng), bottom_texture=_texture(rng),
        long_sleeves=bool(rng.random() < 0.5), long_legs=bool(rng.random() < 0.7),
    )


@dataclass(frozen=True)
class Figure:
    """A posed, projected person. `points` (NUM_POINTS, 2) image px; `depth` (NUM_POINTS,) px;
    `px_per_head` the head length in px; `height_px` the standing height (MPII's person height);
    `shape`/`appearance` as sampled; `rings` the torso outlines ("chest", "waist", "hips",
    (12, 2) image px each); `torso_depth` the mean depth of the torso in px."""

    points: np.ndarray
    depth: np.ndarray
    px_per_head: float
    height_px: float
    shape: B.BodyShape
    appearance: Appearance
    rings: dict[str, np.ndarray]
    torso_depth: float


def _torso_rings(p3: np.ndarray, shape: B.BodyShape) -> dict[str, np.ndarray]:
    """Body-frame outlines (12, 3) of the torso at shoulder, waist and hip height."""
    theta = np.linspace(0, 2 * np.pi, 12, endpoint=False)[:, None]
    up = p3[B.THORAX] - p3[B.PELVIS]
    up = up / np.linalg.norm(up)
    depth_half = 0.32 * shape.build

    def ring(centre, lateral, half_width):
        lateral = lateral / np.linalg.norm(lateral)
        forward = np.cross(lateral, up)
        return centre + half_width * np.cos(theta) * lateral + depth_half * np.sin(theta) * forward

    chest_lat = p3[B.L_SHOULDER] - p3[B.R_SHOULDER]
    hip_lat = p3[B.L_HIP] - p3[B.R_HIP]
    shoulders = 0.5 * (p3[B.L_SHOULDER] + p3[B.R_SHOULDER]) + 0.08 * up
    waist = p3[B.PELVIS] + 0.45 * shape.torso * up
    return {
        "chest": ring(shoulders, chest_lat, shape.shoulder_half + 0.1 * shape.build),
        "waist": ring(waist, 0.5 * (chest_lat + hip_lat), 0.45 * (shape.shoulder_half + shape.hip_half) + 0.1),
        "hips": ring(p3[B.PELVIS] - 0.1 * up, hip_lat, shape.hip_half + 0.25 * shape.build),
    }


def make_figure(rng: np.random.Generator, height_px: float, yaw: float, pitch: float,
                roll: float, pose: B.Pose | None = None) -> Figure:
    """Samples a body, pose (unless given) and appearance; projects it with the pelvis at image
    px (0, 0). Angles in degrees: `yaw` 0 faces the camera, `roll` turns it in the image plane."""
    shape = B.sample_shape(rng)
    pose = B.sample_pose(rng) if pose is None else pose
    appearance = sample_appearance(rng)
    p3 = B.pose_points(shape, pose)
    rings = _torso_rings(p3, shape)
    px_per_head = height_px / shape.standing_height()
    rot = B.camera_rotation(yaw, pitch)
    c, s = np.cos(np.deg2rad(roll)), np.sin(np.deg2rad(roll))
    in_plane = np.array([[c, -s], [s, c]])

    def project(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cam = (q @ rot.T) * px_per_head
        return cam[:, :2] @ in_plane.T, cam[:, 2]

    points, depth = project(p3)
    ring2d = {name: project(r) for name, r in rings.items()}
    torso_depth = float(np.mean([z.mean() for _, z in ring2d.values()]))
    return Figure(points, depth, px_per_head, height_px, shape, appearance,
                  {name: xy for name, (xy, _) in ring2d.items()}, torso_depth)


def moved(figure: Figure, offset) -> Figure:
    """The same figure translated by `offset` (2,) px."""
    offset = np.asarray(offset, np.float64)
    return dataclasses.replace(figure, points=figure.points + offset,
                               rings={k: v + offset for k, v in figure.rings.items()})


def extent(figure: Figure) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) image px corners of a box around everything painted for the figure."""
    pts = np.concatenate([figure.points, *figure.rings.values()])
    pad = 0.4 * figure.px_per_head
    return pts.min(0) - pad, pts.max(0) + pad


# Part names, in the order of their label ids, and the joints whose visibility each part shows.
PARTS = ("torso", "neck", "head", "r_thigh", "r_shin", "r_foot", "l_thigh", "l_shin", "l_foot",
         "r_upper_arm", "r_forearm", "r_hand", "l_upper_arm", "l_forearm", "l_hand")
PART_ID = {name: i for i, name in enumerate(PARTS)}
JOINT_PARTS: tuple[tuple[str, ...], ...] = (
    ("r_shin", "r_foot"), ("r_thigh", "r_shin"), ("r_thigh", "torso"), ("l_thigh", "torso"),
    ("l_thigh", "l_shin"), ("l_shin", "l_foot"), ("torso",), ("torso", "neck"), ("neck", "head"),
    ("head",), ("r_forearm", "r_hand"), ("r_upper_arm", "r_forearm"), ("r_upper_arm", "torso"),
    ("l_upper_arm", "torso"), ("l_upper_arm", "l_forearm"), ("l_forearm", "l_hand"),
)
MAX_PARTS = 32  # label = person_slot * MAX_PARTS + part id + 1; 0 is the background


def head_box(figure: Figure) -> np.ndarray:
    """[x1, y1, x2, y2] 0-based px: the box around the painted head (see `paint_figure`).

    Upright, it is one head length tall and 0.74 wide, so 0.6 x its diagonal is 0.74 head lengths,
    as for MPII's boxes (valid.h5: normaliser / head length = 0.75).
    """
    neck, top = figure.points[B.UPPER_NECK], figure.points[B.HEAD_TOP]
    centre, half_axis = 0.5 * (neck + top), 0.13 * (top - neck)
    r = 0.37 * figure.px_per_head
    half = np.abs(half_axis) + r
    return np.concatenate([centre - half, centre + half])


def paint_figure(image: np.ndarray, labels: np.ndarray, figure: Figure, slot: int,
                 rng: np.random.Generator) -> None:
    """Paints `figure` onto `image` (in place), far parts first; records part labels."""
    h, w = image.shape[:2]
    p, z, a, u = figure.points, figure.depth, figure.appearance, figure.px_per_head
    k = figure.shape.build * u
    plain = Texture(SOLID, (0.0, 0.0, 0.0), 10.0)
    sleeve = lambda long: (a.top, a.top_texture) if long else (a.skin, plain)  # noqa: E731
    trouser = lambda long: (a.bottom, a.bottom_texture) if long else (a.skin, plain)  # noqa: E731
    items = []  # (depth, order, part, mask-maker, colour, texture, side)

    def limb(part, i, j, ri, rj, colour, texture, side):
        items.append((0.5 * (z[i] + z[j]), len(items), part,
                      lambda: capsule(p[i], p[j], ri * k, rj * k, h, w), colour, texture, side))

    for side, hip, knee, ankle, toe, name in ((-1, B.R_HIP, B.R_KNEE, B.R_ANKLE, B.R_TOE, "r"),
                                              (1, B.L_HIP, B.L_KNEE, B.L_ANKLE, B.L_TOE, "l")):
        limb(f"{name}_thigh", hip, knee, 0.30, 0.22, a.bottom, a.bottom_texture, side)
        limb(f"{name}_shin", knee, ankle, 0.21, 0.14, *trouser(a.long_legs), side)
        limb(f"{name}_foot", ankle, toe, 0.13, 0.11, a.shoes, plain, side)
    for side, sh, el, wr, hand, name in ((-1, B.R_SHOULDER, B.R_ELBOW, B.R_WRIST, B.R_HAND, "r"),
                                         (1, B.L_SHOULDER, B.L_ELBOW, B.L_WRIST, B.L_HAND, "l")):
        limb(f"{name}_upper_arm", sh, el, 0.19, 0.15, a.top, a.top_texture, side)
        limb(f"{name}_forearm", el, wr, 0.15, 0.11, *sleeve(a.long_sleeves), side)
        limb(f"{name}_hand", wr, hand, 0.11, 0.09, a.skin, plain, side)

    rings, torso_z = figure.rings, figure.torso_depth
    chest = np.concatenate([rings["chest"], rings["waist"]])
    hips = np.concatenate([rings["waist"], rings["hips"]])
    for order, (pts, colour, texture) in enumerate(((chest, a.top, a.top_texture),
                                                    (hips, a.bottom, a.bottom_texture))):
        hull = _convex_hull(pts)
        items.append((torso_z - 0.01 * order, len(items), "torso",
                      lambda hull=hull: polygon(hull, p[B.PELVIS], p[B.THORAX], h, w),
                      colour, texture, 0))
    neck_z = min(0.5 * (z[B.THORAX] + z[B.UPPER_NECK]), torso_z) - 0.02
    items.append((neck_z, len(items), "neck",
                  lambda: capsule(p[B.THORAX], p[B.UPPER_NECK], 0.17 * k, 0.17 * k, h, w),
                  a.skin, plain, 0))

    # far to near: camera depth grows away from the camera; ties keep the order of `items`
    for _, _, part, make, colour, texture, side in sorted(items, key=lambda t: (-t[0], t[1])):
        mask = make()
        if mask is None:
            continue
        colours = fill(mask, colour, texture, rng)
        if side < 0:  # the person's right: lighter
            colours += RIGHT_LIGHT * (255.0 - colours)
        elif side > 0:  # the person's left: darker
            colours *= LEFT_SHADE
        paint(image, labels, mask, colours, slot * MAX_PARTS + PART_ID[part] + 1)
        if part == "neck":
            _paint_head(image, labels, figure, slot, rng)  # the head always covers its neck


def _paint_head(image, labels, figure: Figure, slot: int, rng) -> None:
    """Head (hair colour), then the face toward where the head looks, with eyes, if it is seen."""
    h, w = image.shape[:2]
    p, z, a, u = figure.points, figure.depth, figure.appearance, figure.px_per_head
    neck, top = p[B.UPPER_NECK], p[B.HEAD_TOP]
    centre, half_axis = 0.5 * (neck + top), 0.13 * (top - neck)
    label = slot * MAX_PARTS + PART_ID["head"] + 1
    plain = Texture(SOLID, (0.0, 0.0, 0.0), 10.0)
    mask = capsule(centre - half_axis, centre + half_axis, 0.37 * u, 0.37 * u, h, w)
    if mask is None:
        return
    paint(image, labels, mask, fill(mask, a.hair, plain, rng, shade=0.2), label)
    # FACE is one head length in front of the head centre: its image offset and depth change
    # tell where the face points; toward the camera means smaller depth.
    look = (p[B.FACE] - centre) / u
    toward = (0.5 * (z[B.UPPER_NECK] + z[B.HEAD_TOP]) - z[B.FACE]) / u  # cos of angle to camera
    if toward > -0.2:
        face_centre = centre + 0.2 * u * look
        face = capsule(face_centre - 0.6 * half_axis, face_centre + 0.4 * half_axis,
                       0.29 * u, 0.29 * u, h, w)
        if face is not None:
            face = clip_to(face, mask)
            paint(image, labels, face, fill(face, a.skin, plain, rng, shade=0.15), label)
        if toward > 0.3:
            across = np.array([-(top - neck)[1], (top - neck)[0]]) / max(np.hypot(*(top - neck)), 1e-6)
            for sgn in (-1, 1):
                eye_pt = centre + 0.33 * u * look + sgn * 0.13 * u * across * toward + 0.08 * (top - neck)
                eye = capsule(eye_pt, eye_pt, 0.05 * u, 0.05 * u, h, w)
                if eye is not None:
                    eye = clip_to(eye, mask)
                    paint(image, labels, eye, fill(eye, (25.0, 20.0, 20.0), plain, rng, 0.0), label)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
