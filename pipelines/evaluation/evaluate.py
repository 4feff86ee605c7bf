"""`shg evaluate`: batch inference over a prepared split with Ray Data, scored with official PCKh.

Each row's centre crop (`dataprep.augment.center_batch`) goes through the model (flip testing
by default) in an actor pool; predictions are mapped back to original image px with the row's
`input_to_image` and compared with `joints_image`, normalised by the row's `head_size`.
The weights are loaded once on the driver and shipped to the actors through the object store,
so actors need neither the model directory nor MLflow access.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataprep import schema
from dataprep.augment import AugmentConfig, center_batch
from dataprep.pckh import pckh_table
from pipelines.inference.keypoints import predict_keypoints, to_image_px
from pipelines.inference.model_dir import ModelCard, model_from_state, plain_state_dict
from pipelines.runtime.prepared import PreparedDataError, read_manifest, split_files
from pipelines.runtime.progress_lines import ProgressLines
from pipelines.runtime.ray_cluster import connect
from pipelines.tracking.model_io import load_model

# Only what inference and scoring need: the stored heatmaps column is the bulk of a row.
READ_COLUMNS = [schema.PERSON_ID, schema.CROP_JPEG, schema.KEYPOINTS, schema.LABELLED,
                schema.CROP_TO_IMAGE, schema.JOINTS_IMAGE, schema.HEAD_SIZE]


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of `shg evaluate` (CLI options carry the same names).

    Attributes:
        model: a model directory or MLflow URI (`runs:/...`, `models:/name@alias`).
        data: a prepared dataset folder (`shg prepare --out`), holding `<split>/*.parquet`.
        split: which split to score.
        address: Ray address; None starts a local cluster.
        batch_size: rows per inference batch.
        flip: average with the mirrored input (flip testing).
        actors: size of the inference actor pool.
        cpus_per_actor: CPUs each actor reserves (torch uses at least as many threads; on a
            CPU-only pool, its share of the cluster's CPUs: `actor_threads`).
        gpus_per_actor: GPUs each actor reserves (0: none, inference on the CPU). A GPU is
            taken only when asked: an actor that waits for a GPU the cluster lacks would wait
            forever, and one that takes whichever GPU is free competes with training.
        tracking_uri: the MLflow store of an MLflow `model` URI; None = $MLFLOW_TRACKING_URI,
            else ./runs/mlflow.db.
    """

    model: str
    data: str
    split: str = "val"
    address: str | None = None
    batch_size: int = 32
    flip: bool = True
    actors: int = 1
    cpus_per_actor: float = 1.0
    tracking_uri: str | None = None
    gpus_per_actor: float = 0.0

    def __post_init__(self) -> None:
        if self.split not in schema.SPLITS:
            raise ValueError(f"split must be one of {schema.SPLITS}, got {self.split!r}")
        if self.batch_size < 1 or self.actors < 1 or not self.cpus_per_actor > 0:
            raise ValueError("batch_size and actors must be >= 1 and cpus_per_actor > 0")
        if not self.gpus_per_actor >= 0:
            raise ValueError(f"gpus_per_actor must be >= 0, got {self.gpus_per_actor}")


@dataclass(frozen=True)
class SplitPredictions:
    """The predictions of an evaluated split, rows sorted by person_id, and the ground truth they
    were scored against.

    Attributes:
        person_id: (N,) str.
        pred: (N, 16, 2) float64 predicted joints, 0-based original image px.
        confidence: (N, 16) float32 heatmap peaks.
        joints_image: (N, 16, 2) float64 ground-truth joints, image px (NaN where unlabelled).
        labelled: (N, 16) bool; head_size: (N,) float64 PCKh normaliser, image px.
    """

    person_id: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray
    joints_image: np.ndarray
    labelled: np.ndarray
    head_size: np.ndarray


@dataclass(frozen=True)
class EvaluationResult:
    """What `run_evaluate` returns.

    Attributes:
        table: the official PCKh table (`dataprep.pckh.pckh_table`: TABLE_KEYS, per_joint,
            threshold), percent.
        rows: people scored; seconds: model load + inference + scoring; model, split: what was
            evaluated (as given in the config).
        predictions: the per-person predictions and ground truth.
    """

    table: dict[str, Any]
    rows: int
    seconds: float
    model: str
    split: str
    predictions: SplitPredictions

    def summary(self) -> dict[str, Any]:
        """The table with `rows`, `seconds`, `model` and `split` beside it: what `shg evaluate
        --json` prints, the model card's `val_metrics` and the workflow's evaluation record hold
        (through `shg_io.json_files.json_ready`)."""
        return {**self.table, "rows": self.rows, "seconds": self.seconds, "model": self.model, "split": self.split}


class KeypointPredictor:
    """Ray Data callable class: prepared rows -> predictions in image px.

    Output columns: `person_id`, `pred` (B, 32) float64 image px (x0, y0, ...), `confidence`
    (B, 16) float32, plus `joints_image`, `labelled`, `head_size` passed through for scoring.
    """

    def __init__(self, packed: list, flip: bool, threads: int, use_gpu: bool = False) -> None:
        import ray  # heavy: only inside the Ray actors that run this

        torch.set_num_threads(max(1, min(threads, len(os.sched_getaffinity(0)))))
        card_dict, state = ray.get(packed[0]) if isinstance(packed[0], ray.ObjectRef) else packed[0]
        self.card = ModelCard.from_dict(card_dict)
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.model = model_from_state(state, self.card, "evaluation weights").to(device).eval()
        self.flip = flip
        self.crop_cfg = AugmentConfig(enabled=False, input_size=self.card.input_size,
                                      heatmap_size=self.card.heatmap_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        centred = center_batch(batch, self.crop_cfg)
        coords, confidence = predict_keypoints(self.model, centred["image"], self.card.flip_pairs,
                                               flip=self.flip)
        pred = to_image_px(coords, centred["input_to_image"])  # (B, J, 2) image px
        n = len(pred)
        return {
            schema.PERSON_ID: np.asarray(batch[schema.PERSON_ID]),
            "pred": pred.reshape(n, -1),
            "confidence": confidence,
            schema.JOINTS_IMAGE: np.stack(batch[schema.JOINTS_IMAGE]).astype(np.float64),
            schema.LABELLED: np.stack(batch[schema.LABELLED]).astype(bool),
            schema.HEAD_SIZE: np.asarray(batch[schema.HEAD_SIZE], dtype=np.float64),
        }


def pool_leaves_no_reader(cluster_cpus: float, actors: int, cpus_per_actor: float) -> str | None:
    """Why an inference pool of `actors` x `cpus_per_actor` CPUs would hang on a cluster of
    `cluster_cpus` CPUs, or None when it fits: the actors hold their CPUs for the whole job, and
    Ray Data's parquet read tasks need one CPU free, or they never start (and nothing fails)."""
    need = actors * cpus_per_actor
    if cluster_cpus and cluster_cpus - need < 1:
        return (f"evaluation would hang: {actors} inference actor(s) x {cpus_per_actor:g} CPU take "
                f"{need:g} of the cluster's {cluster_cpus:g} CPUs and leave none for reading the "
                f"parquet; use actors x cpus_per_actor <= {cluster_cpus - 1:g} "
                "(e.g. --actors 1 --cpus-per-actor 1) or a cluster with more CPUs")
    return None


def actor_threads(cluster_cpus: float, actors: int, cpus_per_actor: float, gpus_per_actor: float) -> int:
    """Torch threads of an inference actor. With a GPU, its CPU reservation (the GPU computes).
    On a CPU-only pool, its share of the cluster's CPUs, at least the reservation: the pool
    must leave a CPU unreserved for Ray Data's short read tasks (`pool_leaves_no_reader`), and
    with one thread per reserved CPU a 1-actor pool on a 2-CPU cluster left a core idle. (The
    actor caps it at its node's CPUs.)"""
    reserved = max(1, int(cpus_per_actor))
    if gpus_per_actor > 0:
        return reserved
    return max(reserved, int(cluster_cpus // max(actors, 1)))


def predict_split(cfg: EvaluateConfig, model, card, log=None) -> dict[str, np.ndarray]:
    """Runs the Ray Data job; returns the concatenated columns of `KeypointPredictor`, rows
    sorted by person_id (deterministic whatever the scheduling). With `log`, progress lines
    (people done, people/s, ETA) go to it every 10 s."""
    import ray  # heavy (seconds): loaded when a split is evaluated

    connect(cfg.address)
    packed = [ray.put((card.to_dict(), plain_state_dict(model)))]
    resources = ray.cluster_resources()
    gpus = cfg.gpus_per_actor
    if gpus and resources.get("GPU", 0) < gpus * cfg.actors and cfg.address in (None, "", "local"):
        raise ValueError(f"evaluation asks for {cfg.actors} actor(s) x {gpus:g} GPU but this machine's Ray "
                         f"cluster has {resources.get('GPU', 0):g} GPU(s); use --gpus-per-actor 0")
    problem = pool_leaves_no_reader(resources.get("CPU", 0), cfg.actors, cfg.cpus_per_actor)
    if problem and cfg.address in (None, "", "local"):
        raise ValueError(problem)  # this process's own cluster: nothing will add CPUs to it
    if problem and log is not None:
        log(f"warning: {problem}, unless the cluster adds nodes")
    files = split_files(cfg.data, cfg.split)
    # A split file is read as one block, and an actor returns its output when a block is done:
    # small blocks spread the rows over every actor and bring results (and progress) back as
    # they come, instead of one actor working through the whole split in silence.
    ds = ray.data.read_parquet(files, columns=READ_COLUMNS).repartition(
        target_num_rows_per_block=4 * cfg.batch_size)
    predicted = ds.map_batches(
        KeypointPredictor,
        fn_constructor_kwargs={"packed": packed, "flip": cfg.flip, "use_gpu": gpus > 0,
                               "threads": actor_threads(resources.get("CPU", 1), cfg.actors, cfg.cpus_per_actor, gpus)},
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        num_cpus=cfg.cpus_per_actor,
        num_gpus=gpus,
    )
    progress = None
    if log is not None:
        total = _split_rows(cfg.data, cfg.split)
        progress = ProgressLines(f"evaluate {cfg.split}", total, "people", log)
    parts = []
    for part in predicted.iter_batches(batch_size=None, batch_format="numpy"):
        parts.append(part)
        if progress is not None:
            progress.advance(len(part[schema.PERSON_ID]))
    if progress is not None:
        progress.finish()
    if not parts:
        raise ValueError(f"{Path(cfg.data) / cfg.split}: the split has no rows")
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(columns[schema.PERSON_ID], kind="stable")
    return {k: v[order] for k, v in columns.items()}


def _split_rows(data, split: str) -> int:
    """Rows of the split by the prepared manifest (0, unknown, for a folder without one)."""
    try:
        return int(read_manifest(data).rows[split])
    except (PreparedDataError, OSError, KeyError, ValueError, TypeError):
        return 0


def score(columns: dict[str, np.ndarray], threshold: float = 0.5) -> dict:
    """The official PCKh table (`dataprep.pckh.pckh_table`) of predicted columns."""
    n = len(columns["pred"])
    pred = columns["pred"].reshape(n, -1, 2)
    gt = columns[schema.JOINTS_IMAGE].reshape(n, -1, 2)
    labelled = columns[schema.LABELLED] & np.isfinite(gt).all(-1)
    return pckh_table(pred, gt, ~labelled, columns[schema.HEAD_SIZE], threshold)


def run_evaluate(cfg: EvaluateConfig, log=print) -> EvaluationResult:
    """Loads the model, predicts the split and scores it (official PCKh)."""
    start = time.perf_counter()
    model, card = load_model(cfg.model, tracking_uri=cfg.tracking_uri)
    columns = predict_split(cfg, model, card, log=log)
    table = score(columns)
    n = len(columns["pred"])
    result = EvaluationResult(
        table=table, rows=int(n), seconds=round(time.perf_counter() - start, 2), model=cfg.model, split=cfg.split,
        predictions=SplitPredictions(
            person_id=columns[schema.PERSON_ID], pred=columns["pred"].reshape(n, -1, 2),
            confidence=columns["confidence"], joints_image=columns[schema.JOINTS_IMAGE].reshape(n, -1, 2),
            labelled=columns[schema.LABELLED], head_size=columns[schema.HEAD_SIZE]))
    log(f"evaluated {result.rows} {cfg.split} rows of {cfg.data} in {result.seconds} s")
    return result
