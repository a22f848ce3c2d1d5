"""Most-popular baseline: an item's score is its number of training interactions (same for every user)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from attnrec.data.side import SideInputs
from attnrec.data.table import Interactions
from attnrec.models.base import (
    FitReport,
    ModelConfig,
    Query,
    Recommender,
    TaskKind,
    check_state_tensors,
    register,
)

if TYPE_CHECKING:
    from attnrec.training.trainer import TrainerConfig


class PopConfig(ModelConfig):
    pass


class _Counting:
    """Pop's fit as an :class:`~attnrec.training.types.EpochSolver` of one epoch: count each item's interactions."""

    def __init__(self, train: Interactions) -> None:
        self.train = train
        self.counts = torch.zeros(train.n_items)
        # the counts as a module buffer, so checkpoints save them (a resume loads into this same tensor)
        self.module = nn.Module()
        self.module.register_buffer("counts", self.counts)

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        counts = np.bincount(self.train.items, minlength=self.train.n_items).astype(np.float32)
        self.counts.copy_(torch.from_numpy(counts))
        return {"interactions": float(len(self.train))}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@register
class Pop(Recommender[PopConfig]):
    """Ranks items by training popularity; the floor every personalised model must beat.

    A query's history only changes what is excluded: the scores are the same for everyone.
    """

    name = "pop"
    task = TaskKind.TOPK
    config_class = PopConfig
    paper = "baseline"
    query_inputs = frozenset({"users", "history"})
    #: counting is instant: no progress bar by default
    default_trainer: ClassVar[dict[str, Any]] = {"progress": False}

    counts: torch.Tensor

    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        side: SideInputs,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport:
        from attnrec.training.trainer import Trainer
        from attnrec.training.types import RunIdentity, data_fingerprint

        # counting is the one epoch of a solver in the one Trainer, so a pop run logs and checkpoints like any other
        solver = _Counting(train)
        report = Trainer(self.effective_trainer(trainer)).fit(
            solver,
            seed=self.config.seed,
            identity=RunIdentity(
                self.config.to_dict(), run_key or data_fingerprint(train, valid), self.config.bundle_legacy
            ),
        )
        self.counts = solver.counts
        return report

    def trainer_overrides(self) -> dict[str, tuple[Any, str]]:
        """Trainer fields pop's counting sets itself: ``{field: (value, why)}``."""
        return {
            "epochs": (1, "pop counts its items in one pass: --epochs does not apply"),
            "device": ("cpu", "pop counts on the CPU: --device does not apply"),
        }

    def unused_trainer_fields(self) -> dict[str, str]:
        """Counting has no optimiser, batches or validation to stop on."""
        from attnrec.training.trainer import SGD_FIELDS, VALIDATION_FIELDS

        why = "pop counts its items in one pass and never reads it"
        return dict.fromkeys(sorted(SGD_FIELDS | VALIDATION_FIELDS), why)

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(users), -1).clone()

    def score_history(self, query: Query) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(query), -1).clone()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        check_state_tensors({"counts": torch.zeros(self.n_items)}, tensors, self.name)  # one count per item
        self.counts = tensors["counts"]
