"""Decoding an image and cutting one person's stored crop, keypoints and targets (numpy + cv2).

Frames (docs/ARCHITECTURE.md, `dataprep.schema`): image px -> stored-crop px by
`crop_transform(center, scale, CROP_SIZE, box_scale=CROP_BOX_SCALE)`; the standard 256 input is
the centre of that crop (input px = crop px - CROP_MARGIN) and heatmap px follow by
`input_to_heatmap`. Everything here is deterministic: same bytes in, same arrays out.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from dataprep.geometry import apply_affine, crop_transform, input_to_heatmap, invert_affine
from dataprep.heatmaps import quantize_heatmaps, render_heatmaps
from dataprep.schema import (
    CROP_BOX_SCALE,
    CROP_SIZE,
    HEATMAP_SIGMA,
    HEATMAP_SIZE,
    INPUT_SIZE,
)

# Annotations are in the stored pixel frame (MATLAB imread ignores EXIF), so never let OpenCV
# rotate the picture by its EXIF orientation tag.
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


class ImageDecodeError(ValueError):
    """The bytes are not a complete image OpenCV can decode."""


def decode_image(data: bytes) -> np.ndarray:
    """Decodes image file bytes to a BGR uint8 (H, W, 3) array (greyscale is expanded).

    Raises:
        ImageDecodeError: undecodable bytes, or a JPEG without its end-of-image marker (libjpeg
            would otherwise return a truncated file as an image with a grey bottom).
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")  # cv2.imdecode raises on an empty buffer
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise ImageDecodeError("truncated JPEG (no end-of-image marker)")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _IMREAD_FLAGS)
    except cv2.error as exc:
        raise ImageDecodeError(f"OpenCV cannot decode these bytes as an image ({type(exc).__name__})") from exc
    if image is None or image.size == 0:
        raise ImageDecodeError("OpenCV cannot decode these bytes as an image")
    return image


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) that the image header declares, read without decoding the pixels.

    This is what the decompression-bomb check needs: a few hundred bytes can declare a 60000 x
    60000 JPEG that OpenCV would try to allocate ~10 GB for.

    Raises:
        ImageDecodeError: empty bytes, or a header Pillow does not recognise as an image.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    from PIL import Image, UnidentifiedImageError  # header parsing only, never a full decode

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the caller sets the limit
            with Image.open(io.BytesIO(data)) as im:
                return int(im.width), int(im.height)
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit: size in message
        raise HeaderTooLargeError(str(exc)) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"not an image header Pillow recognises ({type(exc).__name__}: {exc})") from exc


class HeaderTooLargeError(ImageDecodeError):
    """The header declares more pixels than Pillow will even describe."""


@dataclass(frozen=True)
class PersonCrop:
    """One person's stored crop and everything derived from the same affine.

    Attributes:
        crop: (CROP_SIZE, CROP_SIZE, 3) uint8 BGR.
        keypoints: (J, 2) float64 stored-crop px, NaN where unlabelled.
        crop_to_image: (2, 3) float64 affine, stored-crop px -> image px.
        heatmaps: (J, HEATMAP_SIZE, HEATMAP_SIZE) uint8 targets of the standard INPUT_SIZE crop.
    """

    crop: np.ndarray
    keypoints: np.ndarray
    crop_to_image: np.ndarray
    heatmaps: np.ndarray


def crop_person(
    image: np.ndarray, center: np.ndarray, scale: float, joints: np.ndarray, labelled: np.ndarray
) -> PersonCrop:
    """Cuts the stored crop of one person and renders the targets of its standard 256 crop.

    Args:
        image: (H, W, 3) uint8 BGR. center: (2,) image px. scale: adjusted, person height / 200.
        joints: (J, 2) image px (NaN where unlabelled). labelled: (J,) bool.
    """
    image_to_crop = crop_transform(center, scale, CROP_SIZE, box_scale=CROP_BOX_SCALE)
    # cv2 samples dst(x, y) = src(M^-1 (x, y)) with pixel centres at integers: our convention.
    crop = cv2.warpAffine(
        image,
        image_to_crop,
        (CROP_SIZE, CROP_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    keypoints = np.where(labelled[:, None], apply_affine(image_to_crop, joints), np.nan)
    image_to_input = crop_transform(center, scale, INPUT_SIZE)
    on_heatmap = input_to_heatmap(apply_affine(image_to_input, joints))
    heatmaps = render_heatmaps(
        on_heatmap, labelled, size=HEATMAP_SIZE, sigma=HEATMAP_SIGMA
    )
    return PersonCrop(
        crop=crop,
        keypoints=keypoints,
        crop_to_image=invert_affine(image_to_crop),
        heatmaps=quantize_heatmaps(heatmaps),
    )


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a BGR uint8 image (baseline, 4:2:0, OpenCV's libjpeg: deterministic)."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed to write a JPEG")
    return buf.tobytes()
