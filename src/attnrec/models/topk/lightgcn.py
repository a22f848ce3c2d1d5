"""LightGCN (He et al. 2020): linear propagation on the normalised user-item graph, layer mean, dot-product score.

E^{(k+1)} = Â E^{(k)},   E = 1/(K+1) Σ_{k=0..K} E^{(k)},   ŝ_ui = e_uᵀ e_i
L = BPR(ŝ) + λ/2 (‖e⁰_u‖² + ‖e⁰_p‖² + ‖e⁰_n‖²) / |batch|
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import PairwiseBatch, pairwise_batches
from attnrec.data.samplers import NegativeSampler
from attnrec.data.table import Interactions
from attnrec.models.base import ModelConfig, TaskKind, TorchRecommender, TrainableModule, register
from attnrec.models.layers.graph import normalized_adjacency, propagate_mean
from attnrec.models.topk.bpr import bpr_loss, embedding_reg


class LightGCNConfig(ModelConfig):
    dim: int = Field(64, ge=1)
    n_layers: int = Field(3, ge=0)
    reg: float = Field(1e-4, ge=0)
    init_std: float = Field(0.1, gt=0)
    n_negatives: int = Field(1, ge=1)


class LightGCNModule(TrainableModule):
    def __init__(
        self,
        adj: torch.Tensor,
        n_users: int,
        n_items: int,
        dim: int,
        n_layers: int,
        reg: float,
        init_std: float,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.n_layers, self.reg = n_users, n_items, n_layers, reg
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.adj = adj  # derived from training data; rebuilt on load, never saved
        self._cache: torch.Tensor | None = None

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # keep the (non-parameter, non-buffer) sparse adjacency on the module's device
        out = super()._apply(fn, recurse)
        self.adj = fn(self.adj)
        self._cache = None
        return out

    def train(self, mode: bool = True) -> LightGCNModule:
        self._cache = None  # parameters may change: the propagated embeddings are stale
        return super().train(mode)

    def propagated(self) -> torch.Tensor:
        """Final embeddings of all users then items, (n_users + n_items, dim); cached in eval mode."""
        if not self.training and self._cache is not None:
            return self._cache
        out = propagate_mean(self.adj, self.embedding.weight, self.n_layers)
        if not self.training:
            self._cache = out.detach()
        return out

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        e = self.propagated()
        users, pos, neg = batch.users, batch.pos + self.n_users, batch.neg + self.n_users
        u, p, n = e[users], e[pos], e[neg]
        s_pos = (u * p).sum(-1)
        s_neg = (u.unsqueeze(1) * n).sum(-1) if n.dim() == 3 else (u * n).sum(-1)
        w = self.embedding.weight
        return bpr_loss(s_pos, s_neg) + self.reg * embedding_reg(w[users], w[pos], w[neg])


@register
class LightGCN(TorchRecommender):
    """LightGCN on the training interaction graph; full-ranking scores are one matmul per user batch."""

    name = "lightgcn"
    task = TaskKind.TOPK
    config_class = LightGCNConfig
    paper = "He et al. 2020 (LightGCN)"
    config: LightGCNConfig

    def _module(self, seen: sp.csr_matrix) -> LightGCNModule:
        c = self.config
        n_users, n_items = seen.shape
        return LightGCNModule(
            normalized_adjacency(seen), n_users, n_items, c.dim, c.n_layers, c.reg, c.init_std
        )

    def build_module(self, train: Interactions) -> LightGCNModule:
        self._sampler = NegativeSampler(train.csr())
        return self._module(train.csr())

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> LightGCNModule:
        assert self.seen is not None, "a LightGCN bundle needs its training matrix"
        return self._module(self.seen)

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[PairwiseBatch]:
        return pairwise_batches(
            train, self._sampler, batch_size, generator=generator, n_negatives=self.config.n_negatives
        )

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.module
        assert isinstance(m, LightGCNModule)
        with torch.no_grad():
            e = m.propagated()
        return e[: m.n_users], e[m.n_users :]

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        eu, ei = self._embeddings()
        return eu[torch.tensor(users, dtype=torch.int64, device=eu.device)] @ ei.T

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        eu, ei = self._embeddings()
        u = eu[torch.tensor(users, dtype=torch.int64, device=eu.device)]
        i = ei[torch.tensor(items, dtype=torch.int64, device=ei.device)]
        return (u * i).sum(-1).cpu().numpy()
