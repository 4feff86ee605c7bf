"""How many augmented samples reach past the stored crop (black corners), per crop margin.

Draws (rotation, zoom) as `dataprep.augment` does (uniform in +-rotation_deg and
[scale_min, scale_max]) and counts the samples whose input square, seen in the stored crop,
needs more than the crop's `box_scale` boxes (`dataprep.schema.required_box_scale` at that
draw). Geometry only: the image's own borders are not counted. Seconds on one core.

    .venv/bin/python benchmarks/crop_margin.py [--samples 1000000]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dataprep.augment import AugmentConfig
from dataprep.schema import CROP_BOX_SCALE, required_box_scale


def black_corner_fraction(box_scale: float, cfg: AugmentConfig, samples: int, rng: np.random.Generator) -> float:
    """Fraction of augmented samples whose input square leaves a crop of `box_scale` boxes."""
    theta = np.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, samples))
    zoom = rng.uniform(cfg.scale_min, cfg.scale_max, samples)
    needed = (np.abs(np.cos(theta)) + np.abs(np.sin(theta))) / zoom
    return float((needed > box_scale).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    args = parser.parse_args()
    cfg = AugmentConfig()  # +-30 deg, zoom 0.75-1.25: the paper's range
    need = required_box_scale(cfg.rotation_deg, cfg.scale_min)
    print(f"augmentation +-{cfg.rotation_deg:g} deg, zoom {cfg.scale_min}-{cfg.scale_max}: "
          f"needs {need:.4f} x the box")
    for box_scale in (1.25, CROP_BOX_SCALE):
        frac = black_corner_fraction(box_scale, cfg, args.samples, np.random.default_rng(0))
        print(f"stored crop {box_scale} x the box: {100 * frac:.1f} % of samples with black corners")
    return 0 if need <= CROP_BOX_SCALE else 1


if __name__ == "__main__":
    sys.exit(main())
