"""The parquet layout of a prepared dataset (`shg prepare --out OUT`): column names and types.

One row per person in `OUT/train/*.parquet` and `OUT/val/*.parquet` (`PREPARED_SCHEMA`), one row
per rejected person in `OUT/quarantine/*.parquet` (`QUARANTINE_SCHEMA`). Every reader and writer
takes the names from here, never from string literals of its own.

Frames and units (see docs/ARCHITECTURE.md):
- `keypoints` are in *stored-crop* px: the `crop_size` (320) square covering `CROP_BOX_SCALE`
  (1.25) x the standard `200 * scale` box, pixel centres at integers. The standard 256 network
  input is the centre `INPUT_SIZE` square of that crop: input px = crop px - `CROP_MARGIN` (32),
  because both crops have the same px density (320 / 1.25 = 256) and share their centre.
- `crop_to_image` is the 2x3 affine (row-major, 6 floats) from stored-crop px to original image px.
- `joints_image`, `center`, `head_size` are in original image px (0-based); `scale` is the
  adjusted person height / 200 px. `head_size` is NaN when unknown (PCKh then skips the
  person); `head_size_source` says where it came from (`HEAD_SIZE_SOURCES`).
- `heatmaps` holds `NUM_JOINTS x HEATMAP_SIZE x HEATMAP_SIZE` uint8 (C order), value / 255 is
  the target of the unaugmented standard 256 crop (sigma 1 at 64 px).
- Unlabelled joints: `labelled` 0 and NaN in `keypoints` / `joints_image`.
"""

from __future__ import annotations

import pyarrow as pa

from dataprep.joints import NUM_JOINTS

CROP_SIZE = 320  # side of the stored crop, px
CROP_BOX_SCALE = 1.25  # the stored crop covers 1.25 x the standard 200*scale box
INPUT_SIZE = 256  # side of the network input, px (the standard box)
CROP_MARGIN = (CROP_SIZE - INPUT_SIZE) // 2  # input px = stored-crop px - CROP_MARGIN
HEATMAP_SIZE = 64
HEATMAP_SIGMA = 1.0  # Gaussian sigma of the stored targets, heatmap px

SPLITS = ("train", "val")

# Values of the head_size_source column: the PCKh normaliser's origin.
HEAD_SIZE_SOURCES = {
    "detections_mat_headbox": "0.6 x head-box diagonal from detections_our_format.mat (official)",
    "h5_normalize": "valid.h5 `normalize` (official; equals the .mat's to 6e-5 px)",
    "head_box": "0.6 x head-box diagonal of the annotation itself (release .mat, shg synth JSON)",
    "head_segment": "estimated: 0.75 x |head_top - upper_neck| (PyTorch JSON; no head boxes)",
    "unknown": "NaN: no head box and no upper neck/head top; PCKh skips the person",
}

# Column names of the prepared rows.
PERSON_ID = "person_id"
IMAGE = "image"
SPLIT = "split"
CROP_JPEG = "crop_jpeg"
CROP_SIZE_COL = "crop_size"
KEYPOINTS = "keypoints"
LABELLED = "labelled"
HEAD_SIZE = "head_size"
HEAD_SIZE_SOURCE = "head_size_source"
CROP_TO_IMAGE = "crop_to_image"
JOINTS_IMAGE = "joints_image"
CENTER = "center"
SCALE = "scale"
HEATMAPS = "heatmaps"

# Extra columns of the quarantine table.
REASON = "reason"
DETAIL = "detail"

PREPARED_SCHEMA = pa.schema(
    [
        pa.field(PERSON_ID, pa.string(), nullable=False),
        pa.field(IMAGE, pa.string(), nullable=False),
        pa.field(SPLIT, pa.string(), nullable=False),
        pa.field(CROP_JPEG, pa.binary(), nullable=False),
        pa.field(CROP_SIZE_COL, pa.int32(), nullable=False),
        pa.field(KEYPOINTS, pa.list_(pa.float32(), 2 * NUM_JOINTS), nullable=False),
        pa.field(LABELLED, pa.list_(pa.uint8(), NUM_JOINTS), nullable=False),
        pa.field(HEAD_SIZE, pa.float32(), nullable=False),
        pa.field(HEAD_SIZE_SOURCE, pa.string(), nullable=False),
        pa.field(CROP_TO_IMAGE, pa.list_(pa.float32(), 6), nullable=False),
        pa.field(JOINTS_IMAGE, pa.list_(pa.float32(), 2 * NUM_JOINTS), nullable=False),
        pa.field(CENTER, pa.list_(pa.float32(), 2), nullable=False),
        pa.field(SCALE, pa.float32(), nullable=False),
        pa.field(HEATMAPS, pa.binary(), nullable=False),
    ],
    metadata={
        "shg.crop_size": str(CROP_SIZE),
        "shg.crop_box_scale": str(CROP_BOX_SCALE),
        "shg.input_size": str(INPUT_SIZE),
        "shg.heatmap_size": str(HEATMAP_SIZE),
        "shg.heatmap_sigma": str(HEATMAP_SIGMA),
        "shg.heatmaps": f"uint8 ({NUM_JOINTS},{HEATMAP_SIZE},{HEATMAP_SIZE}) C order, value/255",
    },
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(PERSON_ID, pa.string(), nullable=False),
        pa.field(IMAGE, pa.string(), nullable=False),
        pa.field(SPLIT, pa.string(), nullable=False),
        pa.field(REASON, pa.string(), nullable=False),
        pa.field(DETAIL, pa.string(), nullable=False),
    ]
)


def describe(schema: pa.Schema) -> dict[str, str]:
    """`{column: arrow type}` of `schema`, for the manifest."""
    return {field.name: str(field.type) for field in schema}
