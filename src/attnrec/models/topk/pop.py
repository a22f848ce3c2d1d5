"""Most-popular baseline: an item's score is its number of training interactions (same for every user)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from attnrec.data.table import Interactions
from attnrec.models.base import FitReport, ModelConfig, Recommender, TaskKind, register


class PopConfig(ModelConfig):
    pass


@register
class Pop(Recommender):
    """Ranks items by training popularity; the floor every personalised model must beat."""

    name = "pop"
    task = TaskKind.TOPK
    config_class = PopConfig
    paper = "baseline"

    counts: torch.Tensor

    def _fit(self, train: Interactions, valid: Interactions | None, **kw: Any) -> FitReport:
        t0 = time.perf_counter()
        self.counts = torch.from_numpy(np.bincount(train.items, minlength=train.n_items).astype(np.float32))
        return FitReport(seconds=time.perf_counter() - t0)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.counts.numpy()[items]

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(users), -1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.counts = tensors["counts"]
