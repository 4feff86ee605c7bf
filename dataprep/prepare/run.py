"""`run_prepare`: the preparation job end to end, and the manifest it commits."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import uuid
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from dataprep.joints import FLIP_PERMUTATION, JOINT_NAMES
from dataprep.official import head_size_sources
from dataprep.prepare.commit import generation_files, move_into_place, remove_uncommitted
from dataprep.mpii import AnnotationSet
from dataprep.prepare.config import MANIFEST, PrepareConfig, check_config
from dataprep.prepare.manifest import PreparedManifest
from dataprep.prepare.ray_job import require_ray, write_from_tasks
from dataprep.prepare.screening import load_head_sizes, load_records, records_table, screen_records
from dataprep.prepare_batch import WORK_SCHEMA
from dataprep.prepared_writer import QUARANTINE, PreparedDatasetWriter, PrepareTally, fingerprint
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
from shg_io.atomic import fsync_tree, remove_stale_leftovers, temporary_sibling
from shg_io.clock import utc_iso
from shg_io.storage import Location, location


def run_prepare(cfg: PrepareConfig, *, log: Callable[[str], None] = print) -> PreparedManifest:
    """Runs the preparation job and returns the manifest (also written to OUT/manifest.json).

    Runs on the Ray cluster this process is connected to: callers connect first
    (`pipelines.runtime.ray_cluster.connect`); dataprep never starts Ray (`cfg.address` is what
    the CLI connects to).
    `cfg.out` may be a local path or an object store URI (`shg_io.storage`): locally the
    dataset is written to a temporary folder that replaces OUT with a rename; on an object store
    the data files (named by a fresh generation) are written first and `manifest.json`, which
    names them, last: readers trust only the files of a committed manifest
    (`pipelines.runtime.prepared`), and files no manifest names are deleted after the commit.

    Raises:
        PrepareConfigError: before any work, for a config or annotation file that cannot work.
        RayNotConnected: before anything is written, when this process is not connected to Ray.
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

    require_ray()  # after the checks (a typo is reported without Ray), before anything is written
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
            for summary in write_from_tasks(records_table(accepted), cfg, target, generation):
                tally.add(summary)
                if tally.rows_seen >= next_report or tally.rows_seen == rows_in:
                    rate = (tally.rows_seen - len(rejected)) / max(time.perf_counter() - job_started, 1e-9)
                    log(f"prepare: {tally.rows_seen}/{rows_in} people, {rate:.1f} rows/s, "
                        f"{tally.quarantined} quarantined so far")
                    next_report = (tally.rows_seen // cfg.progress_every + 1) * cfg.progress_every
        files = generation_files(target, generation)
        empty = [name for name, found in files.items() if not found]
        if empty:  # an empty destination still gets one file, for its schema
            writer = PreparedDatasetWriter(target, prefix=f"part-{generation}-empty")
            writer.close(empty_files=tuple(empty))
            files = generation_files(target, generation)
        seconds = time.perf_counter() - started
        manifest = _manifest(cfg, loaded, len(rejected), tally, files, seconds, time.perf_counter() - job_started,
                             head_size_report)
        text = json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n"
        if out.is_local:
            (tmp / MANIFEST).write_text(text)
            fsync_tree(tmp)  # every byte on disk before the rename makes the dataset visible
            move_into_place(tmp, out_path)
        else:
            (out / MANIFEST).write_text_atomic(text)  # the commit
            remove_uncommitted(out, manifest)
    except BaseException:
        if out.is_local:
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # this run's files: never named by a committed manifest
            for found in generation_files(out, generation).values():
                for f in found:
                    f.delete_file()
        raise
    by_reason = ", ".join(f"{k}={v}" for k, v in sorted(manifest.quarantined_by_reason.items()))
    log(f"prepare: wrote {manifest.rows} to {out}, quarantined {manifest.quarantined}"
        f"{f' ({by_reason})' if by_reason else ''}, {manifest.rows_per_s:.1f} rows/s, "
        f"fingerprint {manifest.fingerprint}")
    return manifest


def _manifest(cfg: PrepareConfig, loaded: AnnotationSet, n_rejected_early: int, tally: PrepareTally,
              files: dict[str, list[Location]], seconds: float, job_seconds: float,
              head_size_report: dict | None) -> PreparedManifest:
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
    prepared_rows = sum(rows.values())
    return PreparedManifest(
        fingerprint=fingerprint(tally.digests),
        rows_in=rows_in,
        annotation_format=loaded.format,
        loader_left_out=dict(sorted(loaded.skipped.items())),
        rows=rows,
        quarantined=quarantined,
        quarantined_by_reason=dict(sorted(tally.by_reason.items())),
        config=dataclasses.asdict(cfg),
        schema=describe(PREPARED_SCHEMA),
        quarantine_schema=describe(QUARANTINE_SCHEMA),
        crop_size=CROP_SIZE,
        crop_box_scale=CROP_BOX_SCALE,
        input_size=INPUT_SIZE,
        heatmap_size=HEATMAP_SIZE,
        heatmap_sigma=HEATMAP_SIGMA,
        joint_names=tuple(JOINT_NAMES),
        flip_permutation=tuple(FLIP_PERMUTATION),
        files={name: tuple(f.name for f in found) for name, found in files.items()},
        bytes=data_bytes,
        bytes_per_row=(data_bytes["train"] + data_bytes["val"]) / prepared_rows if prepared_rows else None,
        seconds=round(seconds, 3),
        rows_per_s=rows_in / max(seconds, 1e-9),  # end to end, annotation load included
        decode_rows_per_s=(rows_in - n_rejected_early) / max(job_seconds, 1e-9),
        created_utc=utc_iso(),
        head_sizes=head_size_report,
        head_size_sources=head_size_sources(loaded.records),
    )
