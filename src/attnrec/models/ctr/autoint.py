"""AutoInt (Song et al., CIKM 2019): stacked multi-head self-attention ("interacting") layers over the field
embeddings, flattened into a linear output; optionally with an MLP beside them (AutoInt+) and a linear term."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRModule, CTRRecommender, EmbeddingCTRConfig, Penalised
from attnrec.models.layers.features import FeatureEmbedding, FeatureLinear
from attnrec.models.layers.interaction import MLP, InteractingLayer


class AutoIntConfig(EmbeddingCTRConfig):
    """AutoInt options: attention layers, heads, per-head size; ``hidden`` non-empty gives AutoInt+."""

    attention_layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    head_dim: int = Field(8, ge=1)
    residual: bool = True
    scaled: bool = Field(False, description="divide scores by sqrt(head_dim) (the paper does not)")
    hidden: list[int] = Field(default_factory=list)
    dropout: float = Field(0.0, ge=0, lt=1)
    use_linear: bool = False

    def has_first_order(self) -> bool:
        """Only with ``use_linear``: ``linear_reg`` needs it."""
        return self.use_linear


class AutoIntModule(CTRModule):
    """(B,) logits: ``w^T flatten(attention^L(E))`` [+ MLP(flatten E)] [+ linear]."""

    def __init__(self, schema: FeatureSchema, config: AutoIntConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        self.embedding = FeatureEmbedding(schema, config.embedding_dim)
        n = self.embedding.n_fields
        layers, dim = [], config.embedding_dim
        for _ in range(config.attention_layers):
            layer = InteractingLayer(
                dim, config.head_dim, config.heads, residual=config.residual, scaled=config.scaled
            )
            layers.append(layer)
            dim = layer.output_dim
        self.attention = nn.ModuleList(layers)
        self.out = nn.Linear(n * dim, 1)
        self.mlp = (
            MLP(n * config.embedding_dim, config.hidden, dropout=config.dropout, out_dim=1)
            if config.hidden
            else None
        )
        self.linear = FeatureLinear(schema) if config.use_linear else None

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        emb = self.embedding(batch)
        h = emb
        for layer in self.attention:
            h, _ = layer(h)
        logits = self.out(h.flatten(1)).squeeze(-1)
        if self.mlp is not None:
            logits = logits + self.mlp(emb.flatten(1)).squeeze(-1)
        logits, terms = self.with_first_order(logits, batch)
        return logits, Penalised((emb,), terms)

    def attention_weights(self, batch: CTRBatch) -> list[torch.Tensor]:
        """Per layer, the (B, heads, F, F) attention weights (rows sum to 1)."""
        h, out = self.embedding(batch), []
        for layer in self.attention:
            h, w = layer(h)
            out.append(w)
        return out


@register
class AutoInt(CTRRecommender[AutoIntConfig]):
    """AutoInt: multi-head self-attentive feature interactions."""

    name = "autoint"
    config_class = AutoIntConfig
    module_class = AutoIntModule
    paper = (
        "Song et al., AutoInt: Automatic Feature Interaction Learning via Self-Attentive Networks, CIKM 2019"
    )
