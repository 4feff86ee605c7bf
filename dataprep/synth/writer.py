"""Writes the synthetic dataset: `DIR/images/*.jpg` and `DIR/annotations.json` in MPII's JSON form.

Determinism: one `SeedSequence(seed)` is split into a layout stream (people per image, the
validation split) and one child per image (`SeedSequence.spawn`), so any worker can render any
image and a re-run with the same config writes byte-identical files, whatever `workers` is.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from dataprep.synth.config import SynthConfig
from dataprep.synth.scene import PersonAnnotation, render_scene
from shg_io.atomic import (
    fsync_tree,
    remove_stale_leftovers_in,
    write_bytes_atomic,
    write_text_atomic,
)

ANNOTATIONS = "annotations.json"
MANIFEST = "synth_manifest.json"
IMAGES = "images"
DATASET_NAME = "synthetic_mpii"
# Bumped whenever the same config would render different bytes (drawing or annotation changes),
# so a cached dataset can be told stale: compare the manifest's `generator_version` too.
GENERATOR_VERSION = 1
# MATLAB's JSON export writes an empty matrix like this (the real file uses it for "no others").
EMPTY_MATRIX = {"_ArrayType_": "double", "_ArraySize_": [0, 0], "_ArrayData_": None}
_IMAGE_NAME = re.compile(r"^\d{9}\.jpg$")


def plan_images(cfg: SynthConfig) -> tuple[list[int], list[bool], list[np.random.SeedSequence]]:
    """(people per image, is-validation per image, seed per image); the counts sum to
    `cfg.people` and validation takes whole images until it holds round(val_fraction * people)
    people (or the first image past that)."""
    layout_seed, images_seed = np.random.SeedSequence(cfg.seed).spawn(2)
    rng = np.random.default_rng(layout_seed)
    counts, remaining = [], cfg.people
    while remaining > 0:
        k = 1
        if cfg.max_people_per_image > 1 and rng.random() < cfg.multi_person_prob:
            k = int(rng.integers(2, cfg.max_people_per_image + 1))
        counts.append(min(k, remaining))
        remaining -= counts[-1]
    is_val = [False] * len(counts)
    target, taken = round(cfg.val_fraction * cfg.people), 0
    for i in rng.permutation(len(counts)):
        if taken >= target:
            break
        is_val[i], taken = True, taken + counts[i]
    return counts, is_val, images_seed.spawn(len(counts))


def image_name(index: int) -> str:
    """File name of image `index` (0-based), 9 digits like MPII's."""
    return f"{index + 1:09d}.jpg"


def _xy(point) -> list[float]:
    """0-based px -> MPII's 1-based [x, y], 3 decimals."""
    return [round(float(point[0]) + 1.0, 3), round(float(point[1]) + 1.0, 3)]


def joint_rows(person: PersonAnnotation) -> list[list[float]]:
    """16 x [x, y, visible], 1-based; an unlabelled joint (outside the image) is [0, 0, 0]."""
    return [_xy(person.joints[j]) + [float(person.visible[j])] if person.labelled[j] else [0.0, 0.0, 0.0]
            for j in range(16)]


def mpii_entries(people: list[PersonAnnotation], index: int, name: str, width: int,
                 height: int, is_val: bool) -> list[dict]:
    """One MPII JSON entry per person of image `index`, with the others of the image listed in
    `joint_others`/`objpos_other`/`scale_provided_other` the way the real file does: an empty
    MATLAB matrix for none, a single person's values unnested, a list for several."""
    entries = []
    for i, person in enumerate(people):
        others = [p for k, p in enumerate(people) if k != i]
        if not others:
            joint_others, objpos_other, scale_other = EMPTY_MATRIX, EMPTY_MATRIX, EMPTY_MATRIX
        elif len(others) == 1:
            joint_others, objpos_other = joint_rows(others[0]), _xy(others[0].objpos)
            scale_other = round(others[0].scale, 3)
        else:
            joint_others = [joint_rows(p) for p in others]
            objpos_other = [_xy(p.objpos) for p in others]
            scale_other = [round(p.scale, 3) for p in others]
        x1, y1 = np.floor(person.head_box[:2] * 1000) / 1000 + 1.0  # outward, so it keeps
        x2, y2 = np.ceil(person.head_box[2:] * 1000) / 1000 + 1.0  # containing the head joints
        entries.append({
            "dataset": DATASET_NAME, "isValidation": float(is_val), "img_paths": name,
            "img_width": float(width), "img_height": float(height),
            "objpos": _xy(person.objpos), "joint_self": joint_rows(person),
            "scale_provided": round(person.scale, 3), "joint_others": joint_others,
            "scale_provided_other": scale_other, "objpos_other": objpos_other,
            "annolist_index": float(index + 1), "people_index": float(i + 1),
            "numOtherPeople": float(len(others)),
            "head_box": [round(float(v), 3) for v in (x1, y1, x2, y2)],
        })
    return entries


def render_image(cfg: SynthConfig, index: int, people: int, is_val: bool,
                 seed: np.random.SeedSequence, images_dir: str) -> list[dict]:
    """Renders image `index`, writes its JPEG into `images_dir`, returns its MPII entries."""
    pixels, annotations = render_scene(cfg, np.random.default_rng(seed), people)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for synthetic image {index}")
    name = image_name(index)
    # Temporary name + rename: a killed writer never leaves a truncated JPEG under a final name.
    write_bytes_atomic(Path(images_dir) / name, jpeg.tobytes(), fsync=False)  # fsynced together later
    return mpii_entries(annotations, index, name, pixels.shape[1], pixels.shape[0], is_val)


def _render_chunk(args) -> list[dict]:
    cfg, jobs, images_dir = args
    return [entry for job in jobs for entry in render_image(cfg, *job, images_dir)]


def _interrupted_write(out: Path) -> bool:
    """True when `out` holds only what a killed `generate` leaves: no manifest, and nothing but
    the images folder (of generated names and temporary files) and the annotations."""
    if (out / MANIFEST).exists():
        return False
    for entry in out.iterdir():
        if entry.name == IMAGES and entry.is_dir():
            if any(not (_IMAGE_NAME.match(f.name) or f.name.startswith(".")) for f in entry.iterdir()):
                return False
        elif entry.name != ANNOTATIONS and ".partial-" not in entry.name:
            return False
    return True


def generate(cfg: SynthConfig, out_dir: str | Path, overwrite: bool = False) -> dict:
    """Writes the dataset into `out_dir` and returns a summary (counts, paths, seconds, images/s).

    Refuses (FileExistsError) to write into a directory that already holds files unless
    `overwrite`, in which case only the files this function writes are replaced, or unless they
    are what a killed run of this function left (no manifest, only its own files).

    Crash safety: the manifest goes first when anything is replaced and is written last, after
    every image and the annotations are on disk (fsynced), so a dataset with a manifest is always
    complete; every file is written under a temporary name and renamed, and the temporary files
    of a killed writer are removed here.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    images_dir = out / IMAGES
    if out.exists() and any(out.iterdir()) and not overwrite and not _interrupted_write(out):
        raise FileExistsError(f"{out} already exists and is not empty; choose another --out or "
                              "pass --overwrite to replace a previous synthetic dataset there")
    images_dir.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # from here until the end the dataset is incomplete
    remove_stale_leftovers_in(images_dir)  # temporary files of a killed writer
    remove_stale_leftovers_in(out)
    for old in images_dir.glob("?????????.jpg"):  # stale images of a larger earlier run
        old.unlink()
    (out / ANNOTATIONS).unlink(missing_ok=True)

    counts, is_val, seeds = plan_images(cfg)
    jobs = [(i, counts[i], is_val[i], seeds[i]) for i in range(len(counts))]
    if cfg.workers == 1:
        entries = _render_chunk((cfg, jobs, str(images_dir)))
    else:
        n_chunks = cfg.workers * 8  # small chunks balance the load; order is kept by map
        chunks = [jobs[i * len(jobs) // n_chunks:(i + 1) * len(jobs) // n_chunks] for i in range(n_chunks)]
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn")) as pool:
            parts = pool.map(_render_chunk, [(cfg, c, str(images_dir)) for c in chunks if c])
            entries = [e for part in parts for e in part]

    manifest = {
        "dataset": DATASET_NAME, "generator_version": GENERATOR_VERSION, "config": cfg.to_dict(),
        "images": len(counts), "people": len(entries), "val_images": int(sum(is_val)),
        "val_people": int(sum(c for c, v in zip(counts, is_val) if v)),
        "train_people": int(sum(c for c, v in zip(counts, is_val) if not v)),
    }
    fsync_tree(images_dir)
    write_text_atomic(out / ANNOTATIONS, json.dumps(entries))
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")  # last: the dataset is complete
    seconds = time.perf_counter() - start
    return manifest | {"out_dir": str(out), "annotations": str(out / ANNOTATIONS),
                       "seconds": round(seconds, 3), "images_per_s": round(len(counts) / seconds, 1)}
