"""Driver peak memory of `shg prepare` on the real MPII annotations with stand-in images, for two
versions of the code side by side (e.g. the main checkout before a change and this one).

The annotations are `mpii_annotations.json.gz` (all 25,204 people, or a fixed sample of
`--people` drawn with `numpy.random.default_rng(--seed)`, as `benchmarks/rehearsal.py` does);
the images are `benchmarks.standin` stand-ins at every referenced file name (cached under
`--work`). Each version runs `run_prepare` in its own child process with its own local Ray
cluster; the figure is that driver process's RSS high-water mark (`getrusage(RUSAGE_SELF)
.ru_maxrss`: Ray's workers are other processes). Prints seconds, peak RSS, rows and the
fingerprint per version, the after/before RSS ratio, and whether the fingerprints agree.

    /work/tools/heavy .venv/bin/python -m benchmarks.prepare_driver_memory --before /work/main \
        [--people 8000] [--cpus 2] [--work /tmp/shg-prepare-memory]

Stand-in crops are flat colours: their JPEGs are ~3x smaller than real photos' (README), so
the rows a driver would hold are smaller than with real images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, time
import ray
from dataprep.prepare import PrepareConfig, run_prepare
annotations, images, out, cpus = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
# ray.init, not pipelines.runtime.ray_cluster.connect: the child also runs older versions of the code
ray.init(address="local", num_cpus=cpus, include_dashboard=False)
start = time.perf_counter()
manifest = run_prepare(PrepareConfig(annotations=annotations, images=images, out=out), log=lambda line: None)
seconds = time.perf_counter() - start
ray.shutdown()
if not isinstance(manifest, dict):  # a PreparedManifest (older versions return the JSON dict)
    manifest = manifest.to_json()
print(json.dumps({"seconds": round(seconds, 1), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "rows": manifest["rows"], "quarantined": manifest["quarantined"], "fingerprint": manifest["fingerprint"]}))
"""


def inputs(work: Path, people: int | None, seed: int) -> tuple[Path, Path]:
    """The annotation file and the stand-in image folder (written once, then reused)."""
    from benchmarks.rehearsal import MPII, sample_annotations
    from benchmarks.standin import image_sizes, write_standin_images
    from dataprep.mpii import load_annotations

    work.mkdir(parents=True, exist_ok=True)
    annotations = sample_annotations(MPII / "mpii_annotations.json.gz", people, work, seed)
    images, done = work / "images", work / "images.done"
    if not done.is_file():
        write_standin_images(image_sizes(load_annotations(annotations)), images, seed=seed)
        done.write_text("ok\n")
    return annotations, images


def run_version(code: Path, annotations: Path, images: Path, out: Path, cpus: int) -> dict:
    """`run_prepare` with the code under `code`, in a child process; its figures."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    result = subprocess.run([sys.executable, "-c", CHILD, str(annotations), str(images), str(out), str(cpus)],
                            env=env, cwd=code, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"prepare with {code} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code to compare against")
    parser.add_argument("--people", type=int, default=None, help="a fixed sample of this many people (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/shg-prepare-memory"))
    args = parser.parse_args()
    work = args.work / (f"sample-{args.people}-seed{args.seed}" if args.people else "all")
    annotations, images = inputs(work, args.people, args.seed)
    figures = {}
    for name, code in (("before", args.before.resolve()), ("after", REPO)):
        figures[name] = run_version(code, annotations, images, work / f"out-{name}", args.cpus)
        print(f"{name:6s} ({code}): {json.dumps(figures[name])}", flush=True)
    before, after = figures["before"], figures["after"]
    print(f"people: {'all' if args.people is None else args.people}; driver peak RSS before "
          f"{before['peak_rss_mib']:.0f} MiB, after {after['peak_rss_mib']:.0f} MiB, "
          f"after/before {after['peak_rss_mib'] / before['peak_rss_mib']:.2f}; "
          f"fingerprints {'equal' if before['fingerprint'] == after['fingerprint'] else 'DIFFER'}")
    return 0 if before["fingerprint"] == after["fingerprint"] and before["rows"] == after["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
