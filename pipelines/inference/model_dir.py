"""The saved-model format: a `ModelCard` (JSON) beside a plain state_dict (no pickled objects).

A model directory holds `card.json` and `weights.pt`; `weights.pt` loads with
`torch.load(..., weights_only=True)`. In MLflow the same two files are the `artifacts` of a
"models from code" pyfunc (`pipelines/tracking/pyfunc.py`), so loading never unpickles code.

The card carries what a user of the weights needs: the `HourglassConfig` that rebuilds the
network, input and heatmap sizes, joint names, the flip permutation, the input normalisation
(`x / 255 - 0.5`, RGB), and optionally the validation-set fingerprint and metrics.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dataprep.joints import FLIP_PERMUTATION, JOINT_NAMES
from shg_model import HourglassConfig, StackedHourglass, check_flip_pairs

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.pt"
FORMAT_VERSION = 1
NORMALISATION = {"scale": 1.0 / 255.0, "mean": 0.5, "channels": "RGB"}  # x * scale - mean


@dataclass(frozen=True)
class ModelCard:
    """Self-description of a saved StackedHourglass.

    Attributes:
        model_config: `dataclasses.asdict(HourglassConfig)`.
        input_size: side of the square network input, px (the standard person box).
        heatmap_size: side of the output heatmaps, px (input_size / 4).
        joint_names: one name per heatmap, MPII order.
        flip_pairs: left/right permutation of the joints (its own inverse).
        normalisation: network input = image (uint8 RGB) * scale - mean.
        val_fingerprint: fingerprint of the validation set the metrics were measured on.
        val_metrics: e.g. the PCKh table at selection time.
    """

    model_config: dict[str, Any]
    input_size: int = 256
    heatmap_size: int = 64
    joint_names: tuple[str, ...] = JOINT_NAMES
    flip_pairs: tuple[int, ...] = FLIP_PERMUTATION
    normalisation: dict[str, Any] = field(default_factory=lambda: dict(NORMALISATION))
    val_fingerprint: str | None = None
    val_metrics: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        cfg = self.hourglass_config()  # raises on unknown/invalid keys
        if len(self.joint_names) != cfg.joints:
            raise ValueError(
                f"card lists {len(self.joint_names)} joint names but the model has {cfg.joints} joints"
            )
        check_flip_pairs(self.flip_pairs, cfg.joints)
        if self.input_size % cfg.input_multiple:
            raise ValueError(
                f"input_size {self.input_size} is not a multiple of {cfg.input_multiple} (depth {cfg.depth})"
            )
        if self.heatmap_size * 4 != self.input_size:
            raise ValueError(
                f"heatmap_size {self.heatmap_size} must be input_size / 4 = {self.input_size / 4}"
            )
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"model card format {self.format_version} is not the supported {FORMAT_VERSION}; "
                "re-save the model with this version of shg"
            )

    def hourglass_config(self) -> HourglassConfig:
        return HourglassConfig.from_dict(self.model_config)

    @classmethod
    def for_config(cls, cfg: HourglassConfig, **kwargs: Any) -> ModelCard:
        """The card of a model built from `cfg` (MPII joints unless given)."""
        return cls(model_config=dataclasses.asdict(cfg), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["joint_names"] = list(self.joint_names)
        out["flip_pairs"] = list(self.flip_pairs)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelCard:
        """Inverse of `to_dict`; an unknown key is an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model card keys {unknown}; known keys are {sorted(known)}")
        values = dict(values)
        for key in ("joint_names", "flip_pairs"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU tensors, without the prefixes torch.compile (`_orig_mod.`) and DDP (`module.`) add."""
    state = {}
    for key, tensor in model.state_dict().items():
        for prefix in ("_orig_mod.", "module."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = tensor.detach().to("cpu", copy=True).contiguous()
    return state


def model_from_state(state: dict[str, torch.Tensor], card: ModelCard, where: str) -> StackedHourglass:
    """A model built from the card with `state` loaded; ValueError naming `where` on mismatch."""
    model = StackedHourglass(card.hourglass_config())
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            k = sorted(wrong_shape)[0]
            details.append(f"{len(wrong_shape)} of wrong shape (e.g. {k}: weights "
                           f"{tuple(state[k].shape)}, card {tuple(expected[k].shape)})")
        raise ValueError(
            f"{where}: the weights do not match the card's model_config {card.model_config}: "
            f"{'; '.join(details)}. Save the card of the model these weights came from."
        )
    model.load_state_dict(state, strict=True)
    return model


def save_model_dir(model: nn.Module, card: ModelCard, directory: str | Path) -> Path:
    """Writes `card.json` and `weights.pt` (a plain state_dict) into `directory`.

    Refuses (ValueError) a card whose model_config cannot hold these weights.
    """
    directory = Path(directory)
    state = plain_state_dict(model)
    model_from_state(state, card, f"saving to {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / WEIGHTS_FILE)
    (directory / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return directory


def load_model_dir(directory: str | Path, map_location: str | torch.device = "cpu"):
    """`(model in eval mode, card)` from a directory written by `save_model_dir`.

    Also accepts a downloaded MLflow model directory (the files under `artifacts/`).
    """
    directory = Path(directory)
    if not (directory / CARD_FILE).is_file() and (directory / "artifacts" / CARD_FILE).is_file():
        directory = directory / "artifacts"
    card_path, weights_path = directory / CARD_FILE, directory / WEIGHTS_FILE
    for path in (card_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: a model directory needs {CARD_FILE} and {WEIGHTS_FILE} "
                "(written by pipelines.inference.model_dir.save_model_dir or log_model)"
            )
    try:
        card = ModelCard.from_dict(json.loads(card_path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{card_path}: not a valid model card ({err})") from err
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{weights_path}: expected a state_dict, got {type(state).__name__}")
    model = model_from_state(state, card, str(weights_path))
    return model.to(map_location).eval(), card


