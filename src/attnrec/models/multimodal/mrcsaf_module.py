"""MR-CSAF's math on tensors (Li et al., Systems 2025): the adaptive modality selector, the item-graph convolution
over the selector-weighted modality graphs, the cross-self-attention fusion, the per-modality user-item propagation
and the losses. Equation numbers are the paper's; ``docs/models/mrcsaf.md`` maps each one to the code and gives the
choices made where the paper is vague. The module knows no ids: the estimator (``mrcsaf.py``) builds the graphs.

Shapes: I items, U users, M modalities, d the embedding size, F_m modality m's raw feature size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from attnrec.data.batches import PairwiseBatch
from attnrec.errors import ConfigError
from attnrec.models.layers.diagnostics import mean_abs_cosine
from attnrec.models.multimodal.base import MultimodalModule
from attnrec.models.multimodal.freedom import FreedomConfig
from attnrec.models.topk.bpr import bpr_loss, init_embedding

Variant = Literal["full", "selector_only", "csa_only"]
Attention = Literal["knn", "full"]


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
        acc: torch.Tensor = self.hidden.bias
        offset = 0
        for m, x in enumerate(parts):
            h = x @ w[:, offset : offset + x.shape[1]].T
            acc = acc + (h if scales is None else h * scales[m].unsqueeze(1))
            offset += x.shape[1]
        if offset != w.shape[1]:
            raise ConfigError(f"modality selector built for {w.shape[1]} input features, got {offset}")
        return torch.softmax(self.out(torch.relu(acc)), dim=-1)


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

    def attend_all(
        self, e: Sequence[torch.Tensor], neighbours: Sequence[Neighbours] | None
    ) -> list[torch.Tensor]:
        """``out[o]`` (I, M, d): row i, column m is softmax(Q_m K_oᵀ/√d) V_o at item i — every query modality m
        against key modality o (o = m: the self-attention of eq. 16; o ≠ m: the cross-attention of eqs. 10-13).

        With knn attention the keys and values of modality o are never formed per neighbour: q_m · (W_K e_j) =
        (q_m W_K) · e_j and Σ_j a_ij W_V e_j = W_V Σ_j a_ij e_j, so one gather of e_o at the neighbours (I, K, d)
        serves the M query modalities, and one batched product per key modality scores them all.
        """
        q = [self.query[m](x) for m, x in enumerate(e)]
        out = []
        for o, x in enumerate(e):
            if self.attention == "full":
                k, v = self.key[o](x), self.value[o](x)
                out.append(torch.stack([attend_full(qm, k, v) for qm in q], dim=1))
                continue
            if neighbours is None:
                raise ConfigError("knn attention needs the modality graphs' neighbour lists")
            idx, mask = neighbours[o]
            gathered = torch.index_select(x, 0, idx.reshape(-1)).view(*idx.shape, -1)  # (I, K, d)
            folded = torch.stack([qm @ self.key[o].weight for qm in q], dim=1)  # (I, M, d)
            scores = torch.bmm(folded, gathered.transpose(1, 2)) / math.sqrt(self.dim)  # (I, M, K)
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
            mixed = torch.bmm(torch.softmax(scores, dim=-1), gathered)  # (I, M, d)
            out.append(self.value[o](mixed))
        return out

    def forward(
        self, e: Sequence[torch.Tensor], neighbours: Sequence[Neighbours] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``e``: M tensors (I, d); ``neighbours``: per modality its graph's (indices, mask) (knn attention only).

        Returns the fused ė_m (M × (I, d)) and the cross-attention outputs Δe_m (M × (I, d), the mean over the
        other modalities; zeros with one modality) that the |cos(X, X')| diagnostic compares with e_m.
        """
        if len(e) != self.n_modalities:
            raise ConfigError(f"cross-self-attention built for {self.n_modalities} modalities, got {len(e)}")
        att = self.attend_all(e, neighbours)
        fused, cross_out = [], []
        for m, x in enumerate(e):
            others = [o for o in range(len(e)) if o != m]
            cross = torch.zeros_like(x)
            for o in others:
                cross = cross + att[o][:, m]  # eqs. 10-13
            if others:
                cross = cross / len(others)
            c = x + cross  # eqs. 14-15
            tilde = x + att[m][:, m]  # eqs. 16-17
            # eq. 18, W [c ; ẽ] + b as W_c c + W_ẽ ẽ + b (no concatenated copy)
            w = self.fuse.weight
            fused.append(F.linear(c, w[:, : self.dim], self.fuse.bias) + tilde @ w[:, self.dim :].T)
            cross_out.append(cross)
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
    edge = (weights[local] * vals.T).sum(-1)  # S_ij = Σ_m ω_im S̃^m_ij per stored edge
    out = x.new_zeros(weights.shape[0], x.shape[1])
    return out.index_add(0, local, edge.unsqueeze(1) * x[dst])


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
    O(I²) time); ``selector_hidden``: the selector's hidden width (the paper's d_hidden).
    """

    variant: Variant = "full"
    attention: Attention = "knn"
    selector_hidden: int = Field(16, ge=1)
    #: the paper's ω of eq. 29 (its Figure 5: 1e-5 best on every dataset)
    reg_weight: float = Field(1e-5, ge=0.0)


class MRCSAFModule(MultimodalModule):
    """MR-CSAF on the family's shared state (features, projections, graphs as buffers; the user-item graph).

    The ID tables are per modality, side by side: ``user`` (U, M·d) holds e_U^m in columns m·d … (m+1)·d and
    ``item`` (I, M·d) holds e^m likewise (Xavier). ``graph_values`` (M, nnz) are the M normalised modality graphs
    S̃_m; the selector (eqs. 4-5) and the fusion (eqs. 8-18) are present as the variant asks.
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
        self.item = nn.Embedding(self.n_items, width)
        init_embedding(self.user.weight, "xavier", c.init_std)
        init_embedding(self.item.weight, "xavier", c.init_std)
        in_dim = sum(self.feature(m).shape[1] for m in self.modalities)
        self.selector = (
            ModalitySelector(in_dim, n_mod, c.selector_hidden) if c.variant != "csa_only" else None
        )
        self.fusion = (
            CrossSelfAttentionFusion(c.dim, n_mod, c.attention) if c.variant != "selector_only" else None
        )
        self.fixed_weights = torch.tensor([float(w) for w in fixed_weights])
        self._neighbours: list[Neighbours] | None = None
        self._inv_norms: list[torch.Tensor] | None = None

    def _apply(self, fn: Any, recurse: bool = True) -> MRCSAFModule:
        out = super()._apply(fn, recurse)
        self.fixed_weights, self._neighbours, self._inv_norms = fn(self.fixed_weights), None, None
        return out  # type: ignore[return-value]

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._neighbours = self._inv_norms = None  # the graph and feature buffers may change
        super()._load_from_state_dict(*args, **kwargs)

    # ---------------------------------------------------------------- the pieces
    def modality_weights(self, rows: torch.Tensor | None = None, chunk: int = 8192) -> torch.Tensor:
        """ω per item (eqs. 4-5) for ``rows`` (or every item, in chunks): (R, M), rows summing to one; the fixed
        weights repeated when the selector is off. The selector reads each modality's features scaled to unit
        length (the geometry the graphs of eq. 2 are built from), concatenated (eq. 4)."""
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
        return self.selector(parts, [self.inverse_norms()[m][rows] for m in range(self.n_modalities)])

    def inverse_norms(self) -> list[torch.Tensor]:
        """Per modality 1/‖x_i‖ (I,) (0 for an all-zero row): the selector's unit-length scaling, computed once."""
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

    def fused_items(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """ė_m (eq. 18) and the cross-attention outputs Δe_m; with the fusion off ė_m = e_m and no Δe."""
        e = self.modality_tables(self.item.weight)
        if self.fusion is None:
            return e, []
        return self.fusion(e, self.neighbours() if self.config.attention == "knn" else None)

    def item_graph_part(
        self, rows: torch.Tensor | None = None, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """h = [h_1 | … | h_M] (eq. 7 after ``n_mm_layers`` layers on S from h⁰_m = e_m): (R or I, M·d).
        ``weights``: the selector's ω at ``rows`` when the caller has them already."""
        x = self.item.weight
        if self.config.n_mm_layers == 0:
            return x if rows is None else x[rows]
        if rows is not None and self.config.n_mm_layers == 1:
            w_rows = self.modality_weights(rows) if weights is None else weights
            return weighted_graph_conv(self.graph_indices, self.graph_values, w_rows, x, rows)
        w = self.modality_weights()
        for _ in range(self.config.n_mm_layers):
            x = weighted_graph_conv(self.graph_indices, self.graph_values, w, x)
        return x if rows is None else x[rows]

    def propagated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. 19-23 per modality: E⁰_m = [e_U^m ; ė_m], the layer mean over ``n_layers`` products with the
        user-item graph; returns the blocks side by side, users (U, M·d) and ṗ (I, M·d). (One product per d-wide
        block: on a Sports-sized graph that is faster than one product of the M·d-wide table.)"""
        fused, _ = self.fused_items()
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
        users, p_dot = self.propagated()
        return users, p_dot + self.item_graph_part()

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        """Eq. 29: Σ_m BPR(y^m) + ω Σ_m feature-BPR (eqs. 26-28), each BPR term a batch mean. The item-graph part
        and the selector are evaluated on the batch's items only (the same loss and gradients)."""
        users, p_dot = self.propagated()
        pos, neg = batch.pos, batch.neg
        rows, inverse = torch.unique(torch.cat([pos, neg.reshape(-1)]), return_inverse=True)
        pos_at, neg_at = inverse[: len(pos)], inverse[len(pos) :].reshape(neg.shape)
        # each distinct batch item's raw features are gathered once, for the selector and the projections
        need_x = self.selector is not None or self.config.reg_weight > 0
        x_rows = [self.feature(m)[rows] for m in self.modalities] if need_x else []
        w_rows = self.selector_at(rows, x_rows) if self.selector is not None else None
        items = p_dot[rows] + self.item_graph_part(rows, w_rows)  # eq. 24
        md = (self.n_modalities, self.config.dim)
        u = users[batch.users].reshape(-1, *md)
        loss = self._bpr_per_modality(
            u, items[pos_at].reshape(-1, *md), items[neg_at].reshape(*neg.shape, *md)
        )
        if self.config.reg_weight > 0:
            f_rows = [self.proj[m](x) for m, x in zip(self.modalities, x_rows, strict=True)]
            loss = loss + self.config.reg_weight * self._feature_loss(u, f_rows, pos_at, neg_at)
        return loss

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
        ``abs_cos``: per modality name, the mean over items of |cos(e_m, Δe_m)| between the item embedding (the
        cross-attention's query stream) and its cross-attention output (absent when the fusion is off or there
        is a single modality)."""
        out: dict[str, Any] = {"modality_weights": self.modality_weights().cpu().numpy()}
        if self.fusion is not None and self.n_modalities > 1:
            e = self.modality_tables(self.item.weight)
            _, cross = self.fused_items()
            out["abs_cos"] = {
                m: mean_abs_cosine(x, c) for m, x, c in zip(self.modalities, e, cross, strict=True)
            }
        return out
