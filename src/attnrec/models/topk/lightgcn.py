"""LightGCN (He et al. 2020): linear propagation on the normalised user-item graph, layer mean, dot-product score.

    E⁽ᵏ⁺¹⁾ = Â E⁽ᵏ⁾,   Â = D^{-1/2} A D^{-1/2},   A = [[0, R], [Rᵀ, 0]]
    E = 1/(K+1) Σ_{k=0..K} E⁽ᵏ⁾,   ŝ_ui = e_uᵀ e_i
    L = 1/|B| Σ −log σ(ŝ_up − ŝ_un)  +  λ (‖e⁰_u‖² + ‖e⁰_p‖² + ‖e⁰_n‖²) / |B|

R is the training matrix. Â is derived state: built from the training data at fit time and rebuilt from the bundle's
``seen`` matrix on load, never saved.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import PairwiseBatch
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.models.base import TrainableModule, register
from attnrec.models.layers.graph import normalized_adjacency, propagate_mean
from attnrec.models.query import History
from attnrec.models.topk.bpr import (
    BPRConfig,
    PairwiseRecommender,
    bpr_loss,
    init_embedding,
    l2_reg,
    pair_scores,
)


class LightGCNConfig(BPRConfig):
    """BPR-MF's options plus ``n_layers`` (K, propagation steps; 0 is plain MF trained the same way)."""

    n_layers: int = Field(3, ge=0)
    #: the benchmark's λ (BPR's validated 1e-3 is not LightGCN's)
    reg: float = Field(1e-4, ge=0)


class LightGCNModule(TrainableModule):
    """Layer-0 tables ``user`` (n_users, dim), ``item`` (n_items, dim) and the constant sparse adjacency ``adj``.

    ``adj`` is a plain attribute, not a buffer (so it is neither saved nor broadcast), moved with the module by
    :meth:`_apply`. The propagated embeddings are cached while the module is in eval mode and no gradient is being
    recorded; the cache is dropped on ``train()``, on a device/dtype change, and whenever the weights change (the
    cache is keyed on the weights' version counters, which every in-place update - optimiser step,
    ``load_state_dict`` - increments).
    """

    def __init__(
        self,
        adj: torch.Tensor,
        n_users: int,
        n_items: int,
        dim: int,
        n_layers: int,
        reg: float,
        init: str = "normal",
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if tuple(adj.shape) != (n_users + n_items, n_users + n_items):
            raise ConfigError(
                f"adjacency shape {tuple(adj.shape)} does not match {n_users} users + {n_items} items"
            )
        self.n_users, self.n_items, self.n_layers, self.reg = n_users, n_items, n_layers, reg
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        init_embedding(self.user.weight, init, init_std)
        init_embedding(self.item.weight, init, init_std)
        self.adj = adj
        self._cache: torch.Tensor | None = None
        self._cache_key: tuple[int, ...] | None = None

    def _apply(self, fn: Any, recurse: bool = True) -> LightGCNModule:
        out = super()._apply(fn, recurse)
        self.adj = fn(self.adj)
        self._cache = None
        return out  # type: ignore[return-value]

    def train(self, mode: bool = True) -> LightGCNModule:
        self._cache = None
        return super().train(mode)

    def _weights_key(self) -> tuple[int, ...]:
        u, i = self.user.weight, self.item.weight
        return (u._version, i._version, u.data_ptr(), i.data_ptr())

    def propagated(self) -> torch.Tensor:
        """Final embeddings E of all nodes, users then items: (n_users + n_items, dim) float32."""
        cacheable = not self.training and not torch.is_grad_enabled()
        key = self._weights_key()
        if cacheable and self._cache is not None and self._cache_key == key:
            return self._cache
        e0 = torch.cat([self.user.weight, self.item.weight])
        out = propagate_mean(self.adj, e0, self.n_layers)
        if cacheable:
            self._cache, self._cache_key = out, key
        return out

    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated user (n_users, dim) and item (n_items, dim) embeddings."""
        e = self.propagated()
        return e[: self.n_users], e[self.n_users :]

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        # the whole graph is propagated for every batch: exact gradients, as the reference implementation
        eu, ei = self.user_item_embeddings()
        pos, neg = pair_scores(eu[batch.users], ei[batch.pos], ei[batch.neg])
        reg = l2_reg(
            self.user(batch.users), self.item(batch.pos), self.item(batch.neg), batch_size=len(batch.users)
        )
        return bpr_loss(pos, neg) + self.reg * reg


@register
class LightGCN(PairwiseRecommender):
    """LightGCN on the training interaction graph; full-ranking scores are one matmul per user batch."""

    name = "lightgcn"
    config_class = LightGCNConfig
    #: the sparse graph cannot be built on the meta device: build_module_from_state checks the shapes itself
    shapes_on_meta = False
    #: the benchmark's settings (BENCHMARKS.md, bpr/lightgcn): batch 2048, Adam lr 5e-3, early stopping on
    #: validation NDCG@20 with patience 10 within at most 300 epochs
    default_trainer: ClassVar[dict[str, Any]] = {
        "epochs": 300,
        "patience": 10,
        "batch_size": 2048,
        "lr": 5e-3,
    }
    paper = "He et al. 2020, LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation (SIGIR)"
    config: LightGCNConfig

    def build_module(self, train: Interactions) -> LightGCNModule:
        self._sampler = self.build_sampler(train)
        return self._new_module(train.csr())

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> LightGCNModule:
        if self.seen is None:
            raise ConfigError(
                "a lightgcn bundle needs its training matrix (the '_seen.*' tensors) to rebuild the graph"
            )
        # the graph cannot be built on the meta device: check the tables' shapes before allocating them
        for key, rows in (("user.weight", self.n_users), ("item.weight", self.n_items)):
            t = tensors.get(key)
            if t is None or tuple(t.shape) != (rows, self.config.dim):
                raise DataError(
                    "missing" if t is None else f"shape {tuple(t.shape)}",
                    field=key,
                    expected=f"shape ({rows}, {self.config.dim}) for this lightgcn config",
                )
        return self._new_module(self.seen)

    @torch.no_grad()
    def fold_in(self, history: History) -> torch.Tensor:
        """A new node's final embedding from its history, by LightGCN's own propagation rule: with e_u⁽⁰⁾ = 0,
        e_u⁽ᵏ⁺¹⁾ = Σ_{i∈H} e_i⁽ᵏ⁾ / √(|H|·|N_i|) and e_u = mean_{k=0..K} e_u⁽ᵏ⁾, the item layers e_i⁽ᵏ⁾ those of
        the trained graph (the new edges' effect on the items' own degrees and layers is left out)."""
        m = self.module
        if not isinstance(m, LightGCNModule) or self.seen is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        dev = m.item.weight.device
        layer = torch.cat([m.user.weight, m.item.weight])
        item_layers = [layer[m.n_users :]] if m.n_layers else []  # e_i⁽ᵏ⁾ for k = 0..K-1
        for _ in range(m.n_layers - 1):
            layer = torch.sparse.mm(m.adj, layer)
            item_layers.append(layer[m.n_users :])
        deg = torch.from_numpy(np.asarray(self.seen.sum(axis=0)).ravel().astype(np.float32)).to(dev)
        items = torch.from_numpy(history.items).to(dev)
        rows = torch.from_numpy(history.row_ids()).to(dev)
        n_hist = torch.from_numpy(history.lengths().astype(np.float32)).to(dev)
        w = 1.0 / torch.sqrt(n_hist[rows].clamp(min=1) * deg[items].clamp(min=1))
        out = torch.zeros(len(history), m.item.weight.shape[1], device=dev)
        for item_layer in item_layers:
            out.index_add_(0, rows, item_layer[items] * w[:, None])
        return out / (m.n_layers + 1)

    def _new_module(self, train_matrix: sp.csr_matrix) -> LightGCNModule:
        c = self.config
        n_users, n_items = train_matrix.shape
        if (n_users, n_items) != (self.n_users, self.n_items):
            raise ConfigError(
                f"training matrix is {n_users} x {n_items} but the vocabularies have "
                f"{self.n_users} users and {self.n_items} items"
            )
        adj = normalized_adjacency(train_matrix)
        return LightGCNModule(adj, n_users, n_items, c.dim, c.n_layers, c.reg, c.init, c.init_std)
