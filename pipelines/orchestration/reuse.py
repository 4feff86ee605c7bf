"""Reuse: a step whose inputs did not change is not redone.

Keys are short stable hashes of what a step's output was made from. The prepared dataset's key
covers the prepare settings and the content of its inputs (the annotation file's bytes, the
images' listing, or for the synthetic set its config and generator version); it is stored beside
the prepared dataset (`prepared.inputs.json`) with the fingerprint it produced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from dataprep.prepare import PrepareConfig
from dataprep.synth import SynthConfig, generate
from dataprep.synth.writer import ANNOTATIONS, GENERATOR_VERSION, MANIFEST
from shg_io.storage import location


def input_key(payload: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able description of a step's inputs."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (annotation files: what the prepared rows derive from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def images_listing_digest(root: str | Path) -> str:
    """sha256 over (relative path, size, mtime) of every file under `root` (a folder or an object
    store prefix, through `shg_io.storage`): cheap change check."""
    folder = location(root)
    infos = folder.filesystem.get_file_info(pafs.FileSelector(folder.path, recursive=True, allow_not_found=True))
    h = hashlib.sha256()
    for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        relative = info.path[len(folder.path):].lstrip("/")
        mtime_ns = info.mtime_ns if info.mtime_ns is not None else 0
        h.update(f"{relative}\0{info.size}\0{mtime_ns}\n".encode())
    return h.hexdigest()


def prepare_inputs_key(prepare: PrepareConfig, synth: SynthConfig | None) -> str:
    """The reuse key of a prepared dataset: prepare settings + the content of its inputs."""
    settings = dataclasses.asdict(prepare)
    for field in ("out", "address", "progress_every", "annotations", "images"):
        settings.pop(field)  # where things are and how progress is shown change no row
    return input_key({
        "prepare": settings,
        "annotations_sha256": file_digest(Path(prepare.annotations)),
        # A synthetic dataset is fixed by its config; real images by their listing.
        "images": (
            {"synth": synth.to_dict(), "generator_version": GENERATOR_VERSION}
            if synth is not None else images_listing_digest(prepare.images)
        ),
    })  # fmt: skip


def synthesise(synth: SynthConfig, out: Path, *, force: bool, log: Callable[[str], None]) -> bool:
    """Writes the synthetic dataset into `out` unless the same config is already there.

    Returns True when it (re)generated, False when the existing dataset was reused.
    """
    manifest = out / MANIFEST
    if not force and manifest.is_file() and (out / ANNOTATIONS).is_file():
        found = json.loads(manifest.read_text())
        if found.get("config") == synth.to_dict() and found.get("generator_version") == GENERATOR_VERSION:
            log(f"prepare: synthetic dataset in {out} matches the config; reused")
            return False
    summary = generate(synth, out, overwrite=True)
    log(f"prepare: synthesised {summary['people']} people in {summary['images']} images ({summary['seconds']:.1f} s)")
    return True
