"""DCN-v2 (Wang et al., WWW 2021): cross layers ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` on the flattened
field embeddings, with an MLP either beside them (``parallel``) or on top (``stacked``); optionally a first-order
term added to the logit (``use_linear``, not in the paper)."""

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
from attnrec.models.layers.interaction import MLP, CrossNetV2


class DCNConfig(EmbeddingCTRConfig):
    """DCN-v2 options: number of cross layers, the MLP and how the two are combined."""

    cross_layers: int = Field(3, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False
    structure: Literal["parallel", "stacked"] = "parallel"

    #: use_linear came after bundles and checkpoints were written; False is the model before it
    bundle_legacy: ClassVar[dict[str, Any]] = {**EmbeddingCTRConfig.bundle_legacy, "use_linear": False}
    use_linear: bool = Field(
        False,
        description="add a first-order term b + sum_f w_f(x_f) to the logit (not in the paper; DeepCTR-Torch's "
        "convention, see docs/models/dcn.md)",
    )

    def has_first_order(self) -> bool:
        """Only with ``use_linear`` (without it, ``linear_reg`` and ``linear_init = "lr"`` are refused, a ConfigError
        naming them)."""
        return self.use_linear


class DCNModule(CTRModule):
    """(B,) logits: ``w^T [cross(x0); MLP(x0)]`` (parallel) or ``w^T MLP(cross(x0))`` (stacked) [+ linear]."""

    def __init__(self, schema: FeatureSchema, config: DCNConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        self.embedding = FeatureEmbedding(schema, config.embedding_dim)
        dim = self.embedding.n_fields * config.embedding_dim
        self.structure = config.structure
        self.cross = CrossNetV2(dim, config.cross_layers)
        self.mlp = MLP(dim, config.hidden, dropout=config.dropout, batch_norm=config.batch_norm)
        out_in = self.mlp.output_dim + (dim if self.structure == "parallel" else 0)
        self.out = nn.Linear(out_in, 1)
        # built last: without use_linear the module (and its parameter draws) is the one before the option
        self.linear = FeatureLinear(schema) if config.use_linear else None

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        emb = self.embedding(batch)
        x0 = emb.flatten(1)
        if self.structure == "parallel":
            h = torch.cat([self.cross(x0), self.mlp(x0)], dim=1)
        else:
            h = self.mlp(self.cross(x0))
        logits = self.out(h).squeeze(-1)
        logits, terms = self.with_first_order(logits, batch)
        return logits, Penalised((emb,), terms)


@register
class DCN(CTRRecommender[DCNConfig]):
    """Deep & Cross Network v2 (full-rank cross layers)."""

    name = "dcn"
    config_class = DCNConfig
    module_class = DCNModule
    paper = "Wang et al., DCN V2: Improved Deep & Cross Network, WWW 2021"
