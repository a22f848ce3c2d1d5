"""Logistic regression: ``logit = b + sum_f w_f(x_f)`` — the first-order floor every CTR model must beat."""

from __future__ import annotations

import torch

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRConfig, CTRModule, CTRRecommender
from attnrec.models.layers.features import FeatureLinear, l2_per_row


class LRConfig(CTRConfig):
    """LR has no embeddings; ``embedding_reg`` weighs the L2 penalty on the first-order weights used."""


class LRModule(CTRModule):
    """(B,) logits ``b + sum_f w_f(x_f)``."""

    def __init__(self, schema: FeatureSchema, config: LRConfig) -> None:
        super().__init__(config.embedding_reg)
        self.linear = FeatureLinear(schema)

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, torch.Tensor]:
        terms = self.linear.terms(batch)
        return terms.sum(1) + self.linear.bias, l2_per_row(terms)


@register
class LR(CTRRecommender[LRConfig]):
    """Logistic regression on one-hot fields (and raw numeric values)."""

    name = "lr"
    config_class = LRConfig
    module_class = LRModule
    paper = "baseline"
