"""secn — separation embedding cross network with self-attention (Liu et al., paper 003).

Equations of the paper mapped to code (see ``docs/models/secn.md`` for every vague point and the choice made):

* embedding, ``E = W_emb X' + b_emb``: :class:`~attnrec.models.layers.features.FeatureEmbedding` plus a learned
  per-field bias (``embedding_bias``); ``H^(0) = E``, a (F, d) matrix per row (F fields, d dimensions).
* separation embedding cross network, ``H^(i) = f(W_C (H^(i-1) * H^(i-1)) + W_R H^(i-1) + b_C)``:
  :class:`SeparationCrossLayer`. The weights act across *fields* and every embedding dimension ``k`` is crossed
  on its own: for column ``h_k`` (F,) of ``H``, ``h_k^(i) = f(W_C (h_k^(i-1) * h_k^(i-1)) + W_R h_k^(i-1) + b_C)``
  with ``W_C, W_R`` (F, F) and ``b_C`` (F,) shared by all ``d`` columns (``per_dimension_weights=True`` gives
  each column its own). ``cross_product="first"`` uses ``H^(0) * H^(i-1)`` instead (the DCN/CIN form).
* self-attention "for feature mining": :class:`~attnrec.models.layers.interaction.InteractingLayer` over the F
  rows, after the cross network (``attention_position="after"``), before it, or not at all.
* sum pooling, ``P = sum_i h_i^(L)``: the sum over the F rows of the last layer (``pool_layers="all"``
  concatenates the pooled rows of every layer).
* prediction, ``y = g(V P + b)``: a linear layer; ``g`` = sigmoid lives in the loss (BCE with logits) and in
  ``predict_proba``.
* not in the paper, off by default: ``use_linear`` adds a first-order term ``b + sum_f w_f(x_f)``
  (:class:`~attnrec.models.layers.features.FeatureLinear`) to the logit, ``y = g(V P + b + linear)``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRModule, CTRRecommender, EmbeddingCTRConfig, Penalised
from attnrec.models.layers.features import FeatureEmbedding, FeatureLinear
from attnrec.models.layers.interaction import Activation, InteractingLayer, activation


class SECNConfig(EmbeddingCTRConfig):
    """secn options; defaults are the most literal reading of the paper (see docs/models/secn.md), except
    ``dropout``: 0.5, a benchmark choice (issue 18); ``dropout=0`` is the paper's model."""

    cross_layers: int = Field(3, ge=1, description="depth L of the separation embedding cross network")
    cross_product: Literal["previous", "first"] = Field(
        "previous", description="H(i-1)*H(i-1) as printed, or H(0)*H(i-1) as in DCN/CIN"
    )
    cross_activation: Activation = Field("relu", description="f in the cross layer")
    per_dimension_weights: bool = Field(
        False, description="one (W_C, W_R, b_C) per embedding dimension instead of one shared by all"
    )
    embedding_bias: bool = Field(True, description="the b_emb of E = W_emb X' + b_emb, one vector per field")
    attention_position: Literal["after", "before", "none"] = "after"
    attention_heads: int = Field(2, ge=1)
    attention_head_dim: int | None = Field(
        None, ge=1, description="per-head size; None: embedding_dim // attention_heads (at least 1)"
    )
    pool_layers: Literal["last", "all"] = Field(
        "last", description="sum-pool H(L) only (the equation) or every layer's H(i), concatenated"
    )
    # 0.5 since issue 18 (was 0; the paper has none): chosen on validation logloss (docs/models/secn.md, point 9)
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the pooled vector P")

    #: use_linear came after bundles and checkpoints were written; False is the model before it
    bundle_legacy: ClassVar[dict[str, Any]] = {**EmbeddingCTRConfig.bundle_legacy, "use_linear": False}
    use_linear: bool = Field(
        False,
        description="add a first-order term b + sum_f w_f(x_f) to the logit (not in the paper; DeepCTR-Torch's "
        "convention, see docs/models/secn.md)",
    )

    def has_first_order(self) -> bool:
        """Only with ``use_linear`` (without it, ``linear_reg`` and ``linear_init = "lr"`` are refused, a ConfigError
        naming them)."""
        return self.use_linear


class SeparationCrossLayer(nn.Module):
    """One layer ``H' = f(W_C (Z) + W_R H + b_C)`` with ``Z = H * H`` (``previous``) or ``H0 * H`` (``first``),
    where every product ``W X`` is ``sum_j W_ij X_jk``: a mix across the F fields, separately for each of the d
    dimensions. (B, F, d) -> (B, F, d).

    ``W_R`` starts as the identity (the residual path passes ``H`` through) and ``W_C`` small, so a deep stack
    starts close to ``f(H)`` instead of a random polynomial.
    """

    def __init__(
        self, n_fields: int, dim: int, *, act: Activation = "relu", per_dimension: bool = False
    ) -> None:
        super().__init__()
        shape = (dim, n_fields, n_fields) if per_dimension else (n_fields, n_fields)
        eye = torch.eye(n_fields).expand(shape).clone()
        self.per_dimension = per_dimension
        self.w_c = nn.Parameter(torch.randn(shape) * (1.0 / n_fields) ** 0.5)
        self.w_r = nn.Parameter(eye)
        self.b_c = nn.Parameter(torch.zeros((dim, n_fields) if per_dimension else (n_fields,)))
        self.act = activation(act)

    def mix(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``sum_j w_ij x_bjk`` (shared) or ``sum_j w_kij x_bjk`` (per dimension): (B, F, d) -> (B, F, d)."""
        if self.per_dimension:
            return torch.einsum("kij,bjk->bik", w, x)
        return torch.einsum("ij,bjk->bik", w, x)

    def forward(self, h: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """``h0`` given: the ``first`` reading (``H0 * H``); omitted: the printed ``H * H``."""
        z = h * h if h0 is None else h0 * h
        bias = self.b_c.t() if self.per_dimension else self.b_c[:, None]  # (F, d) or (F, 1)
        return self.act(self.mix(self.w_c, z) + self.mix(self.w_r, h) + bias)


class SECNModule(CTRModule):
    """(B,) logits of secn: embed -> [attention] -> cross^L -> [attention] -> sum pooling -> linear [+ first-order]."""

    def __init__(self, schema: FeatureSchema, config: SECNConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        self.config = config
        d = config.embedding_dim
        self.embedding = FeatureEmbedding(schema, d)
        n = self.embedding.n_fields
        self.field_bias = nn.Parameter(torch.zeros(n, d)) if config.embedding_bias else None
        self.attention: InteractingLayer | None = None
        cross_dim = d
        if config.attention_position != "none":
            head_dim = config.attention_head_dim or max(1, d // config.attention_heads)
            self.attention = InteractingLayer(
                d, head_dim, config.attention_heads, residual=True, scaled=True, relu=False
            )
            if config.attention_position == "before":
                cross_dim = self.attention.output_dim
        self.cross = nn.ModuleList(
            SeparationCrossLayer(
                n, cross_dim, act=config.cross_activation, per_dimension=config.per_dimension_weights
            )
            for _ in range(config.cross_layers)
        )
        last_dim = self.attention.output_dim if config.attention_position == "after" else cross_dim  # type: ignore[union-attr]
        pooled = last_dim + (cross_dim * (config.cross_layers - 1) if config.pool_layers == "all" else 0)
        self.dropout = nn.Dropout(config.dropout)
        self.predict = nn.Linear(pooled, 1)
        # built last: without use_linear the module (and its parameter draws) is the one before the option
        self.linear = FeatureLinear(schema) if config.use_linear else None

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        emb = self.embedding(batch)
        h = emb if self.field_bias is None else emb + self.field_bias
        if self.attention is not None and self.config.attention_position == "before":
            h, _ = self.attention(h)
        h0 = h if self.config.cross_product == "first" else None
        pooled = []
        for layer in self.cross:
            h = layer(h, h0)
            pooled.append(h.sum(1))
        if self.attention is not None and self.config.attention_position == "after":
            h, _ = self.attention(h)
            pooled[-1] = h.sum(1)
        p = torch.cat(pooled, dim=1) if self.config.pool_layers == "all" else pooled[-1]
        logits = self.predict(self.dropout(p)).squeeze(-1)
        logits, terms = self.with_first_order(logits, batch)
        return logits, Penalised((emb,), terms)


@register
class SECN(CTRRecommender[SECNConfig]):
    """Separation embedding cross network with self-attention (paper 003)."""

    name = "secn"
    config_class = SECNConfig
    module_class = SECNModule
    paper = "Liu et al., A Recommendation Model Utilizing Separation Embedding and Self-Attention for Feature Mining"
