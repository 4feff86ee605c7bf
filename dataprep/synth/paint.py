"""Raster primitives for the synthetic images: shaded, textured limbs and cluttered backgrounds.

Images are float32 (H, W, 3) RGB in [0, 255], 0-based pixel centres at integer coordinates
(x right, y down), as everywhere in the project. Every shape is painted only inside its bounding
box, so a figure of ~20 parts costs a few milliseconds. A parallel `labels` image (uint16) records
which part is on top at each pixel; the annotator reads joint visibility from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SOLID, STRIPES_ACROSS, STRIPES_ALONG, SPECKLE = range(4)


@dataclass(frozen=True)
class Texture:
    """How a garment fills its shape: `kind` (SOLID, STRIPES_ACROSS, STRIPES_ALONG, SPECKLE), the
    second colour of the pattern (RGB 0-255), the stripe period in pixels."""

    kind: int
    colour2: tuple[float, float, float]
    period: float


@dataclass(frozen=True)
class Mask:
    """A painted shape on the region `rows, cols` of the image: coverage `alpha` (h, w) in [0, 1],
    `along` (h, w) the position along the shape's axis in px, `across` (h, w) the signed distance
    from the axis as a fraction of the local half-width (in [-1, 1])."""

    rows: slice
    cols: slice
    alpha: np.ndarray
    along: np.ndarray
    across: np.ndarray


def _region(lo: np.ndarray, hi: np.ndarray, height: int, width: int):
    x0, y0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
    x1, y1 = min(int(np.ceil(hi[0])) + 1, width), min(int(np.ceil(hi[1])) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return slice(y0, y1), slice(x0, x1), xs, ys


def capsule(a, b, radius_a: float, radius_b: float, height: int, width: int) -> Mask | None:
    """A tapered capsule from point `a` to `b` (px): radius varies linearly along the axis, round
    caps, a one-pixel anti-aliased rim. None when it lies wholly outside the image."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    r_max = max(radius_a, radius_b) + 1.0
    region = _region(np.minimum(a, b) - r_max, np.maximum(a, b) + r_max, height, width)
    if region is None:
        return None
    rows, cols, xs, ys = region
    d = b - a
    length = float(np.hypot(*d))
    unit = d / length if length > 1e-6 else np.array([0.0, 1.0], np.float32)
    px, py = xs - a[0], ys - a[1]
    s = px * unit[0] + py * unit[1]  # position along the axis
    t = np.clip(s / max(length, 1e-6), 0.0, 1.0)
    side = px * unit[1] - py * unit[0]  # signed distance from the axis line
    dist = np.hypot(px - t * d[0], py - t * d[1])
    r = radius_a + (radius_b - radius_a) * t
    alpha = np.clip(r - dist + 0.5, 0.0, 1.0)
    return Mask(rows, cols, alpha, s, np.clip(side / r, -1.0, 1.0))


def polygon(points, axis_a, axis_b, height: int, width: int) -> Mask | None:
    """A filled convex polygon (N, 2 px) whose shading axis runs from `axis_a` to `axis_b`."""
    pts = np.asarray(points, np.float32)
    region = _region(pts.min(0) - 1, pts.max(0) + 1, height, width)
    if region is None:
        return None
    rows, cols, xs, ys = region
    coverage = np.zeros(xs.shape, np.uint8)
    shift = 4  # sub-pixel vertices for anti-aliasing
    local = np.round((pts - [cols.start, rows.start]) * (1 << shift)).astype(np.int32)
    cv2.fillConvexPoly(coverage, local, 255, lineType=cv2.LINE_AA, shift=shift)
    a, b = np.asarray(axis_a, np.float32), np.asarray(axis_b, np.float32)
    d = b - a
    unit = d / max(float(np.hypot(*d)), 1e-6)
    px, py = xs - a[0], ys - a[1]
    side = px * unit[1] - py * unit[0]
    half = max(float(np.abs(side[coverage > 127]).max(initial=1.0)), 1.0)
    return Mask(rows, cols, coverage.astype(np.float32) / 255.0, px * unit[0] + py * unit[1],
                np.clip(side / half, -1.0, 1.0))


def clip_to(mask: Mask, outer: Mask) -> Mask:
    """`mask` with its coverage limited to that of `outer` (e.g. a face kept inside its head)."""
    inside = np.zeros_like(mask.alpha)
    r0, r1 = max(mask.rows.start, outer.rows.start), min(mask.rows.stop, outer.rows.stop)
    c0, c1 = max(mask.cols.start, outer.cols.start), min(mask.cols.stop, outer.cols.stop)
    if r0 < r1 and c0 < c1:
        inside[r0 - mask.rows.start:r1 - mask.rows.start, c0 - mask.cols.start:c1 - mask.cols.start] = \
            outer.alpha[r0 - outer.rows.start:r1 - outer.rows.start, c0 - outer.cols.start:c1 - outer.cols.start]
    return Mask(mask.rows, mask.cols, mask.alpha * inside, mask.along, mask.across)


def fill(mask: Mask, colour, texture: Texture, rng: np.random.Generator,
         shade: float = 0.35) -> np.ndarray:
    """(h, w, 3) colours for `mask`: the texture pattern, then round-body shading (the rim is
    darker by up to `shade`) so that overlapping limbs of one colour stay apart."""
    base = np.asarray(colour, np.float32)
    if texture.kind == SOLID:
        pick = None
    elif texture.kind == STRIPES_ACROSS:
        pick = np.sin(mask.along * (2 * np.pi / texture.period)) > 0
    elif texture.kind == STRIPES_ALONG:
        pick = np.abs(mask.across) < 0.3
    else:
        pick = rng.random(mask.alpha.shape, dtype=np.float32) < 0.25
    out = np.broadcast_to(base, mask.alpha.shape + (3,)).copy()
    if pick is not None:
        out[pick] = np.asarray(texture.colour2, np.float32)
    roundness = np.sqrt(1.0 - np.square(mask.across))
    return out * (1.0 - shade + shade * roundness)[..., None]


def paint(image: np.ndarray, labels: np.ndarray, mask: Mask, colours: np.ndarray,
          label: int) -> None:
    """Alpha-composites `colours` over `image` in place; marks `label` where coverage >= 1/2."""
    alpha = mask.alpha[..., None]
    view = image[mask.rows, mask.cols]
    view *= 1.0 - alpha
    view += alpha * colours
    labels[mask.rows, mask.cols][mask.alpha >= 0.5] = label


def random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0, 255, 3))


def background(rng: np.random.Generator, height: int, width: int, clutter: int) -> np.ndarray:
    """A cluttered scene: a gradient or a striped "floor", then `clutter` random shapes
    (rectangles, ellipses, polygons, thick lines, some of them limb-like), sometimes blurred."""
    # the gradient is smooth: compute it on a coarse grid and let cv2 interpolate it up
    coarse_h, coarse_w = height // 8 + 2, width // 8 + 2
    ys, xs = np.mgrid[0:coarse_h, 0:coarse_w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = np.asarray(random_colour(rng), np.float32), np.asarray(random_colour(rng), np.float32)
    image = cv2.resize(c0 + ramp[..., None] * (c1 - c0), (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:  # a striped "floor" or wall
        period = rng.uniform(8, 40)
        angle = rng.uniform(0, np.pi)
        phase_x = np.arange(width, dtype=np.float32) * (np.cos(angle) * 2 * np.pi / period)
        phase_y = np.arange(height, dtype=np.float32) * (np.sin(angle) * 2 * np.pi / period)
        stripes = np.sin(phase_y[:, None] + phase_x[None, :]) > 0
        image[stripes] *= rng.uniform(0.6, 0.9)
    image = np.ascontiguousarray(image)
    size = float(min(height, width))
    for _ in range(clutter):
        colour = random_colour(rng)
        kind = rng.integers(5)
        centre = rng.uniform([0, 0], [width, height])
        if kind == 0:  # rotated rectangle
            box = ((float(centre[0]), float(centre[1])),
                   tuple(float(v) for v in rng.uniform(0.05, 0.5, 2) * size), rng.uniform(0, 180))
            cv2.fillConvexPoly(image, cv2.boxPoints(box).astype(np.int32), colour, cv2.LINE_AA)
        elif kind == 1:  # ellipse
            axes = tuple(int(v) for v in rng.uniform(0.02, 0.25, 2) * size)
            cv2.ellipse(image, tuple(int(v) for v in centre), axes, rng.uniform(0, 180), 0, 360,
                        colour, -1, cv2.LINE_AA)
        elif kind == 2:  # polygon
            pts = centre + rng.normal(0, 0.12 * size, (int(rng.integers(3, 7)), 2))
            cv2.fillPoly(image, [pts.astype(np.int32)], colour, cv2.LINE_AA)
        else:  # thick lines and limb-like sticks: distractors the network must learn to ignore
            end = centre + rng.normal(0, 0.2 * size, 2)
            thickness = int(rng.integers(2, max(3, int(0.06 * size))))
            cv2.line(image, tuple(int(v) for v in centre), tuple(int(v) for v in end), colour,
                     thickness, cv2.LINE_AA)
    if rng.random() < 0.4:  # an out-of-focus background sets the people apart, sometimes
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(1.0, 3.0))
    return image
