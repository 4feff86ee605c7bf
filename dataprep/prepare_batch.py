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
import stat
import threading
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from dataprep import quarantine
from dataprep.crops import (
    HeaderTooLargeError,
    ImageDecodeError,
    crop_person,
    decode_image,
    encode_jpeg,
    header_size,
)
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
from shg_io.storage import Location, is_uri, location

WIDTH, HEIGHT, JOINTS, DIGEST = "width", "height", "joints", "digest"

# Limits checked before an image is decoded: 40 MP is a 120 MB BGR decode (MPII's largest
# images are ~2 MP); 128 MiB of file is far above any such JPEG or PNG.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MAX_IMAGE_BYTES = 128 * 2**20
# Seconds one image's decode may take (a 40 MP JPEG decodes in well under a second); past it the
# image is quarantined and the task goes on. A native decoder cannot be interrupted: the stuck
# decode is left to a daemon thread, which ends with the worker process.
DEFAULT_MAX_DECODE_S = 30.0


class DecodeTimeout(Exception):
    """The decoder did not return within the time limit."""


def decode_within(data: bytes, seconds: float) -> np.ndarray:
    """`decode_image(data)` on a daemon thread, waited for at most `seconds`.

    Raises:
        DecodeTimeout: it did not return in time (the thread is abandoned, still running).
        ImageDecodeError: the decoder refused the bytes.
    """
    outcome: dict[str, object] = {}

    def decode() -> None:
        try:
            outcome["image"] = decode_image(data)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    worker = threading.Thread(target=decode, name="shg-decode", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DecodeTimeout(f"still decoding after {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["image"]  # type: ignore[return-value]

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
    """A `WORK_SCHEMA` row for a quarantined person (prepared columns null).

    Text is stored through `quarantine.printable`, so a name with a NUL byte or a lone
    surrogate is kept (escaped) instead of failing the parquet write.
    """
    person_id, image, split = (quarantine.printable(v) for v in (person_id, image, split))
    rejection = Rejection(rejection.reason, quarantine.printable(rejection.detail))
    row = {field.name: None for field in WORK_SCHEMA}
    row.update({PERSON_ID: person_id, IMAGE: image, SPLIT: split, REASON: rejection.reason,
                DETAIL: rejection.detail, DIGEST: rejection_digest(person_id, image, split, rejection)})
    return row


def load_image(root: Path | Location, image: str, max_pixels: int, max_bytes: int,
               max_decode_s: float = DEFAULT_MAX_DECODE_S) -> np.ndarray | Rejection:
    """The decoded BGR image `root / image`, or why it cannot be used.

    Checked in order, each before any work that the next one would cost: the name
    (`check_image_path`), the resolved path stays under `root` (a symlink may not lead out),
    a regular file (a named pipe would block the reader forever, a directory cannot be read),
    not empty and at most `max_bytes`, a header Pillow recognises that declares at most
    `max_pixels` (a decompression bomb is refused before OpenCV allocates for it), then the
    decode itself, within `max_decode_s` seconds (`decode_within`). `root` must already be
    resolved. An object-store root (a `Location`, e.g. `s3://bucket/mpii/images`) is read
    through `shg_io.storage` with the same checks (an object store has no symlinks, pipes or
    devices).
    """
    if (rejection := quarantine.check_image_path(image)) is not None:
        return rejection
    if isinstance(root, Location):
        return _load_stored_image(root, image, max_pixels, max_bytes, max_decode_s)
    path = root / image
    try:
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            return Rejection(quarantine.PATH_ESCAPES_ROOT, f"{path} resolves to {resolved}, outside {root}")
        info = resolved.stat()
    except FileNotFoundError:
        return Rejection(quarantine.MISSING_IMAGE, f"{path} does not exist")
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        return Rejection(quarantine.MISSING_IMAGE, f"cannot open {path}: {getattr(exc, 'strerror', None) or exc}")
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (pipe, socket or device)"
        return Rejection(quarantine.NOT_A_FILE, f"{path} is {kind}")
    if info.st_size == 0:
        return Rejection(quarantine.CORRUPT_IMAGE, f"{path} is empty (0 bytes)")
    if info.st_size > max_bytes:
        return Rejection(quarantine.IMAGE_TOO_LARGE, f"{path} has {info.st_size} bytes, over the {max_bytes}-byte limit")
    try:
        data = resolved.read_bytes()
    except OSError as exc:
        return Rejection(quarantine.MISSING_IMAGE, f"cannot read {path}: {exc.strerror or exc}")
    return _decode_checked(str(path), data, max_pixels, max_decode_s)


def _load_stored_image(root: Location, image: str, max_pixels: int, max_bytes: int,
                       max_decode_s: float) -> np.ndarray | Rejection:
    """`load_image` for an object-store root: size from the listing, then one GET."""
    obj = root / image  # `check_image_path` has refused absolute names and '..'
    try:
        info = obj.info()
    except OSError as exc:
        return Rejection(quarantine.MISSING_IMAGE, f"cannot open {obj}: {exc}")
    if info.type == pafs.FileType.NotFound:
        return Rejection(quarantine.MISSING_IMAGE, f"{obj} does not exist")
    if info.type != pafs.FileType.File:
        return Rejection(quarantine.NOT_A_FILE, f"{obj} is a folder (a prefix), not an object")
    if info.size == 0:
        return Rejection(quarantine.CORRUPT_IMAGE, f"{obj} is empty (0 bytes)")
    if info.size > max_bytes:
        return Rejection(quarantine.IMAGE_TOO_LARGE, f"{obj} has {info.size} bytes, over the {max_bytes}-byte limit")
    try:
        data = obj.read_bytes()
    except OSError as exc:
        return Rejection(quarantine.MISSING_IMAGE, f"cannot read {obj}: {exc}")
    return _decode_checked(obj.uri, data, max_pixels, max_decode_s)


def _decode_checked(path: str, data: bytes, max_pixels: int, max_decode_s: float) -> np.ndarray | Rejection:
    """The header's declared size within `max_pixels`, then the decode (BGR) within `max_decode_s`
    seconds, or why not."""
    try:
        width, height = header_size(data)
    except HeaderTooLargeError as exc:
        return Rejection(quarantine.IMAGE_TOO_LARGE, f"{path}: {exc}")
    except ImageDecodeError as exc:
        return Rejection(quarantine.CORRUPT_IMAGE, f"{path}: {exc}")
    if width * height > max_pixels:
        return Rejection(
            quarantine.IMAGE_TOO_LARGE,
            f"{path} declares {width}x{height} = {width * height} px, over the {max_pixels}-pixel limit",
        )
    try:
        return decode_within(data, max_decode_s)
    except DecodeTimeout as exc:
        return Rejection(quarantine.DECODE_TIMEOUT, f"{path}: the decoder is {exc} (the per-image limit; "
                                                    "raise --max-decode-s if the image is genuine)")
    except ImageDecodeError as exc:
        return Rejection(quarantine.CORRUPT_IMAGE, f"{path}: {exc}")


def check_stored_row(row: dict, labelled: np.ndarray) -> Rejection | None:
    """Rejects a prepared row whose stored float32 values are not finite where the contract needs
    them (labelled keypoints, the affine, centre, scale > 0, head size finite > 0 or NaN): the crop
    maths can push in-range image px (e.g. 1e37) past float32 in crop px."""
    checks = [
        (KEYPOINTS, np.asarray(row[KEYPOINTS]).reshape(-1, 2)[labelled]),
        (JOINTS_IMAGE, np.asarray(row[JOINTS_IMAGE]).reshape(-1, 2)[labelled]),
        (CROP_TO_IMAGE, row[CROP_TO_IMAGE]),
        (CENTER, row[CENTER]),
        (SCALE, row[SCALE]),
    ]
    for name, values in checks:
        if not np.all(np.isfinite(values)):
            return Rejection(quarantine.NON_FINITE, f"stored {name} is not finite as float32")
    if not row[SCALE] > 0:
        return Rejection(quarantine.NON_FINITE, f"stored scale {float(row[SCALE])!r} is not > 0")
    head = row[HEAD_SIZE]
    if not (np.isnan(head) or (np.isfinite(head) and head > 0)):
        return Rejection(quarantine.NON_FINITE, f"stored head_size {float(head)!r} is not finite and > 0")
    return None


def _prepare_one(image, name, width, height, center, scale, joints, labelled, head_size, jpeg_quality) -> dict | Rejection:
    """One person's stored columns (all but id/image/split and the bookkeeping), or why not."""
    if isinstance(image, Rejection):
        return image
    actual_height, actual_width = image.shape[:2]
    if width > 0 and height > 0 and (width, height) != (actual_width, actual_height):
        return Rejection(
            quarantine.SIZE_MISMATCH,
            f"{name} is {actual_width}x{actual_height} but the annotation says {width}x{height}",
        )
    rejection = quarantine.check_box_in_image(center, scale, actual_width, actual_height)
    if rejection is not None:
        return rejection
    try:
        with np.errstate(all="ignore"):  # overflow is caught below, on the stored values
            crop = crop_person(image, center, scale, joints, labelled)
            row = {
                CROP_TO_IMAGE: crop.crop_to_image.astype(np.float32).reshape(-1),
                KEYPOINTS: crop.keypoints.astype(np.float32).reshape(-1),
                JOINTS_IMAGE: np.where(labelled[:, None], joints, np.nan).astype(np.float32).reshape(-1),
                CENTER: center.astype(np.float32),
                SCALE: np.float32(scale),
                HEAD_SIZE: np.float32(head_size),
            }
    except (ValueError, cv2.error) as exc:  # e.g. a degenerate scale: this person only
        return Rejection(quarantine.CROP_FAILED, f"{type(exc).__name__}: {exc}")
    if (rejection := check_stored_row(row, labelled)) is not None:
        return rejection
    row.update({
        CROP_JPEG: encode_jpeg(crop.crop, jpeg_quality),
        CROP_SIZE_COL: CROP_SIZE,
        LABELLED: labelled.astype(np.uint8),
        HEATMAPS: crop.heatmaps.tobytes(),
    })
    return row


def prepare_batch(
    records: pa.Table,
    image_root: str,
    jpeg_quality: int,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_decode_s: float = DEFAULT_MAX_DECODE_S,
) -> pa.Table:
    """Decodes, checks and crops every person of `records` (`RECORD_SCHEMA`).

    `image_root`: a local folder, or an object store URI (`s3://bucket/mpii/images`) read from
    the node this runs on.

    Records are expected sorted by image so that people of one image share one decode.
    Returns a `WORK_SCHEMA` table with one row
    per input row, in the input order: whatever one person's record or image holds, that
    person becomes a quarantined row and the batch goes on.
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

    # symlinks are judged against the real root; an object store URI is opened here, in the
    # task, with this node's credentials (AWS_* variables or its role)
    root = location(image_root) if is_uri(image_root) else Path(image_root).resolve()
    last_name, last_image = None, None
    rows = []
    for i in range(n):
        try:
            if images[i] != last_name:
                last_name, last_image = images[i], None
                last_image = load_image(root, images[i], max_image_pixels, max_image_bytes, max_decode_s)
            row = _prepare_one(
                last_image, images[i], widths[i], heights[i], centers[i], scales[i], joints[i],
                labelled[i], head_sizes[i], jpeg_quality,
            )
        except Exception as exc:  # noqa: BLE001 - one person's failure never ends the job
            row = Rejection(quarantine.RECORD_FAILED, f"{type(exc).__name__}: {exc}")
            if last_image is None:  # the load itself failed: the image's other people say so too
                last_image = row
        if isinstance(row, Rejection):
            rows.append(rejected_row(ids[i], images[i], splits[i], row))
            continue
        row.update({PERSON_ID: ids[i], IMAGE: images[i], SPLIT: splits[i], HEAD_SIZE_SOURCE: head_sources[i],
                    REASON: None, DETAIL: None})
        row[DIGEST] = content_digest(row)
        rows.append(row)
    return pa.Table.from_pydict(
        {field.name: pa.array([r[field.name] for r in rows], type=field.type) for field in WORK_SCHEMA},
        schema=WORK_SCHEMA,
    )
