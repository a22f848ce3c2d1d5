"""BM3 (Zhou et al., WWW 2023): bootstrapped latent representations, trained without negative samples.

    h_u, h_i' = LightGCN layer mean on Â_ui,   h_i = h_i' + e_i            (K = ``n_layers``)
    f_{m,i} = W_m x_{m,i} + b_m                                            per modality
    online: g(·) a shared linear predictor;  target: dropout_p(·), no gradient (latent embedding dropout)
    C(a, b) = 1 − cos(a, b)
    L_rec   = C(g(h_u), h̃_i) + C(g(h_i), h̃_u)                             (u, i) a training interaction
    L_align = Σ_m C(g(f_{m,i}), h̃_i)                                      inter-modality (feature ↔ ID) alignment
    L_mask  = Σ_m C(g(f_{m,i}), f̃_{m,i})                                  intra-modality masked-feature loss
    L = L_rec + ``cl_weight`` (L_align + L_mask) + ``reg`` (‖H_U‖_F + ‖H_I‖_F) / n_items
    ŝ_ui = g(h_u)ᵀ g(h_i)

The batches' sampled negatives are ignored (BM3 needs none). See docs/models/bm3.md for the choices made.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from attnrec.data.batches import PairwiseBatch
from attnrec.models.base import register
from attnrec.models.multimodal.base import (
    MultimodalConfig,
    MultimodalModule,
    MultimodalRecommender,
)


class BM3Config(MultimodalConfig):
    """BM3's options (MMRec's grid in brackets): ``n_layers`` LightGCN layers [1, 2]; ``dropout`` p of the target
    views' latent dropout [0.3, 0.5]; ``reg`` weight of the norm penalty on the propagated tables [0.1, 0.01];
    ``cl_weight`` weight of the alignment and masked-feature losses [2.0]. ``feat_dim`` must equal ``dim`` (the
    predictor is shared by ID and feature views)."""

    n_layers: int = Field(1, ge=0)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    reg: float = Field(0.1, ge=0)
    cl_weight: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _widths(self) -> BM3Config:
        if self.feat_dim != self.dim:
            raise ValueError(
                f"feat_dim ({self.feat_dim}) must equal dim ({self.dim}): one predictor maps both views"
            )
        return self


def cosine_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of 1 − cos(online, target), the target treated as a constant: (B, d), (B, d) → scalar."""
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3Module(MultimodalModule):
    """BM3's math on the shared state: ``predictor`` is g; the base's ``proj[m]`` are the W_m, b_m."""

    config: BM3Config

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.predictor = nn.Linear(self.config.dim, self.config.dim)
        nn.init.xavier_normal_(self.predictor.weight)
        for lin in self.proj.values():
            assert isinstance(lin, nn.Linear)
            nn.init.xavier_normal_(lin.weight)

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The online encoder's (h_u (n_users, d), h_i (n_items, d)), before the predictor."""
        e = self.propagate_ui(torch.cat([self.user.weight, self.item.weight]), self.config.n_layers)
        return e[: self.n_users], e[self.n_users :] + self.item.weight

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        hu, hi = self.encode()
        return self.predictor(hu), self.predictor(hi)

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        c = self.config
        hu, hi = self.encode()
        users, items = batch.users, batch.pos
        with torch.no_grad():
            # the target views: latent embedding dropout on the online embeddings, no gradient
            tu = F.dropout(hu[users], c.dropout, training=True)
            ti = F.dropout(hi[items], c.dropout, training=True)
        loss = cosine_loss(self.predictor(hu[users]), ti) + cosine_loss(self.predictor(hi[items]), tu)
        extra = hu.new_zeros(())
        for m in self.modalities:
            f = self.projected(m, items)
            online = self.predictor(f)
            extra = extra + cosine_loss(online, ti)
            with torch.no_grad():
                tf = F.dropout(f, c.dropout, training=True)
            extra = extra + cosine_loss(online, tf)
        loss = loss + c.cl_weight * extra
        if c.reg > 0:
            loss = loss + c.reg * (hu.norm() + hi.norm()) / self.n_items
        return loss


@register
class BM3(MultimodalRecommender):
    """BM3: self-supervised bootstrapping of ID and feature views on a LightGCN encoder, no negative sampling."""

    name = "bm3"
    config_class = BM3Config
    paper = "Zhou et al. 2023, Bootstrap Latent Representations for Multi-modal Recommendation (WWW)"
    config: BM3Config

    def new_module(self, train_matrix: sp.csr_matrix, features: dict[str, np.ndarray] | None) -> BM3Module:
        return BM3Module(
            self.n_users,
            self.n_items,
            self.config,
            self.modality_dims,
            self.ui_adjacency(train_matrix),
            features=features,
        )
