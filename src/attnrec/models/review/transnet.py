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
from attnrec.errors import ConfigError
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
    (the paper: L1) and the weight of the transform loss (0 drops it: an ablation, not the paper).
    ``extended`` is the paper's TransNet-Ext: user and item id embeddings (``cnn_out`` wide) join z_L in a third
    FM, which then rates; ``id_l2`` (ours; the paper has none) is an L2 penalty on the id embeddings of a batch and
    ``id_init_std`` (ours) starts them N(0, std²) instead of the authors' U(-1, 1)."""

    transform_layers: int = Field(2, ge=1)
    fm_factors: int = Field(8, ge=1)
    loss: Literal["l1", "l2"] = "l1"
    transform_weight: float = Field(1.0, ge=0.0)
    extended: bool = False
    id_l2: float = Field(0.0, ge=0.0)
    #: None: the ids start U(-1, 1) (the authors' code); a number: N(0, id_init_std²) (ours)
    id_init_std: float | None = Field(None, gt=0.0)


class TransNetModule(ReviewModule):
    """Source: z_0 = [Γ_A(doc_u); Γ_B(doc_i)], z_l = tanh(G_l z_{l-1} + g_l), ŷ_S = FM_S(z_L).
    Target: x_T = Γ_T(rev_ui), ŷ_T = FM_T(x_T). Test time: ŷ_S only.
    TransNet-Ext (``extended``): ŷ_F = FM_F([ω_u; Ω_i; z_L]) with id embeddings ω, Ω; test time: ŷ_F only. The
    user and item vectors then carry the id embedding in their last ``n`` columns (:meth:`user_vectors`).
    ``id_biases``: b_u + b_i join the head that rates at test time (ŷ_S, or ŷ_F for Ext) and its loss, never
    FM_T (transnet.md, "Rating biases")."""

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
        self.n = n
        self.id_l2 = config.id_l2
        self.user_ids: nn.Embedding | None = None
        self.item_ids: nn.Embedding | None = None
        self.fm_full: FactorizationMachine | None = None
        if config.extended:
            # U(-1, 1) as the authors' code (not inert at the start: through FM_F's default-initialised linear
            # weights the ids alone move a rating by ~0.27 (sd) before training)
            self.user_ids, self.item_ids = nn.Embedding(n_users, n), nn.Embedding(n_items, n)
            for emb in (self.user_ids, self.item_ids):
                if config.id_init_std is None:
                    nn.init.uniform_(emb.weight, -1.0, 1.0)
                else:
                    nn.init.normal_(emb.weight, 0.0, config.id_init_std)
            self.fm_full = FactorizationMachine(3 * n, config.fm_factors, bias=global_bias)

    def user_vectors(self, docs: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """x_A (B, n), or [x_A; ω_u] (B, 2n) for TransNet-Ext (``ids`` then required)."""
        return _with_ids(self.user_net(docs), self.user_ids, ids, "user")

    def item_vectors(self, docs: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """x_B (B, n), or [x_B; Ω_i] (B, 2n) for TransNet-Ext (``ids`` then required)."""
        return _with_ids(self.item_net(docs), self.item_ids, ids, "item")

    def transformed(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """z_L (B, n): the source network's approximation of the target review's representation (from the text
        columns of the vectors only)."""
        z = torch.cat([user_vecs[:, : self.n], item_vecs[:, : self.n]], dim=1)
        for layer in self.transform:
            z = torch.tanh(layer(z))
        return z

    def full_input(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """TransNet-Ext's FM input [ω_u; Ω_i; z_L] (B, 3n)."""
        return torch.cat([user_vecs[:, self.n :], item_vecs[:, self.n :], z], dim=1)

    def rate(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        z = self.transformed(user_vecs, item_vecs)
        if self.fm_full is None:
            return self.fm_source(z)
        return self.fm_full(self.full_input(user_vecs, item_vecs, z))

    def loss_parts(self, batch: ReviewBatch) -> dict[str, torch.Tensor]:
        """The losses of one batch: ``target`` |r - FM_T(x_T)|, ``transform`` ||z_L - x_T||² (mean over rows;
        x_T is held fixed) and ``source`` |r - FM_S(z_L)| (z_L held fixed); TransNet-Ext adds ``full``
        |r - FM_F([ω_u; Ω_i; z_L])| + ``id_l2``·(||ω_u||² + ||Ω_i||²) (batch means; z_L held fixed), which trains
        the ids and FM_F only. Each trains only its own part of the network, as the paper's alternating steps do.
        With ``id_biases`` the rating head of test time (``source``, or ``full`` for Ext) predicts
        FM(·) + b_u + b_i, and its loss adds ``bias_l2``·(b_u² + b_i²) (batch mean)."""
        x_t = self.target_net(self.target(batch.rows))
        ud, idoc = self.documents(batch.users, batch.items, batch.rows)
        uv, iv = self.user_vectors(ud, batch.users), self.item_vectors(idoc, batch.items)
        z = self.transformed(uv, iv)
        y = batch.ratings
        source = self.fm_source(z.detach())
        parts = {
            "target": rating_loss(self.fm_target(x_t), y, self.loss_kind),
            "transform": (z - x_t.detach()).square().sum(1).mean(),
        }
        if self.fm_full is None:
            parts["source"] = self.predicting_loss(source, batch)
        else:
            parts["source"] = rating_loss(source, y, self.loss_kind)
            f_in = self.full_input(uv, iv, z.detach())
            parts["full"] = self.predicting_loss(self.fm_full(f_in), batch)
            if self.id_l2:
                parts["full"] = parts["full"] + self.id_l2 * f_in[:, : 2 * self.n].square().sum(1).mean()
        return parts

    def loss(self, batch: ReviewBatch) -> torch.Tensor:
        parts = self.loss_parts(batch)
        total = parts["target"] + self.transform_weight * parts["transform"] + parts["source"]
        return total + parts["full"] if "full" in parts else total


def _with_ids(
    text: torch.Tensor, table: nn.Embedding | None, ids: torch.Tensor | None, what: str
) -> torch.Tensor:
    """``text`` (B, n), with the id embeddings of ``ids`` appended when the model has an id ``table``."""
    if table is None:
        return text
    if ids is None:
        raise ConfigError(f"TransNet-Ext needs the {what} indices beside the {what} documents")
    return torch.cat([text, table(ids)], dim=1)


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
