"""Training augmentation and the validation centre crop, on batches of prepared rows (no torch).

Both functions take a numpy batch of prepared rows (`dataprep.schema`; e.g. what Ray Data's
`map_batches` gets from `read_parquet`) and return network-ready numpy arrays:
`image` uint8 (B, S, S, 3) **RGB**, `heatmaps` float32 (B, J, H, H), `weight` float32 (B, J) and
the pass-through `person_id`, with S = `input_size`, H = `heatmap_size` = S / 4.

Augmentation (`augment_batch`), per sample on the stored crop (CROP_SIZE px, CROP_BOX_SCALE x the
box, wide enough for +-30 deg at zoom 0.75: `schema.required_box_scale`):
albumentations `Affine` (rotation and scale about the crop centre), `HorizontalFlip`, the centre
`input_size` crop, then `ColorJitter`; heatmaps are rendered from the augmented keypoints.
albumentations 2.0.8 moves keypoints under a flip but cannot relabel them, so the applied flip is
read back (`save_applied_params=True`) and the joints are permuted with `FLIP_PERMUTATION` here:
after a flip, the person's right wrist is the joint the image shows on the left-hand side.
Each sample's randomness is seeded from (cfg.seed, epoch, person_id) only, so an epoch is
reproducible whatever the batching, order or worker. A joint whose nearest heatmap pixel falls
outside the map is unlabelled for that sample: zero map and weight 0 (`heatmaps.renderable`).

Frames (validation, `center_batch`): a prediction in heatmap px maps back to image px by
  heatmap px -> input px     `inp = (hm + 0.5) * 4 - 0.5`        (`geometry.heatmap_to_input`)
  input px -> stored-crop px `invert_affine(crop_to_input)`      (a pure shift by 112 px at 256)
  stored-crop px -> image px `crop_to_image` (stored per row)
`center_batch` returns `crop_to_input` and `input_to_image` (the last two steps composed).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from dataprep.crops import ImageDecodeError, decode_image
from dataprep.geometry import HEATMAP_STRIDE, compose_affine, input_to_heatmap, invert_affine
from dataprep.heatmaps import render_heatmaps, renderable
from dataprep.joints import FLIP_PERMUTATION, NUM_JOINTS
from dataprep.schema import (
    CROP_BOX_SCALE,
    CROP_JPEG,
    CROP_TO_IMAGE,
    HEAD_SIZE,
    IMAGE,
    JOINTS_IMAGE,
    KEYPOINTS,
    LABELLED,
    PERSON_ID,
)

_FLIP = np.asarray(FLIP_PERMUTATION)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation and target settings of the training stream.

    Attributes:
        enabled: False gives the plain centre crop (as `center_batch`), e.g. for ablations.
        rotation_deg: rotation drawn uniformly from [-rotation_deg, +rotation_deg].
        scale_min, scale_max: zoom drawn uniformly from this range (>1 enlarges the person).
        flip_prob: probability of a horizontal flip (joints swap left/right).
        brightness, contrast, saturation, hue: `ColorJitter` strengths (factors 1 +- x; hue +- x).
        color_prob: probability of applying the colour jitter.
        input_size: network input side, px; the standard box fills it. Multiple of 8, <= 256.
        heatmap_size: heatmap side, px; must be input_size / 4.
        sigma: Gaussian sigma of the targets, heatmap px.
        seed: base seed; each sample's generator is seeded from (seed, epoch, person_id).
    """

    enabled: bool = True
    rotation_deg: float = 30.0
    scale_min: float = 0.75
    scale_max: float = 1.25
    flip_prob: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0
    color_prob: float = 0.5
    input_size: int = 256
    heatmap_size: int = 64
    sigma: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_size % 8 or not 8 <= self.input_size <= 256:
            raise ValueError(f"AugmentConfig.input_size must be a multiple of 8 in [8, 256], got {self.input_size}")
        if self.heatmap_size * HEATMAP_STRIDE != self.input_size:
            raise ValueError(
                f"AugmentConfig.heatmap_size must be input_size / {HEATMAP_STRIDE} = "
                f"{self.input_size // HEATMAP_STRIDE}, got {self.heatmap_size}"
            )
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"AugmentConfig needs 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")
        for name in ("flip_prob", "color_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"AugmentConfig.hue must be in [0, 0.5], got {self.hue}")
        if not self.sigma > 0:
            raise ValueError(f"AugmentConfig.sigma must be > 0, got {self.sigma}")


def sample_seed(seed: int, epoch: int, person_id: str) -> int:
    """The 32-bit seed of one sample in one epoch (stable across processes and Python runs)."""
    entropy = [int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, zlib.crc32(person_id.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def zoom(cfg: AugmentConfig, crop_size: int) -> float:
    """Input px per stored-crop px: the standard box is crop_size / CROP_BOX_SCALE crop px."""
    return cfg.input_size * CROP_BOX_SCALE / crop_size


def crop_to_input(cfg: AugmentConfig, crop_size: int) -> np.ndarray:
    """(2, 3) affine stored-crop px -> input px of the centre crop: scale `zoom` about the
    centres ((n-1)/2 in both frames). At input 256 and crop 480 it is a shift by -112 px."""
    k = zoom(cfg, crop_size)
    shift = (cfg.input_size - 1) / 2 - k * (crop_size - 1) / 2
    return np.array([[k, 0.0, shift], [0.0, k, shift]])


def _pipeline(cfg: AugmentConfig, crop_size: int) -> A.Compose:
    k = zoom(cfg, crop_size)
    return A.Compose(
        [
            A.Affine(
                rotate=(-cfg.rotation_deg, cfg.rotation_deg),
                scale=(cfg.scale_min * k, cfg.scale_max * k),  # k folds the input_size in
                keep_ratio=True,  # one zoom for x and y (the default draws them apart)
                interpolation=cv2.INTER_LINEAR,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=1.0,
            ),
            A.HorizontalFlip(p=cfg.flip_prob),
            A.CenterCrop(cfg.input_size, cfg.input_size),
            A.ColorJitter(
                brightness=cfg.brightness,
                contrast=cfg.contrast,
                saturation=cfg.saturation,
                hue=cfg.hue,
                p=cfg.color_prob,
            ),
        ],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
        save_applied_params=True,
    )


def _rows(batch: dict, name: str, width: int, dtype) -> np.ndarray:
    """A list column (2-D array, or object array of 1-D arrays) as a (B, width) array."""
    column = batch[name]
    return np.stack([np.asarray(v) for v in column]).astype(dtype).reshape(len(column), width)


def _decode_rgb(data) -> np.ndarray:
    try:
        return cv2.cvtColor(decode_image(bytes(data)), cv2.COLOR_BGR2RGB)
    except ImageDecodeError as exc:
        raise ValueError(f"crop_jpeg cannot be decoded ({exc}); re-run `shg prepare` on this dataset") from exc


def _targets(cfg: AugmentConfig, keypoints: np.ndarray, labelled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (B, J, H, H) float32 and weight (B, J) float32 from input-px keypoints (B, J, 2)."""
    on_map = input_to_heatmap(keypoints)
    weight = renderable(on_map, labelled, cfg.heatmap_size).astype(np.float32)
    return render_heatmaps(on_map, labelled, cfg.heatmap_size, cfg.sigma), weight


def augment_pipeline(cfg: AugmentConfig, crop_size: int) -> A.Compose:
    """The albumentations pipeline for stored crops of side `crop_size` (build once per batch)."""
    return _pipeline(cfg, crop_size)


def augment_sample(
    transform: A.Compose, seed: int, crop: np.ndarray, keypoints: np.ndarray, labelled: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented sample.

    Args:
        transform: from `augment_pipeline`; re-seeded here, so the result depends on `seed` only.
        seed: e.g. `sample_seed(cfg.seed, epoch, person_id)`.
        crop: (C, C, 3) uint8 stored crop. keypoints: (J, 2) stored-crop px. labelled: (J,) bool.
    Returns:
        image (S, S, 3) uint8, keypoints (J, 2) float64 input px, labelled (J,) bool, with the
        joints relabelled after a flip (index j is always the person's joint j).
    """
    labelled = np.asarray(labelled, dtype=bool)
    transform.set_random_seed(seed)
    # albumentations wants finite points; unlabelled ones ride along at 0 and stay masked.
    result = transform(image=crop, keypoints=np.where(labelled[:, None], keypoints, 0.0))
    moved = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 2)
    if any(name == "HorizontalFlip" for name, _ in result["applied_transforms"]):
        moved, labelled = moved[_FLIP], labelled[_FLIP]
    return result["image"], moved, labelled


def augment_batch(batch: dict[str, np.ndarray], cfg: AugmentConfig, epoch: int) -> dict[str, np.ndarray]:
    """Augmented network inputs and targets for a batch of prepared rows.

    Needs columns `person_id`, `crop_jpeg`, `keypoints` (stored-crop px), `labelled`.
    Returns `image` (B, S, S, 3) uint8 RGB, `heatmaps` (B, J, H, H) float32, `weight` (B, J)
    float32 and `person_id`. With `cfg.enabled` False it equals `center_batch`'s first four.
    """
    images, moved, labelled = _augmented_inputs(batch, cfg, epoch)
    heatmaps, weight = _targets(cfg, moved, labelled)
    return {"image": images, "heatmaps": heatmaps, "weight": weight, PERSON_ID: np.asarray(batch[PERSON_ID])}


def augment_keypoints_batch(batch: dict[str, np.ndarray], cfg: AugmentConfig, epoch: int) -> dict[str, np.ndarray]:
    """`augment_batch` without drawing the targets: the same `image` and `weight`, and instead
    of `heatmaps` the `keypoints` they are drawn from, (B, J, 2) float64 heatmap px (0 where the
    weight is 0), so the training device renders the maps (`shg_model.targets`): ~0.3 KB a
    sample instead of J x H x H x 4 bytes (262 KB at 64 px).
    `render_heatmaps(keypoints, weight > 0, H, sigma)` equals `augment_batch`'s `heatmaps`.
    """
    images, moved, labelled = _augmented_inputs(batch, cfg, epoch)
    on_map = input_to_heatmap(moved)
    ok = renderable(on_map, labelled, cfg.heatmap_size)
    return {"image": images, "keypoints": np.where(ok[..., None], on_map, 0.0),
            "weight": ok.astype(np.float32), PERSON_ID: np.asarray(batch[PERSON_ID])}


def _augmented_inputs(batch: dict[str, np.ndarray], cfg: AugmentConfig, epoch: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """images (B, S, S, 3) uint8, keypoints (B, J, 2) float64 input px, labelled (B, J) bool."""
    if not cfg.enabled:
        return _centred_inputs(batch, cfg)[:3]
    n = len(batch[PERSON_ID])
    keypoints = _rows(batch, KEYPOINTS, 2 * NUM_JOINTS, np.float64).reshape(n, NUM_JOINTS, 2)
    labelled = _rows(batch, LABELLED, NUM_JOINTS, bool) & np.isfinite(keypoints).all(-1)
    images = np.empty((n, cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
    moved = np.empty_like(keypoints)
    transforms: dict[int, A.Compose] = {}  # one pipeline per stored crop size in the batch
    for i in range(n):
        crop = _decode_rgb(batch[CROP_JPEG][i])
        if crop.shape[0] not in transforms:
            transforms[crop.shape[0]] = augment_pipeline(cfg, crop.shape[0])
        seed = sample_seed(cfg.seed, epoch, str(batch[PERSON_ID][i]))
        images[i], moved[i], labelled[i] = augment_sample(
            transforms[crop.shape[0]], seed, crop, keypoints[i], labelled[i]
        )
    return images, moved, labelled


def _centred_inputs(batch: dict[str, np.ndarray], cfg: AugmentConfig
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_augmented_inputs` of the centre crop, and `crop_to_input` (B, 2, 3)."""
    n = len(batch[PERSON_ID])
    keypoints = _rows(batch, KEYPOINTS, 2 * NUM_JOINTS, np.float64).reshape(n, NUM_JOINTS, 2)
    labelled = _rows(batch, LABELLED, NUM_JOINTS, bool) & np.isfinite(keypoints).all(-1)
    images = np.empty((n, cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
    to_input = np.empty((n, 2, 3))
    for i in range(n):
        crop = _decode_rgb(batch[CROP_JPEG][i])
        to_input[i] = crop_to_input(cfg, crop.shape[0])
        margin = (crop.shape[0] - cfg.input_size) // 2
        if to_input[i, 0, 0] == 1.0 and to_input[i, 0, 2] == -margin:  # a pure shift: slice
            images[i] = crop[margin : margin + cfg.input_size, margin : margin + cfg.input_size]
        else:
            images[i] = cv2.warpAffine(crop, to_input[i], (cfg.input_size, cfg.input_size), flags=cv2.INTER_LINEAR)
    moved = np.einsum("bij,bkj->bki", to_input[:, :, :2], keypoints) + to_input[:, None, :, 2]
    return images, moved, labelled, to_input


def center_batch(batch: dict[str, np.ndarray], cfg: AugmentConfig) -> dict[str, np.ndarray]:
    """Deterministic validation inputs: the centre `input_size` crop of each stored crop.

    Needs `person_id`, `crop_jpeg`, `keypoints`, `labelled`. Returns `image`, `heatmaps`,
    `weight`, `person_id` as `augment_batch`, plus `crop_to_input` (B, 2, 3) float64
    (stored-crop px -> input px) and, when the batch has `crop_to_image`, `input_to_image`
    (B, 2, 3) float64 (input px -> original image px). `head_size`, `joints_image` ((B, J, 2) float32, image
    px) and the stored `image` path (as `image_path`) are passed through when present.
    """
    n = len(batch[PERSON_ID])
    images, moved, labelled, to_input = _centred_inputs(batch, cfg)
    heatmaps, weight = _targets(cfg, moved, labelled)
    out = {"image": images, "heatmaps": heatmaps, "weight": weight, PERSON_ID: np.asarray(batch[PERSON_ID]),
           "crop_to_input": to_input}
    if CROP_TO_IMAGE in batch:
        crop_to_image = _rows(batch, CROP_TO_IMAGE, 6, np.float64).reshape(n, 2, 3)
        out["input_to_image"] = np.stack(
            [compose_affine(crop_to_image[i], invert_affine(to_input[i])) for i in range(n)]
        )
    if HEAD_SIZE in batch:
        out[HEAD_SIZE] = np.asarray(batch[HEAD_SIZE], dtype=np.float32)
    if IMAGE in batch:  # "image" is the pixels here, so the stored path gets another name
        out["image_path"] = np.asarray(batch[IMAGE])
    if JOINTS_IMAGE in batch:
        out[JOINTS_IMAGE] = _rows(batch, JOINTS_IMAGE, 2 * NUM_JOINTS, np.float32).reshape(n, NUM_JOINTS, 2)
    return out
