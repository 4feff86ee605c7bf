"""Training run names: readable, derived from the config and the data, the same for the same
command (so a re-run finds its run folder), e.g. `hg2x64-synth-3f9a1c4e`."""

from __future__ import annotations

import hashlib
import re

from pipelines.config.experiment import ExperimentConfig
from pipelines.runtime.prepared import PreparedManifest

# Settings that do not change what is trained: excluded from the derived run name, so a resumed
# run may use another storage folder layout or retry budget.
NOT_IN_RUN_NAME = ("train.storage", "train.run_name", "train.max_failures", "train.log_every",
                   "train.worker_resource", "train.tracking_flush_s", "train.unscorable_champion",
                   "train.artifact_root", "train.system_metrics_s")


# Annotation file names that say nothing about the dataset: its folder names it instead.
_GENERIC_ANNOTATION_NAMES = {"annotations", "annotation", "annot", "train", "val", "valid", "trainval", "data"}


def dataset_label(annotations: str) -> str:
    """A word for the dataset a prepared set came from, for run names: the annotation file's
    first word (`mpii_human_pose_v1_u12_1.mat` → `mpii`), or its folder's when the file name is
    generic (`.../synth/annotations.json` → `synth`); `data` when there is nothing to go by."""
    parts = [p for p in re.split(r"[\\/]", annotations or "") if p]
    stem = parts[-1].split(".", 1)[0].lower() if parts else ""
    if stem in _GENERIC_ANNOTATION_NAMES and len(parts) > 1:
        stem = parts[-2].lower()
    word = re.split(r"[^a-z0-9]+", stem)[0] if stem else ""
    return word[:16] or "data"


def run_key(cfg: ExperimentConfig, data_fingerprint: str) -> str:
    """What identifies a training run: the config (less `NOT_IN_RUN_NAME`) and the data."""
    data_hex = str(data_fingerprint).rpartition(":")[2]  # "sha256:<hex>" → "<hex>"
    return f"{cfg.fingerprint(exclude=NOT_IN_RUN_NAME)}-{data_hex[:12]}"


def run_name_for(cfg: ExperimentConfig, data_fingerprint: str, dataset: str = "data") -> str:
    """`train.run_name`, or a readable name derived from the config and the data, e.g.
    `hg2x256-synth-3f9a1c4e`: stacks x channels, the dataset (`dataset_label`), and 8 hex of
    `run_key`. The same command derives the same name, so a re-run finds its run folder, whose
    record (`shg_run.json`) holds the MLflow run id it resumes (by id, never by name)."""
    if cfg.train.run_name:
        return cfg.train.run_name
    short = hashlib.sha256(run_key(cfg, data_fingerprint).encode()).hexdigest()[:8]
    return f"hg{cfg.model.stacks}x{cfg.model.channels}-{dataset}-{short}"


def run_name_of(cfg: ExperimentConfig, manifest: PreparedManifest) -> str:
    """`run_name_for` a prepared dataset: its fingerprint, and its annotation file's label."""
    return run_name_for(cfg, manifest.fingerprint, dataset_label(str(manifest.config.get("annotations", ""))))
