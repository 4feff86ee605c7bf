"""The training data stream (Ray Data) and the in-memory validation split of a prepared dataset.

Training: `OUT/train/*.parquet` → shuffled block order → `map_batches(augment_batch)` → the
numeric columns the loop needs (`image` uint8 (B, S, S, 3), `heatmaps` float32 (B, J, H, H),
`weight` float32 (B, J)). Augmentation and heatmap rendering run in Ray Data tasks, not in the
training loop.

Per-epoch reproducibility: there is one lazily built dataset per epoch (`train_epoch_<e>`),
whose `map_batches` is bound to that epoch number. `augment_batch` seeds each sample from
(data.seed, epoch, person_id), so epoch e shows the same augmented sample of a person whatever
the batching, block order, worker or retry; re-running epoch e after a failure repeats it
exactly. Ray Train builds a dataset's plan when the worker group starts and splits it across
workers only when the loop first asks for that epoch's shard, so epochs never run are never
read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dataprep import schema
from dataprep.augment import AugmentConfig, augment_batch, center_batch

MANIFEST = "manifest.json"
TRAIN_COLUMNS = [schema.PERSON_ID, schema.CROP_JPEG, schema.KEYPOINTS, schema.LABELLED]
VAL_COLUMNS = [schema.PERSON_ID, schema.IMAGE, schema.CROP_JPEG, schema.KEYPOINTS, schema.LABELLED,
               schema.CROP_TO_IMAGE, schema.JOINTS_IMAGE, schema.HEAD_SIZE]
LOOP_COLUMNS = ("image", "heatmaps", "weight")


class PreparedDataError(ValueError):
    """The --data folder is not a usable prepared dataset; the message says what to run."""


def dataset_name(epoch: int) -> str:
    """Name of epoch `epoch`'s training dataset in the trainer's `datasets`."""
    return f"train_epoch_{epoch}"


def split_files(data: str | Path, split: str) -> list[str]:
    """The parquet files of one split, sorted; a clear error when there are none."""
    folder = Path(data) / split
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        raise PreparedDataError(
            f"{folder}: no parquet files. Pass --data the folder written by `shg prepare --out` "
            "(it holds train/, val/ and manifest.json)."
        )
    return files


def read_manifest(data: str | Path) -> dict:
    """`OUT/manifest.json` of a prepared dataset (counts, fingerprint, config)."""
    path = Path(data) / MANIFEST
    if not path.is_file():
        raise PreparedDataError(
            f"{path} not found: {data} is not a prepared dataset. Run `shg prepare --out {data}` "
            "first (or `shg synth` then `shg prepare` for the synthetic data)."
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PreparedDataError(f"{path} is not valid JSON ({err}); re-run `shg prepare`") from None
    if "fingerprint" not in manifest:
        raise PreparedDataError(f"{path} has no 'fingerprint'; re-run `shg prepare`")
    return manifest


def augment_for_training(batch: dict[str, np.ndarray], cfg: AugmentConfig, epoch: int) -> dict[str, np.ndarray]:
    """`augment_batch`, keeping only the tensors the loop consumes (strings cannot be tensors)."""
    out = augment_batch(batch, cfg, epoch)
    return {name: out[name] for name in LOOP_COLUMNS}


def train_dataset(data: str | Path, cfg: AugmentConfig, epoch: int, *, shuffle_seed: int,
                  batch_size: int = 32, num_cpus: float = 1.0):
    """The lazy Ray Dataset of epoch `epoch`: augmented inputs, targets and joint weights.

    Block order is shuffled with a seed from (`shuffle_seed`, epoch); the loop adds a local
    shuffle buffer. Rows are the same every epoch; their augmentation is epoch-specific.
    """
    import ray

    ds = ray.data.read_parquet(split_files(data, "train"), columns=TRAIN_COLUMNS)
    ds = ds.randomize_block_order(seed=_mix(shuffle_seed, epoch))
    return ds.map_batches(
        augment_for_training,
        fn_kwargs={"cfg": cfg, "epoch": epoch},
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
    )


@dataclass(frozen=True)
class ValidationSet:
    """The validation split, centre-cropped once and held in memory (sorted by person_id).

    Attributes:
        images: (N, S, S, 3) uint8 RGB network inputs.
        heatmaps: (N, J, H, H) float32 targets; weight: (N, J) float32 joint weights.
        input_to_image: (N, 2, 3) affine, input px → original image px.
        joints_image: (N, J, 2) float64 ground truth, image px (NaN where unlabelled).
        labelled: (N, J) bool; head_size: (N,) float64 image px.
        person_id: (N,) str.
        fingerprint: sha256 (16 hex) of the rows scored (ids, crops, ground truth, head sizes).
    """

    images: np.ndarray
    heatmaps: np.ndarray
    weight: np.ndarray
    input_to_image: np.ndarray
    joints_image: np.ndarray
    labelled: np.ndarray
    head_size: np.ndarray
    person_id: np.ndarray
    fingerprint: str

    def __len__(self) -> int:
        return len(self.person_id)


def load_validation(data: str | Path, cfg: AugmentConfig, max_people: int = 0) -> ValidationSet:
    """Reads `OUT/val` with pyarrow and centre-crops it (`center_batch`), no Ray needed.

    Args:
        max_people: keep the first N people by person_id (0 keeps all), to keep validation
            cheap; the fingerprint covers exactly the rows kept.
    """
    table = pq.ParquetDataset(split_files(data, "val")).read(columns=VAL_COLUMNS)
    table = table.sort_by(schema.PERSON_ID)
    if max_people:
        table = table.slice(0, max_people)
    if table.num_rows == 0:
        raise PreparedDataError(f"{Path(data) / 'val'}: the validation split has no rows")
    batch = {name: table.column(name).to_numpy(zero_copy_only=False) for name in VAL_COLUMNS}
    centred = center_batch(batch, cfg)
    joints = centred[schema.JOINTS_IMAGE].astype(np.float64)
    labelled = np.stack(batch[schema.LABELLED]).astype(bool) & np.isfinite(joints).all(-1)
    return ValidationSet(
        images=centred["image"],
        heatmaps=centred["heatmaps"],
        weight=centred["weight"],
        input_to_image=centred["input_to_image"],
        joints_image=joints,
        labelled=labelled,
        head_size=np.asarray(batch[schema.HEAD_SIZE], dtype=np.float64),
        person_id=np.asarray(batch[schema.PERSON_ID]).astype(str),
        fingerprint=validation_fingerprint(batch),
    )


def validation_fingerprint(batch: dict[str, np.ndarray]) -> str:
    """sha256 (16 hex) over the scored rows: person_id, crop bytes, joints_image, head_size.

    Two validation sets with the same fingerprint give comparable PCKh numbers (the champion
    gate compares only those).
    """
    h = hashlib.sha256()
    order = np.argsort(np.asarray(batch[schema.PERSON_ID]).astype(str), kind="stable")
    for i in order:
        h.update(str(batch[schema.PERSON_ID][i]).encode() + b"\0")
        h.update(hashlib.sha256(bytes(batch[schema.CROP_JPEG][i])).digest())
        h.update(np.asarray(batch[schema.JOINTS_IMAGE][i], dtype=np.float32).tobytes())
        h.update(np.float32(batch[schema.HEAD_SIZE][i]).tobytes())
    return h.hexdigest()[:16]


def train_keypoints_input_px(data: str | Path, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training joints in network-input px of the standard (unaugmented) crop.

    Returns:
        keypoints (N, J, 2) float64 input px (NaN where unlabelled), labelled (N, J) bool.
    """
    from dataprep.augment import crop_to_input

    table = pq.ParquetDataset(split_files(data, "train")).read(
        columns=[schema.KEYPOINTS, schema.LABELLED, schema.CROP_SIZE_COL])
    n = table.num_rows
    keypoints = np.stack(table.column(schema.KEYPOINTS).to_numpy(zero_copy_only=False)).astype(np.float64)
    keypoints = keypoints.reshape(n, -1, 2)
    labelled = np.stack(table.column(schema.LABELLED).to_numpy(zero_copy_only=False)).astype(bool)
    labelled &= np.isfinite(keypoints).all(-1)
    crop_sizes = table.column(schema.CROP_SIZE_COL).to_numpy()
    out = np.full_like(keypoints, np.nan)
    for size in np.unique(crop_sizes):
        rows = crop_sizes == size
        affine = crop_to_input(cfg, int(size))  # (2, 3) stored-crop px → input px
        out[rows] = keypoints[rows] @ affine[:, :2].T + affine[:, 2]
    out[~labelled] = np.nan
    return out, labelled


def _mix(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(1)[0])
