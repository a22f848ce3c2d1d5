"""FREEDOM (Zhou & Shen, MM 2023): a frozen multimodal item-item graph and a denoised user-item graph.

    S̃_m = D^{-1/2} kNN_k(cos(X_m)) D^{-1/2}          per modality m, built once before training and frozen
    S   = Σ_m α_m S̃_m                                 fixed weights (MMRec: image 0.1, text 0.9)
    h   = S^L e_item                                  L = ``n_mm_layers`` item-graph convolutions of the ID table
    E   = 1/(K+1) Σ_k Â_ρ^k [e_user; e_item]           LightGCN on the user-item graph; during training Â_ρ is the
                                                      graph after degree-sensitive pruning (a share ``dropout`` of
                                                      edges dropped, resampled every epoch), at scoring the full Â
    ŝ_ui = e_uᵀ (e_i + h_i)
    L = BPR(ŝ) + λ_f Σ_m BPR(e_uᵀ f_m(x_i)) + reg ‖E⁰_batch‖²   f_m = Linear(d_m → dim), λ_f = ``reg_weight``

See docs/models/freedom.md for the equation-to-code map and the choices made.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator

from attnrec.data.batches import PairwiseBatch
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.models.base import register
from attnrec.models.layers.item_graph import prune_edges, weighted_sum
from attnrec.models.multimodal.base import (
    MMREC_TRAINER,
    MultimodalConfig,
    MultimodalModule,
    MultimodalRecommender,
)
from attnrec.models.topk.bpr import bpr_loss, l2_reg, pair_scores


class FreedomConfig(MultimodalConfig):
    """FREEDOM's options (MMRec's names in brackets).

    ``n_layers`` [n_ui_layers]: LightGCN layers on the user-item graph; ``n_mm_layers``: convolutions on the item
    graph; ``dropout``: share of user-item edges pruned each epoch (MMRec's grid 0.8, 0.9); ``reg_weight``: λ_f of
    the feature BPR loss (MMRec's grid 0, 1e-5, 1e-4, 1e-3); ``modality_weights``: α_m per modality name (missing
    names share what is left equally; empty: equal weights; MMRec's two-modality setting is image 0.1, text 0.9).
    """

    n_layers: int = Field(2, ge=0)
    n_mm_layers: int = Field(1, ge=0)
    dropout: float = Field(0.8, ge=0.0, lt=1.0)
    reg_weight: float = Field(1e-4, ge=0.0)
    modality_weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _widths(self) -> FreedomConfig:
        if self.feat_dim != self.dim:
            raise ValueError(
                f"feat_dim ({self.feat_dim}) must equal dim ({self.dim}): projected features are "
                "scored against the user embeddings"
            )
        if any(not (0.0 <= w <= 1.0) for w in self.modality_weights.values()):
            raise ValueError(f"modality_weights must be in [0, 1], got {self.modality_weights}")
        return self


def modality_weights(names: list[str], given: dict[str, float]) -> list[float]:
    """α_m for ``names``: the ``given`` ones, the rest sharing 1 − Σ given equally (all equal when none given)."""
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(f"modality_weights names {unknown}, not among the modalities {names}")
    rest = [n for n in names if n not in given]
    left = 1.0 - sum(given.values())
    if left < -1e-9 or (not rest and abs(left) > 1e-6):
        raise ConfigError(f"modality_weights {given} must sum to 1 over the modalities {names}")
    share = max(left, 0.0) / len(rest) if rest else 0.0
    return [given.get(n, share) for n in names]


class FreedomModule(MultimodalModule):
    """FREEDOM's math on the shared state: ``graph_values[0]`` is the frozen weighted item graph S."""

    config: FreedomConfig

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item.weight
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph_mm(h)
        ego = torch.cat([self.user.weight, self.item.weight])
        e = self.propagate_ui(ego, self.config.n_layers)
        return e[: self.n_users], e[self.n_users :] + h

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        eu, ei = self.compute_embeddings()
        u = eu[batch.users]
        loss = bpr_loss(*pair_scores(u, ei[batch.pos], ei[batch.neg]))
        if self.config.reg_weight > 0:
            loss = loss + self.config.reg_weight * self.feature_bpr(u, batch.pos, batch.neg)
        if self.config.reg > 0:
            reg = l2_reg(
                self.user(batch.users),
                self.item(batch.pos),
                self.item(batch.neg),
                batch_size=len(batch.users),
            )
            loss = loss + self.config.reg * reg
        return loss


@register
class Freedom(MultimodalRecommender):
    """FREEDOM: frozen weighted kNN item graph + LightGCN on a per-epoch degree-pruned user-item graph."""

    name = "freedom"
    config_class = FreedomConfig
    paper = (
        "Zhou & Shen 2023, A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal "
        "Recommendation (ACM MM)"
    )
    default_trainer: ClassVar[dict[str, Any]] = MMREC_TRAINER
    config: FreedomConfig

    def new_module(
        self, train_matrix: sp.csr_matrix, features: dict[str, np.ndarray] | None
    ) -> FreedomModule:
        graph = None
        if features is not None:
            names = list(self.modality_dims)
            combined = weighted_sum(
                self.modality_graphs(features), modality_weights(names, self.config.modality_weights)
            )
            graph = self.stacked_graphs([combined])
        return FreedomModule(
            self.n_users,
            self.n_items,
            self.config,
            self.modality_dims,
            self.ui_adjacency(train_matrix),
            features=features,
            graph=graph,
            graph_shape=self.graph_shape,
        )

    def epoch_graph(self, train: Interactions, generator: torch.Generator) -> torch.Tensor | None:
        if self.config.dropout <= 0:
            return None
        assert self.seen is not None  # fit() set it: the training matrix, built once
        return prune_edges(self.seen, self.config.dropout, generator)
