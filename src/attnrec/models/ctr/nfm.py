"""Neural factorization machine (He & Chua, SIGIR 2017):
``logit = b + sum_f w_f + h^T MLP(dropout(BI(V)))`` with ``BI(V) = sum_{i<j} v_i * v_j``."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRModule, CTRRecommender, EmbeddingCTRConfig, Penalised
from attnrec.models.layers.features import FeatureEmbedding, FeatureLinear
from attnrec.models.layers.interaction import MLP, bi_interaction


class NFMConfig(EmbeddingCTRConfig):
    """NFM options: the MLP above the bi-interaction pooling."""

    hidden: list[int] = Field(default_factory=lambda: [64])
    # 0.5 / 0.5 since issue 18 (was 0.1 / 0): chosen on validation logloss on MovieLens-CTR, Criteo and Avazu
    # (docs/models/nfm.md, "Dropout default")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout of the MLP layers")
    bi_dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the bi-interaction vector")
    batch_norm: bool = Field(True, description="batch norm on the bi-interaction vector and MLP layers")


class NFMModule(CTRModule):
    """(B,) logits: linear term + MLP over the bi-interaction vector."""

    def __init__(self, schema: FeatureSchema, config: NFMConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        d = config.embedding_dim
        self.linear = FeatureLinear(schema)
        self.embedding = FeatureEmbedding(schema, d)
        self.bi_norm: nn.Module = nn.BatchNorm1d(d) if config.batch_norm else nn.Identity()
        self.bi_dropout = nn.Dropout(config.bi_dropout)
        self.mlp = MLP(d, config.hidden, dropout=config.dropout, batch_norm=config.batch_norm, out_dim=1)

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        emb = self.embedding(batch)
        terms = self.linear.terms(batch)
        deep = self.mlp(self.bi_dropout(self.bi_norm(bi_interaction(emb)))).squeeze(-1)
        return self.linear.bias + terms.sum(1) + deep, Penalised((emb,), terms)


@register
class NFM(CTRRecommender[NFMConfig]):
    """Neural factorization machine."""

    name = "nfm"
    config_class = NFMConfig
    module_class = NFMModule
    paper = "He & Chua, Neural Factorization Machines for Sparse Predictive Analytics, SIGIR 2017"
