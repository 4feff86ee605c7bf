"""The per-batch work of `shg prepare`: records in, prepared or quarantined rows out.

`prepare_batch` is the Ray Data `map_batches` function. It is a pure function of its inputs (the
record columns and the image files), so any block order or parallelism gives the same rows.

Input (`RECORD_SCHEMA`, one row per person, built on the driver from `PersonRecord`s): plain
columns, image px. Output (`WORK_SCHEMA`): every `PREPARED_SCHEMA` column (null for rejected
rows) plus `reason`/`detail` (null for accepted rows) and `digest`, the SHA-256 of the row's
content that the manifest fingerprint is built from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from dataprep import quarantine
from dataprep.crops import ImageDecodeError, crop_person, decode_image, encode_jpeg
from dataprep.joints import NUM_JOINTS
from dataprep.quarantine import Rejection
from dataprep.schema import (
    CENTER,
    CROP_JPEG,
    CROP_SIZE,
    CROP_SIZE_COL,
    CROP_TO_IMAGE,
    DETAIL,
    HEAD_SIZE,
    HEAD_SIZE_SOURCE,
    HEATMAPS,
    IMAGE,
    JOINTS_IMAGE,
    KEYPOINTS,
    LABELLED,
    PERSON_ID,
    PREPARED_SCHEMA,
    REASON,
    SCALE,
    SPLIT,
)

WIDTH, HEIGHT, JOINTS, DIGEST = "width", "height", "joints", "digest"

RECORD_SCHEMA = pa.schema(
    [
        pa.field(PERSON_ID, pa.string()),
        pa.field(IMAGE, pa.string()),
        pa.field(SPLIT, pa.string()),
        pa.field(WIDTH, pa.int64()),  # 0 when the annotation does not say
        pa.field(HEIGHT, pa.int64()),
        pa.field(CENTER, pa.list_(pa.float64(), 2)),
        pa.field(SCALE, pa.float64()),
        pa.field(JOINTS, pa.list_(pa.float64(), 2 * NUM_JOINTS)),  # image px, NaN unlabelled
        pa.field(LABELLED, pa.list_(pa.bool_(), NUM_JOINTS)),
        pa.field(HEAD_SIZE, pa.float64()),
        pa.field(HEAD_SIZE_SOURCE, pa.string()),  # "unknown" when head_size is NaN
    ]
)

WORK_SCHEMA = pa.schema(
    [field.with_nullable(True) for field in PREPARED_SCHEMA]
    + [pa.field(REASON, pa.string()), pa.field(DETAIL, pa.string()), pa.field(DIGEST, pa.binary(32))]
)


def _fixed_list(table: pa.Table, name: str, width: int, dtype) -> np.ndarray:
    """A fixed-size-list column as an (N, width) array."""
    values = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return values.astype(dtype, copy=False).reshape(len(table), width)


def content_digest(row: dict) -> bytes:
    """SHA-256 of an accepted row's content columns (the arrays must already be the stored dtypes)."""
    h = hashlib.sha256()
    for name in (PERSON_ID, IMAGE, SPLIT, HEAD_SIZE_SOURCE):
        h.update(row[name].encode() + b"\0")
    for name in (KEYPOINTS, LABELLED, CROP_TO_IMAGE, JOINTS_IMAGE, CENTER):
        h.update(np.ascontiguousarray(row[name]).tobytes())
    h.update(np.float32(row[HEAD_SIZE]).tobytes() + np.float32(row[SCALE]).tobytes())
    h.update(row[HEATMAPS])
    h.update(row[CROP_JPEG])
    return h.digest()


def rejection_digest(person_id: str, image: str, split: str, rejection: Rejection) -> bytes:
    """SHA-256 identifying a quarantined row (the reason, not the free-text detail)."""
    return hashlib.sha256(f"quarantine\0{person_id}\0{image}\0{split}\0{rejection.reason}".encode()).digest()


def rejected_row(person_id: str, image: str, split: str, rejection: Rejection) -> dict:
    """A `WORK_SCHEMA` row for a quarantined person (prepared columns null)."""
    row = {field.name: None for field in WORK_SCHEMA}
    row.update({PERSON_ID: person_id, IMAGE: image, SPLIT: split, REASON: rejection.reason,
                DETAIL: rejection.detail, DIGEST: rejection_digest(person_id, image, split, rejection)})
    return row


def _load(path: Path) -> np.ndarray | Rejection:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Rejection(quarantine.MISSING_IMAGE, f"cannot read {path}: {exc.strerror or exc}")
    try:
        return decode_image(data)
    except ImageDecodeError as exc:
        return Rejection(quarantine.CORRUPT_IMAGE, f"{path}: {exc}")


def prepare_batch(records: pa.Table, image_root: str, jpeg_quality: int) -> pa.Table:
    """Decodes, checks and crops every person of `records` (`RECORD_SCHEMA`).

    Records are expected sorted by image so that people of one image share one decode.
    Returns a `WORK_SCHEMA` table with one row per input row, in the input order.
    """
    n = len(records)
    ids = records.column(PERSON_ID).to_pylist()
    images = records.column(IMAGE).to_pylist()
    splits = records.column(SPLIT).to_pylist()
    widths = records.column(WIDTH).to_numpy()
    heights = records.column(HEIGHT).to_numpy()
    centers = _fixed_list(records, CENTER, 2, np.float64)
    scales = records.column(SCALE).to_numpy(zero_copy_only=False).astype(np.float64)
    joints = _fixed_list(records, JOINTS, 2 * NUM_JOINTS, np.float64).reshape(n, NUM_JOINTS, 2)
    labelled = _fixed_list(records, LABELLED, NUM_JOINTS, bool)
    head_sizes = records.column(HEAD_SIZE).to_numpy(zero_copy_only=False).astype(np.float64)
    head_sources = records.column(HEAD_SIZE_SOURCE).to_pylist()

    root = Path(image_root)
    last_path, last_image = None, None
    rows = []
    for i in range(n):
        # The driver already rejected bad paths and numbers (`check_record`); the path check is
        # repeated because this is the line that opens files.
        rejection = quarantine.check_image_path(images[i])
        if rejection is None:
            path = root / images[i]
            if path != last_path:
                last_path, last_image = path, _load(path)
            if isinstance(last_image, Rejection):
                rejection = last_image
            else:
                height, width = last_image.shape[:2]
                if widths[i] > 0 and heights[i] > 0 and (widths[i], heights[i]) != (width, height):
                    rejection = Rejection(
                        quarantine.SIZE_MISMATCH,
                        f"{path} is {width}x{height} but the annotation says {widths[i]}x{heights[i]}",
                    )
                else:
                    rejection = quarantine.check_box_in_image(centers[i], scales[i], width, height)
        if rejection is None:
            try:
                crop = crop_person(last_image, centers[i], scales[i], joints[i], labelled[i])
            except (ValueError, cv2.error) as exc:  # e.g. a degenerate scale: this person only
                rejection = Rejection(quarantine.CROP_FAILED, f"{type(exc).__name__}: {exc}")
        if rejection is not None:
            rows.append(rejected_row(ids[i], images[i], splits[i], rejection))
            continue
        row = {
            PERSON_ID: ids[i],
            IMAGE: images[i],
            SPLIT: splits[i],
            CROP_JPEG: encode_jpeg(crop.crop, jpeg_quality),
            CROP_SIZE_COL: CROP_SIZE,
            KEYPOINTS: crop.keypoints.astype(np.float32).reshape(-1),
            LABELLED: labelled[i].astype(np.uint8),
            HEAD_SIZE: np.float32(head_sizes[i]),
            HEAD_SIZE_SOURCE: head_sources[i],
            CROP_TO_IMAGE: crop.crop_to_image.astype(np.float32).reshape(-1),
            JOINTS_IMAGE: np.where(labelled[i][:, None], joints[i], np.nan).astype(np.float32).reshape(-1),
            CENTER: centers[i].astype(np.float32),
            SCALE: np.float32(scales[i]),
            HEATMAPS: crop.heatmaps.tobytes(),
            REASON: None,
            DETAIL: None,
        }
        row[DIGEST] = content_digest(row)
        rows.append(row)
    return pa.Table.from_pydict(
        {field.name: pa.array([r[field.name] for r in rows], type=field.type) for field in WORK_SCHEMA},
        schema=WORK_SCHEMA,
    )
