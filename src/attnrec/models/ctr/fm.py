"""Factorization machine (Rendle, ICDM 2010): ``logit = b + sum_f w_f + sum_{i<j} <v_i, v_j>``."""

from __future__ import annotations

import torch

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRModule, CTRRecommender, EmbeddingCTRConfig, Penalised
from attnrec.models.layers.features import FeatureEmbedding, FeatureLinear
from attnrec.models.layers.interaction import fm_second_order


class FMConfig(EmbeddingCTRConfig):
    """FM options: ``embedding_dim`` is the factor size ``k``."""


class FMModule(CTRModule):
    """(B,) logits: linear term + the O(F k) pairwise term."""

    def __init__(self, schema: FeatureSchema, config: FMConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        self.linear = FeatureLinear(schema)
        self.embedding = FeatureEmbedding(schema, config.embedding_dim)

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        emb = self.embedding(batch)
        terms = self.linear.terms(batch)
        logits = self.linear.bias + terms.sum(1) + fm_second_order(emb)
        return logits, Penalised((emb,), terms)


@register
class FM(CTRRecommender[FMConfig]):
    """Factorization machine over the field embeddings."""

    name = "fm"
    config_class = FMConfig
    module_class = FMModule
    paper = "Rendle, Factorization Machines, ICDM 2010"
