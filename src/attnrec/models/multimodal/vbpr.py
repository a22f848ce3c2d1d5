"""VBPR (He & McAuley, AAAI 2016): matrix factorisation plus a content factor read from item features.

    x̂_ui = β_i + γ_uᵀγ_i + θ_uᵀ(E f_i) + β'ᵀ f_i          (eq. 2; α and β_u cancel in the BPR difference)
    L = 1/|B| Σ −log σ(x̂_up − x̂_un)  +  reg ‖[γ_u; θ_u; γ_p; E f_p; γ_n; E f_n]‖² / |B|

f_i is the concatenation of the item's modalities (the paper's one visual CNN feature; here any number, e.g. a
text embedding and a multi-hot of metadata). E f_i = Σ_m E_m f_{m,i} is the base's per-modality projection (a
block of E per modality; their biases add a user-specific constant that cancels in BPR). β'ᵀ f_i is the paper's
visual bias. Scores stay one dot product: the user vector is [γ_u; θ_u; 1] and the item vector
[γ_i; E f_i; β_i + β'ᵀ f_i], so full ranking, scoring batches and history fold-in come from the shared base.

MMRec's "recommended version" (models/vbpr.py there) drops β_i and β' and regularises unsquared norms; ``biases =
False`` gives its score function. See docs/models/vbpr.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import PairwiseBatch
from attnrec.models.base import register
from attnrec.models.multimodal.base import (
    MultimodalConfig,
    MultimodalModule,
    MultimodalRecommender,
)
from attnrec.models.topk.bpr import bpr_loss, l2_reg, pair_scores


class VBPRConfig(MultimodalConfig):
    """VBPR's options: ``dim`` is the width of γ (the latent factors), ``feat_dim`` of θ (the content factors, E's
    output); ``biases`` adds the item bias β_i and the feature bias β'ᵀf_i of the paper's eq. 2; ``reg`` is λ of
    the squared L2 term on the batch's factors (γ_u, θ_u, γ_i, E f_i)."""

    reg: float = Field(1e-4, ge=0)
    biases: bool = True


class VBPRModule(MultimodalModule):
    """VBPR's math: ``user`` holds γ_u, ``theta`` θ_u, ``item`` γ_i, the base's ``proj`` E, ``item_bias`` β_i and
    ``feat_bias[m]`` the block of β' for modality m."""

    config: VBPRConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c = self.config
        self.theta = nn.Embedding(self.n_users, c.feat_dim)
        nn.init.xavier_uniform_(self.theta.weight)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))
        self.feat_bias = nn.ModuleDict(
            {m: nn.Linear(self.feature(m).shape[1], 1, bias=False) for m in self.modalities}
        )
        for lin in self.feat_bias.values():
            assert isinstance(lin, nn.Linear)
            nn.init.zeros_(lin.weight)

    def content(self) -> torch.Tensor:
        """E f_i for every item: (n_items, feat_dim)."""
        out = self.projected(self.modalities[0])
        for m in self.modalities[1:]:
            out = out + self.projected(m)
        return out

    def bias(self) -> torch.Tensor:
        """β_i + β'ᵀ f_i for every item: (n_items,); zeros when ``biases`` is off."""
        if not self.config.biases:
            return self.item.weight.new_zeros(self.n_items)
        out = self.item_bias
        for m in self.modalities:
            out = out + self.feat_bias[m](self.feature(m)).squeeze(-1)
        return out

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        ones = self.user.weight.new_ones(self.n_users, 1)
        users = torch.cat([self.user.weight, self.theta.weight, ones], 1)
        items = torch.cat([self.item.weight, self.content(), self.bias().unsqueeze(1)], 1)
        return users, items

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        eu, ei = self.compute_embeddings()
        u, p, n = eu[batch.users], ei[batch.pos], ei[batch.neg]
        loss = bpr_loss(*pair_scores(u, p, n))
        if self.config.reg > 0:
            # the factors only: the constant 1 of the user vector and the bias column are not penalised
            k = self.config.dim + self.config.feat_dim
            loss = loss + self.config.reg * l2_reg(
                u[:, :k], p[..., :k], n[..., :k], batch_size=len(batch.users)
            )
        return loss


@register
class VBPR(MultimodalRecommender):
    """VBPR: BPR-MF whose item factor is extended by a linear projection of the item features."""

    name = "vbpr"
    config_class = VBPRConfig
    paper = "He & McAuley 2016, VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback (AAAI)"
    config: VBPRConfig

    def new_module(self, train_matrix: sp.csr_matrix, features: dict[str, np.ndarray] | None) -> VBPRModule:
        return VBPRModule(
            self.n_users,
            self.n_items,
            self.config,
            self.modality_dims,
            self.ui_adjacency(train_matrix),
            features=features,
        )
