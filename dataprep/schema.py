"""The parquet layout of a prepared dataset (`shg prepare --out OUT`): column names and types.

One row per person in `OUT/train/*.parquet` and `OUT/val/*.parquet` (`PREPARED_SCHEMA`), one row
per rejected person in `OUT/quarantine/*.parquet` (`QUARANTINE_SCHEMA`). Every reader and writer
takes the names from here, never from string literals of its own.

Frames and units (see docs/ARCHITECTURE.md):
- `keypoints` are in *stored-crop* px: the `crop_size` (480) square covering `CROP_BOX_SCALE`
  (1.875) x the standard `200 * scale` box, pixel centres at integers. The standard 256 network
  input is the centre `INPUT_SIZE` square of that crop: input px = crop px - `CROP_MARGIN` (112),
  because both crops have the same px density (480 / 1.875 = 256) and share their centre.
  The margin is what the paper's augmentation needs (`required_box_scale`): at +-30 deg and
  zoom 0.75 the input square sees 1.82 x the box, so its corners still fall on stored pixels.
- `crop_to_image` is the 2x3 affine (row-major, 6 floats) from stored-crop px to original image px.
- `joints_image`, `center`, `head_size` are in original image px (0-based); `scale` is the
  adjusted person height / 200 px. `head_size` is NaN when unknown (PCKh then skips the
  person); `head_size_source` says where it came from (`HEAD_SIZE_SOURCES`).
- `heatmaps` holds `NUM_JOINTS x HEATMAP_SIZE x HEATMAP_SIZE` uint8 (C order), value / 255 is
  the target of the unaugmented standard 256 crop (sigma 1 at 64 px).
- Unlabelled joints: `labelled` 0 and NaN in `keypoints` / `joints_image`.
"""

from __future__ import annotations

import math

import pyarrow as pa

from dataprep.joints import NUM_JOINTS
from dataprep.records import SPLITS as SPLITS  # the one definition, re-exported for the schema's readers

CROP_SIZE = 480  # side of the stored crop, px (a multiple of 16: whole JPEG 4:2:0 blocks)
CROP_BOX_SCALE = 1.875  # the stored crop covers 1.875 x the standard 200*scale box
INPUT_SIZE = 256  # side of the network input, px (the standard box)
CROP_MARGIN = (CROP_SIZE - INPUT_SIZE) // 2  # input px = stored-crop px - CROP_MARGIN
HEATMAP_SIZE = 64
HEATMAP_SIGMA = 1.0  # Gaussian sigma of the stored targets, heatmap px



def required_box_scale(rotation_deg: float, scale_min: float) -> float:
    """How many standard boxes a stored crop must cover so that augmentation never leaves it.

    The network input is the standard box zoomed by s and rotated by theta about its centre,
    so it sees a square of side box / s turned by theta; the axis-aligned square around that
    has side box * (|cos theta| + |sin theta|) / s, largest at the largest |theta| up to 45 deg
    (sqrt(2) beyond) and the smallest s. At the paper's +-30 deg and s = 0.75:
    (cos 30 + sin 30) / 0.75 = 1.366 / 0.75 = 1.8214 boxes (the former 1.25 left about 44 % of
    augmented samples with black corners).
    """
    theta = math.radians(min(abs(float(rotation_deg)), 45.0))
    return (math.cos(theta) + math.sin(theta)) / float(scale_min)

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
