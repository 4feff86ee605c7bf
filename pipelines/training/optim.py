"""The optimiser and its learning-rate schedule (the paper's RMSprop, or Adam)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pipelines.config.experiment import TrainConfig


@dataclass
class LrSchedule:
    """The learning rate: ×`factor` at each epoch in `drop_epochs`, and after `patience`
    validations without a new best PCKh (0 disables plateau drops). State is plain numbers.

    With a time budget, the next listed drop may come early: `take_early_drop` takes it once
    `budget_fraction` of the budget is spent (or at global step `drop_step`, how a rerun repeats it) and some listed drop is still ahead, so a run the
    budget cuts short still gets its low-learning-rate finish; the epoch it was listed for then
    passes without a second drop. (A machine fast enough for the recipe reaches the listed epoch
    first and the budget changes nothing.)
    """

    lr: float
    factor: float
    drop_epochs: tuple[int, ...] = ()
    patience: int = 0
    budget_fraction: float = 0.0
    drop_step: int = 0
    best: float = float("-inf")
    bad_epochs: int = 0
    early_drops: int = 0  # listed drops already taken early, their epoch not yet reached

    def after_epoch(self, epoch: int, val_total: float | None) -> float:
        """Updates after finishing 0-based `epoch`; returns the lr for the next epoch."""
        drop = (epoch + 1) in self.drop_epochs
        if drop and self.early_drops:
            drop, self.early_drops = False, self.early_drops - 1  # taken already, at the budget
        if val_total is not None and self.patience > 0:
            if val_total > self.best:
                self.best, self.bad_epochs = val_total, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs >= self.patience:
                    drop, self.bad_epochs = True, 0
        if drop:
            self.lr *= self.factor
        return self.lr

    def early_drop_due(self, epoch: int, *, spent_fraction: float, step: int) -> bool:
        """Mid-epoch `epoch` (0-based), `spent_fraction` of the time budget spent, after global
        `step`: whether the next listed drop is due early, by the budget or by `drop_step` (what
        `shg rerun` pins); at most once per run."""
        if self.early_drops:
            return False
        by_budget = bool(self.budget_fraction) and spent_fraction >= self.budget_fraction
        by_step = bool(self.drop_step) and step >= self.drop_step
        # during `epoch`, the drops listed at e <= epoch are behind (after_epoch took them)
        return (by_budget or by_step) and any(e > epoch for e in self.drop_epochs)

    def take_early_drop(self) -> float:
        """Takes the next listed drop now (see `early_drop_due`); returns the new lr."""
        self.lr *= self.factor
        self.early_drops, self.budget_fraction, self.drop_step = 1, 0.0, 0  # once per run (kept in the state)
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs,
                "budget_fraction": self.budget_fraction, "drop_step": self.drop_step,
                "early_drops": self.early_drops}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.best, self.bad_epochs = state["lr"], state["best"], state["bad_epochs"]
        # checkpoints from before the budget drop carry neither: the configured fraction stays
        self.budget_fraction = state.get("budget_fraction", self.budget_fraction)
        self.drop_step = state.get("drop_step", self.drop_step)
        self.early_drops = state.get("early_drops", 0)


def build_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """`train.optimizer` over the model's parameters: RMSprop (the paper's) or Adam."""
    if train.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.RMSprop(model.parameters(), lr=train.lr, alpha=train.rmsprop_alpha,
                               weight_decay=train.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
