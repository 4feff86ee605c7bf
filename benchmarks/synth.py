"""Benchmark of `shg synth` (`dataprep.synth.generate`): images/s and people/s.

Target (from the synth brief): the default dataset (4000 people) in well under a minute on 2
cores, i.e. >= 100 people/s with 2 workers. Also reports the single-process rate and the
per-image render cost, so a slowdown can be told apart from a busy machine. Exits 1 when the
target is missed.

    flock /tmp/shg-heavy.lock .venv/bin/python benchmarks/synth.py [--people 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace

from dataprep.synth import SynthConfig, generate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target-people-per-s", type=float, default=100.0)
    args = parser.parse_args()
    cfg = SynthConfig(people=args.people)
    rates = {}
    for workers in sorted({1, args.workers}):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = generate(replace(cfg, workers=workers), out)
            seconds = time.perf_counter() - start
        rates[workers] = args.people / seconds
        print(f"workers={workers}: {summary['images']} images, {args.people} people in {seconds:.1f} s "
              f"= {summary['images'] / seconds:.1f} images/s, {rates[workers]:.1f} people/s "
              f"({1000 * seconds * workers / summary['images']:.1f} ms CPU-ish per image)")
    ok = rates[args.workers] >= args.target_people_per_s
    print(f"target >= {args.target_people_per_s:.0f} people/s with {args.workers} workers: "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
