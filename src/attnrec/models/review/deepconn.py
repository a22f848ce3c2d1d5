"""DeepCoNN (Zheng, Noroozi, Yu, WSDM 2017): two CNN towers over the user's and the item's review documents and a
factorization machine on their concatenation. Equations mapped to code in ``docs/models/deepconn.md``."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from attnrec.data.reviews import ReviewBatch
from attnrec.models.base import register
from attnrec.models.review.base import (
    FactorizationMachine,
    ReviewConfig,
    ReviewModule,
    ReviewRatingModel,
    text_cnn,
)


class DeepCoNNConfig(ReviewConfig):
    """DeepCoNN options: the shared text options, the FM's factor size and the rating loss (the paper: squared)."""

    fm_factors: int = Field(8, ge=1)
    loss: Literal["l1", "l2"] = "l2"


class DeepCoNNModule(ReviewModule):
    """x_u = CNN_u(doc_u), y_i = CNN_i(doc_i), ŷ = FM([x_u; y_i]) (+ b_u + b_i with ``id_biases``)."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        vocab_size: int,
        config: DeepCoNNConfig,
        word_vectors: np.ndarray | None,
    ) -> None:
        super().__init__(n_users, n_items, config)
        self.user_net = text_cnn(config, vocab_size, word_vectors)
        self.item_net = text_cnn(config, vocab_size, word_vectors)
        self.fm = FactorizationMachine(2 * config.cnn_out, config.fm_factors)
        self.loss_kind = config.loss

    def rate(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        return self.fm(torch.cat([user_vecs, item_vecs], dim=1))

    def loss(self, batch: ReviewBatch) -> torch.Tensor:
        ud, idoc = self.documents(batch.users, batch.items, batch.rows)
        return self.predicting_loss(self.rate(self.user_vectors(ud), self.item_vectors(idoc)), batch)


@register
class DeepCoNN(ReviewRatingModel[DeepCoNNConfig]):
    """DeepCoNN: user and item CNN towers over their training reviews, FM on the concatenation."""

    name = "deepconn"
    config_class = DeepCoNNConfig
    paper = "Zheng, Noroozi, Yu, Joint Deep Modeling of Users and Items Using Reviews for Recommendation, WSDM 2017"

    def new_module(self, vocab_size: int, word_vectors: np.ndarray | None) -> DeepCoNNModule:
        return DeepCoNNModule(self.n_users, self.n_items, vocab_size, self.config, word_vectors)
