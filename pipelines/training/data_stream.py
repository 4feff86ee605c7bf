"""The training data stream (Ray Data) and the in-memory validation split of a prepared dataset.

Training: `OUT/train/*.parquet` → (read once, held in small blocks) → shuffled block order →
`map_batches(augment_keypoints_batch)` → the numeric columns the loop needs (`image` uint8
(B, S, S, 3), `keypoints` float64 (B, J, 2) heatmap px, `weight` float32 (B, J)). Augmentation
runs in Ray Data tasks; the loop draws the Gaussian targets from the keypoints on its own device
(`shg_model.targets`, equal to `augment_batch`'s to 1e-6) and normalises the uint8 pixels there:
~197 KB a sample travels at 256 px instead of ~459 KB with float32 maps.

Per-epoch reproducibility: `augment_batch` seeds each sample from (data.seed, epoch, person_id),
so epoch e shows the same augmented sample of a person whatever the batching, block order,
worker or retry. The epoch number reaches the Ray Data tasks through an `EpochClock`, a tiny
named actor: before each pass rank 0 sets it to the loop's epoch (restored from the checkpoint
after a failure), all ranks meet at a barrier, then iterate their shard; every augmentation task
reads the clock once per batch. Ray Data starts executing a pass only when every rank has asked
for it (`streaming_split(equal=True)`), so no task of a pass can see the previous epoch's
number. One dataset and one split coordinator serve the whole run (a dataset per epoch would
leave one ~250 MB coordinator process alive per epoch until the run ends).

Shuffling: every pass walks the blocks (~128 rows) in a new order, and the loop draws its
batches from a local buffer of `shuffle_buffer_rows` rows seeded by (train.seed, epoch), so two
consecutive epochs' batches share almost no pair of samples (`shared_pair_fraction`). The block
order of pass k is seeded by (shuffle_seed, k) (Ray Data's per-execution reseeding): a run
that starts at epoch 0 gets the same block order for epoch e on every rerun with the same seed.
A run restarted mid-way (a replaced worker, a re-run driver) numbers its passes from the
restart: which samples the resumed epoch trains on is decided by the clock's keys, not by the
order, so it stays exact; only the order of the resumed passes differs from an unbroken run.

Mid-epoch resume: every row reaches the loop with its `key` (`sample_keys`, a hash of the
person_id). A mid-epoch checkpoint stores the keys trained on so far in that epoch; after a
restart rank 0 puts them on the clock (`EpochClock.set(epoch, done)`) and the augmentation tasks
drop those rows, so the resumed pass trains on exactly the rest: nothing repeated, nothing
skipped, each sample augmented as it would have been.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dataprep import schema
from dataprep.augment import AugmentConfig, augment_keypoints_batch, center_batch, crop_to_input
from dataprep.joints import NUM_JOINTS
from pipelines.runtime.prepared import PreparedDataError, split_source

# Imported where used: ray, cv2 (only the Ray tasks and actors that run these functions need them)

TRAIN_COLUMNS = [schema.PERSON_ID, schema.CROP_JPEG, schema.KEYPOINTS, schema.LABELLED]
VAL_COLUMNS = [schema.PERSON_ID, schema.IMAGE, schema.CROP_JPEG, schema.KEYPOINTS, schema.LABELLED,
               schema.CROP_TO_IMAGE, schema.JOINTS_IMAGE, schema.HEAD_SIZE]
LOOP_COLUMNS = ("image", "keypoints", "weight", "key")


TRAIN_DATASET = "train"


class EpochClock:
    """The epoch the training loop is in, and the keys of the samples of that epoch already
    trained on before a restart, for the Ray Data tasks (use as a Ray actor)."""

    def __init__(self) -> None:
        self.epoch = 0
        self.done = np.empty(0, dtype=np.int64)

    def set(self, epoch: int, done: np.ndarray | None = None) -> None:
        self.epoch = int(epoch)
        self.done = np.unique(np.asarray([] if done is None else done, dtype=np.int64))

    def get(self) -> tuple[int, np.ndarray]:
        return self.epoch, self.done


class EpochClockClient:
    """The training loop's side of a run's `EpochClock` actor
    (`pipelines.training.loop.EpochClockHandle`)."""

    def __init__(self, actor) -> None:
        self.actor = actor

    def set_epoch(self, epoch: int, done: np.ndarray) -> None:
        """Sets the clock and waits until it holds: the pass starts only after."""
        import ray  # only ever called inside a Ray worker

        ray.get(self.actor.set.remote(epoch, done))


def start_epoch_clock(name: str):
    """Creates (or finds) the named `EpochClock` actor of a run on this (the driver's) node, as
    Ray Train places its controller: losing another node of the cluster does not lose it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(EpochClock).options(name=name, get_if_exists=True,
                                                      scheduling_strategy=here).remote()


def clock_state(clock_name: str) -> tuple[int, np.ndarray]:
    """(epoch, sorted keys already trained on in it) from the named clock (in Ray Data tasks)."""
    import ray

    return ray.get(ray.get_actor(clock_name).get.remote())


def sample_keys(person_ids) -> np.ndarray:
    """(N,) int64 key of each person_id: the first 8 bytes of its BLAKE2b digest. Stable across
    processes and runs (unlike `hash`), so a checkpoint can name the samples it has seen."""
    return np.array([int.from_bytes(hashlib.blake2b(str(p).encode(), digest_size=8).digest(), "little", signed=True)
                     for p in person_ids], dtype=np.int64).reshape(-1)


def augment_for_training(batch: dict[str, np.ndarray], cfg: AugmentConfig, clock_name: str) -> dict[str, np.ndarray]:
    """`augment_keypoints_batch` for the clock's current epoch, without the rows already trained
    on in it, keeping only what the loop consumes (strings cannot be tensors: `key` names the row)."""
    import cv2

    # A task holds one CPU: OpenCV's own thread pool (one thread per core of the node) would
    # put several threads of every task on each core.
    cv2.setNumThreads(1)
    epoch, done = clock_state(clock_name)
    keys = sample_keys(batch[schema.PERSON_ID])
    if len(done):
        keep = ~np.isin(keys, done)
        batch, keys = {name: column[keep] for name, column in batch.items()}, keys[keep]
    if len(keys) == 0:
        return _empty_loop_batch(cfg)
    out = augment_keypoints_batch(batch, cfg, epoch)
    return {"key": keys, **{name: out[name] for name in LOOP_COLUMNS if name != "key"}}


def _empty_loop_batch(cfg: AugmentConfig) -> dict[str, np.ndarray]:
    return {"key": np.empty(0, np.int64),
            "image": np.empty((0, cfg.input_size, cfg.input_size, 3), np.uint8),
            "keypoints": np.empty((0, NUM_JOINTS, 2), np.float64),
            "weight": np.empty((0, NUM_JOINTS), np.float32)}


def train_rows(data: str | Path, *, cache: bool = True, rows_per_block: int = 128):
    """The stored training rows as a Ray Dataset (the columns augmentation needs).

    With `cache`, they are read once, cut into blocks of `rows_per_block` and held in the object
    store (a materialized dataset; JPEG crops and keypoints, ~28 KB a person). Without it, the
    dataset is lazy: each pass re-reads the parquet files, a whole file being one block.
    """
    import ray

    filesystem, files = split_source(data, "train")  # local or object store (shg_io.storage)
    ds = ray.data.read_parquet(files, columns=TRAIN_COLUMNS, filesystem=filesystem)
    if not cache:
        return ds
    rows = sum(pq.read_metadata(f, filesystem=filesystem).num_rows for f in files)
    return ds.repartition(max(1, math.ceil(rows / rows_per_block))).materialize()


def train_dataset(data: str | Path, cfg: AugmentConfig, clock_name: str, *, shuffle_seed: int,
                  batch_size: int = 32, num_cpus: float = 1.0, cache: bool = True,
                  rows_per_block: int = 128):
    """The lazy Ray Dataset of training passes: augmented inputs, targets and joint weights.

    Each iteration is one epoch, augmented for the epoch on the `clock_name` clock. Block order
    is shuffled afresh for every pass (pass k seeded by `shuffle_seed` and k); the loop adds a
    local shuffle buffer (`shuffle_buffer_rows`) seeded by the epoch.

    `cache` (`train_rows`) makes a pass start with many small augmentation tasks at once: the
    first batch of an epoch arrives in ~0.4 s. Uncached, one task augments a whole file before
    anything is delivered (~7 s of idle training workers per epoch on the default set). Turn it
    off only for a split larger than the object store.
    """
    ds = train_rows(data, cache=cache, rows_per_block=rows_per_block)
    from ray.data import RandomSeedConfig

    ds = ds.randomize_block_order(seed=RandomSeedConfig(seed=_mix(shuffle_seed, 0) % 2**31,
                                                       reseed_after_execution=True))
    return ds.map_batches(
        augment_for_training,
        fn_kwargs={"cfg": cfg, "clock_name": clock_name},
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
    )


SHUFFLE_BUFFER_MIN_ROWS = 512


def shuffle_buffer_rows(batch_size: int) -> int:
    """Rows in the loop's local shuffle buffer: at least 512 (four 128-row blocks) and 64
    batches. With a buffer of R rows a pair of samples that shared a batch in one epoch shares
    one again in the next with a chance of about batch_size / R on top of the block order's
    reshuffle (a 64-row buffer over a fixed block order: most pairs met again)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return max(SHUFFLE_BUFFER_MIN_ROWS, 64 * batch_size)


def shared_pair_fraction(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    """Of the pairs of samples that share a batch in `first` (one epoch's batches, each an
    array of sample keys), the fraction that share a batch in `second` as well.

    0 when the two epochs batch independently of each other (up to chance: about
    (batch - 1) / (rows - 1)), 1 when every batch of `first` comes back whole."""
    batch_of = {int(k): i for i, keys in enumerate(second) for k in np.asarray(keys).reshape(-1)}
    pairs = shared = 0
    for keys in first:
        where = np.array([batch_of.get(int(k), -1 - j) for j, k in enumerate(np.asarray(keys).reshape(-1))])
        n = len(where)
        pairs += n * (n - 1) // 2
        _, counts = np.unique(where, return_counts=True)
        shared += int((counts * (counts - 1) // 2).sum())
    if pairs == 0:
        raise ValueError("no batch of the first epoch holds two samples: no pairs to compare")
    return shared / pairs


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
    filesystem, files = split_source(data, "val")
    table = pq.ParquetDataset(files, filesystem=filesystem).read(columns=VAL_COLUMNS)
    table = table.sort_by(schema.PERSON_ID)
    if max_people:
        table = table.slice(0, max_people)
    if table.num_rows == 0:
        raise PreparedDataError(f"{data}/val: the validation split has no rows")
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
    filesystem, files = split_source(data, "train")
    table = pq.ParquetDataset(files, filesystem=filesystem).read(
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
