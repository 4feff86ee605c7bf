"""Keypoints of people in whole images: person boxes -> network crops -> keypoints in image px.

Frames: *image px* are pixels of the original image as displayed (EXIF orientation applied),
0-based, pixel centres at integers; a box `[x0, y0, x1, y1]` spans x0..x1, y0..y1 in that frame
(a COCO `[x, y, w, h]` box is `[x, y, x + w, y + h]`). The network sees the square of side
`FILL_MARGIN x` the box's longer side around the box centre, i.e. `(center, scale)` in the MPII
convention (`side = 200 * scale`), the framing the model was trained on. Outside the image is
black, as in the training crops.

Used by `shg predict` and by the served MLflow model (`pipelines/tracking/pyfunc.py`), which
carries this module with it: it imports only numpy, OpenCV, torch and the pure modules
`dataprep.geometry`, `pipelines.inference.keypoints` and `shg_model`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import cv2
import numpy as np

from dataprep.geometry import apply_affine, crop_transform, invert_affine

# Imported where used: pipelines.inference.keypoints (it loads torch: only predicting needs it, not
# the box geometry)

FILL_MARGIN = 1.25  # network box side / person height, as in the training crops


def box_to_center_scale(box: Sequence[float]) -> tuple[np.ndarray, float]:
    """`(center (2,), scale)` of the network box for a person box `[x0, y0, x1, y1]` image px.

    center = the box centre; scale = FILL_MARGIN * max(x1 - x0, y1 - y0) / 200.
    Raises ValueError for a box that is not 4 finite numbers with x1 > x0 and y1 > y0.
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)):
        raise ValueError(f"a person box is 4 finite numbers [x0, y0, x1, y1] image px, got {list(box)}")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"person box {values.tolist()} is empty: need x1 > x0 and y1 > y0 "
                         "([x0, y0, x1, y1], not COCO's [x, y, w, h])")
    return np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0]), FILL_MARGIN * max(x1 - x0, y1 - y0) / 200.0


def default_box(width: int, height: int) -> tuple[np.ndarray, float]:
    """(center, scale) for one person filling a `width x height` image."""
    center = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    return center, FILL_MARGIN * max(width, height) / 200.0


def crop_input(image: np.ndarray, center, scale: float, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The network input for the box `(center, scale)`: (crop (S, S, 3) uint8, image_to_input (2, 3))."""
    affine = crop_transform(center, scale, input_size)
    crop = cv2.warpAffine(image, affine, (input_size, input_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, affine


def decode_image(data: bytes, where: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from the bytes of an image file (JPEG, PNG, anything OpenCV reads) as
    displayed: EXIF orientation applied, greyscale expanded, alpha dropped, 16-bit scaled to 8.
    Raises ValueError naming `where` when the bytes are not an image."""
    array = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(array, cv2.IMREAD_COLOR) if array.size else None
    if image is None:
        raise ValueError(f"{where}: not an image OpenCV can decode; pass a JPEG or PNG file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_from_value(value, where: str) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image from what a request carries.

    Accepts: a base64 string of a JPEG/PNG file (optionally a `data:image/...;base64,` URL),
    the file's bytes, or an RGB array (H, W, 3) / greyscale (H, W) of integers 0..255 (nested
    lists from JSON are fine). Raises ValueError naming `where` otherwise.
    """
    if isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"{where}: a string image must be base64 of a JPEG/PNG file ({err})") from None
        return decode_image(data, where)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_image(bytes(value), where)
    array = np.asarray(value)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ValueError(f"{where}: an image array must be (H, W, 3) RGB or (H, W) grey, got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number) or array.min() < 0 or array.max() > 255:
            raise ValueError(f"{where}: an image array must hold integers 0..255 (uint8), got {array.dtype}")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def predict_people(model, card, images: list[np.ndarray], boxes: list[tuple[np.ndarray, float]],
                   flip: bool = True, batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Keypoints of one person per `(image, (center, scale))` pair, in that image's px.

    `images[i]` may repeat the same array for several people of one image. Returns one
    `(keypoints (J, 2) float64 image px, confidence (J,) float32)` per pair, in order.
    """
    from pipelines.inference.keypoints import predict_keypoints

    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} boxes: pass one box per person crop")
    results = []
    for start in range(0, len(images), batch_size):
        crops, affines = zip(*(crop_input(img, c, s, card.input_size)
                               for img, (c, s) in zip(images[start:start + batch_size],
                                                      boxes[start:start + batch_size])))
        coords, conf = predict_keypoints(model, np.stack(crops), card.flip_pairs, flip=flip)
        for i, affine in enumerate(affines):
            results.append((apply_affine(invert_affine(affine), coords[i]), conf[i]))
    return results
