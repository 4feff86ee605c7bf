"""Training checkpoints: one `state.pt` of plain tensors and Python values per checkpoint.

Written with `torch.save`, read with `torch.load(weights_only=True)`, so loading a checkpoint
never unpickles code. The state carries the `HourglassConfig` it was trained with; a checkpoint
from another model config is refused with a message naming the fields that differ.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from shg_model import HourglassConfig

STATE_FILE = "state.pt"
STATE_VERSION = 1
# Speed knobs that change no weights: a checkpoint may move between their settings.
LAYOUT_ONLY_FIELDS = ("channels_last",)


class CheckpointMismatchError(ValueError):
    """The checkpoint was trained with another model config than the one asked for."""


def save_state(directory: str | Path, state: dict[str, Any]) -> Path:
    """Writes `state` (tensors, numbers, strings, lists, dicts only) to `directory/state.pt`.

    `state` must hold at least `model_config` (dict), `model` (state_dict), `epoch` (the last
    completed epoch, 0-based) and `global_step`.
    """
    missing = [k for k in ("model_config", "model", "epoch", "global_step") if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    path = Path(directory) / STATE_FILE
    torch.save({**state, "state_version": STATE_VERSION}, path)
    return path


def load_state(directory: str | Path, expected: HourglassConfig | None = None) -> dict[str, Any]:
    """Reads `directory/state.pt` (weights_only) and checks it against the `expected` config.

    Raises:
        FileNotFoundError: no state.pt in `directory`.
        CheckpointMismatchError: the checkpoint's model config differs from `expected` in any
            field but the layout-only ones; the message lists each differing field.
    """
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a shg training checkpoint (no {STATE_FILE})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("state_version") != STATE_VERSION:
        raise CheckpointMismatchError(
            f"{path}: checkpoint format {state.get('state_version')!r}, expected {STATE_VERSION}"
        )
    if expected is not None:
        check_model_config(state["model_config"], expected, where=str(path))
    return state


def check_model_config(saved: dict[str, Any], expected: HourglassConfig, *, where: str) -> None:
    """Raises CheckpointMismatchError naming every field where `saved` and `expected` differ.

    A field the checkpoint predates (e.g. `stem_channels`) counts as its default, which is what
    the checkpoint was trained with."""
    wanted = dataclasses.asdict(expected)
    defaults = dataclasses.asdict(HourglassConfig())
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    diffs = [
        f"model.{key}: checkpoint {saved.get(key)!r} vs config {wanted.get(key)!r}"
        for key in sorted(set(saved) | set(wanted))
        if key not in LAYOUT_ONLY_FIELDS and saved.get(key) != wanted.get(key)
    ]
    if diffs:
        raise CheckpointMismatchError(
            f"{where} was trained with a different model config ({'; '.join(diffs)}). Use the "
            "same model.* settings to resume, or start a new run (another train.run_name or "
            "train.storage)."
        )


def rng_state() -> dict[str, Any]:
    """The torch RNG state of this process (CPU, and CUDA when present)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `rng_state`; CUDA state is restored only where CUDA is present."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
