"""Item-item kNN graphs from item-feature modalities, and FREEDOM's degree-sensitive pruning of the user-item graph.

Shared by the multimodal family (FREEDOM, LATTICE, BM3, mrcsaf):

* :func:`knn_graph` — cosine kNN graph of one modality, S_ij = e_iᵀe_j / (‖e_i‖‖e_j‖), kept for the k most
  similar j of each row i (mrcsaf eqs. 2-3; FREEDOM/LATTICE). Computed in row chunks (one chunk × items block of
  similarities at a time, then top-k), so memory is O(items × k) plus one bounded block, never items × items.
* :func:`normalize_symmetric` — S̃ = D^{-1/2} Ṡ D^{-1/2} with D_ii = Σ_j Ṡ_ij (the row sums; the kNN graph is not
  symmetric, and this is the D of the paper and of MMRec's implementation).
* :func:`weighted_sum` — Σ_m w_m S̃_m with fixed weights (FREEDOM's ``mm_image_weight``), and :func:`union_values`,
  the graphs on one shared sparsity pattern so a model can weight them per item, differentiably (mrcsaf's selector).
* :func:`prune_edges` — FREEDOM's degree-sensitive edge pruning: keep a share of the user-item edges drawn without
  replacement with probability ∝ 1/√(d_u d_i), then renormalise the kept graph; resampled every epoch.

A graph is an :class:`ItemGraph`: COO ``indices`` (2, nnz) int64 (row, col) and ``values`` (nnz,) float32 over
``n`` items, sorted by row then column. Torch tensors throughout; :func:`to_sparse` gives the CSR tensor to multiply
with, :func:`spmm` a product whose backward uses a precomputed transpose (the kNN graph is not symmetric).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.errors import ConfigError, DataError
from attnrec.models.layers.graph import normalized_adjacency

#: similarities computed per block: chunk rows × n_items floats (64 MiB of float32)
BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class ItemGraph:
    """A sparse n × n item graph in COO form, rows sorted: ``indices`` (2, nnz) int64, ``values`` (nnz,) float32.

    ``featureless`` counts the items whose feature row was all zeros (no features): they keep only a self-loop
    and are nobody's neighbour (see :func:`knn_graph`).
    """

    indices: torch.Tensor
    values: torch.Tensor
    n: int
    featureless: int = 0

    @property
    def nnz(self) -> int:
        """Stored entries."""
        return int(self.values.numel())

    def to_scipy(self) -> sp.csr_matrix:
        """The graph as a scipy CSR (float32), for inspection and tests."""
        r, c = self.indices.cpu().numpy()
        return sp.csr_matrix((self.values.cpu().numpy(), (r, c)), shape=(self.n, self.n))

    def dense(self) -> torch.Tensor:
        """The (n, n) dense matrix: for tests on small hand-made graphs only."""
        out = torch.zeros(self.n, self.n, dtype=self.values.dtype)
        out[self.indices[0], self.indices[1]] = self.values
        return out


def knn_graph(
    features: np.ndarray | torch.Tensor,
    k: int = 10,
    *,
    include_self: bool = True,
    block_elements: int = BLOCK_ELEMENTS,
    name: str = "features",
) -> ItemGraph:
    """Binary cosine kNN graph Ṡ of one modality: Ṡ_ij = 1 for the ``k`` items j most similar to item i.

    ``features`` (n_items, d), finite. ``include_self=True`` keeps i among its own neighbours (as MMRec's FREEDOM
    and LATTICE do: sim(i, i) = 1 is always the top-1), so each row has k entries of which one is the self-loop.
    Ties are broken by torch.topk (deterministic on a given device). An item whose feature row is all zeros has no
    cosine similarity: its row holds only its self-loop and it is excluded from every other row's candidates (the
    count is ``ItemGraph.featureless``; the builders in ``data/modalities.py`` report it too). ``k`` larger than the
    number of candidates is capped at n_items. Values are 1.0 (normalise with :func:`normalize_symmetric`).
    Memory: O(n_items × k) for the result plus one block of ``block_elements`` similarities.
    """
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
    if x.dim() != 2:
        raise DataError(
            "item features must be a matrix", field=name, value=tuple(x.shape), expected="(n_items, d)"
        )
    if k < 1:
        raise ConfigError(f"knn k must be >= 1, got {k}")
    x = x.float()
    n = x.shape[0]
    k = min(k, n)
    chunk = max(1, block_elements // max(n, 1))
    # checked per block: torch.isfinite on the whole matrix allocates temporaries of its size
    for start in range(0, n, chunk):
        if not bool(torch.isfinite(x[start : start + chunk]).all()):
            raise DataError("item features have NaN or inf values", field=name, expected="finite numbers")
    norms = x.norm(dim=1)
    has = norms > 0
    inv = 1.0 / norms.clamp(min=1e-12)  # rows are scaled per block: no normalised copy of the features
    rows_out, cols_out = [], []
    big_neg = torch.finfo(torch.float32).min
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sim = x[start:stop] @ x.T  # (chunk, n)
        sim.mul_(inv[start:stop, None]).mul_(inv[None, :])
        sim[:, ~has] = big_neg  # a featureless item is nobody's neighbour
        local = torch.arange(stop - start)
        if include_self:
            sim[local, local + start] = math.inf  # ties at 1.0 must not push i out of its own row
        else:
            sim[local, local + start] = big_neg
        _, idx = torch.topk(sim, k, dim=1)
        rows_out.append(torch.arange(start, stop).repeat_interleave(k))
        cols_out.append(idx.reshape(-1))
    rows = torch.cat(rows_out) if rows_out else torch.zeros(0, dtype=torch.long)
    cols = torch.cat(cols_out) if cols_out else torch.zeros(0, dtype=torch.long)
    # a featureless item keeps only its self-loop, and one picked to fill a short row is dropped
    keep = (has[rows] & has[cols]) | (rows == cols)
    rows, cols = rows[keep], cols[keep]
    if not include_self:
        lone = torch.nonzero(~has).ravel()
        rows, cols = torch.cat([rows, lone]), torch.cat([cols, lone])
    return _sorted(rows, cols, torch.ones(rows.numel()), n, featureless=int((~has).sum()))


def _sorted(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int, featureless: int = 0
) -> ItemGraph:
    order = torch.argsort(rows * n + cols)
    idx = torch.stack([rows[order], cols[order]]).long()
    return ItemGraph(idx, values[order].float(), n, featureless)


def normalize_symmetric(graph: ItemGraph) -> ItemGraph:
    """S̃ = D^{-1/2} S D^{-1/2}, D_ii = Σ_j S_ij (row sums): S̃_ij = S_ij / √(D_ii D_jj). A node with no stored
    entry (D = 0) keeps zero rows and columns (no division by zero)."""
    r, c = graph.indices
    deg = torch.zeros(graph.n, dtype=torch.float64).index_add_(0, r, graph.values.double())
    inv = torch.where(deg > 0, deg.clamp(min=1e-300).rsqrt(), torch.zeros_like(deg))
    vals = (graph.values.double() * inv[r] * inv[c]).float()
    return ItemGraph(graph.indices, vals, graph.n, graph.featureless)


def modality_graph(features: np.ndarray | torch.Tensor, k: int = 10, *, name: str = "features") -> ItemGraph:
    """The normalised kNN graph S̃ of one modality: :func:`normalize_symmetric` of :func:`knn_graph`."""
    return normalize_symmetric(knn_graph(features, k, name=name))


def union_values(graphs: Sequence[ItemGraph]) -> tuple[torch.Tensor, torch.Tensor]:
    """The graphs on their shared sparsity pattern: ``indices`` (2, nnz_union) and ``values`` (M, nnz_union),
    row m holding graph m's value per union edge (0 where graph m has no such edge). A model combines them as
    ``(w[:, indices[0]] * values).sum(0)`` with per-item weights ``w`` (M, n_items) (mrcsaf's selector), or with
    scalar weights (:func:`weighted_sum`)."""
    if not graphs:
        raise ConfigError("no item graph to combine: at least one modality is needed")
    n = graphs[0].n
    if any(g.n != n for g in graphs):
        raise ConfigError(f"item graphs over different item counts: {[g.n for g in graphs]}")
    keys = torch.cat([g.indices[0] * n + g.indices[1] for g in graphs])
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    values = torch.zeros(len(graphs), uniq.numel())
    offset = 0
    for m, g in enumerate(graphs):
        values[m, inverse[offset : offset + g.nnz]] = g.values
        offset += g.nnz
    return torch.stack([uniq // n, uniq % n]), values


def weighted_sum(graphs: Sequence[ItemGraph], weights: Sequence[float]) -> ItemGraph:
    """S = Σ_m w_m S̃_m over the union of the graphs' edges (FREEDOM: image weight α, text 1 − α). The weights are
    used as given (FREEDOM's sum to one; nothing renormalises them)."""
    if len(weights) != len(graphs):
        raise ConfigError(f"{len(graphs)} graphs but {len(weights)} weights")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ConfigError(f"modality weights must be finite and >= 0, got {list(weights)}")
    indices, values = union_values(graphs)
    w = torch.tensor([float(x) for x in weights]).unsqueeze(1)
    total = (w * values).sum(0)
    keep = total != 0
    return ItemGraph(indices[:, keep], total[keep], graphs[0].n, max(g.featureless for g in graphs))


def to_sparse(indices: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """A float32 torch sparse CSR (n, n) from COO ``indices`` (2, nnz) sorted by row and ``values`` (nnz,)."""
    coo = torch.sparse_coo_tensor(indices, values.float(), (n, n), check_invariants=True).coalesce()
    with warnings.catch_warnings():  # torch flags CSR as beta on first use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return coo.to_sparse_csr()


class _SpMM(torch.autograd.Function):
    """y = A x for a constant sparse A with its transpose given for the backward product."""

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, torch.sparse.mm(ctx.adj_t, grad)


def spmm(adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x`` for a constant sparse ``adj`` (N, N) and dense ``x`` (N, d), differentiable in ``x`` only;
    ``adj_t`` is ``adj``'s transpose (precomputed once: torch's generic backward transposes on every call).
    Float32 with autocast off (no half-precision sparse matmul)."""
    with torch.autocast(x.device.type, enabled=False):
        return _SpMM.apply(adj, adj_t, x.float())  # type: ignore[no-any-return]


def edge_weights(interactions: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The user-item edges of a (n_users, n_items) matrix and FREEDOM's sampling weight of each,
    1/√(d_u d_i): ``(users (E,), items (E,), weights (E,))``, edges in CSR order (every stored entry an edge)."""
    r = sp.csr_matrix(interactions)
    r.sum_duplicates()
    r.eliminate_zeros()
    coo = r.tocoo()
    u, i = coo.row.astype(np.int64), coo.col.astype(np.int64)
    du = np.bincount(u, minlength=r.shape[0]).astype(np.float64)
    di = np.bincount(i, minlength=r.shape[1]).astype(np.float64)
    return u, i, 1.0 / np.sqrt(du[u] * di[i])


def sample_edges(weights: np.ndarray, n_keep: int, generator: torch.Generator) -> np.ndarray:
    """Indices of ``n_keep`` edges drawn without replacement with probability ∝ ``weights`` (sorted).

    Efraimidis-Spirakis keys u^(1/w) (as log(u)/w): the top ``n_keep`` keys are a draw with the distribution of
    sequential weighted sampling without replacement (``torch.multinomial(w, n, replacement=False)``, FREEDOM's),
    in one vectorised pass and without multinomial's 2^24-category limit.
    """
    n = len(weights)
    if n_keep >= n:
        return np.arange(n)
    if n_keep <= 0:
        return np.zeros(0, dtype=np.int64)
    u = torch.rand(n, generator=generator, dtype=torch.float64).clamp(min=1e-300)
    keys = torch.log(u) / torch.from_numpy(np.asarray(weights, dtype=np.float64))
    top = torch.topk(keys, n_keep).indices.numpy()
    return np.sort(top)


def prune_edges(
    interactions: sp.spmatrix | sp.sparray, dropout: float, generator: torch.Generator
) -> torch.Tensor:
    """FREEDOM's degree-sensitive edge pruning: the normalised bipartite adjacency (n_users + n_items square, CSR,
    symmetric) of ``int(E · (1 − dropout))`` user-item edges drawn without replacement ∝ 1/√(d_u d_i) (edges
    between low-degree nodes are kept more often), renormalised on the kept graph's own degrees. ``dropout`` 0
    keeps every edge (the full graph). Deterministic given ``generator``."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"edge dropout must be in [0, 1), got {dropout}")
    r = sp.csr_matrix(interactions)
    if dropout == 0.0:
        return normalized_adjacency(r)
    u, i, w = edge_weights(r)
    keep = sample_edges(w, int(len(w) * (1.0 - dropout)), generator)
    kept = sp.csr_matrix((np.ones(len(keep), dtype=np.float32), (u[keep], i[keep])), shape=r.shape)
    return normalized_adjacency(kept)
