"""Reading and screening the annotations on the driver: what needs no image is decided here,
before the Ray job (bad paths, non-finite numbers, invalid records, duplicate ids)."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from dataprep import quarantine
from dataprep.mpii import AnnotationFormatError, AnnotationSet, MalformedEntry, read_annotations
from dataprep.official import apply_official_head_sizes
from dataprep.prepare.config import PrepareConfig, PrepareConfigError
from dataprep.prepare_batch import RECORD_SCHEMA, rejected_row
from dataprep.quarantine import Rejection
from dataprep.records import PersonRecord


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
