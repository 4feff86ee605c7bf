"""`shg prepare`: annotations + images -> parquet crops and targets, as one Ray Data job.

Flow (`run_prepare`):
1. Check the config before any work (`PrepareConfigError` names the problem and the fix).
2. Read the annotations on the driver into `PersonRecord`s (cheap), reject on the driver what
   needs no image (bad path, non-finite numbers, invalid record, duplicate id).
3. A Ray dataset of plain record columns, in blocks, sorted by image so people of one image
   share a decode; `map_batches(prepare_batch)` decodes, crops, renders targets and quarantines
   missing/corrupt images and boxes outside the image, in a task pool as wide as the cluster.
4. A second `map_batches(write_batch)` writes the rows to parquet from the Ray tasks
   (`dataprep.prepared_writer`); the driver only receives a ~100-byte summary per row (person
   id, row digest, destination, reason), so its memory does not grow with the crops. OUT may be
   a local path or an object store URI (`shg_io.storage`). Locally the files go to a
   temporary folder; the driver writes `manifest.json`, fsyncs it all and moves the folder into
   place with a rename, so a failed run leaves any earlier output untouched, and the temporary
   folders of a run that was killed are removed by the next one (`shg_io.atomic`). On an
   object store the files (named by a fresh generation) go straight under OUT and the manifest,
   which names them, is written last: it is the commit (see `run_prepare`).

Hostile input: one bad record never ends the job. Malformed annotation entries, bad names and
paths, numbers that are not finite as float32, unreadable, oversized (by header, before any
decode) or corrupt images each become one quarantined row with a reason from
`dataprep.quarantine.REASONS`, and `rows_in = rows + quarantined` always holds.

The fingerprint is a SHA-256 over the sorted `(person_id, row digest)` pairs, where a row digest
covers every stored column (quarantined rows: their reason), so it does not depend on block
order or parallelism, and same inputs give the same fingerprint and byte-identical targets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dataprep import quarantine
from dataprep.joints import FLIP_PERMUTATION, JOINT_NAMES
from dataprep.mpii import (
    FORMATS,
    AnnotationFormatError,
    AnnotationSet,
    MalformedEntry,
    read_annotations,
)
from dataprep.official import apply_official_head_sizes, head_size_sources
from dataprep.prepare_batch import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    RECORD_SCHEMA,
    WORK_SCHEMA,
    prepare_batch,
    rejected_row,
)
from dataprep.prepared_writer import (
    QUARANTINE,
    PreparedDatasetWriter,
    PrepareTally,
    fingerprint,
    write_batch,
)
from dataprep.quarantine import Rejection
from dataprep.records import PersonRecord
from dataprep.schema import (
    CROP_BOX_SCALE,
    CROP_SIZE,
    HEATMAP_SIGMA,
    HEATMAP_SIZE,
    INPUT_SIZE,
    PREPARED_SCHEMA,
    QUARANTINE_SCHEMA,
    SPLITS,
    describe,
)
from shg_io.atomic import (
    fsync_path,
    fsync_tree,
    remove_stale_leftovers,
    temporary_sibling,
)
from shg_io.clock import utc_iso
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
        images: image root; record image paths are relative to it.
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


def check_config(cfg: PrepareConfig) -> None:
    """Raises `PrepareConfigError` for a config that cannot work; touches nothing."""
    annotations, images = Path(cfg.annotations), Path(cfg.images)
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
    if not images.is_dir():
        raise PrepareConfigError(
            f"images folder not found: {images}. Pass --images with the folder that the "
            f"annotation's image paths are relative to."
        )
    try:
        out = location(cfg.out)
        out_info = out.info().type
    except (ValueError, OSError) as exc:
        raise PrepareConfigError(f"--out {cfg.out}: {exc}") from exc
    if out_info == pafs.FileType.File:
        raise PrepareConfigError(f"--out {out} is a file. Choose a folder path for --out.")
    if out_info == pafs.FileType.Directory and out.list() and not (out / MANIFEST).is_file():
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
    ]:
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high else f">= {low}"
            raise PrepareConfigError(f"--{name.replace('_', '-')} must be {bound}, got {value}.")


def load_records(cfg: PrepareConfig) -> AnnotationSet:
    """The annotation file's people; an unreadable file becomes a `PrepareConfigError`.

    `AnnotationSet.skipped` counts entries the loader leaves out on purpose (not people with
    joints, e.g. unannotated test images); they are not rows and are reported in the manifest.
    `AnnotationSet.malformed` entries are rows in: each becomes a quarantined row. A file with
    no readable person at all is an error (most likely the wrong file or --format).
    """
    try:
        loaded = read_annotations(cfg.annotations, format=cfg.format, split=cfg.split)
    except AnnotationFormatError as exc:
        raise PrepareConfigError(f"{exc} (check --annotations / --format)") from exc
    if not loaded.records and loaded.malformed:
        raise PrepareConfigError(
            f"{cfg.annotations}: none of its {len(loaded.malformed)} entries is a readable person; the "
            f"first: {quarantine.printable(loaded.malformed[0].detail)}. Check --annotations / --format."
        )
    if not loaded.records:
        raise PrepareConfigError(f"{cfg.annotations} holds no people. Pass an annotation file with people.")
    return loaded


def load_head_sizes(cfg: PrepareConfig, loaded: AnnotationSet) -> tuple[AnnotationSet, dict | None]:
    """`loaded` with the official head sizes of `cfg.head_sizes` applied, and the match report
    (`dataprep.official.apply_official_head_sizes`); unchanged and None without the option."""
    if cfg.head_sizes is None:
        return loaded, None
    try:
        records, report = apply_official_head_sizes(loaded.records, cfg.head_sizes)
    except (AnnotationFormatError, ValueError) as exc:
        raise PrepareConfigError(f"{exc} (check --head-sizes)") from exc
    return dataclasses.replace(loaded, records=records), report


def screen_records(
    records: list[PersonRecord], malformed: list[MalformedEntry] = ()
) -> tuple[list[PersonRecord], list[dict]]:
    """Splits records into those worth an image decode and quarantine rows for the rest; every
    malformed entry is a quarantine row too (`malformed_entry`).

    A repeated person_id keeps its first occurrence; later ones are quarantined.
    """
    rejected = [
        rejected_row(m.person_id, m.image, m.split, Rejection(quarantine.MALFORMED_ENTRY, m.detail))
        for m in malformed
    ]
    accepted, seen = [], set()
    for record in records:
        try:
            rejection = quarantine.check_record(record)
        except Exception as exc:  # noqa: BLE001 - one record's failure never ends the job
            rejection = Rejection(quarantine.RECORD_FAILED, f"{type(exc).__name__}: {exc}")
        if rejection is None and record.person_id in seen:
            rejection = Rejection(quarantine.DUPLICATE_PERSON_ID, f"person_id {record.person_id!r} seen before")
        if rejection is None:
            accepted.append(record)
            seen.add(record.person_id)
        else:
            rejected.append(rejected_row(record.person_id, record.image, record.split, rejection))
    return accepted, rejected


def records_table(records: list[PersonRecord]) -> pa.Table:
    """`RECORD_SCHEMA` table of the records, sorted by (image, person_id)."""
    records = sorted(records, key=lambda r: (r.image, r.person_id))
    columns = {
        "person_id": [r.person_id for r in records],
        "image": [r.image for r in records],
        "split": [r.split for r in records],
        "width": [r.width for r in records],
        "height": [r.height for r in records],
        "center": [list(r.center) for r in records],
        "scale": [r.scale for r in records],
        "joints": [r.joints.reshape(-1) for r in records],
        "labelled": [r.labelled for r in records],
        "head_size": [r.head_size for r in records],
        "head_size_source": [r.head_size_source or "unknown" for r in records],
    }
    return pa.Table.from_pydict(
        {f.name: pa.array(columns[f.name], type=f.type) for f in RECORD_SCHEMA}, schema=RECORD_SCHEMA
    )


def _ensure_ray(address: str | None):
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address in (None, "", "local"):
            # Ray's own default for a new local cluster is token auth: its ports listen on every
            # interface, so it is never turned off here (pipelines.runtime.ray_cluster says more).
            ray.init(address="local", include_dashboard=False)
        else:
            ray.init(address=address)
    return ray


def _write_from_tasks(table: pa.Table, cfg: PrepareConfig, target: Location, generation: str):
    """Runs the Ray Data job over the record table: `prepare_batch` in a task pool as wide as the
    cluster, then `write_batch`, which writes the rows under `target` from the tasks (files of
    at most `rows_per_file` rows). Yields the small `SUMMARY_SCHEMA` batches the driver tallies.

    The tasks get `target` with its file system object (an S3 file system carries its
    endpoint); credentials come from the workers' own environment (AWS_* variables or roles)."""
    ray = _ensure_ray(cfg.address)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    blocks = [table.slice(i, cfg.block_rows) for i in range(0, len(table), cfg.block_rows)]
    ds = ray.data.from_arrow(blocks).map_batches(
        prepare_batch,
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        fn_kwargs={
            "image_root": str(Path(cfg.images).resolve()),
            "jpeg_quality": cfg.jpeg_quality,
            "max_image_pixels": cfg.max_image_pixels,
            "max_image_bytes": cfg.max_image_bytes,
        },
        compute=ray.data.TaskPoolStrategy(size=min(cpus, len(blocks))),
        num_cpus=1,
    ).map_batches(
        write_batch,
        batch_size=cfg.rows_per_file,
        batch_format="pyarrow",
        fn_kwargs={"out": target, "generation": generation, "rows_per_file": cfg.rows_per_file},
        # Writing (zstd, I/O) is light next to decoding: like the driver's writer before it, it
        # runs beside the prepare tasks (no CPU reserved), one task at a time (one batch of
        # `rows_per_file` rows in memory).
        compute=ray.data.TaskPoolStrategy(size=1),
        num_cpus=0,
    )
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Renames the complete, fsynced `tmp` to `out`; an existing `out` (checked to be
    replaceable) is moved aside first and deleted only after; the parent folder is fsynced so
    the new name is durable."""
    if not out.exists():
        os.rename(tmp, out)
    elif not any(out.iterdir()):
        out.rmdir()
        os.rename(tmp, out)
    else:
        old = temporary_sibling(out, "replaced")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    fsync_path(out.parent)


def _generation_files(root: Location, generation: str) -> dict[str, list[Location]]:
    """This run's parquet files under `root`, per destination, sorted by name."""
    prefix = f"part-{generation}-"
    return {
        name: [f for f in (root / name).list() if f.name.startswith(prefix) and f.name.endswith(".parquet")]
        for name in (*SPLITS, QUARANTINE)
    }


def _remove_uncommitted(out: Location, manifest: dict) -> None:
    """On an object store, after the manifest is committed: deletes every parquet file under
    `out` that it does not name (an earlier dataset's, or a killed run's)."""
    for name, committed in manifest["files"].items():
        for f in (out / name).list():
            if f.name.endswith(".parquet") and f.name not in committed:
                f.delete_file()


def run_prepare(cfg: PrepareConfig, *, log: Callable[[str], None] = print) -> dict:
    """Runs the preparation job and returns the manifest (also written to OUT/manifest.json).

    Uses the Ray cluster this process is connected to, or starts a local one (cfg.address).
    `cfg.out` may be a local path or an object store URI (`shg_io.storage`): locally the
    dataset is written to a temporary folder that replaces OUT with a rename; on an object store
    the data files (named by a fresh generation) are written first and `manifest.json`, which
    names them, last: readers trust only the files of a committed manifest
    (`pipelines.runtime.prepared`), and files no manifest names are deleted after the commit.

    Raises:
        PrepareConfigError: before any work, for a config or annotation file that cannot work.
    """
    check_config(cfg)
    started = time.perf_counter()
    loaded, head_size_report = load_head_sizes(cfg, load_records(cfg))
    records = loaded.records
    if head_size_report is not None:
        log(f"prepare: official head sizes of {head_size_report['matched']} people from "
            f"{cfg.head_sizes} ({head_size_report['val_records_not_in_file']} validation people "
            f"not in it keep their own)")
    rows_in = len(records) + len(loaded.malformed)
    accepted, rejected = screen_records(records, loaded.malformed)
    log(f"prepare: {rows_in} people in {cfg.annotations} ({loaded.format}), "
        f"{len(rejected)} rejected before decoding ({len(loaded.malformed)} malformed entries), "
        f"loader left out {dict(loaded.skipped) or 'none'}")

    out = location(cfg.out)
    generation = uuid.uuid4().hex[:8]
    if out.is_local:
        out_path = out.local_path()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in remove_stale_leftovers(out_path):  # of a run that was killed mid-write
            log(f"prepare: removed {leftover.name}, left by a run that did not finish")
        tmp = temporary_sibling(out_path)
        target = location(tmp)
    else:
        target = out  # written in place; the manifest, written last, is the commit
    try:
        tally = PrepareTally()
        if rejected:  # rows without an image: small, written here
            writer = PreparedDatasetWriter(target, rows_per_file=cfg.rows_per_file, prefix=f"part-{generation}-screened")
            writer.write(pa.Table.from_pylist(rejected, schema=WORK_SCHEMA))
            writer.close(empty_files=False)
            tally.add(writer.summary())
        next_report = cfg.progress_every
        job_started = time.perf_counter()
        if accepted:
            for summary in _write_from_tasks(records_table(accepted), cfg, target, generation):
                tally.add(summary)
                if tally.rows_seen >= next_report or tally.rows_seen == rows_in:
                    rate = (tally.rows_seen - len(rejected)) / max(time.perf_counter() - job_started, 1e-9)
                    log(f"prepare: {tally.rows_seen}/{rows_in} people, {rate:.1f} rows/s, "
                        f"{tally.quarantined} quarantined so far")
                    next_report = (tally.rows_seen // cfg.progress_every + 1) * cfg.progress_every
        files = _generation_files(target, generation)
        empty = [name for name, found in files.items() if not found]
        if empty:  # an empty destination still gets one file, for its schema
            writer = PreparedDatasetWriter(target, prefix=f"part-{generation}-empty")
            writer.close(empty_files=tuple(empty))
            files = _generation_files(target, generation)
        seconds = time.perf_counter() - started
        manifest = _manifest(cfg, loaded, len(rejected), tally, files, seconds, time.perf_counter() - job_started)
        manifest["head_sizes"] = head_size_report
        manifest["head_size_sources"] = head_size_sources(records)
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        if out.is_local:
            (tmp / MANIFEST).write_text(text)
            fsync_tree(tmp)  # every byte on disk before the rename makes the dataset visible
            _move_into_place(tmp, out_path)
        else:
            (out / MANIFEST).write_text_atomic(text)  # the commit
            _remove_uncommitted(out, manifest)
    except BaseException:
        if out.is_local:
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # this run's files: never named by a committed manifest
            for found in _generation_files(out, generation).values():
                for f in found:
                    f.delete_file()
        raise
    by_reason = ", ".join(f"{k}={v}" for k, v in sorted(manifest["quarantined_by_reason"].items()))
    log(f"prepare: wrote {manifest['rows']} to {out}, quarantined {manifest['quarantined']}"
        f"{f' ({by_reason})' if by_reason else ''}, {manifest['rows_per_s']:.1f} rows/s, "
        f"fingerprint {manifest['fingerprint']}")
    return manifest


def _manifest(cfg, loaded, n_rejected_early, tally, files, seconds, job_seconds) -> dict:
    """The manifest; rows per destination are read back from the written files' footers and must
    match the tasks' summaries and `rows_in`."""
    rows_in = len(loaded.records) + len(loaded.malformed)
    written = {name: sum(pq.read_metadata(f.path, filesystem=f.filesystem).num_rows for f in found)
               for name, found in files.items()}
    rows = {split: written[split] for split in SPLITS}
    quarantined = written[QUARANTINE]
    if sum(rows.values()) + quarantined != rows_in or written != {n: tally.rows[n] for n in written}:
        raise RuntimeError(  # the invariant the manifest promises
            f"prepare lost rows: {rows_in} in, {rows} written + {quarantined} quarantined, "
            f"the tasks reported {dict(tally.rows)}"
        )
    data_bytes = {name: sum(f.info().size for f in found) for name, found in files.items()}
    files = {name: [f.name for f in found] for name, found in files.items()}
    prepared_rows = sum(rows.values())
    return {
        "fingerprint": fingerprint(tally.digests),
        "rows_in": rows_in,
        "annotation_format": loaded.format,
        "loader_left_out": dict(sorted(loaded.skipped.items())),
        "rows": rows,
        "quarantined": quarantined,
        "quarantined_by_reason": dict(sorted(tally.by_reason.items())),
        "config": dataclasses.asdict(cfg),
        "schema": describe(PREPARED_SCHEMA),
        "quarantine_schema": describe(QUARANTINE_SCHEMA),
        "crop_size": CROP_SIZE,
        "crop_box_scale": CROP_BOX_SCALE,
        "input_size": INPUT_SIZE,
        "heatmap_size": HEATMAP_SIZE,
        "heatmap_sigma": HEATMAP_SIGMA,
        "joint_names": list(JOINT_NAMES),
        "flip_permutation": list(FLIP_PERMUTATION),
        "files": files,
        "bytes": data_bytes,
        "bytes_per_row": (data_bytes["train"] + data_bytes["val"]) / prepared_rows if prepared_rows else None,
        "seconds": round(seconds, 3),
        "rows_per_s": rows_in / max(seconds, 1e-9),  # end to end, annotation load included
        "decode_rows_per_s": (rows_in - n_rejected_early) / max(job_seconds, 1e-9),
        "created_utc": utc_iso(),
    }
