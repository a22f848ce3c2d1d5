"""MR-CSAF's math on tensors (Li et al., Systems 2025): the adaptive modality selector, the item-graph convolution
over the selector-weighted modality graphs, the cross-self-attention fusion, the per-modality user-item propagation
and the losses. Equation numbers are the paper's; ``docs/models/mrcsaf.md`` maps each one to the code and gives the
choices made where the paper is vague. The module knows no ids: the estimator (``mrcsaf.py``) builds the graphs.

Shapes: I items, U users, M modalities, d the embedding size, F_m modality m's raw feature size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import scipy.sparse as sp
import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn
from torch.nn import functional as F

from attnrec.data.batches import PairwiseBatch
from attnrec.errors import ConfigError
from attnrec.models.layers.diagnostics import mean_abs_cosine
from attnrec.models.multimodal.base import MultimodalModule
from attnrec.models.multimodal.freedom import FreedomConfig
from attnrec.models.multimodal.mrcsaf_ops import (
    knn_attention,
    local_propagate_mean,
    plan_local_propagation,
    to_scipy,
)
from attnrec.models.topk.bpr import bpr_loss, init_embedding

Variant = Literal["full", "selector_only", "csa_only"]
Attention = Literal["knn", "full"]
FusionScope = Literal["exact", "batch"]
ModalEmbedding = Literal["id", "features", "id+features"]


# --------------------------------------------------------------------------------------------- selector


class ModalitySelector(nn.Module):
    """Eqs. 4-5: ω_i = softmax(W₂ σ(W₁ e_i + b₁) + b₂) over the M modalities, σ = ReLU; rows sum to one."""

    def __init__(self, in_dim: int, n_modalities: int, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, n_modalities)

    def forward(
        self, parts: Sequence[torch.Tensor], scales: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Weights (R, M) of R items from their modality features ``parts`` (M × (R, F_m)), each row scaled by
        ``scales`` (M × (R,)) if given: ``hidden`` is applied to the concatenation [s_1 x_1; …; s_M x_M] (eq. 4)
        without building it, as Σ_m s_m (x_m W₁_mᵀ) over W₁'s column blocks (one less copy of R × Σ F_m)."""
        w = self.hidden.weight
        acc: torch.Tensor | None = None
        offset = 0
        for m, x in enumerate(parts):
            h = x @ w[:, offset : offset + x.shape[1]].T
            h = h if scales is None else h * scales[m].unsqueeze(1)
            acc = h if acc is None else acc + h
            offset += x.shape[1]
        if offset != w.shape[1] or acc is None:
            raise ConfigError(f"modality selector built for {w.shape[1]} input features, got {offset}")
        return self.head(acc)

    def head(self, pre: torch.Tensor) -> torch.Tensor:
        """ω from the first layer's product W₁ e_i without its bias (R, hidden): softmax(W₂ σ(· + b₁) + b₂)."""
        return torch.softmax(self.out(torch.relu(pre + self.hidden.bias)), dim=-1)


# --------------------------------------------------------------------------------------------- attention


def attend_full(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(Q Kᵀ / √d) V over every item (eqs. 10-13, 16): (I, d) each -> (I, d).

    Time O(I²·d) per call. Through ``scaled_dot_product_attention``: on a GPU its fused kernels keep the (I, I)
    weights out of memory, but on the CPU a training step keeps them for the backward pass (O(I²) memory; several
    GiB at 18k items, BENCHMARKS.md "Multimodal efficiency"). For small item sets, or as the paper-literal check.
    """
    return F.scaled_dot_product_attention(q[None], k[None], v[None])[0]


def attend_knn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    neighbours: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same softmax attention restricted to each item's graph neighbours: row i attends over the keys and
    values of ``neighbours[i]`` (I, K) only, where ``mask`` (I, K) is True (padding is False; every row needs one
    True). (I, d) each -> (I, d); time and memory O(I·K·d).

    With ``neighbours`` listing every item in each row this equals :func:`attend_full` (tested).
    """
    scores = torch.einsum("id,ikd->ik", q, k[neighbours]) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.einsum("ik,ikd->id", weights, v[neighbours])


#: neighbour lists of one modality graph: indices (I, K) and validity mask (I, K)
Neighbours = tuple[torch.Tensor, torch.Tensor]


def _linear(layers: nn.ModuleList | nn.ModuleDict, key: int | str) -> nn.Linear:
    """``layers[key]``, typed: its weight and bias are read directly where products are folded."""
    layer = layers[key]  # type: ignore[index]
    assert isinstance(layer, nn.Linear)
    return layer


class CrossSelfAttentionFusion(nn.Module):
    """Eqs. 8-18 for M ≥ 1 modalities.

    Per modality m: Q_m = e_m W_Q^m, K_m = e_m W_K^m, V_m = e_m W_V^m (eqs. 8-9, no bias: the paper has none).
    Cross (eqs. 10-15): c_m = e_m + mean over m' ≠ m of softmax(Q_m K_m'ᵀ/√d) V_m' — modality m's queries read
    the other modalities; with two modalities this is exactly the paper's pair, with more the mean keeps the
    residual's scale independent of M (with one, c_m = e_m). Self (eqs. 16-17): ẽ_m = e_m + softmax(Q_m K_mᵀ/√d) V_m.
    Fusion (eq. 18): ė_m = W [c_m ; ẽ_m] + b with one W (d × 2d) shared by the modalities, as the paper writes it.

    ``attention="knn"`` restricts every softmax to the key modality's kNN graph neighbours of the item (the
    modality graphs of eq. 3); ``"full"`` attends over all items as the equations are written.
    """

    def __init__(self, dim: int, n_modalities: int, attention: Attention) -> None:
        super().__init__()
        self.dim, self.n_modalities, self.attention = dim, n_modalities, attention
        self.query = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(n_modalities))
        self.key = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(n_modalities))
        self.value = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(n_modalities))
        self.fuse = nn.Linear(2 * dim, dim)

    def mix_all(
        self,
        e: Sequence[torch.Tensor],
        neighbours: Sequence[Neighbours] | None,
        rows: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """``out[o]`` (R, M, d): row r, column m is softmax(Q_m K_oᵀ/√d) e_o at item ``rows[r]`` (every item when
        ``rows`` is None) — the attention of query modality m over key modality o (o = m: the self-attention of
        eq. 16; o ≠ m: the cross-attention of eqs. 10-13), applied to e_o before W_V (which is linear, so
        ``value[o]`` of this is softmax(·) V_o). Keys range over all items (or their neighbours), so a row's output
        equals that row of the all-items result.

        With knn attention keys are never formed per neighbour: q_m · (W_K e_j) = (e_m W_Q^mᵀ W_K^o) · e_j, one
        product of e_m's rows with the d × M·d matrix [W_Q^mᵀ W_K^o]_o/√d per query modality, and one gather of e_o
        at the neighbours (R, K, d) serves the M query modalities
        (:func:`~attnrec.models.multimodal.mrcsaf_ops.knn_attention`).
        """
        x_r = list(e) if rows is None else [torch.index_select(x, 0, rows) for x in e]
        n_mod = len(e)
        if self.attention == "full":
            q = [self.query[m](x) for m, x in enumerate(x_r)]
            return [
                torch.stack([attend_full(qm, self.key[o](x), x) for qm in q], dim=1) for o, x in enumerate(e)
            ]
        if neighbours is None:
            raise ConfigError("knn attention needs the modality graphs' neighbour lists")
        wk = torch.cat([_linear(self.key, o).weight for o in range(n_mod)], dim=1) / math.sqrt(self.dim)
        folded = torch.stack(  # (R, M, M·d): query modality m against every key modality
            [x @ (_linear(self.query, m).weight.T @ wk) for m, x in enumerate(x_r)], dim=1
        )
        out = []
        for o, x in enumerate(e):
            idx, mask = neighbours[o]
            if rows is not None:
                idx, mask = idx[rows], mask[rows]
            qo = folded[:, :, o * self.dim : (o + 1) * self.dim]  # (R, M, d)
            out.append(knn_attention(qo, x, idx, None if bool(mask.all()) else mask, scaled=True))
        return out

    def attend_all(
        self,
        e: Sequence[torch.Tensor],
        neighbours: Sequence[Neighbours] | None,
        rows: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """``out[o]`` (R, M, d): :meth:`mix_all` with W_V applied, softmax(Q_m K_oᵀ/√d) V_o (eqs. 12-13, 16)."""
        return [self.value[o](mix) for o, mix in enumerate(self.mix_all(e, neighbours, rows))]

    def forward(
        self,
        e: Sequence[torch.Tensor],
        neighbours: Sequence[Neighbours] | None = None,
        rows: torch.Tensor | None = None,
        *,
        cross: bool = True,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``e``: M tensors (I, d); ``neighbours``: per modality its graph's (indices, mask) (knn attention only);
        ``rows``: the items to fuse (None: all), attending over all items as the all-items result does.

        Returns the fused ė_m (M × (R, d)) and, if ``cross``, the cross-attention outputs Δe_m (M × (R, d), the
        mean over the other modalities; zeros with one modality) that the |cos(X, X')| diagnostic compares with
        e_m (else an empty list).

        Eqs. 14-18 are linear after the softmax, so ė_m = W_c c_m + W_ẽ ẽ_m + b is applied as one product
        [e_m | mix_1m | … | mix_Mm] B_m + b with B_m = [(W_c + W_ẽ)ᵀ; (W_c W_V^o)ᵀ/(M−1) for o ≠ m; (W_ẽ W_V^m)ᵀ]
        (W = [W_c | W_ẽ], the mix_om of :meth:`mix_all`): the same ė_m with no c_m, ẽ_m or V_o formed.
        """
        if len(e) != self.n_modalities:
            raise ConfigError(f"cross-self-attention built for {self.n_modalities} modalities, got {len(e)}")
        mix = self.mix_all(e, neighbours, rows)
        n_mod, d = len(e), self.dim
        w_c, w_t = self.fuse.weight[:, :d], self.fuse.weight[:, d:]
        fused, cross_out = [], []
        for m, x in enumerate(e if rows is None else [torch.index_select(t, 0, rows) for t in e]):
            blocks = [(w_c + w_t).T]
            for o in range(n_mod):
                wv = _linear(self.value, o).weight
                blocks.append(wv.T @ w_t.T if o == m else wv.T @ w_c.T / (n_mod - 1))
            stacked = torch.cat([x] + [mix[o][:, m] for o in range(n_mod)], dim=1)  # (R, (M+1)·d)
            fused.append(torch.addmm(self.fuse.bias, stacked, torch.cat(blocks)))  # eqs. 14-18
            if cross:  # eqs. 10-13: Δe_m, the mean over o ≠ m of softmax(Q_m K_oᵀ/√d) V_o
                delta = torch.zeros_like(x)
                for o in range(n_mod):
                    if o != m:
                        delta = delta + self.value[o](mix[o][:, m]) / (n_mod - 1)
                cross_out.append(delta)
        return fused, cross_out


# --------------------------------------------------------------------------------------------- item graph


def weighted_graph_conv(
    indices: torch.Tensor,
    values: torch.Tensor,
    weights: torch.Tensor,
    x: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """One layer of eq. 7 on S = Σ_m diag(ω_m) S̃_m (eq. 6 with per-item weights: row i of every S̃_m is scaled by
    item i's own ω_im): returns (S x)[rows], differentiable in ``weights`` and ``x``.

    ``indices`` (2, nnz) and ``values`` (M, nnz): the M modality graphs on one sparsity pattern (``union_values``);
    ``weights`` (len(rows), M) for the requested ``rows`` (sorted, unique) or (I, M) with ``rows`` None; ``x``
    (I, D). Only edges leaving the requested rows are touched, so a training step costs O(batch items × k × D).
    """
    src, dst = indices[0], indices[1]
    if rows is None:
        local, keep = src, None
    else:
        pos = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        pos[rows] = torch.arange(rows.numel(), device=x.device)
        local = pos[src]
        keep = local >= 0
        local, dst = local[keep], dst[keep]
    vals = values if keep is None else values[:, keep]
    edge = (torch.index_select(weights, 0, local) * vals.T).sum(-1)  # S_ij = Σ_m ω_im S̃^m_ij per stored edge
    out = x.new_zeros(weights.shape[0], x.shape[1])
    # index_select, not x[dst]: its backward is an index_add, where advanced indexing's accumulating index_put
    # is several times slower on the CPU
    return out.index_add(0, local, edge.unsqueeze(1) * torch.index_select(x, 0, dst))


def neighbour_lists(indices: torch.Tensor, values: torch.Tensor, n_items: int) -> Neighbours:
    """The edges of one graph (``values`` (nnz,) on ``indices`` (2, nnz) sorted by row; zeros are no edge) as
    padded per-row lists: (I, K) column indices and their mask, K the largest row length. Padding points at the
    row's own item and is masked out."""
    keep = values != 0
    src, dst = indices[0][keep], indices[1][keep]
    counts = torch.bincount(src, minlength=n_items)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(src.numel(), device=src.device) - starts[src]
    idx = torch.arange(n_items, device=src.device).unsqueeze(1).repeat(1, width)
    mask = torch.zeros(n_items, width, dtype=torch.bool, device=src.device)
    idx[src, slot] = dst
    mask[src, slot] = True
    return idx, mask


# --------------------------------------------------------------------------------------------- the model


class MRCSAFConfig(FreedomConfig):
    """mrcsaf's options: FREEDOM's (``n_layers`` user-item layers, ``n_mm_layers`` item-graph layers, ``dropout``
    edge pruning, ``reg_weight`` = ω of eq. 29, ``modality_weights`` = the fixed weights the ``csa_only`` variant
    uses in place of the selector) plus:

    ``variant``: ``"full"`` (selector + cross-self-attention fusion, the paper's MR-CSAF), ``"selector_only"``
    (the paper's AMS ablation: ė_m = e_m), ``"csa_only"`` (the paper's CSAF ablation: fixed modality weights);
    ``attention``: ``"knn"`` (each softmax over the key modality's kNN neighbours) or ``"full"`` (over all items,
    O(I²) time); ``selector_hidden``: the selector's hidden width (the paper's d_hidden); ``fusion_scope``
    (training only): ``"exact"`` fuses every item the batch's loss reads, the same gradients as fusing all items;
    ``"batch"`` fuses, with gradient, only the batch's own items and reads every other item's ė from a table
    refreshed without gradient at the start of each epoch (historical embeddings: faster, not the same step;
    docs/models/mrcsaf.md).

    Two opt-in departures from the paper (docs/models/mrcsaf.md, "Options that depart from the paper"); their
    defaults are the paper's model. ``fused_norm``: None (the paper: ė_m = W [c_m ; ẽ_m] + b as it comes), or a
    length r > 0 to which every item's fused vector ė_m is rescaled, r · ė_m / ‖ė_m‖, before the user-item
    propagation (eq. 19): the fusion layer can then no longer grow ė and drown the item-graph term h of eq. 24.
    ``fusion_bias_init``: how eq. 18's bias b starts, ``"uniform"`` (PyTorch's U(±1/√(2d)); the paper does not
    say) or ``"zero"``. Both act on the fusion module, so the ``selector_only`` variant (no fusion) refuses them.

    ``selector_input``: what the selector's first layer reads (eq. 4), ``"raw"`` (the paper: the modality features
    concatenated as they are) or ``"unit"`` (each modality's row scaled to unit length first, so a wide or
    large-valued modality cannot swamp W₁; the default before 2026-12-06, issue 15's audit). The ``csa_only``
    variant has no selector and ignores it (it is not refused there: older ``csa_only`` bundles load with
    ``"unit"``, the value they were trained under).

    ``modal_embedding``: what the item's "modal embedding" e^m of eqs. 7, 8-9 and 14-17 (and so ė of eqs. 18-19)
    is — the paper uses the one symbol for the raw features (eqs. 2, 4, 27) and for a d-wide input (eqs. 7-9).
    ``"id"`` (the default, the reading of every result before 2026-12-06 session 19): a learned d-wide ID table
    per modality, FREEDOM's item embedding. ``"features"``: the modality's features brought to d dims by eq. 27's
    projection, e^m = f^m = W_m x^m + b_m (the same layer the feature loss of eq. 28 reads); items then have no
    ID table (the paper names none), only the users do. ``"id+features"``: e^m = ID row + f^m, a hybrid of the
    two readings (not the printed equations). docs/models/mrcsaf.md, "What e^m is", gives the reasons. Every
    variant takes it (``selector_only``: ė_m = e_m, so the features are propagated as they are).
    """

    variant: Variant = "full"
    attention: Attention = "knn"
    fusion_scope: FusionScope = "exact"
    selector_hidden: int = Field(16, ge=1)
    #: the paper's ω of eq. 29 (its Figure 5: 1e-5 best on every dataset)
    reg_weight: float = Field(1e-5, ge=0.0)
    fused_norm: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    fusion_bias_init: Literal["uniform", "zero"] = "uniform"
    selector_input: Literal["raw", "unit"] = "raw"
    modal_embedding: ModalEmbedding = "id"
    #: bundles saved before ``selector_input`` existed were trained with the unit-length scaling
    bundle_legacy: ClassVar[dict[str, Any]] = {"selector_input": "unit"}

    @field_validator("fused_norm", "fusion_bias_init")
    @classmethod
    def _needs_the_fusion(cls, value: Any, info: ValidationInfo) -> Any:
        default = cls.model_fields[str(info.field_name)].default
        if info.data.get("variant") == "selector_only" and value != default:
            raise ValueError(
                f"{info.field_name}={value!r} acts on the cross-self-attention fusion, which variant "
                f"'selector_only' does not build (leave it at {default!r})"
            )
        return value


class MRCSAFModule(MultimodalModule):
    """MR-CSAF on the family's shared state (features, projections, graphs as buffers; the user-item graph).

    The ID tables are per modality, side by side: ``user`` (U, M·d) holds e_U^m in columns m·d … (m+1)·d and
    ``item`` (I, M·d) holds the item ID rows likewise (Xavier); with ``modal_embedding="features"`` there is no
    ``item`` table (e^m is the projected features, :meth:`modal_embeddings`). ``graph_values`` (M, nnz) are the M
    normalised modality graphs S̃_m; the selector (eqs. 4-5) and the fusion (eqs. 8-18) are present as the variant
    asks.
    """

    config: MRCSAFConfig

    def __init__(self, *args: Any, fixed_weights: Sequence[float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c, n_mod = self.config, len(self.modalities)
        if len(fixed_weights) != n_mod:
            raise ConfigError(f"mrcsaf: {n_mod} modalities but {len(fixed_weights)} fixed weights")
        self.n_modalities = n_mod
        width = n_mod * c.dim
        self.user = nn.Embedding(self.n_users, width)
        has_ids = c.modal_embedding != "features"
        if has_ids:
            self.item = nn.Embedding(self.n_items, width)
        else:
            del self.item  # the base's d-wide table: e^m is the projected features, items have no ID rows
        init_embedding(self.user.weight, "xavier", c.init_std)  # (random draws in the order of before)
        if has_ids:
            init_embedding(self.item.weight, "xavier", c.init_std)
        in_dim = sum(self.feature(m).shape[1] for m in self.modalities)
        self.selector = (
            ModalitySelector(in_dim, n_mod, c.selector_hidden) if c.variant != "csa_only" else None
        )
        self.fusion = (
            CrossSelfAttentionFusion(c.dim, n_mod, c.attention) if c.variant != "selector_only" else None
        )
        if self.fusion is not None and c.fusion_bias_init == "zero":
            nn.init.zeros_(self.fusion.fuse.bias)  # after construction: the default draws no fewer numbers
        self.fixed_weights = torch.tensor([float(w) for w in fixed_weights])
        self._neighbours: list[Neighbours] | None = None
        self._inv_norms: list[torch.Tensor] | None = None
        self._scipy_adj: tuple[torch.Tensor, sp.csr_matrix] | None = None
        self._history: torch.Tensor | None = None  # ė of every item, (I, M·d), for fusion_scope "batch"

    def _apply(self, fn: Any, recurse: bool = True) -> MRCSAFModule:
        out = super()._apply(fn, recurse)
        self.fixed_weights, self._neighbours, self._inv_norms = fn(self.fixed_weights), None, None
        self._scipy_adj = self._history = None
        return out  # type: ignore[return-value]

    def set_train_adj(self, adj: torch.Tensor | None) -> None:
        """The epoch's user-item graph; a new epoch also retires the historical ė table (``fusion_scope`` "batch")."""
        super().set_train_adj(adj)
        self._history = None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._neighbours = self._inv_norms = self._history = None  # the graph and feature buffers may change
        super()._load_from_state_dict(*args, **kwargs)

    # ---------------------------------------------------------------- the pieces
    def modality_weights(self, rows: torch.Tensor | None = None, chunk: int = 8192) -> torch.Tensor:
        """ω per item (eqs. 4-5) for ``rows`` (or every item, in chunks): (R, M), rows summing to one; the fixed
        weights repeated when the selector is off. The selector reads the modality features concatenated (eq. 4),
        each row first scaled to unit length when ``selector_input`` is ``"unit"``."""
        n = self.n_items if rows is None else rows.numel()
        if self.selector is None:
            return self.fixed_weights.to(self.device).expand(n, -1)
        out = []
        for start in range(0, n, chunk):
            idx = torch.arange(start, min(n, start + chunk), device=self.device)
            if rows is not None:
                idx = rows[idx]
            out.append(self.selector_at(idx, [self.feature(m)[idx] for m in self.modalities]))
        return torch.cat(out) if out else self.fixed_weights.new_zeros(0, self.n_modalities)

    def selector_at(self, rows: torch.Tensor, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """The selector's ω (R, M) for items ``rows`` whose raw features ``parts`` (M × (R, F_m)) are gathered."""
        assert self.selector is not None
        if self.config.selector_input == "raw":
            return self.selector(parts)
        return self.selector(parts, [self.inverse_norms()[m][rows] for m in range(self.n_modalities)])

    def inverse_norms(self) -> list[torch.Tensor]:
        """Per modality 1/‖x_i‖ (I,) (0 for an all-zero row): the selector's unit-length scaling
        (``selector_input`` "unit"), computed once."""
        if self._inv_norms is None:
            norms = [self.feature(m).float().norm(dim=1) for m in self.modalities]
            self._inv_norms = [torch.where(n > 0, 1 / n.clamp(min=1e-12), torch.zeros_like(n)) for n in norms]
        return self._inv_norms

    def modality_tables(self, table: torch.Tensor) -> list[torch.Tensor]:
        """A side-by-side (N, M·d) table as its M modality blocks (N, d)."""
        return list(table.split(self.config.dim, dim=1))

    def neighbours(self) -> list[Neighbours]:
        """Per modality graph, its padded neighbour lists (knn attention), built once from the graph buffers."""
        if self._neighbours is None:
            idx, vals = self.graph_indices, self.graph_values
            self._neighbours = [neighbour_lists(idx, vals[m], self.n_items) for m in range(self.n_modalities)]
        return self._neighbours

    def modal_embeddings(self) -> list[torch.Tensor]:
        """e^m of eqs. 7, 8-9 and 14-17 for every item, M × (I, d), as ``modal_embedding`` reads it: ``"id"`` the
        blocks of the item ID table; ``"features"`` the projections f^m = W_m x^m + b_m of eq. 27 (the layers the
        feature loss reads: the BPR terms train them through the item graph, the attention and the propagation);
        ``"id+features"`` the sum of the two (a hybrid). All items: the attention's keys and the item graph's
        neighbours range over them (O(I·d) memory; the projection costs O(I·F_m·d) time per step)."""
        mode = self.config.modal_embedding
        if mode == "id":
            return self.modality_tables(self.item.weight)
        feats = [self.projected(m) for m in self.modalities]
        if mode == "features":
            return feats
        return [x + f for x, f in zip(self.modality_tables(self.item.weight), feats, strict=True)]

    def modal_table(self, e: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """The e^m blocks side by side, (I, M·d): the item ID table itself for ``"id"``, else ``e`` (or
        :meth:`modal_embeddings`) concatenated."""
        if self.config.modal_embedding == "id":
            return self.item.weight
        return torch.cat(list(self.modal_embeddings() if e is None else e), dim=1)

    def fused_items(
        self,
        rows: torch.Tensor | None = None,
        *,
        cross: bool = False,
        e: Sequence[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """ė_m (eq. 18), M × (I, d), or M × (R, d) at the items ``rows`` (the same rows: the attention still ranges
        over all items), and if ``cross`` the cross-attention outputs Δe_m; with the fusion off ė_m = e_m, no Δe.
        ``e``: the e^m of :meth:`modal_embeddings` when the caller has them already.
        With ``fused_norm`` r set (a departure from the paper) each row of ė_m is rescaled to length r; row-wise,
        so the rows at ``rows`` are still those of the all-items result."""
        e = self.modal_embeddings() if e is None else list(e)
        if self.fusion is None:
            return (e if rows is None else [torch.index_select(x, 0, rows) for x in e]), []
        neighbours = self.neighbours() if self.config.attention == "knn" else None
        fused, cross_out = self.fusion(e, neighbours, rows, cross=cross)
        r = self.config.fused_norm
        if r is not None:
            fused = [r * F.normalize(f, dim=1) for f in fused]
        return fused, cross_out

    def item_graph_part(
        self,
        rows: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h = [h_1 | … | h_M] (eq. 7 after ``n_mm_layers`` layers on S from h⁰_m = e_m): (R or I, M·d).
        ``weights``: the selector's ω at ``rows``, ``table``: :meth:`modal_table`, when the caller has them."""
        x = self.modal_table() if table is None else table
        if self.config.n_mm_layers == 0:
            return x if rows is None else x[rows]
        if rows is not None and self.config.n_mm_layers == 1:
            w_rows = self.modality_weights(rows) if weights is None else weights
            return weighted_graph_conv(self.graph_indices, self.graph_values, w_rows, x, rows)
        w = self.modality_weights()
        for _ in range(self.config.n_mm_layers):
            x = weighted_graph_conv(self.graph_indices, self.graph_values, w, x)
        return x if rows is None else x[rows]

    def propagated(self, e: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. 19-23 per modality: E⁰_m = [e_U^m ; ė_m], the layer mean over ``n_layers`` products with the
        user-item graph; returns the blocks side by side, users (U, M·d) and ṗ (I, M·d). (One product per d-wide
        block: on a Sports-sized graph that is faster than one product of the M·d-wide table.) ``e``: the e^m of
        :meth:`modal_embeddings` when the caller has them."""
        fused, _ = self.fused_items(e=e)
        users = self.modality_tables(self.user.weight)
        out = torch.cat(
            [
                self.propagate_ui(torch.cat([u, f], dim=0), self.config.n_layers)
                for u, f in zip(users, fused, strict=True)
            ],
            dim=1,
        )
        return out[: self.n_users], out[self.n_users :]

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users (U, M·d) and items p = h + ṗ (I, M·d, eq. 24): their dot product is Σ_m u_mᵀ p_m (eq. 25
        summed over the modalities), the ranking score."""
        e = self.modal_embeddings()
        users, p_dot = self.propagated(e)
        return users, p_dot + self.item_graph_part(table=self.modal_table(e))

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        """Eq. 29: Σ_m BPR(y^m) + ω Σ_m feature-BPR (eqs. 26-28), each BPR term a batch mean.

        Everything is evaluated where the batch's loss reads it, with the same loss and gradients as the
        all-items form (tested): the propagation of eqs. 19-23 at the batch's users and items only
        (:func:`~attnrec.models.multimodal.mrcsaf_ops.local_propagate_mean`), so the fusion of eqs. 8-18 only at
        the items within ``n_layers`` hops of them; the item graph (eq. 7), the selector (eqs. 4-5) and the
        projections (eq. 27) at the batch's items."""
        pos, neg = batch.pos, batch.neg
        rows, inverse = torch.unique(torch.cat([pos, neg.reshape(-1)]), return_inverse=True)
        pos_at, neg_at = inverse[: len(pos)], inverse[len(pos) :].reshape(neg.shape)
        e = self.modal_embeddings()  # e^m of every item (views of the ID table for "id")
        users, p_dot, user_at = self._propagated_at(batch.users, rows, e)
        w_rows, f_rows = self._batch_features(rows)
        items = p_dot + self.item_graph_part(rows, w_rows, self.modal_table(e))  # eq. 24
        md = (self.n_modalities, self.config.dim)
        u = users[user_at].reshape(-1, *md)
        loss = self._bpr_per_modality(
            u, items[pos_at].reshape(-1, *md), items[neg_at].reshape(*neg.shape, *md)
        )
        if self.config.reg_weight > 0:
            loss = loss + self.config.reg_weight * self._feature_loss(u, f_rows, pos_at, neg_at)
        return loss

    def _propagated_at(
        self, batch_users: torch.Tensor, rows: torch.Tensor, e: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rows of :meth:`propagated` at the distinct users of ``batch_users`` and at the items ``rows``
        (sorted, unique): users (U_b, M·d), ṗ (len(rows), M·d), and each batch user's row among the first.
        ``e``: the e^m of :meth:`modal_embeddings` when the caller has them."""
        users_b, user_at = torch.unique(batch_users, return_inverse=True)
        adj = self.ui_graph()
        if self._scipy_adj is None or self._scipy_adj[0] is not adj:
            self._scipy_adj = (adj, to_scipy(adj))  # once per epoch graph
        targets = torch.cat([users_b, rows + self.n_users]).cpu().numpy()
        plan = plan_local_propagation(
            self._scipy_adj[1], targets, self.config.n_layers, self.n_users, self.device
        )
        at = torch.full((self.n_items,), -1, dtype=torch.long, device=self.device)
        at[plan.items] = torch.arange(plan.items.numel(), device=self.device)
        if self.config.fusion_scope == "batch" and self.fusion is not None:
            # fresh ė (with gradient) at the batch's items, the epoch's historical ė at every other item read
            fused = torch.index_select(self.history(), 0, plan.items)
            fused = fused.index_copy(0, at[rows], torch.cat(self.fused_items(rows, e=e)[0], dim=1))
        else:  # ė at the items the propagation reads
            fused = torch.cat(self.fused_items(plan.items, e=e)[0], dim=1)

        def ego(nodes: torch.Tensor) -> torch.Tensor:  # E⁰ = [e_U ; ė] (eq. 19) at sorted node ids
            split = int((nodes < self.n_users).sum())
            return torch.cat(
                [
                    torch.index_select(self.user.weight, 0, nodes[:split]),
                    torch.index_select(fused, 0, at[nodes[split:] - self.n_users]),
                ]
            )

        out = local_propagate_mean(plan, ego)
        return out[: users_b.numel()], out[users_b.numel() :], user_at

    def history(self) -> torch.Tensor:
        """ė of every item (I, M·d) without gradient, computed at the first training step of an epoch and kept
        for the epoch (``fusion_scope`` "batch")."""
        if self._history is None:
            with torch.no_grad():
                self._history = torch.cat(self.fused_items()[0], dim=1)
        return self._history

    def _batch_features(self, rows: torch.Tensor) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """The selector's ω (eqs. 4-5) and the projections f^m (eq. 27, when ``reg_weight`` > 0) of the items
        ``rows``: each modality's gathered features go through one product with the projection's and the
        selector's first-layer weights side by side (one pass over the wide rows instead of two)."""
        want_f = self.config.reg_weight > 0
        sel = self.selector
        if sel is None and not want_f:
            return None, []
        pre: torch.Tensor | None = None
        f_rows, offset = [], 0
        for m, name in enumerate(self.modalities):
            x = torch.index_select(self.feature(name), 0, rows)
            width = x.shape[1]
            proj = _linear(self.proj, name)
            weights = [proj.weight] if want_f else []
            if sel is not None:
                weights.append(sel.hidden.weight[:, offset : offset + width])
            out = x @ (weights[0] if len(weights) == 1 else torch.cat(weights)).T
            if want_f:
                f_rows.append(out[:, : self.config.feat_dim] + proj.bias)
            if sel is not None:
                h = out[:, -sel.hidden.out_features :]
                if self.config.selector_input == "unit":
                    h = h * self.inverse_norms()[m][rows].unsqueeze(1)
                pre = h if pre is None else pre + h
            offset += width
        return (None if sel is None or pre is None else sel.head(pre)), f_rows

    @staticmethod
    def _bpr_per_modality(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Eq. 26: Σ_m mean −log σ(y^m_up − y^m_un); ``u``, ``p`` (B, M, d), ``n`` (B, M, d) or (B, k, M, d)."""
        pos = (u * p).sum(-1)  # (B, M)
        neg = (u * n).sum(-1) if n.dim() == 3 else (u.unsqueeze(1) * n).sum(-1).transpose(1, 2)
        total = pos.new_zeros(())
        for m in range(u.shape[1]):
            total = total + bpr_loss(pos[:, m], neg[:, m])
        return total

    @staticmethod
    def _feature_loss(
        u: torch.Tensor, f_rows: Sequence[torch.Tensor], pos_at: torch.Tensor, neg_at: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 28: Σ_m mean −log σ(u_mᵀ(f^m_i − f^m_j)), u_m the propagated user block of modality m and
        ``f_rows`` the projections f^m = W_m x^m + b_m (eq. 27) of the batch's distinct items, which ``pos_at``
        and ``neg_at`` index into (the same loss and gradients as projecting every item)."""
        total = u.new_zeros(())
        for m, f in enumerate(f_rows):
            fp, fn = f[pos_at], f[neg_at]
            um = u[:, m]
            s_neg = (um * fn).sum(-1) if fn.dim() == 2 else (um.unsqueeze(1) * fn).sum(-1)
            total = total + bpr_loss((um * fp).sum(-1), s_neg)
        return total

    @torch.no_grad()
    def diagnostics(self) -> dict[str, Any]:
        """``modality_weights``: (I, M) numpy, the selector's ω per item (the fixed weights when it is off);
        ``abs_cos``: per modality name, the mean over items of |cos(e_m, Δe_m)| between the item's modal embedding
        e^m (the cross-attention's query stream: ID rows or projected features, per ``modal_embedding``) and its
        cross-attention output (absent when the fusion is off or there is a single modality)."""
        out: dict[str, Any] = {"modality_weights": self.modality_weights().cpu().numpy()}
        if self.fusion is not None and self.n_modalities > 1:
            e = self.modal_embeddings()
            _, cross = self.fused_items(cross=True, e=e)
            out["abs_cos"] = {
                m: mean_abs_cosine(x, c) for m, x, c in zip(self.modalities, e, cross, strict=True)
            }
        return out
