"""xDeepFM (Lian et al., KDD 2018): ``logit = linear(x) + w_cin^T CIN(V) + MLP(concat_f v_f)``."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.models.base import register
from attnrec.models.ctr.base import CTRModule, CTRRecommender, EmbeddingCTRConfig, Penalised
from attnrec.models.layers.features import FeatureEmbedding, FeatureLinear
from attnrec.models.layers.interaction import CIN, MLP, Activation


class XDeepFMConfig(EmbeddingCTRConfig):
    """xDeepFM options: CIN feature-map counts per layer, split-half, CIN activation and the MLP."""

    cin_layers: list[int] = Field(default_factory=lambda: [16, 16], min_length=1)
    split_half: bool = True
    cin_activation: Activation = "identity"
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False


class XDeepFMModule(CTRModule):
    """(B,) logits: linear + CIN (sum-pooled feature maps -> linear) + MLP."""

    def __init__(self, schema: FeatureSchema, config: XDeepFMConfig) -> None:
        super().__init__(config.embedding_reg, config.linear_reg)
        self.linear = FeatureLinear(schema)
        self.embedding = FeatureEmbedding(schema, config.embedding_dim)
        n = self.embedding.n_fields
        self.cin = CIN(n, config.cin_layers, split_half=config.split_half, act=config.cin_activation)
        self.cin_out = nn.Linear(self.cin.output_dim, 1, bias=False)
        self.mlp = MLP(
            n * config.embedding_dim,
            config.hidden,
            dropout=config.dropout,
            batch_norm=config.batch_norm,
            out_dim=1,
        )

    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        emb = self.embedding(batch)
        terms = self.linear.terms(batch)
        cin = self.cin_out(self.cin(emb)).squeeze(-1)
        deep = self.mlp(emb.flatten(1)).squeeze(-1)
        return self.linear.bias + terms.sum(1) + cin + deep, Penalised((emb,), terms)


@register
class XDeepFM(CTRRecommender[XDeepFMConfig]):
    """xDeepFM: explicit vector-wise interactions (CIN) plus an MLP."""

    name = "xdeepfm"
    config_class = XDeepFMConfig
    module_class = XDeepFMModule
    paper = "Lian et al., xDeepFM: Combining Explicit and Implicit Feature Interactions, KDD 2018"
