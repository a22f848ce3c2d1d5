"""TransNet (Catherine & Cohen, RecSys 2017): a source network (user and item CNN towers, then L transform layers
that map their concatenation toward the representation of the user's review of the item) and a target network
(a CNN over that review, then an FM), trained jointly; at test time only the source network runs. Equations
mapped to code in ``docs/models/transnet.md``."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from attnrec.data.reviews import ReviewBatch
from attnrec.models.base import register
from attnrec.models.review.base import (
    FactorizationMachine,
    ReviewConfig,
    ReviewModule,
    ReviewRatingModel,
    rating_loss,
    text_cnn,
    unit_norm_word_vectors,
)


class TransNetConfig(ReviewConfig):
    """TransNet options: the shared text options, ``transform_layers`` (L), the FMs' factor size, the rating loss
    (the paper: L1) and the weight of the transform loss (0 drops it: an ablation, not the paper)."""

    transform_layers: int = Field(2, ge=1)
    fm_factors: int = Field(8, ge=1)
    loss: Literal["l1", "l2"] = "l1"
    transform_weight: float = Field(1.0, ge=0.0)


class TransNetModule(ReviewModule):
    """Source: z_0 = [Γ_A(doc_u); Γ_B(doc_i)], z_l = tanh(G_l z_{l-1} + g_l), ŷ_S = FM_S(z_L).
    Target: x_T = Γ_T(rev_ui), ŷ_T = FM_T(x_T). Test time: ŷ_S only."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        vocab_size: int,
        config: TransNetConfig,
        word_vectors: np.ndarray | None,
        global_bias: float = 0.0,
    ) -> None:
        super().__init__(n_users, n_items, config)
        n = config.cnn_out
        self.user_net = text_cnn(config, vocab_size, word_vectors)
        self.item_net = text_cnn(config, vocab_size, word_vectors)
        # the target's representation is tanh-bounded like the transform's output, so the L2 match is attainable
        self.target_net = text_cnn(config, vocab_size, word_vectors, out_activation="tanh")
        self.transform = nn.ModuleList(
            [nn.Linear(2 * n if layer == 0 else n, n) for layer in range(config.transform_layers)]
        )
        # w0 starts at the mean rating: from 0, the fastest way up to the ratings is to push every tanh feature
        # to the same saturated sign, and the representations then stop depending on the text (transnet.md)
        self.fm_source = FactorizationMachine(n, config.fm_factors, bias=global_bias)
        self.fm_target = FactorizationMachine(n, config.fm_factors, bias=global_bias)
        self.loss_kind = config.loss
        self.transform_weight = config.transform_weight

    def transformed(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """z_L (B, n): the source network's approximation of the target review's representation."""
        z = torch.cat([user_vecs, item_vecs], dim=1)
        for layer in self.transform:
            z = torch.tanh(layer(z))
        return z

    def rate(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        return self.fm_source(self.transformed(user_vecs, item_vecs))

    def loss_parts(self, batch: ReviewBatch) -> dict[str, torch.Tensor]:
        """The three losses of one batch: ``target`` |r - FM_T(x_T)|, ``transform`` ||z_L - x_T||² (mean over
        rows; x_T is held fixed) and ``source`` |r - FM_S(z_L)| (z_L held fixed). Each trains only its own part of
        the network, as the paper's three alternating steps do."""
        x_t = self.target_net(self.target(batch.rows))
        ud, idoc = self.documents(batch.users, batch.items, batch.rows)
        z = self.transformed(self.user_vectors(ud), self.item_vectors(idoc))
        return {
            "target": rating_loss(self.fm_target(x_t), batch.ratings, self.loss_kind),
            "transform": (z - x_t.detach()).square().sum(1).mean(),
            "source": rating_loss(self.fm_source(z.detach()), batch.ratings, self.loss_kind),
        }

    def loss(self, batch: ReviewBatch) -> torch.Tensor:
        parts = self.loss_parts(batch)
        return parts["target"] + self.transform_weight * parts["transform"] + parts["source"]


@register
class TransNet(ReviewRatingModel[TransNetConfig]):
    """TransNet: the source network rates from the user's and item's reviews, trained to imitate the target
    network that reads the user's review of the item (training only)."""

    name = "transnet"
    config_class = TransNetConfig
    paper = "Catherine, Cohen, TransNets: Learning to Transform for Recommendation, RecSys 2017"

    def new_module(self, vocab_size: int, word_vectors: np.ndarray | None) -> TransNetModule:
        if word_vectors is None:  # tanh outputs: N(0, 1) vectors saturate them within an epoch (transnet.md)
            word_vectors = unit_norm_word_vectors(vocab_size, self.config.word_dim, self.config.seed)
        return TransNetModule(
            self.n_users, self.n_items, vocab_size, self.config, word_vectors, global_bias=self._global_bias
        )
