"""LATTICE (Zhang et al., ACM MM 2021): item-item structures learned from the modalities, mixed with the
frozen ones, convolved over the item ID embeddings and added to a LightGCN backbone.

    S̃_m = D^{-1/2} kNN_k(cos(x_m)) D^{-1/2}              frozen, from the raw features (weighted kNN: values are
                                                         the cosine similarities of the k kept neighbours)
    x̂_m = W_m x_m + b_m,   Â_m = D^{-1/2} kNN_k(cos(x̂_m)) D^{-1/2}     learned: neighbours re-selected every epoch,
                                                         edge values differentiable in W_m, b_m
    A_m = (1 − λ) Â_m + λ S̃_m                            λ = ``lambda_coeff`` (skip connection to the initial graph)
    A = Σ_m α_m A_m,   α = softmax(w)                    learned modality weights, w initialised equal
    h = A^L e_item                                       L = ``n_item_layers``
    e_u, e_i = LightGCN layer mean on Â_ui               K = ``n_layers``
    ŝ_ui = e_uᵀ (e_i + h_i / ‖h_i‖)
    L = BPR(ŝ) + reg (‖e_u‖² + ‖e_p‖² + ‖e_n‖²) / |B|     on the propagated batch embeddings

Every graph is a k-per-row sparse list, so memory is O(items × k × d) and never items × items (the reference
builds dense items × items similarity matrices). See docs/models/lattice.md for the choices made.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from attnrec.data.batches import PairwiseBatch
from attnrec.data.table import Interactions
from attnrec.models.base import register
from attnrec.models.layers.item_graph import ItemGraph, knn_graph, normalize_symmetric
from attnrec.models.multimodal.base import (
    MultimodalConfig,
    MultimodalModule,
    MultimodalRecommender,
)
from attnrec.models.topk.bpr import bpr_loss, l2_reg, pair_scores


class LatticeConfig(MultimodalConfig):
    """LATTICE's options (MMRec's names in brackets): ``n_layers`` [len(weight_size)] LightGCN layers on the
    user-item graph, ``n_item_layers`` [n_layers] convolutions on the item graph, ``lambda_coeff`` λ (weight of the
    frozen initial graph), ``knn_k`` neighbours per item in every graph, ``reg`` [reg_weight] λ of the squared L2
    term on the propagated batch embeddings."""

    n_layers: int = Field(2, ge=0)
    n_item_layers: int = Field(1, ge=0)
    lambda_coeff: float = Field(0.9, ge=0.0, le=1.0)
    reg: float = Field(1e-4, ge=0)


def weighted_knn(features: torch.Tensor, k: int, name: str = "features") -> ItemGraph:
    """kNN_k(cos(x)) with the cosine similarities as edge values (LATTICE's weighted sparsification), negative
    similarities clipped to 0; the neighbour search is :func:`knn_graph`'s (chunked, O(items × k)).
    ``features`` (n_items, d) → a graph with the kept (row, col) pairs and their similarities."""
    x = features.detach().float()
    g = knn_graph(x, k, name=name)
    vals = cosine_values(x, g.indices).clamp(min=0.0)
    # an item without features keeps its self-loop (cos(i, i) = 1 by definition; its zero row would give 0)
    vals = torch.where(g.indices[0] == g.indices[1], torch.ones_like(vals), vals)
    return _with_values(g, vals.detach())


def cosine_values(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """cos(x_r, x_c) for each (r, c) column of ``indices`` (2, nnz): (nnz,), differentiable in ``x``."""
    xn = F.normalize(x, dim=1)
    return (xn[indices[0]] * xn[indices[1]]).sum(-1)


def symmetric_values(indices: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """Values of D^{-1/2} S D^{-1/2} (D the row sums) for a COO graph, differentiable in ``values``: (nnz,).
    A row without positive mass gets zero weights."""
    deg = values.new_zeros(n).index_add(0, indices[0], values)
    inv = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), torch.zeros_like(deg))
    return values * inv[indices[0]] * inv[indices[1]]


def coo_mm(indices: torch.Tensor, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """S @ x for a COO graph, differentiable in both ``values`` (nnz,) and ``x`` (n, d): (n, d)."""
    return x.new_zeros(x.shape).index_add(0, indices[0], values.unsqueeze(1) * x[indices[1]])


def _with_values(g: ItemGraph, values: torch.Tensor) -> ItemGraph:
    return ItemGraph(g.indices, values.float(), g.n, g.featureless)


class LatticeModule(MultimodalModule):
    """LATTICE's math on the shared state: ``graph_values[m]`` is the frozen S̃_m (modality order), ``modal_logits``
    the w of α = softmax(w), the base's ``proj[m]`` the W_m, b_m of the learned graphs."""

    config: LatticeConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modal_logits = nn.Parameter(torch.zeros(len(self.modalities)))
        #: the learned graphs' neighbour lists (2, nnz) per modality, chosen once per training epoch
        self._neighbours: list[torch.Tensor] | None = None

    def _apply(self, fn: Any, recurse: bool = True) -> LatticeModule:
        self._neighbours = None
        return super()._apply(fn, recurse)  # type: ignore[return-value]

    @torch.no_grad()
    def select_neighbours(self) -> list[torch.Tensor]:
        """Re-select the learned graphs' k nearest neighbours from the current projections (no gradient)."""
        k = self.config.knn_k
        return [
            knn_graph(self.projected(m).detach(), k, name=m).indices.to(self.device) for m in self.modalities
        ]

    def refresh(self) -> None:
        """Called at the start of every training epoch (the reference rebuilds the learned graphs then)."""
        self._neighbours = self.select_neighbours()

    def learned_graph(self, m: int, neighbours: torch.Tensor) -> torch.Tensor:
        """Values of Â_m on ``neighbours``: the normalised, clipped cosine similarities of the projections."""
        vals = cosine_values(self.projected(self.modalities[m]), neighbours).clamp(min=0.0)
        return symmetric_values(neighbours, vals, self.n_items)

    def modality_weights(self) -> torch.Tensor:
        """α = softmax(w): (n_modalities,), sums to one."""
        return torch.softmax(self.modal_logits, 0)

    def item_conv(self, x: torch.Tensor, neighbours: list[torch.Tensor]) -> torch.Tensor:
        """A x = Σ_m α_m ((1 − λ) Â_m x + λ S̃_m x): (n_items, d)."""
        lam, alpha = self.config.lambda_coeff, self.modality_weights()
        out = x.new_zeros(x.shape)
        for m, nb in enumerate(neighbours):
            mixed = lam * self.item_graph_mm(x, m)
            if lam < 1.0:
                mixed = mixed + (1.0 - lam) * coo_mm(nb, self.learned_graph(m, nb), x)
            out = out + alpha[m] * mixed
        return out

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        # scoring re-selects the neighbours from the current weights (so a loaded bundle scores the same)
        if self.training and self._neighbours is not None:
            neighbours = self._neighbours
        else:
            neighbours = self.select_neighbours()
            if self.training:
                self._neighbours = neighbours
        h = self.item.weight
        for _ in range(self.config.n_item_layers):
            h = self.item_conv(h, neighbours)
        e = self.propagate_ui(torch.cat([self.user.weight, self.item.weight]), self.config.n_layers)
        items = e[self.n_users :]
        if self.config.n_item_layers:
            items = items + F.normalize(h, dim=1)
        return e[: self.n_users], items

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        eu, ei = self.compute_embeddings()
        u, p, n = eu[batch.users], ei[batch.pos], ei[batch.neg]
        loss = bpr_loss(*pair_scores(u, p, n))
        if self.config.reg > 0:
            loss = loss + self.config.reg * l2_reg(u, p, n, batch_size=len(batch.users))
        return loss


@register
class Lattice(MultimodalRecommender):
    """LATTICE: learned + frozen kNN item graphs per modality, softmax-weighted, over a LightGCN backbone."""

    name = "lattice"
    config_class = LatticeConfig
    paper = "Zhang et al. 2021, Mining Latent Structures for Multimedia Recommendation (ACM MM)"
    config: LatticeConfig

    def new_module(
        self, train_matrix: sp.csr_matrix, features: dict[str, np.ndarray] | None
    ) -> LatticeModule:
        graph = None
        if features is not None:
            frozen = []
            for m in self.modality_dims:
                g = weighted_knn(torch.from_numpy(features[m]), self.config.knn_k, name=m)
                self.featureless[m] = g.featureless
                frozen.append(normalize_symmetric(g))
            graph = self.stacked_graphs(frozen)
        return LatticeModule(
            self.n_users,
            self.n_items,
            self.config,
            self.modality_dims,
            self.ui_adjacency(train_matrix),
            features=features,
            graph=graph,
            graph_shape=self.graph_shape,
        )

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[PairwiseBatch]:
        if isinstance(self.module, LatticeModule):
            self.module.refresh()
        return super().train_batches(train, epoch, generator, batch_size)
