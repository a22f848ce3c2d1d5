"""BPR-MF (Rendle et al. 2009): matrix factorisation trained with the Bayesian personalised ranking loss.

ŝ_ui = e_uᵀ e_i,   L = −Σ log σ(ŝ_up − ŝ_un) + λ/2 (‖e_u‖² + ‖e_p‖² + ‖e_n‖²) / |batch|
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from attnrec.data.batches import PairwiseBatch, pairwise_batches
from attnrec.data.samplers import NegativeSampler
from attnrec.data.table import Interactions
from attnrec.models.base import ModelConfig, TaskKind, TorchRecommender, TrainableModule, register


class BPRConfig(ModelConfig):
    dim: int = Field(64, ge=1)
    reg: float = Field(1e-4, ge=0)
    init_std: float = Field(0.1, gt=0)
    n_negatives: int = Field(1, ge=1)
    negative_sampling: str = Field("uniform", pattern="^(uniform|popularity)$")


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean of −log σ(pos − neg) = softplus(neg − pos); ``neg`` may have an extra trailing axis of negatives."""
    if neg.dim() == pos.dim() + 1:
        pos = pos.unsqueeze(-1)
    return F.softplus(neg - pos).mean()


def embedding_reg(*tensors: torch.Tensor) -> torch.Tensor:
    """½ Σ ‖x‖² over the batch's layer-0 embeddings, divided by the batch size (the LightGCN reference form)."""
    batch = tensors[0].shape[0]
    return sum(t.square().sum() for t in tensors) / (2 * batch)  # type: ignore[return-value]


class MFModule(TrainableModule):
    def __init__(self, n_users: int, n_items: int, dim: int, reg: float, init_std: float) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)
        self.reg = reg

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        u, p, n = self.user(batch.users), self.item(batch.pos), self.item(batch.neg)
        pos = (u * p).sum(-1)
        neg = (u.unsqueeze(1) * n).sum(-1) if n.dim() == 3 else (u * n).sum(-1)
        return bpr_loss(pos, neg) + self.reg * embedding_reg(u, p, n)


@register
class BPR(TorchRecommender):
    """BPR-MF with sampled negatives that exclude each user's training positives."""

    name = "bpr"
    task = TaskKind.TOPK
    config_class = BPRConfig
    paper = "Rendle et al. 2009 (BPR)"
    config: BPRConfig

    def build_module(self, train: Interactions) -> MFModule:
        c = self.config
        self._sampler = NegativeSampler(train.csr(), distribution=c.negative_sampling)  # type: ignore[arg-type]
        return MFModule(train.n_users, train.n_items, c.dim, c.reg, c.init_std)

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> MFModule:
        c = self.config
        return MFModule(self.n_users, self.n_items, c.dim, c.reg, c.init_std)

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[PairwiseBatch]:
        return pairwise_batches(
            train, self._sampler, batch_size, generator=generator, n_negatives=self.config.n_negatives
        )

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        m = self.module
        assert isinstance(m, MFModule)
        with torch.no_grad():
            return (
                m.user.weight[torch.tensor(users, dtype=torch.int64, device=m.user.weight.device)]
                @ m.item.weight.T
            )

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        m = self.module
        assert isinstance(m, MFModule)
        dev = m.user.weight.device
        with torch.no_grad():
            u = m.user.weight[torch.tensor(users, dtype=torch.int64, device=dev)]
            i = m.item.weight[torch.tensor(items, dtype=torch.int64, device=dev)]
            return (u * i).sum(-1).cpu().numpy()
