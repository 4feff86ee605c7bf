"""`shg prepare`'s configuration and the checks that run before any work."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from dataprep.formats.limits import DEFAULT_MAX_ANNOTATION_BYTES
from dataprep.mpii import FORMATS
from dataprep.prepare_batch import DEFAULT_MAX_DECODE_S, DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from dataprep.schema import SPLITS
from shg_io.storage import Location, location

ANNOTATION_FORMATS = FORMATS
MANIFEST = "manifest.json"


class PrepareConfigError(ValueError):
    """The configuration cannot work; raised before any work starts. The message says the fix."""


@dataclass(frozen=True)
class PrepareConfig:
    """Everything `shg prepare` needs (CLI options carry these names).

    Attributes:
        annotations: annotation file, any form `dataprep.mpii.load_annotations` reads ("" = none:
            the workflow then uses its embedded synthetic dataset).
        images: image root, a local folder or an object store URI (s3://bucket/mpii/images, read
            by the prepare tasks on whichever node runs them); record image paths are relative to it.
        out: output folder, a local path or an object store URI such as s3://bucket/prefix (written
            as a whole; see module docstring).
        address: Ray address for the CLI (None/"local": a private local cluster).
        format: annotation form, one of ANNOTATION_FORMATS; None detects it.
        split: "train" or "val" for a form without a split (None: such forms go to "val").
        head_sizes: optional file with the official validation head sizes
            (`detections_our_format.mat` or `valid.h5`, `dataprep.official`): the people it
            holds get its head size (PCKh normaliser) instead of the annotation's own, and
            each row's `head_size_source` says which one it has.
        jpeg_quality: quality of the stored crops (1-100).
        batch_size: people per `map_batches` call.
        block_rows: people per input block (one Ray task each).
        rows_per_file: rows per output parquet file.
        progress_every: print a progress line every this many people.
        max_image_pixels: an image whose header declares more pixels is quarantined
            (`image_too_large`) before it is decoded: the decompression-bomb limit.
        max_image_bytes: an image file larger than this is quarantined before it is read.
        max_decode_s: seconds one image's decode may take; past it the image is quarantined
            (`decode_timeout`) and the task goes on (a decoder that hangs on one image).
        max_annotation_bytes: what the annotation (and head-size) file may expand to: a plain
            file's size, a gzip stream decompressed, an HDF5 file's declared datasets, a .mat
            file's elements after zlib; past it the file is refused, naming this setting.
    """

    annotations: str = ""
    images: str = ""
    out: str = ""
    address: str | None = None
    format: str | None = None
    split: str | None = None
    head_sizes: str | None = None
    jpeg_quality: int = 95
    batch_size: int = 32
    block_rows: int = 128
    rows_per_file: int = 4096
    progress_every: int = 1000
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES
    max_decode_s: float = DEFAULT_MAX_DECODE_S


# A data file a prepare writes: `<destination>/part-<generation (8 hex)>-<...>.parquet`.
_OUR_PART = re.compile(r"^part-[0-9a-f]{8}-[A-Za-z0-9_-]*\.parquet$")
_DESTINATIONS = (*SPLITS, "quarantine")


def only_uncommitted_generations(out: Location) -> bool:
    """True when `out` holds nothing but prepare's own data files under train/, val/ and
    quarantine/, with no manifest: what a prepare into an object store killed before its commit
    leaves. Such a prefix may be written over (the commit removes those files); anything else
    in it is someone else's and is not touched."""
    for entry in out.list():
        if entry.name not in _DESTINATIONS or not entry.is_dir():
            return False
        if any(not _OUR_PART.match(f.name) or f.is_dir() for f in entry.list()):
            return False
    return True


def check_config(cfg: PrepareConfig) -> None:
    """Raises `PrepareConfigError` for a config that cannot work; touches nothing."""
    annotations = Path(cfg.annotations)
    if not annotations.is_file():
        raise PrepareConfigError(
            f"annotations file not found: {annotations}. Pass --annotations with an MPII "
            f"annotation file ({', '.join(ANNOTATION_FORMATS)})."
        )
    if cfg.format is not None and cfg.format not in ANNOTATION_FORMATS:
        raise PrepareConfigError(
            f"unknown annotation format {cfg.format!r}. Use --format with one of "
            f"{', '.join(ANNOTATION_FORMATS)}, or leave it out to detect the format."
        )
    if cfg.split is not None and cfg.split not in SPLITS:
        raise PrepareConfigError(f"unknown split {cfg.split!r}. Use --split train or --split val.")
    if cfg.head_sizes is not None and not Path(cfg.head_sizes).is_file():
        raise PrepareConfigError(
            f"head sizes file not found: {cfg.head_sizes}. Pass --head-sizes with "
            f"detections_our_format.mat or valid.h5, or leave it out."
        )
    try:
        images_found = location(cfg.images).is_dir()  # on an object store: objects under the prefix
    except (ValueError, OSError) as exc:
        raise PrepareConfigError(f"--images {cfg.images}: {exc}") from exc
    if not images_found:
        raise PrepareConfigError(
            f"images folder not found: {cfg.images}. Pass --images with the folder (or object store "
            f"prefix, s3://bucket/mpii/images) that the annotation's image paths are relative to."
        )
    try:
        out = location(cfg.out)
        out_info = out.info().type
    except (ValueError, OSError) as exc:
        raise PrepareConfigError(f"--out {cfg.out}: {exc}") from exc
    if out_info == pafs.FileType.File:
        raise PrepareConfigError(f"--out {out} is a file. Choose a folder path for --out.")
    if out_info == pafs.FileType.Directory and out.list() and not (out / MANIFEST).is_file() \
            and not only_uncommitted_generations(out):
        raise PrepareConfigError(
            f"--out {out} is a non-empty folder that is not a prepared dataset (no {MANIFEST}); "
            f"refusing to replace it. Choose a new or empty folder for --out."
        )
    for name, value, low, high in [
        ("jpeg_quality", cfg.jpeg_quality, 1, 100),
        ("batch_size", cfg.batch_size, 1, None),
        ("block_rows", cfg.block_rows, 1, None),
        ("rows_per_file", cfg.rows_per_file, 1, None),
        ("progress_every", cfg.progress_every, 1, None),
        ("max_image_pixels", cfg.max_image_pixels, 1, None),
        ("max_image_bytes", cfg.max_image_bytes, 1, None),
        ("max_annotation_bytes", cfg.max_annotation_bytes, 1, None),
        ("max_decode_s", cfg.max_decode_s, 0.001, None),
    ]:
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high else f">= {low}"
            raise PrepareConfigError(f"--{name.replace('_', '-')} must be {bound}, got {value}.")
