"""DeepFM (Guo et al., IJCAI 2017): ``logit = FM(x) + MLP(concat_f v_f)`` with shared embeddings."""

from __future__ import annotations

import torch
from pydantic import Field

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRModule, CTRRecommender, EmbeddingCTRConfig, Penalised
from attnrec.models.layers.features import FeatureEmbedding, FeatureLinear
from attnrec.models.layers.interaction import MLP, fm_second_order


class DeepFMConfig(EmbeddingCTRConfig):
    """DeepFM options: the deep part's layers."""

    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False


class DeepFMModule(CTRModule):
    """(B,) logits: linear + pairwise FM + MLP over the flattened field embeddings."""

    def __init__(self, schema: FeatureSchema, config: DeepFMConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        self.linear = FeatureLinear(schema)
        self.embedding = FeatureEmbedding(schema, config.embedding_dim)
        self.mlp = MLP(
            self.embedding.n_fields * config.embedding_dim,
            config.hidden,
            dropout=config.dropout,
            batch_norm=config.batch_norm,
            out_dim=1,
        )

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        emb = self.embedding(batch)
        terms = self.linear.terms(batch)
        deep = self.mlp(emb.flatten(1)).squeeze(-1)
        logits = self.linear.bias + terms.sum(1) + fm_second_order(emb) + deep
        return logits, Penalised((emb,), terms)


@register
class DeepFM(CTRRecommender[DeepFMConfig]):
    """DeepFM: FM and an MLP side by side on shared embeddings."""

    name = "deepfm"
    config_class = DeepFMConfig
    module_class = DeepFMModule
    paper = "Guo et al., DeepFM: A Factorization-Machine based Neural Network for CTR Prediction, IJCAI 2017"
