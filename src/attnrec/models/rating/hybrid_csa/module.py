"""hybrid_csa's fusion network (paper 000): math on tensors, no ids, texts or files.

    u' = BN(W_u u + b_u),  i' = BN(W_i i + b_i),  r' = BN(W_r r + b_r)          (eq. 6-8)
    X = [u'; i'; r']                                                           (eq. 9)
    Z = MHA(LN(X))           (4 heads; pre-LN, no residual, see docs)          (eq. 10-12)
    z = mean_t Z_t                                                             (eq. 13)
    r̂ = W_2 Dropout(ReLU(BN(W_1 z + b_1))) + b_2                              (eq. 14-15)
    L = mean (r − r̂)²                                                          (eq. 16)

:class:`HybridCSAModule` holds the SVD factor tables (and the svd_crossfit refits while training), the text
embedding tables, the unknown-user vector(s) and the cold-start ridge map; it scores training batches, pairs and
grids, from per-row token tables it caches between queries (:mod:`.inference`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from attnrec.models.layers.attention import SelfAttentionBlock
from attnrec.models.layers.interaction import MLP
from attnrec.models.rating.hybrid_csa.cold_start import fit_text_to_factors, text_to_factors
from attnrec.models.rating.hybrid_csa.config import PAIRS, Fusion
from attnrec.models.rating.hybrid_csa.inference import (
    TokenTables,
    VersionKeyedCache,
    autocast_on,
    blocks,
    gather,
    module_tensors,
    narrow,
)
from attnrec.training.types import TrainableModule


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


def projection(in_dim: int, d_model: int) -> nn.Sequential:
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
        self._tables: VersionKeyedCache[tuple[TokenTables, TokenTables]] = VersionKeyedCache()
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
            self.proj_user = projection(k, d_model)
            self.proj_item = projection(k, d_model)
        self.d_model = d_model
        self.proj_text = projection(d_text, d_model)
        if self.has_user_text:
            self.proj_user_text = projection(d_text, d_model)
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
        max_rows: int = PAIRS,
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
        max_rows: int = PAIRS,
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
        for sl in blocks(shape, max_rows):
            p, w = score(*(narrow(r, sl, len(shape)) for r in idx))
            preds[sl] = p
            if w is not None:
                if weights is None:
                    weights = torch.empty((*shape, n_t, n_t), device=preds.device)
                weights[sl] = w
        return preds, weights

    # -- per-row token tables for inference ----------------------------------------------------------------
    def _side(self, tokens: list[torch.Tensor], svd: tuple[torch.Tensor, torch.Tensor] | None) -> TokenTables:
        att = self.attention
        states = tuple(att.project(t) for t in tokens) if att is not None else tuple(tokens)
        return TokenTables(tuple(tokens), states, svd)

    def user_side(self, users: torch.Tensor, unknown: torch.Tensor) -> TokenTables:
        """The user-side tokens of users (U,) (``unknown`` (U,): the learned unknown user instead)."""
        svd = None
        if self.residual:
            u, bu = self.svd_user(users, unknown)
            assert bu is not None
            svd = (u, bu)
        return self._side(self.user_tokens(users, unknown), svd)

    def item_side(self, items: torch.Tensor) -> TokenTables:
        """The item token of items (I,) (none for text_only)."""
        it = self.item_token(items)
        svd = None
        if self.residual:
            q, bi = self.item_rows(items)
            assert bi is not None
            svd = (q, bi)
        return self._side([] if it is None else [it], svd)

    def text_side(self, text: torch.Tensor) -> TokenTables:
        """The text token of text embeddings (N, d_text)."""
        return self._side([self.text_token(text)], None)

    def table_cache(self) -> tuple[TokenTables, TokenTables] | None:
        """Inference only (eval mode, no autograd, no autocast): every user's side (row ``n_users``: the unknown
        user) and every item's, computed once and kept while every parameter and buffer of the module is the
        same tensor, on the same storage, at the same version (an optimiser step, ``load_state_dict``,
        ``add_items``, ``.to()`` or a replaced submodule renews them; a write through ``.data`` into the same
        storage bypasses the version counter and is not seen). None in training, under autograd or autocast,
        for inference tensors, or when the tables would take more than :attr:`table_cache_bytes`."""
        if self.training or torch.is_grad_enabled() or autocast_on(self.item_text.device.type):
            self._tables.clear()  # nothing stale held through training
            return None
        return self._tables.get_or_build(module_tensors(self, []), self._build_tables)

    def _build_tables(self) -> tuple[TokenTables, TokenTables] | None:
        """Every user's side (row ``n_users``: the unknown user) and every item's, or None over the budget."""
        if self.table_bytes() > self.table_cache_bytes:
            return None
        n_users, n_items = self.user_factors.shape[0], self.item_factors.shape[0]
        dev = self.item_text.device
        users = torch.cat([torch.arange(n_users, device=dev), torch.zeros(1, dtype=torch.int64, device=dev)])
        unknown = torch.zeros(n_users + 1, dtype=torch.bool, device=dev)
        unknown[-1] = True
        return self.user_side(users, unknown), self.item_side(torch.arange(n_items, device=dev))

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
        state["_tables"] = VersionKeyedCache()  # weak references do not pickle; rebuilt on the next inference
        return state

    def token_layout(
        self, user_side: TokenTables, item_side: TokenTables, text_side: TokenTables
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
        """The token tables and their attention states in ``token_names`` order, and which side's row index
        reads each ("u", "i" or "t")."""
        tables = [*(user_side.tokens[:1] if self.uses_svd else ()), *item_side.tokens, *text_side.tokens]
        states = [*(user_side.states[:1] if self.uses_svd else ()), *item_side.states, *text_side.states]
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
        self._tables.clear()  # .to() / .float() may swap tensors' data in place (no new version): rebuild
        return super()._apply(fn, recurse)

    def _pair_scorer(
        self, user_side: TokenTables, item_side: TokenTables, text_side: TokenTables, with_weights: bool
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
                x = torch.stack(torch.broadcast_tensors(*gather(tables, rows)), dim=-2)
                p, w = self.fuse(x.reshape(-1, *x.shape[-2:]))
                p = p.view(shape)
            else:
                xs = gather(tables, rows) if keep_x else None
                z, wh = att.mix_tokens(gather(states, rows), xs, pool=self.pooling == "mean")
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
