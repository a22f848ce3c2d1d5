"""gca: a cross-domain sequential model of the SASRec family with gated cross-attention between the domains
(Lee et al., "Cross-attention Secretly Performs Orthogonal Alignment in Recommendation Models", arXiv 2510.09435).

Three SASRec encoders share the item table: a mixed encoder over the user's whole sequence (both domains in
time order) and one encoder per domain over that domain's items only. After each block listed in ``positions``,
each domain's stream X queries the other's Y (both after that block):

    X' = MHA(LN(X), LN(Y), LN(Y))        key j visible to query i iff j happened before i (mixed-sequence time)
    X  ← X + g ⊙ X',   g = act(a),  act ∈ {sigmoid, tanh},  a ∈ {scalar, vector, FFN([X; X'])}

The state that predicts the item after mixed position t for target domain D is the mixed encoder's state at t
plus domain D's encoder state at D's latest item at or before t (zero if none). With every gate closed (tanh,
a = 0) the model is its backbone exactly. docs/models/gca.md maps each line to code and gives the choices.
"""

from __future__ import annotations

from typing import cast

import torch
from pydantic import Field, model_validator
from torch import nn

from attnrec.errors import ConfigError
from attnrec.models.base import register
from attnrec.models.layers.diagnostics import CosineMeter
from attnrec.models.sequential.base import (
    SequentialConfig,
    SequentialModule,
    SequentialRecommender,
    backbone_encoder,
)
from attnrec.models.sequential.layers import (
    GateAct,
    GatedCrossAttention,
    GateForm,
    SequenceEncoder,
    align_to_mixed,
    causal_mask,
    cross_mask,
    domain_view,
)


class GCAConfig(SequentialConfig):
    """gca options on top of the backbone (:class:`SequentialConfig`).

    ``positions``: the blocks (0-based) after which a GCA module pair is inserted (``[]``: the backbone alone,
    the parameter-matched baseline's form); ``gate_act``, ``gate_form`` (``gate_hidden``: the FFN gate's width,
    None = dim), ``gate_init`` (the gate's pre-activation at start), ``layer_norm`` (the LNs inside the module).
    """

    n_blocks: int = Field(3, ge=1)
    positions: list[int] = Field(default_factory=lambda: [1])
    gate_act: GateAct = "sigmoid"
    gate_form: GateForm = "scalar"
    gate_hidden: int | None = Field(None, ge=1)
    gate_init: float = 0.0
    layer_norm: bool = True

    @model_validator(mode="after")
    def _positions_in_range(self) -> GCAConfig:
        bad = [p for p in self.positions if not 0 <= p < self.n_blocks]
        if bad:
            raise ValueError(f"positions {bad} outside the blocks 0..{self.n_blocks - 1}")
        if len(set(self.positions)) != len(self.positions):
            raise ValueError(f"positions {self.positions} repeat a block")
        return self


class GCAModule(SequentialModule):
    """Mixed encoder + one encoder per domain (two domains) + a GatedCrossAttention per (position, query domain).
    States: (B, W, 2, d), one per target domain."""

    def __init__(self, n_items: int, config: GCAConfig, domain_names: tuple[str, ...]) -> None:
        super().__init__(n_items, config, len(domain_names))
        if len(domain_names) != 2:
            raise ConfigError(f"gca needs exactly two domains, got {list(domain_names)}")
        c = config
        self.domain_names = domain_names
        self.positions = sorted(c.positions)

        # the backbone options (init included) apply to every encoder; the GCA modules keep their own init and
        # their gate FFN's ReLU, and take the backbone's LayerNorm eps
        self.mixed = backbone_encoder(c)
        self.domains = nn.ModuleList([backbone_encoder(c), backbone_encoder(c)])
        self.cross = nn.ModuleDict(
            {
                str(p): nn.ModuleList(
                    [
                        GatedCrossAttention(
                            c.dim,
                            c.heads,
                            dropout=c.dropout,
                            layer_norm=c.layer_norm,
                            gate_act=c.gate_act,
                            gate_form=c.gate_form,
                            gate_hidden=c.gate_hidden,
                            gate_init=c.gate_init,
                            eps=c.layer_norm_eps,
                        )
                        for _ in range(2)
                    ]
                )
                for p in self.positions
            }
        )

    def module_name(self, position: int, query_domain: int) -> str:
        """The diagnostic's name of a module: ``"A<-B@1"`` (domain A queries B after block 1)."""
        q, k = self.domain_names[query_domain], self.domain_names[1 - query_domain]
        return f"{q}<-{k}@{position}"

    def states(self, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        mixed = self.mixed(self.item(items), items > 0)
        # trimmed views in training only: in eval a row's scores must not depend on the rows batched with it
        views = [domain_view(items, domains, d, trim=self.training) for d in range(2)]
        real = [v[0] > 0 for v in views]
        self_vis = [causal_mask(r) for r in real]
        cross_vis = [cross_mask(views[d][1], views[1 - d][1]) for d in range(2)]
        encoders = cast(list[SequenceEncoder], list(self.domains))
        xs = [encoders[d].embed(self.item(views[d][0]), real[d]) for d in range(2)]
        for k in range(len(self.mixed.blocks)):
            xs = [encoders[d].blocks[k](xs[d], self_vis[d], real[d]) for d in range(2)]
            if str(k) not in self.cross:
                continue
            pair = cast(list[GatedCrossAttention], list(cast(nn.ModuleList, self.cross[str(k)])))
            updated = []
            for d in range(2):
                x_new, x_prime = pair[d](xs[d], xs[1 - d], cross_vis[d])
                updated.append(x_new * real[d][..., None])
                if self.meters is not None:
                    meter = self.meters.setdefault(self.module_name(k, d), CosineMeter())
                    meter.add(xs[d], x_prime, real[d] & cross_vis[d][:, 0].any(-1))
            xs = updated
        per_domain = [align_to_mixed(encoders[d].finish(xs[d]), domains, d) for d in range(2)]
        return mixed[:, :, None] + torch.stack(per_domain, dim=2)


@register
class GCA(SequentialRecommender[GCAConfig]):
    """Per-domain and mixed SASRec encoders with gated cross-attention between the two domains' streams; each
    item is scored from the state of its own domain."""

    name = "gca"
    config_class = GCAConfig
    paper = (
        "Lee et al. 2025, Cross-attention Secretly Performs Orthogonal Alignment in Recommendation Models "
        "(arXiv 2510.09435)"
    )

    def new_module(self, n_items: int, n_domains: int) -> GCAModule:
        return GCAModule(n_items, self.config, self.domain_names)

    def check_domains(self, names: tuple[str, ...]) -> None:
        if len(names) != 2:
            raise ConfigError(
                f"gca needs cross-domain data with exactly two domains (a 'domain' column), got {list(names)}"
            )
