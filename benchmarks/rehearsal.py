"""Full-scale rehearsal of the real-MPII path on stand-in images: prepare, train, evaluate, export, PCKh.

The MPII images are not on this machine, but the real annotation files are, and the pipeline's
correctness at MPII scale (counts, quarantine, splits, row orders, memory, files) does not
depend on pixel content. This writes a stand-in JPEG at every file name the annotations
reference (`benchmarks.standin`: the annotated image size, flat colours, a few KB), then runs the
real code on the real annotation file:
1. `shg prepare` (`run_prepare`) on every person, with the official validation head sizes of
   `detections_our_format.mat` (`--head-sizes`), and checks the counts: rows_in = rows +
   quarantined, every quarantined person has a known reason and a detail, validation rows =
   validation people (2,958 at full scale) minus the quarantined ones;
2. a few training steps of the `mpii` profile (pipelines/config/profiles/mpii.yaml) at reduced
   width on CPU (`run_training`; `max_steps=0` uses the profile's network untrained instead,
   as the test suite's fraction does to stay within its time);
3. `shg evaluate` (`run_evaluate`) of the trained model on the whole validation split, with the
   export in the .mat's order (`--export`), and
4. `shg pckh --pred EXPORT --gt detections_our_format.mat` as a subprocess.
Prints wall time per stage, the peak memory of the process tree (this process, Ray and its
workers; sampled from /proc every 0.5 s) and the bytes on disk. `--people N` rehearses a
deterministic sample of N people instead of all 25,204 (the test suite runs 200).

    /work/tools/heavy .venv/bin/python -m benchmarks.rehearsal [--people N] [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from dataprep.prepare import PreparedManifest

REPO = Path(__file__).resolve().parents[1]
MPII = REPO.parent / "shared" / "data" / "mpii"
PROFILE = REPO / "pipelines" / "config" / "profiles" / "mpii.yaml"
EXPERIMENT_SECTIONS = ("model", "data", "train")


class TreeMemory:
    """Peak resident memory (bytes) of this process and all its descendants, sampled from /proc."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s, self.peak = every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            self._stop.wait(self.every_s)


def tree_rss(root: int) -> int:
    """Sum of VmRSS (bytes) of `root` and its descendants (Linux /proc)."""
    parent, rss = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            parent[int(entry.name)] = int(fields["PPid"])
            rss[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            continue
    total = 0
    for pid in rss:
        p = pid
        while p not in (0, 1, root) and p in parent:
            p = parent[p]
        if p == root:
            total += rss[pid]
    return total


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def sample_annotations(source: Path, people: int | None, out: Path, seed: int) -> Path:
    """The annotation file to rehearse: `source` itself, or a sample of `people` entries
    (sorted, from `numpy.random.default_rng(seed)`) written as gzipped JSON under `out`."""
    if people is None:
        return source
    with gzip.open(source, "rt") as f:
        entries = json.load(f)
    pick = np.sort(np.random.default_rng(seed).choice(len(entries), size=people, replace=False))
    path = out / "annotations.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump([entries[i] for i in pick], f)
    return path


def profile_config(work: Path, overrides: list[str]):
    """The `mpii` profile's experiment sections with `overrides` applied (`load_config`)."""
    from pipelines.config.experiment import load_config

    profile = yaml.safe_load(PROFILE.read_text())
    path = work / "mpii_experiment.yaml"
    path.write_text(yaml.safe_dump({k: profile[k] for k in EXPERIMENT_SECTIONS}))
    return load_config(path, overrides)


def check_prepared(manifest: PreparedManifest, out: Path, records) -> dict:
    """The count checks of a prepared rehearsal; returns the per-split figures, raises on a miss."""
    import pyarrow.parquet as pq

    from dataprep.quarantine import REASONS

    quarantine = (pq.ParquetDataset(sorted(str(p) for p in (out / "quarantine").glob("*.parquet"))).read()
                  if list((out / "quarantine").glob("*.parquet")) else None)
    q_rows = quarantine.to_pylist() if quarantine is not None else []
    people = {s: sum(r.split == s for r in records) for s in ("train", "val")}
    q_split = {s: sum(q["split"] == s for q in q_rows) for s in ("train", "val")}
    problems = []
    if manifest.rows_in != len(records):
        problems.append(f"rows_in {manifest.rows_in} != {len(records)} people")
    if manifest.rows_in != sum(manifest.rows.values()) + manifest.quarantined:
        problems.append("rows_in != rows + quarantined")
    if len(q_rows) != manifest.quarantined:
        problems.append(f"{len(q_rows)} quarantine rows, manifest says {manifest.quarantined}")
    bad = [q["person_id"] for q in q_rows if q["reason"] not in REASONS or not q["detail"]]
    if bad:
        problems.append(f"quarantined without a known reason and detail: {bad[:5]}")
    for split in ("train", "val"):
        if manifest.rows[split] != people[split] - q_split[split]:
            problems.append(f"{split} rows {manifest.rows[split]} != {people[split]} people - {q_split[split]} quarantined")
    if problems:
        raise AssertionError("prepare: " + "; ".join(problems))
    return {"people": people, "quarantined": q_split,
            "quarantined_by_reason": manifest.quarantined_by_reason,
            "quarantined_people": [(q["person_id"], q["split"], q["reason"], q["detail"]) for q in q_rows]}


def run_rehearsal(work: Path, *, people: int | None = None, seed: int = 0, channels: int = 32,
                  max_steps: int = 3, val_max_people: int = 64, log=print) -> dict:
    """Runs the whole rehearsal under `work` (see the module docstring); returns its figures."""
    from benchmarks.standin import image_sizes, write_standin_images
    from dataprep.mpii import load_annotations
    from dataprep.prepare import PrepareConfig, run_prepare
    from pipelines.evaluation.evaluate import EvaluateConfig, run_evaluate
    from pipelines.evaluation.export import export_predictions
    from pipelines.inference.model_dir import (
        ModelCard,
        model_from_state,
        save_model_dir,
    )
    from pipelines.runtime.ray_cluster import connect
    from pipelines.training.checkpoints import load_state
    from pipelines.training.driver import run_training

    work.mkdir(parents=True, exist_ok=True)
    gt = MPII / "detections_our_format.mat"
    report: dict = {"seconds": {}}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        report["seconds"][name] = round(time.perf_counter() - clock, 1)
        log(f"rehearsal: {name} done in {report['seconds'][name]} s")
        clock = time.perf_counter()

    annotations = sample_annotations(MPII / "mpii_annotations.json.gz", people, work, seed)
    records = load_annotations(annotations)
    sizes = image_sizes(records)
    images = work / "images"
    report["image_bytes"] = write_standin_images(sizes, images, seed=seed)
    report["images"] = len(sizes)
    lap("stand-in images")

    connect(None)
    out = work / "prepared"
    manifest = run_prepare(PrepareConfig(annotations=str(annotations), images=str(images), out=str(out),
                                         head_sizes=str(gt)), log=log)
    report["prepare"] = check_prepared(manifest, out, records)
    report["manifest"] = {k: manifest.to_json()[k] for k in ("rows_in", "rows", "quarantined", "bytes", "bytes_per_row",
                                                   "rows_per_s", "decode_rows_per_s", "head_size_sources",
                                                   "head_sizes", "fingerprint")}
    lap("prepare")

    cfg = profile_config(work, [
        f"model.channels={channels}", f"train.max_steps={max(max_steps, 1)}", "train.epochs=1",
        "train.use_gpu=false", "train.amp=off", "train.workers=1", "train.cpus_per_worker=1",
        "train.cache_data=false", f"train.val_max_people={val_max_people}", "train.val_grid_people=2",
        "train.log_every=1", f"train.storage={work / 'runs'}",
    ])
    card = ModelCard.for_config(cfg.model, input_size=cfg.data.input_size, heatmap_size=cfg.data.heatmap_size)
    if max_steps > 0:
        trained = run_training(cfg, out, tracking_uri=f"sqlite:///{work / 'mlflow.db'}", log=log)
        model = model_from_state(load_state(Path(trained.checkpoint))["model"], card, "rehearsal checkpoint")
        report["train"] = {"steps": trained.global_step, "pckh_total": trained.pckh.get("Total"),
                           "baseline_total": trained.baseline_pckh.get("Total")}
    else:  # the tests' fraction: the profile's network untrained (Ray Train is tested elsewhere)
        import torch

        from shg_model import StackedHourglass

        torch.manual_seed(seed)
        model = StackedHourglass(cfg.model)
        report["train"] = {"steps": 0}
    model_dir = save_model_dir(model, card, work / "model")
    lap("train")

    # No flip testing: the stand-ins measure scale and bookkeeping, not accuracy, and one actor
    # with one thread needs ~0.19 s per 8-stack forward here (2,958 x 2 with flip: > 18 min).
    # One single-threaded actor per CPU of the cluster but one: the parquet reads need a CPU.
    import ray

    actors = max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)
    evaluated = run_evaluate(EvaluateConfig(model=str(model_dir), data=str(out), split="val", batch_size=16,
                                            flip=False, actors=actors, cpus_per_actor=1.0), log=log)
    table, predictions = evaluated.summary(), evaluated.predictions
    exported = export_predictions(work / "preds.mat", gt, predictions.person_id, predictions.pred,
                                  predictions.joints_image, predictions.labelled)
    report["evaluate"] = {k: table[k] for k in ("rows", "Total", "Head", "Wrist", "Ankle")}
    report["export"] = {"rows": exported.rows, "predicted": exported.predicted, "unmatched": exported.unmatched}
    lap("evaluate + export")

    shg = Path(sys.executable).with_name("shg")
    command = [str(shg), "pckh", "--pred", str(work / "preds.mat"), "--gt", str(gt), "--json"]
    if exported.predicted < exported.rows:
        command.append("--only-predicted")
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise AssertionError(f"shg pckh failed ({done.returncode}): {done.stderr[-2000:]}")
    official = json.loads(done.stdout)
    report["pckh"] = {k: official[k] for k in ("Total", "Head", "Wrist", "Ankle")}
    report["pckh_minus_evaluate"] = {k: round(official[k] - table[k], 4) for k in report["pckh"]}
    lap("shg pckh")

    report["disk_bytes"] = {"images": folder_bytes(images), "prepared": folder_bytes(out),
                            "runs": folder_bytes(work / "runs") if (work / "runs").exists() else 0,
                            "total": folder_bytes(work)}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=None, help="a sample of N people (default: all)")
    parser.add_argument("--work", type=Path, default=None, help="folder to keep (default: a temporary one)")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=3)
    parser.add_argument("--val-max-people", type=int, default=64, help="validation people during training")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shg-rehearsal-") as tmp, TreeMemory() as memory:
        work = args.work or Path(tmp)
        report = run_rehearsal(work, people=args.people, channels=args.channels, max_steps=args.max_steps,
                               val_max_people=args.val_max_people)
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
    report["peak_tree_rss_mib"] = round(memory.peak / 2**20)
    quarantined = report["prepare"].pop("quarantined_people")
    print(json.dumps(report, indent=2, default=str))
    print(f"quarantined people ({len(quarantined)}):")
    for person in quarantined:
        print("  " + " | ".join(person))
    return 0


if __name__ == "__main__":
    sys.exit(main())
