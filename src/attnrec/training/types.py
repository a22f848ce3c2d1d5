"""What the one Trainer needs from a model, as types that live beside it (``training/`` imports no model).

* :class:`TrainableModule` — an ``nn.Module`` that returns a scalar loss for one typed batch.
* :class:`FitReport` — what fitting did (epochs, best validation epoch and metrics, seconds, history).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class TrainableModule(nn.Module):
    """A module the Trainer can fit: it returns a scalar loss for one typed batch."""

    def loss(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class FitReport:
    """What fitting did: epochs, the best validation epoch and metrics, seconds, and the per-epoch history."""

    seconds: float
    epochs_run: int = 0
    best_epoch: int | None = None
    best_valid: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
