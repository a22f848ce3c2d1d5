"""SAFMR's math on tensors (paper 002): the self-attention factorization machine (eqs. 6-8), the transform layers
(eq. 10), and the target and source networks with their losses (eqs. 11-14, Algorithms 1 and 2).

Notation of the paper, shapes here (B rows, n = ``cnn_out`` CNN features, k = ``factors``):

* ``x`` (B, n) — a CNN's output (eq. 4); feature ``i`` is embedded as ``e_i = x_i v_i`` with its FM factor
  ``v_i`` (k,): the feature matrix ``E`` (B, n, k) (eq. 5's ``<v_i, v_j> x_i x_j`` is ``<e_i, e_j>``).
* eq. 6: ``R = E W_r``, ``H = E W_h``, ``S = E W_s`` (each (B, n, k)).
* eq. 7: ``X̂ = softmax(R Hᵀ / √k)`` (B, n, n); row ``i`` is a distribution over the n features.
* eq. 8: ``ŷ = w_0 + Σ_i w_i x_i + Σ_i <e_i, (X̂ S)_i>`` = ``w_0 + Σ w_i x_i + Σ_ij x̂_ij <e_i, s_j>``: FM's
  pairwise term with attention weights in place of FM's equal weights (``attention=False``: FM's
  ``Σ_{i<j} <e_i, e_j>``). Why this reading of the printed ``Σ s_i x̂_i``: ``docs/models/safmr.md``.

The CNNs are the shared :class:`~attnrec.models.layers.text_cnn.TextCNN` over a user's or item's document (its
reviews as one token sequence), X_B = ``user_vectors``, X_C = ``item_vectors`` (:class:`ReviewModule`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from attnrec.data.reviews import ReviewBatch
from attnrec.models.layers.interaction import fm_second_order
from attnrec.models.review.base import ReviewConfig, ReviewModule, rating_loss, text_cnn

#: eq. 10's initial values (TransNet's, which the paper follows): weights ~ truncated normal(0, 0.1), biases 0.1
TRANSFORM_STD, TRANSFORM_BIAS = 0.1, 0.1
#: FM initial values of TransNet's code besides w_0: first-order weights 0.001, factors ~ N(0, 0.001)
FM_LINEAR, FM_FACTOR_STD = 0.001, 0.001


@dataclass
class FMOutput:
    """One head's forward pass: ``pred`` (B,) ratings; ``features`` (B, n, k), the feature matrix E (the attention
    input); with attention, ``weights`` (B, n, n), the rows of X̂ (eq. 7), and ``mixed`` (B, n, k), the attention
    output X̂ S (both None without attention)."""

    pred: torch.Tensor
    features: torch.Tensor
    weights: torch.Tensor | None
    mixed: torch.Tensor | None


class SelfAttentionFM(nn.Module):
    """The rating head of a SAFMR network: ``x`` (B, n) -> rating (B,), eqs. 6-8 (``attention=False``: eq. 5)."""

    def __init__(self, n_features: int, factors: int, *, attention: bool = True, bias: float = 0.0) -> None:
        super().__init__()
        self.attention = attention
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        self.linear = nn.Parameter(torch.full((n_features,), FM_LINEAR))
        self.factors = nn.Parameter(torch.randn(n_features, factors) * FM_FACTOR_STD)
        if attention:
            # W_r, W_h, W_s of eq. 6: k x k maps of every feature's vector (no bias: none is printed)
            self.query = nn.Linear(factors, factors, bias=False)
            self.key = nn.Linear(factors, factors, bias=False)
            self.value = nn.Linear(factors, factors, bias=False)

    def forward(self, x: torch.Tensor) -> FMOutput:
        e = x.unsqueeze(-1) * self.factors  # (B, n, k): e_i = x_i v_i
        first = self.bias + x @ self.linear
        if not self.attention:
            return FMOutput(first + fm_second_order(e), e, None, None)
        r, h, s = self.query(e), self.key(e), self.value(e)
        weights = torch.softmax(r @ h.transpose(1, 2) / math.sqrt(e.shape[-1]), dim=-1)  # eq. 7: (B, n, n)
        mixed = weights @ s  # (B, n, k): row i = Σ_j x̂_ij s_j
        return FMOutput(first + (e * mixed).sum((1, 2)), e, weights, mixed)


class TransformLayers(nn.Module):
    """Eq. 10, ``C_l = tanh(C_{l-1} G_l + g_l)`` for l = 1..L: (B, 2n) -> (B, n). G_1 is 2n x n (C_0 = [X_B X_C]
    is 2n wide), the others n x n; weights ~ truncated normal(0, 0.1) cut at ±2σ, biases 0.1."""

    def __init__(self, in_dim: int, out_dim: int, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(in_dim if k == 0 else out_dim, out_dim) for k in range(n_layers)
        )
        for layer in self.layers:
            assert isinstance(layer, nn.Linear)
            nn.init.trunc_normal_(layer.weight, std=TRANSFORM_STD, a=-2 * TRANSFORM_STD, b=2 * TRANSFORM_STD)
            nn.init.constant_(layer.bias, TRANSFORM_BIAS)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            c = torch.tanh(layer(c))
        return c


@dataclass
class SAFMRLosses:
    """The per-batch losses (means over the batch): eq. 12 ``target`` = |y - ŷ_A| and eq. 13 ``transform`` =
    ||C_L - X_A||² (both None without the transform loss), eq. 14 ``source`` = |y - ŷ_B| (``loss="l2"``: the
    squared errors instead of eqs. 12 and 14's absolute ones)."""

    target: torch.Tensor | None
    transform: torch.Tensor | None
    source: torch.Tensor

    def total(self) -> torch.Tensor:
        """Their sum. The three reach disjoint parameters (:meth:`SAFMRModule.losses`), so one backward pass of the
        sum gives each parameter the gradient of its own loss, as Algorithms 1-2's three backward calls do."""
        out = self.source
        for part in (self.target, self.transform):
            if part is not None:
                out = out + part
        return out


class SAFMRModule(ReviewModule):
    """Target network (Algorithm 1) and source network (Algorithm 2) over the documents held by
    :class:`ReviewModule`; :meth:`rate` (the source network) is the prediction path.

    CNNs: ``user_net`` and ``item_net`` (source, X_B and X_C) and ``target_net`` (X_A), each with a tanh output
    (TransNet's) and no internal dropout; dropout is applied where TransNet applies it before the heads: to X_A
    before the target head and to C_L before the source head (not in the transform loss: eq. 13 as printed). ``transform_loss=False`` drops the target
    network from training and trains the source network end to end on eq. 14 alone. ``id_biases`` (ours): b_u + b_i
    join the source head (the one that predicts) in eq. 14 and at test time, never the target head (safmr.md,
    choice 17).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        vocab_size: int,
        config: ReviewConfig,
        word_vectors: np.ndarray | None,
        *,
        factors: int,
        transform_layers: int,
        attention: bool,
        transform_loss: bool,
        loss: Literal["l1", "l2"] = "l1",
        global_bias: float = 0.0,
    ) -> None:
        super().__init__(n_users, n_items, config)
        n = config.cnn_out
        cnn_config = config.model_copy(update={"dropout": 0.0})
        self.user_net = text_cnn(cnn_config, vocab_size, word_vectors, out_activation="tanh")
        self.item_net = text_cnn(cnn_config, vocab_size, word_vectors, out_activation="tanh")
        # built even without the transform loss, so a bundle's tensors do not depend on the ablation switch
        self.target_net = text_cnn(cnn_config, vocab_size, word_vectors, out_activation="tanh")
        self.transform = TransformLayers(2 * n, n, transform_layers)
        self.source_head = SelfAttentionFM(n, factors, attention=attention, bias=global_bias)
        self.target_head = SelfAttentionFM(n, factors, attention=attention, bias=global_bias)
        self.dropout = nn.Dropout(config.dropout)
        self.review_length = config.review_length
        self.use_target = transform_loss
        self.loss_kind: Literal["l1", "l2"] = loss

    # ------------------------------------------------------------------ the source network (test time)
    def representation(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """C_L (B, n): eq. 9 (C_0 = [X_B X_C]) then eq. 10 (Algorithm 2, lines 2-4)."""
        return self.transform(torch.cat([user_vecs, item_vecs], dim=1))

    def source(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> FMOutput:
        """ŷ_B with the source head's attention (Algorithm 2, lines 7-9)."""
        return self.source_head(self.dropout(self.representation(user_vecs, item_vecs)))

    def rate(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        return self.source(user_vecs, item_vecs).pred

    # ------------------------------------------------------------------ training
    def target_vectors(self, reviews: torch.Tensor) -> torch.Tensor:
        """X_A (B, n) of target reviews (B, L) (Algorithm 1, line 1)."""
        return self.target_net(reviews)

    def losses(self, batch: ReviewBatch) -> SAFMRLosses:
        """Eqs. 12-14 on one batch; each reaches only what its step of Algorithms 1-2 trains (TransNet's three
        optimisers): eq. 12 the target network; eq. 13 the source CNNs and transform layers (X_A is held fixed);
        eq. 14 the source head only (C_L is held fixed). Without the transform loss eq. 14 trains the whole
        source network. With ``id_biases`` eq. 14's ŷ_B is the head's output + b_u + b_i, and eq. 14 adds
        ``bias_l2``·(b_u² + b_i²) (batch mean): the biases are trained by eq. 14 only."""
        ud, idoc = self.documents(batch.users, batch.items, batch.rows)
        c = self.representation(self.user_vectors(ud), self.item_vectors(idoc))
        y, kind = batch.ratings, self.loss_kind

        def source_loss(rep: torch.Tensor) -> torch.Tensor:
            return self.predicting_loss(self.source_head(self.dropout(rep)).pred, batch)

        if not self.use_target:
            return SAFMRLosses(None, None, source_loss(c))
        x_a = self.target_vectors(self.target(batch.rows))
        target_pred = self.target_head(self.dropout(x_a)).pred
        transform = (c - x_a.detach()).square().sum(1).mean()
        return SAFMRLosses(rating_loss(target_pred, y, kind), transform, source_loss(c.detach()))

    def loss(self, batch: ReviewBatch) -> torch.Tensor:
        return self.losses(batch).total()
