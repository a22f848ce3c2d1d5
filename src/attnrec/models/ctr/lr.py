"""Logistic regression: ``logit = b + sum_f w_f(x_f)`` — the first-order floor every CTR model must beat."""

from __future__ import annotations

import torch
from pydantic import model_validator

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRConfig, CTRModule, CTRRecommender, Penalised
from attnrec.models.layers.features import FeatureLinear


class LRConfig(CTRConfig):
    """LR has no embeddings: its only weights are first-order. ``linear_reg`` None (default): ``embedding_reg``
    weighs the L2 penalty on the first-order weights used, as it always has. ``linear_reg`` set: it weighs them
    instead, and ``embedding_reg`` must stay 0 (it would weigh nothing; a value is refused rather than ignored).
    ``linear_init = "lr"`` is refused: LR is the model the other models' first-order terms start from."""

    @model_validator(mode="after")
    def _one_weight(self) -> LRConfig:
        if self.linear_reg is not None and self.embedding_reg > 0:
            raise ValueError(
                f"embedding_reg = {self.embedding_reg!r} with linear_reg = {self.linear_reg!r}: LR has no "
                "embeddings, so with linear_reg set embedding_reg weighs nothing; set only one of them"
            )
        if self.linear_init == "lr":
            raise ValueError(
                "linear_init = 'lr': LR's first-order term is the whole model, so it would start from another fit "
                "of itself; leave linear_init 'zero'"
            )
        return self


class LRModule(CTRModule):
    """(B,) logits ``b + sum_f w_f(x_f)``."""

    def __init__(self, schema: FeatureSchema, config: LRConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        self.linear = FeatureLinear(schema)

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        terms = self.linear.terms(batch)
        return terms.sum(1) + self.linear.bias, Penalised((), terms)


@register
class LR(CTRRecommender[LRConfig]):
    """Logistic regression on one-hot fields (and raw numeric values)."""

    name = "lr"
    config_class = LRConfig
    module_class = LRModule
    paper = "baseline"
