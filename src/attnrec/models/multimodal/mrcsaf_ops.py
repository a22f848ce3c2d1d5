"""The kernels of mrcsaf's training step: kNN attention with a hand-written backward, and the user-item propagation
evaluated only at the nodes a batch's loss reads.

Both are exact rewrites of what :mod:`attnrec.models.multimodal.mrcsaf_module` computes over every item (same
values and gradients up to float rounding; ``tests/models/multimodal/test_mrcsaf_fast.py`` compares them). Why they
exist: on a Sports-sized set (18k items, 36k users) the all-items form of a training step spends most of its time
in the cross-self-attention over every item and in dense (U + I) × d passes of the propagation, while the loss of
one batch reads only a few thousand user and item rows (BENCHMARKS.md, "Multimodal efficiency").

Shapes: R query rows, K neighbours per row, M query modalities, d the embedding size, N = U + I graph nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.models.layers.graph import sparse_to_torch
from attnrec.models.layers.item_graph import spmm

# --------------------------------------------------------------------------------------------- kNN attention


class _KnnAttention(torch.autograd.Function):
    """out[r, m] = Σ_k softmax_k(q[r, m] · x[idx[r, k]]) x[idx[r, k]] with masked neighbours left out.

    Autograd's own backward of the batched products goes through transposed (strided) views, for which the CPU's
    batched matmul falls back to one small product per row (10× slower at (R, 10, 2) shapes); this backward lays
    every operand out contiguously, and the neighbour gather (R, K, d) is made once and shared by both passes.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, q: torch.Tensor, x: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        rows, k = idx.shape
        g = torch.index_select(x, 0, idx.reshape(-1)).view(rows, k, x.shape[1])  # (R, K, d)
        s = torch.bmm(g, q.transpose(1, 2).contiguous())  # (R, K, M)
        if mask is not None:
            s.masked_fill_(~mask.unsqueeze(2), float("-inf"))
        a = torch.softmax(s, dim=1)
        ctx.save_for_backward(q, g, a, idx)
        ctx.n_rows = x.shape[0]
        return torch.bmm(a.transpose(1, 2).contiguous(), g)  # (R, M, d)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, dout: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        q, g, a, idx = ctx.saved_tensors
        dout = dout.to(g.dtype).contiguous()  # under autocast the incoming gradient may be half precision
        da = torch.bmm(g, dout.transpose(1, 2).contiguous())  # (R, K, M)
        ds = a * (da - (a * da).sum(1, keepdim=True))  # softmax backward over K; masked entries stay 0
        dq = torch.bmm(ds.transpose(1, 2).contiguous(), g) if ctx.needs_input_grad[0] else None
        dx = None
        if ctx.needs_input_grad[1]:
            dg = torch.bmm(torch.cat([a, ds], dim=2), torch.cat([dout, q], dim=1))  # (R, K, d)
            dx = dout.new_zeros(ctx.n_rows, g.shape[2]).index_add_(
                0, idx.reshape(-1), dg.view(-1, g.shape[2])
            )
        return dq, dx, None, None


def knn_attention(
    q: torch.Tensor,
    x: torch.Tensor,
    idx: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scaled: bool = False,
) -> torch.Tensor:
    """softmax(q xᵀ/√d) x over each row's neighbours: ``q`` (R, M, d) queries (M per row, already folded with the
    key projection; ``scaled``: already divided by √d), ``x`` (I, d) the key/value table, ``idx`` (R, K)
    neighbour rows of ``x``, ``mask`` (R, K) True where a neighbour is real (None: all are; every row needs one).
    Returns (R, M, d); differentiable in ``q`` and ``x``. Equal to
    :func:`attnrec.models.multimodal.mrcsaf_module.attend_knn` per query modality."""
    q = q if scaled else q / math.sqrt(q.shape[-1])
    if torch.is_autocast_enabled(q.device.type):
        # mixed precision: the kernel runs in float32 (its hand-written backward would otherwise meet a bf16
        # gradient against float32 saved tensors); the casts are differentiable, so q and x get their own dtypes
        with torch.autocast(q.device.type, enabled=False):
            return _KnnAttention.apply(q.float(), x.float(), idx, mask)  # type: ignore[no-any-return]
    return _KnnAttention.apply(q, x, idx, mask)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------- local propagation


@dataclass(frozen=True)
class LocalPropagation:
    """What the layer mean of the user-item propagation needs at a set of target nodes.

    ``nodes[j]`` (sorted node ids, users first) is T_j: T_0 the targets, T_{j+1} the neighbours of T_j;
    ``mats[j]`` the rows T_j × columns T_{j+1} of the adjacency as (CSR, its transpose) torch tensors (None when
    T_{j+1} is empty); ``items`` the sorted item ids (0-based) found in any T_j, whose item-side input rows the
    propagation reads.
    """

    nodes: list[torch.Tensor]
    mats: list[tuple[torch.Tensor, torch.Tensor] | None]
    items: torch.Tensor


def to_scipy(adj: torch.Tensor) -> sp.csr_matrix:
    """A torch sparse CSR (N, N) as a scipy CSR (float32), for the per-step row slicing."""
    return sp.csr_matrix(
        (adj.values().cpu().numpy(), adj.col_indices().cpu().numpy(), adj.crow_indices().cpu().numpy()),
        shape=tuple(adj.shape),
    )


def plan_local_propagation(
    adj: sp.csr_matrix, targets: np.ndarray, n_layers: int, n_users: int, device: torch.device
) -> LocalPropagation:
    """The node sets and sub-matrices for :func:`local_propagate_mean` at ``targets`` (sorted unique node ids,
    users 0 … U−1 then items U …) on the adjacency ``adj`` (N, N): T_{j+1} = the neighbours of T_j, j < n_layers.
    Cost O(edges leaving the sets), never O(N · d)."""
    nodes = [np.asarray(targets, dtype=np.int64)]
    mats: list[tuple[torch.Tensor, torch.Tensor] | None] = []
    pos = np.full(adj.shape[0], -1, dtype=np.int64)
    seen = np.zeros(adj.shape[0], dtype=bool)  # sets as marks over the N nodes: cheaper than np.unique
    seen[nodes[0]] = True
    for _ in range(n_layers):
        sub = adj[nodes[-1]]
        mark = np.zeros(adj.shape[0], dtype=bool)
        mark[sub.indices] = True
        nxt = np.flatnonzero(mark)
        seen |= mark
        nodes.append(nxt)
        if nxt.size == 0:
            mats.append(None)
            continue
        pos[nxt] = np.arange(nxt.size)
        local = sp.csr_matrix((sub.data, pos[sub.indices], sub.indptr), shape=(len(nodes[-2]), nxt.size))
        mats.append((sparse_to_torch(local).to(device), sparse_to_torch(local.T.tocsr()).to(device)))
    items = np.flatnonzero(seen[n_users:])
    return LocalPropagation(
        [torch.from_numpy(t).to(device) for t in nodes], mats, torch.from_numpy(items).to(device)
    )


def local_propagate_mean(plan: LocalPropagation, ego: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """LightGCN's layer mean 1/(L+1) Σ_{l=0..L} (Âˡ E⁰) at the plan's targets T_0: (|T_0|, D), the rows of
    :func:`attnrec.models.layers.graph.propagate_mean` there. ``ego(nodes)`` returns E⁰'s rows (len(nodes), D).

    Horner's form Σ_l Âˡ E⁰ = E⁰ + Â(E⁰ + Â(E⁰ + …)) evaluated from the outermost set T_L inwards, each product
    restricted to rows T_j and columns T_{j+1}: every term it drops is zero at T_0."""
    n = len(plan.mats)
    acc = ego(plan.nodes[n])
    for j in range(n - 1, -1, -1):
        here = ego(plan.nodes[j])
        mat = plan.mats[j]
        acc = here if mat is None else here + spmm(mat[0], mat[1], acc)
    return acc / (n + 1)
