"""Stand-in images for a rehearsal at MPII scale without the MPII images.

The pipeline's correctness at scale (counts, quarantine, splits, orders, files, memory) does not
depend on pixel content, only on every referenced file existing with a size that fits its
annotation. `image_sizes` says what size each referenced file must have (the annotation's own
`width` x `height` when it has one, since `shg prepare` checks it; otherwise the smallest
image holding every annotated person's box centre and joints), and `write_standin_images`
writes one small JPEG per file: a flat background with a few flat rectangles, colours drawn from
a `numpy.random.Generator` seeded by (seed, file name), so the same call writes the same bytes
whatever the order or the machine.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from dataprep.crops import encode_jpeg
from dataprep.records import PersonRecord

MIN_SIDE = 16  # px: the smallest stand-in image
JPEG_QUALITY = 40  # flat colours compress to a few KB at any quality; lower is smaller still


def image_sizes(records: Iterable[PersonRecord]) -> dict[str, tuple[int, int]]:
    """`{image: (width, height)}` for every image the records reference.

    The annotation's width/height when a record of the image has them (> 0); otherwise the
    smallest image (at least MIN_SIDE) that holds every person's centre and labelled joints of
    that image, with 1 px to spare. Records with a non-finite centre add nothing.
    """
    declared: dict[str, tuple[int, int]] = {}
    needed: dict[str, list[float]] = {}
    for r in records:
        if r.width > 0 and r.height > 0:
            declared.setdefault(r.image, (r.width, r.height))
        far = needed.setdefault(r.image, [0.0, 0.0])
        points = [np.asarray(r.center, dtype=np.float64)]
        if r.joints.shape == (16, 2):
            points.append(r.joints[r.labelled & np.isfinite(r.joints).all(-1)])
        xy = np.vstack([p.reshape(-1, 2) for p in points])
        xy = xy[np.isfinite(xy).all(-1)]
        if len(xy):
            far[0] = max(far[0], float(xy[:, 0].max()))
            far[1] = max(far[1], float(xy[:, 1].max()))
    return {
        image: declared.get(image) or tuple(max(MIN_SIDE, int(math.ceil(v)) + 2) for v in far)
        for image, far in needed.items()
    }


def image_generator(seed: int, name: str) -> np.random.Generator:
    """The generator of one file's content: a function of (seed, file name) only."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


def standin_image(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) uint8 BGR: a flat background and three flat rectangles."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    for _ in range(3):
        x0, x1 = np.sort(rng.integers(0, width, 2))
        y0, y1 = np.sort(rng.integers(0, height, 2))
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), [int(c) for c in rng.integers(0, 256, 3)], -1)
    return image


def write_standin_images(sizes: dict[str, tuple[int, int]], root: str | Path, seed: int = 0,
                         quality: int = JPEG_QUALITY) -> int:
    """Writes one stand-in JPEG per `sizes` entry under `root` (sub-folders made as needed).

    Returns the bytes written. Names must be relative paths inside `root` (as `shg prepare`
    requires); a name that is absolute or contains `..` raises ValueError.
    """
    root = Path(root)
    total = 0
    for name, (width, height) in sorted(sizes.items()):
        path = Path(name)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"stand-in image name {name!r} must be a relative path inside {root}")
        data = encode_jpeg(standin_image(int(width), int(height), image_generator(seed, name)), quality)
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        total += len(data)
    return total
