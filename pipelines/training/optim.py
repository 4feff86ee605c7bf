"""The optimiser and its learning-rate schedule (the paper's RMSprop, or Adam)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pipelines.config.experiment import TrainConfig


@dataclass
class LrSchedule:
    """RMSprop learning rate: ×`factor` at each epoch in `drop_epochs`, and after `patience`
    validations without a new best PCKh (0 disables plateau drops). State is plain numbers."""

    lr: float
    factor: float
    drop_epochs: tuple[int, ...] = ()
    patience: int = 0
    best: float = float("-inf")
    bad_epochs: int = 0

    def after_epoch(self, epoch: int, val_total: float | None) -> float:
        """Updates after finishing 0-based `epoch`; returns the lr for the next epoch."""
        drop = (epoch + 1) in self.drop_epochs
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

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.best, self.bad_epochs = state["lr"], state["best"], state["bad_epochs"]


def build_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """`train.optimizer` over the model's parameters: RMSprop (the paper's) or Adam."""
    if train.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.RMSprop(model.parameters(), lr=train.lr, alpha=train.rmsprop_alpha,
                               weight_decay=train.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
