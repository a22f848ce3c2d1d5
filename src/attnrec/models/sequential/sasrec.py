"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018).

    E⁰_t = √d · e_{s_t} + p_t                      item embedding (shared with the output) + learned position
    Eᵏ   = Block_k(Eᵏ⁻¹)                            causal self-attention + point-wise FFN, pre-LayerNorm
    F_t  = LN(E^K_t)                                the state after item t
    r_{t,i} = ⟨F_t, e_i⟩                            the score of item i as the item at t + 1

On cross-domain data the model reads the mixed sequence (both domains in time order) and predicts the next item
whatever its domain (negatives from the target's own domain); with ``domain="A"`` it reads only that domain's
view (the single-domain baselines "SASRec A only" / "B only"). docs/models/sasrec.md maps every line to code.
"""

from __future__ import annotations

import torch

from attnrec.data.sequences import Sequences
from attnrec.errors import ConfigError
from attnrec.models.base import register
from attnrec.models.sequential.base import (
    SequentialConfig,
    SequentialModule,
    SequentialRecommender,
    backbone_encoder,
)


class SASRecConfig(SequentialConfig):
    """SASRec options (the backbone fields of :class:`SequentialConfig`); ``domain``: read only that domain's
    items (None: the whole, mixed sequence)."""

    domain: str | None = None


class SASRecModule(SequentialModule):
    """One :class:`SequenceEncoder` over the item sequence; one state per position (domain-agnostic, D' = 1)."""

    def __init__(self, n_items: int, config: SASRecConfig, n_domains: int) -> None:
        super().__init__(n_items, config, n_domains)
        self.encoder = backbone_encoder(config)

    def states(self, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.item(items), items > 0)[:, :, None]


@register
class SASRec(SequentialRecommender[SASRecConfig]):
    """Causal self-attention over the user's item sequence; the next item is scored by a dot product with the
    state after the latest item."""

    name = "sasrec"
    config_class = SASRecConfig
    paper = "Kang & McAuley 2018, Self-Attentive Sequential Recommendation (ICDM)"

    def new_module(self, n_items: int, n_domains: int) -> SASRecModule:
        return SASRecModule(n_items, self.config, n_domains)

    def check_domains(self, names: tuple[str, ...]) -> None:
        d = self.config.domain
        if d is not None and d not in names:
            raise ConfigError(f"sasrec domain {d!r}: the data has domains {list(names)}")

    def input_sequences(self, seqs: Sequences) -> Sequences:
        return seqs if self.config.domain is None else seqs.view(self.config.domain)
