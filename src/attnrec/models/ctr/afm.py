"""Attentional factorization machine (Xiao et al., IJCAI 2017):
``logit = b + sum_f w_f + p^T sum_{i<j} a_ij (v_i * v_j)``, ``a_ij = softmax(h^T ReLU(W (v_i * v_j) + b))``."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRModule, CTRRecommender, EmbeddingCTRConfig, Penalised
from attnrec.models.layers.features import FeatureEmbedding, FeatureLinear
from attnrec.models.layers.interaction import AttentionalPairPooling


class AFMConfig(EmbeddingCTRConfig):
    """AFM options: the attention network's size and the dropout on the pooled pair vector."""

    attention_dim: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)


class AFMModule(CTRModule):
    """(B,) logits: linear term + projected attention-pooled pair products."""

    def __init__(self, schema: FeatureSchema, config: AFMConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        d = config.embedding_dim
        self.linear = FeatureLinear(schema)
        self.embedding = FeatureEmbedding(schema, d)
        if self.embedding.n_fields < 2:
            raise ValueError("AFM needs at least two fields to form pairs")
        self.attention = AttentionalPairPooling(d, config.attention_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.p = nn.Linear(d, 1, bias=False)

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        emb = self.embedding(batch)
        terms = self.linear.terms(batch)
        pooled, _ = self.attention(emb)
        logits = self.linear.bias + terms.sum(1) + self.p(self.dropout(pooled)).squeeze(-1)
        return logits, Penalised((emb,), terms)

    def attention_weights(self, batch: CTRBatch) -> torch.Tensor:
        """(B, P) the weight of each field pair ``i < j`` (order of ``pair_indices``); rows sum to 1."""
        return self.attention(self.embedding(batch))[1]


@register
class AFM(CTRRecommender[AFMConfig]):
    """Attentional factorization machine."""

    name = "afm"
    config_class = AFMConfig
    module_class = AFMModule
    paper = "Xiao et al., Attentional Factorization Machines, IJCAI 2017"
