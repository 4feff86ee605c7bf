"""One synthetic image: lay out its people, paint the scene, and annotate every person.

`render_scene` is a pure function of (config, generator, people count); all randomness comes from
the generator it is given. Annotations are 0-based image px (the project convention); the writer
turns them into MPII's 1-based JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataprep.synth import body as B
from dataprep.synth.config import SynthConfig
from dataprep.synth.paint import SOLID, STRIPES_ACROSS, Texture, background, capsule, fill, paint, random_colour
from dataprep.synth.person import (JOINT_PARTS, MAX_PARTS, PART_ID, Figure, extent, head_box,
                                   make_figure, moved, paint_figure)

OCCLUDER_LABEL = np.iinfo(np.uint16).max


@dataclass(frozen=True)
class PersonAnnotation:
    """One person of a scene, 0-based image px: `joints` (16, 2); `labelled` (16,) bool, True when
    the joint lies inside the image; `visible` (16,) bool, labelled and not hidden behind another
    part, person or object; `head_box` (4,) [x1, y1, x2, y2]; `objpos` (2,) MPII's rough person
    centre (on the torso, a fifth of the way from pelvis to thorax); `scale` raw MPII scale =
    standing height / 200."""

    joints: np.ndarray
    labelled: np.ndarray
    visible: np.ndarray
    head_box: np.ndarray
    objpos: np.ndarray
    scale: float


def _sample_figure(rng: np.random.Generator, cfg: SynthConfig, height_px: float) -> Figure:
    back = rng.random() < cfg.back_view_prob
    yaw = (180.0 if back else 0.0) + rng.normal(0.0, cfg.yaw_std_deg)
    roll_limit = 2.5 * cfg.rotation_std_deg
    roll = float(np.clip(rng.normal(0.0, cfg.rotation_std_deg), -roll_limit, roll_limit))
    return make_figure(rng, height_px, yaw=yaw, pitch=rng.normal(0.0, 8.0), roll=roll)


def _place(rng, figure: Figure, slot: tuple[float, float], height: int, truncate_sides) -> Figure:
    """Moves the figure so its box is centred in the horizontal `slot` (x0, x1) and inside the
    image vertically; with `truncate_sides`, pushes it 10-40 % across one of those borders."""
    lo, hi = extent(figure)
    size = hi - lo
    x = 0.5 * (slot[0] + slot[1]) - 0.5 * (lo[0] + hi[0]) + rng.normal(0, 0.08 * (slot[1] - slot[0]))
    x_min, x_max = slot[0] - lo[0], slot[1] - hi[0]
    if x_min <= x_max:
        x = rng.uniform(x_min, x_max)
    y_min, y_max = -lo[1], height - hi[1]
    y = rng.uniform(y_min, y_max) if y_min <= y_max else 0.5 * (y_min + y_max)
    if truncate_sides:
        side = truncate_sides[rng.integers(len(truncate_sides))]
        cut = rng.uniform(0.1, 0.4)
        if side == "left":
            x = -lo[0] - cut * size[0]
        elif side == "right":
            x = slot[1] - hi[0] + cut * size[0]
        elif side == "top":
            y = -lo[1] - cut * size[1]
        else:
            y = height - hi[1] + cut * size[1]
    return moved(figure, (x, y))


def _annotate(figure: Figure, labels: np.ndarray, slot: int) -> PersonAnnotation:
    h, w = labels.shape
    joints = figure.points[:16].copy()
    labelled = (joints[:, 0] >= 0) & (joints[:, 0] <= w - 1) & (joints[:, 1] >= 0) & (joints[:, 1] <= h - 1)
    probes = joints.copy()
    # head_top lies on the head's rim: look a little inside the head for what covers it
    probes[B.HEAD_TOP] += 0.15 * (joints[B.UPPER_NECK] - joints[B.HEAD_TOP])
    visible = np.zeros(16, bool)
    for j in np.flatnonzero(labelled):
        x, y = np.clip(np.round(probes[j]).astype(int), 0, [w - 1, h - 1])
        own = {slot * MAX_PARTS + PART_ID[part] + 1 for part in JOINT_PARTS[j]}
        visible[j] = int(labels[y, x]) in own
    pelvis, thorax = joints[B.PELVIS], joints[B.THORAX]
    return PersonAnnotation(joints, labelled, visible, head_box(figure),
                            pelvis + 0.2 * (thorax - pelvis), figure.height_px / 200.0)


def _occluders(rng, image, labels, figures: list[Figure]) -> None:
    """1-2 foreground sticks/blocks laid over random joints of the people."""
    h, w = labels.shape
    for _ in range(int(rng.integers(1, 3))):
        figure = figures[rng.integers(len(figures))]
        u = figure.px_per_head
        a = figure.points[rng.integers(16)] + rng.normal(0, 0.5 * u, 2)
        b = a + rng.normal(0, 1.5 * u, 2)
        r = rng.uniform(0.25, 0.7) * u
        mask = capsule(a, b, r, r, h, w)
        if mask is not None:
            texture = Texture(int(rng.choice([SOLID, STRIPES_ACROSS])), random_colour(rng), rng.uniform(4, 12))
            paint(image, labels, mask, fill(mask, random_colour(rng), texture, rng, shade=0.1), OCCLUDER_LABEL)


def render_scene(cfg: SynthConfig, rng: np.random.Generator,
                 people: int) -> tuple[np.ndarray, list[PersonAnnotation]]:
    """An (H, W, 3) uint8 RGB image holding `people` annotated people, and their annotations in
    the order they were laid out left to right."""
    width = int(rng.integers(cfg.width_range[0], cfg.width_range[1] + 1))
    height = int(rng.integers(cfg.height_range[0], cfg.height_range[1] + 1))
    lo, hi = cfg.person_height_range
    if people > 1:  # side by side: keep each one roughly within its share of the width
        hi = max(lo, min(hi, 2.0 * width / people))
    figures = []
    for i in range(people):
        figure = _sample_figure(rng, cfg, float(rng.uniform(lo, hi)))
        sides = []
        if rng.random() < cfg.truncation_prob:
            sides = ["top", "bottom"] + (["left"] if i == 0 else []) + (["right"] if i == people - 1 else [])
        slot = (i * width / people, (i + 1) * width / people)
        figures.append(_place(rng, figure, slot, height, sides))

    image = background(rng, height, width, int(rng.integers(3, cfg.max_clutter + 1)))
    labels = np.zeros((height, width), np.uint16)
    for slot in rng.permutation(people):  # who stands in front of whom
        paint_figure(image, labels, figures[slot], int(slot), rng)
    if rng.random() < cfg.occluder_prob:
        _occluders(rng, image, labels, figures)
    sigma = rng.uniform(0.0, cfg.noise_std)  # sensor-like luminance noise
    image += sigma * rng.standard_normal((height, width, 1), dtype=np.float32)
    np.clip(image, 0.0, 255.0, out=image)
    pixels = (image + 0.5).astype(np.uint8)
    return pixels, [_annotate(f, labels, i) for i, f in enumerate(figures)]
