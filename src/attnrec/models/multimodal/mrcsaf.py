"""MR-CSAF (Li et al., Systems 2025): FREEDOM with an adaptive modality selector and a cross-self-attention fusion.

    S̃_m = D^{-1/2} kNN_k(cos(X_m)) D^{-1/2}                 eqs. 2-3, per modality, built once and frozen
    ω_i = softmax(W₂ ReLU(W₁ [x_i^1; …; x_i^M] + b₁) + b₂)   eqs. 4-5, per item (the selector)
    S   = Σ_m diag(ω_m) S̃_m,   h_m = S^L e_m                 eqs. 6-7
    ė_m = W [c_m ; ẽ_m] + b                                  eqs. 8-18 (cross: c_m; self: ẽ_m)
    e_m: item ID rows (``modal_embedding="id"``, default) or f^m, the projected features (``"features"``)
    [u_m ; ṗ_m] = mean_{l=0..K} Â^l [e_U^m ; ė_m]             eqs. 19-23 (Â pruned per epoch while training)
    p_m = h_m + ṗ_m,   ŝ_ui = Σ_m u_mᵀ p_m                    eqs. 24-25
    L = Σ_m BPR(y^m) + ω Σ_m BPR(u_mᵀ f^m),  f^m = W_m x^m + b_m   eqs. 26-29

The math is in :mod:`attnrec.models.multimodal.mrcsaf_module`; docs/models/mrcsaf.md maps every equation to code
and gives the choices made where the paper is vague. Ablations are the ``variant`` switch: ``selector_only`` (the
paper's AMS) and ``csa_only`` (its CSAF).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.models.base import register
from attnrec.models.layers.item_graph import prune_edges
from attnrec.models.multimodal.base import MMREC_TRAINER, MultimodalRecommender
from attnrec.models.multimodal.freedom import modality_weights
from attnrec.models.multimodal.mrcsaf_module import MRCSAFConfig, MRCSAFModule

__all__ = ["MRCSAF", "MRCSAFConfig", "MRCSAFModule"]


@register
class MRCSAF(MultimodalRecommender):
    """MR-CSAF: selector-weighted frozen modality graphs, cross-self-attention fusion of the per-modality item
    embeddings, per-modality LightGCN on a per-epoch degree-pruned user-item graph."""

    name = "mrcsaf"
    config_class = MRCSAFConfig
    paper = "Li, Zhan, Gao, Wang & Yang 2025, Multimodal Recommendation System Based on Cross Self-Attention Fusion (Systems 13(1), 57)"
    default_trainer: ClassVar[dict[str, Any]] = MMREC_TRAINER
    config: MRCSAFConfig

    def new_module(self, train_matrix: sp.csr_matrix, features: dict[str, np.ndarray] | None) -> MRCSAFModule:
        graph = None
        if features is not None:
            graph = self.stacked_graphs(self.modality_graphs(features))
        names = list(self.modality_dims)
        return MRCSAFModule(
            self.n_users,
            self.n_items,
            self.config,
            self.modality_dims,
            self.ui_adjacency(train_matrix),
            features=features,
            graph=graph,
            graph_shape=self.graph_shape,
            fixed_weights=modality_weights(names, self.config.modality_weights),
        )

    def id_table_shapes(self) -> dict[str, tuple[int, int]]:
        """The ID tables hold the M modality blocks side by side, (rows, M·d); with ``modal_embedding="features"``
        items have no ID table (e^m is the projected features), so a bundle has none to check."""
        width = len(self.modality_dims) * self.config.dim
        shapes = {"user.weight": (self.n_users, width)}
        if self.config.modal_embedding != "features":
            shapes["item.weight"] = (self.n_items, width)
        return shapes

    def epoch_graph(self, train: Interactions, generator: torch.Generator) -> torch.Tensor | None:
        """FREEDOM's degree-sensitive pruning of the user-item graph, resampled every epoch (MR-CSAF builds on it)."""
        if self.config.dropout <= 0:
            return None
        return prune_edges(train.csr(), self.config.dropout, generator)

    def diagnostics(self) -> dict[str, Any]:
        """The selector's per-item modality weights and the cross-attention's |cos(X, X')|: see
        :meth:`MRCSAFModule.diagnostics`; ``modalities`` names the weight columns."""
        if not isinstance(self.module, MRCSAFModule):
            raise ConfigError("mrcsaf is not fitted: call fit() or load a bundle first")
        return {"modalities": list(self.module.modalities), **self.module.diagnostics()}

    def diagnostic_summary(self) -> dict[str, float]:
        """:meth:`diagnostics` as scalars: ``modality_weight[m]`` (the mean over items of modality m's selector
        weight; the fixed weight when the selector is off) and ``abs_cos[m]`` (absent when the fusion is off, with
        one modality, or when undefined: no item with a non-zero cross-attention output)."""
        d = self.diagnostics()
        mean_w = d["modality_weights"].mean(axis=0)
        out = {f"modality_weight[{m}]": float(w) for m, w in zip(d["modalities"], mean_w, strict=True)}
        cos = d.get("abs_cos", {})
        out.update({f"abs_cos[{m}]": float(c) for m, c in cos.items() if not math.isnan(c)})
        return out

    def validator(self, valid: Any, exclude: sp.csr_matrix | None = None) -> Callable[[], dict[str, float]]:
        """Validation under the default protocol, plus :meth:`diagnostic_summary` of the epoch's weights: logged every
        epoch (``valid_modality_weight[m]``, ``valid_abs_cos[m]`` in the run's train log) and kept with the best
        epoch's metrics (``metrics.json``), so a CLI run shows the selector and the cross-attention at work."""
        base = super().validator(valid, exclude)

        def run() -> dict[str, float]:
            metrics = base()
            return {**metrics, **self.diagnostic_summary()}

        return run
