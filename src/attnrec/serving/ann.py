"""Top-k retrieval over item vectors: exact by chunked matrix products, approximate with a FAISS index.

Exact (:func:`exact_top_k`): queries ``(Q, d)`` against items ``(N, d)`` by inner product, in blocks of queries and
items so that at most ``max_elements`` scores exist at once (a running top-k is merged block by block), whatever
``N`` is; excluded items (a ``(Q, N)`` CSR, e.g. a user's training items) never come back. This is the path for
catalogues up to about a million items.

Approximate (:class:`FaissIndex`, FAISS from the ``ann`` extra, imported on first use): an inverted-file index over
the raw vectors (``IndexIVFFlat``, inner-product metric; ``nlist`` lists, default ``round(4·√N)`` capped so that
each list gets about 39 training points; k-means trained on ``max(train_size, 40 · nlist)`` items drawn with ``seed``;
``nprobe`` lists visited per query, default 32), or a graph index (``IndexHNSWFlat``, ``M`` = 32,
``efConstruction`` = 80, ``efSearch`` = 128). Exclusion is done by over-fetching: each query asks for ``k`` plus
its number of excluded items (capped at ``max_overfetch``) and drops the excluded ones. :func:`recall_at_k` measures
an index against :func:`exact_top_k` (the share of the exact top-k the index returns), so every setting is stated
with its measured recall (BENCHMARKS.md, "Serving").

Which models expose a retrieval space (:func:`retrieval_space`, dispatch on the model's class):

* bpr, lightgcn: score = ``e_u · e_i`` — queries are the user embeddings (lightgcn: after propagation), items the
  item embeddings; the inner product *is* the model's score.
* svd: score = ``μ + b_u + b_i + p_u · q_i`` — items are ``[q_i, b_i]``, queries ``[p_u, 1]``, and ``μ + b_u`` (the
  same for every item of a user) is added back as ``offset``: the ranking and the scores equal ``score_users``.
* hybrid_csa: its predicted rating comes from an attention network over (user, item, text), not an inner product,
  so it has no user space to search. Its text queries first retrieve candidates by cosine between the query's
  embedding and the items' text embeddings: that stage is an inner product over the unit-normalised item text
  vectors, exposed with ``users=None`` (queries are encoded texts, normalised by the caller).
* pop, the review and CTR models: no item vectors (None).

:func:`build_index` returns an :class:`ExactIndex` below ``ann_threshold`` items (or when FAISS is not installed and
ANN was not asked for) and a :class:`FaissIndex` above it; both answer ``search(queries, k, exclude=None)`` with
``(scores (Q, k) float32, items (Q, k) int64)``, ``-inf`` / ``-1`` padding where fewer than ``k`` items remain.
:class:`ModelIndex` puts one over a model's space: ``ModelIndex.for_model(model)`` (None without a user space), then
``top_k(users, k, exclude=model.exclusion(query))`` answers a known user's recommendation like ``model.top_k``
without scoring every item when the index is FAISS.

The HTTP service builds a :class:`ModelIndex` per slot at warm-up (:mod:`attnrec.serving.retrieval`: from
``ann_threshold`` items, or when started with ``ann="exact"`` / ``"faiss"``) and serves only known users without
allow / deny lists or a domain from it; every other request scores every item with the model's own ``score``.
``benchmarks/bench_serving.py`` measures exact against FAISS on a bundle's users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.errors import ConfigError, require
from attnrec.models.base import Estimator
from attnrec.models.rating.hybrid_csa import HybridCSA
from attnrec.models.rating.svd import SVD
from attnrec.models.topk.bpr import PairwiseRecommender

#: the default budget of scores held at once by :func:`exact_top_k` (16M float32 = 64 MiB)
MAX_ELEMENTS = 1 << 24
#: catalogue size from which :func:`build_index` picks FAISS when it is installed
ANN_THRESHOLD = 1_000_000

IndexKind = Literal["ivf_flat", "hnsw"]


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.detach().float().cpu().contiguous()


def _check(items: torch.Tensor, queries: torch.Tensor, k: int, exclude: sp.spmatrix | None) -> None:
    if items.ndim != 2 or queries.ndim != 2 or items.shape[1] != queries.shape[1]:
        raise ConfigError(
            f"top-k: items {tuple(items.shape)} and queries {tuple(queries.shape)} must be (N, d) and (Q, d)"
        )
    if k < 1:
        raise ConfigError(f"top-k: k must be >= 1, got {k}")
    if exclude is not None and exclude.shape != (queries.shape[0], items.shape[0]):
        raise ConfigError(
            f"top-k: exclude is {exclude.shape}, expected (queries, items) = ({queries.shape[0]}, {items.shape[0]})"
        )


def exact_top_k(
    items: np.ndarray | torch.Tensor,
    queries: np.ndarray | torch.Tensor,
    k: int,
    *,
    exclude: sp.spmatrix | None = None,
    offset: np.ndarray | torch.Tensor | None = None,
    max_elements: int = MAX_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items with the largest inner product per query: ``(scores (Q, k) float32, items (Q, k) int64)``.

    ``items`` (N, d), ``queries`` (Q, d); ``exclude`` an optional (Q, N) sparse matrix whose non-zeros are never
    returned; ``offset`` (Q,) is added to every score of its row (svd's ``μ + b_u``). Blocks of at most
    ``max_elements`` scores (memory ``4 · max_elements`` bytes plus the running top-k); rows are sorted by score,
    ties in ``torch.topk``'s order. Fewer than ``k`` eligible items: the tail is ``-inf`` with item ``-1``.
    """
    it, qs = _as_tensor(items), _as_tensor(queries)
    _check(it, qs, k, exclude)
    n, nq = it.shape[0], qs.shape[0]
    kk = min(k, n)
    q_block = max(1, min(nq, max_elements // max(kk, 1024)))
    i_block = max(kk, max_elements // q_block)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    ex = None if exclude is None else sp.csr_matrix(exclude)
    with torch.no_grad():
        for qs0 in range(0, nq, q_block):
            q = qs[qs0 : qs0 + q_block]
            rows = cols = None
            if ex is not None:
                coo = ex[qs0 : qs0 + q_block].tocoo()
                rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
            best_s = torch.full((q.shape[0], 0), -torch.inf)
            best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64)
            for s in range(0, n, i_block):
                block = q @ it[s : s + i_block].T  # (q_block, <= i_block)
                if rows is not None and cols is not None:
                    m = (cols >= s) & (cols < s + block.shape[1])
                    if m.any():
                        block[torch.from_numpy(rows[m]), torch.from_numpy(cols[m] - s)] = -torch.inf
                top = torch.topk(block, min(kk, block.shape[1]), dim=1, sorted=False)
                cand_s = torch.cat([best_s, top.values], dim=1)
                cand_i = torch.cat([best_i, top.indices + s], dim=1)
                keep = torch.topk(cand_s, min(kk, cand_s.shape[1]), dim=1, sorted=True)
                best_s, best_i = keep.values, cand_i.gather(1, keep.indices)
            vals, idx = best_s.numpy(), best_i.numpy()
            idx = np.where(np.isfinite(vals), idx, -1)
            out_s[qs0 : qs0 + q.shape[0], :kk] = vals
            out_i[qs0 : qs0 + q.shape[0], :kk] = idx
    if offset is not None:
        out_s += _as_tensor(offset).numpy().reshape(-1, 1)
    return out_s, out_i


def recall_at_k(exact: np.ndarray, approx: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's exact top-``k`` items (``-1`` = none) found in the approximate top-``k``; rows whose
    exact list is empty are left out. ``exact``, ``approx``: (Q, >= k) int64 item indices."""
    hits = total = 0
    for e, a in zip(exact[:, :k], approx[:, :k], strict=True):
        want = set(e[e >= 0].tolist())
        hits += len(want & set(a[a >= 0].tolist()))
        total += len(want)
    if total == 0:
        raise ConfigError("recall_at_k: no exact top-k item to compare with")
    return hits / total


class ItemIndex(Protocol):
    """What the service calls: top-``k`` items per query (see :func:`exact_top_k` for shapes and padding)."""

    n_items: int

    def search(
        self, queries: np.ndarray | torch.Tensor, k: int, *, exclude: sp.spmatrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class ExactIndex:
    """Brute force over ``items`` (N, d) by :func:`exact_top_k`: exact, no build time."""

    def __init__(self, items: np.ndarray | torch.Tensor, *, max_elements: int = MAX_ELEMENTS) -> None:
        self.items = _as_tensor(items)
        self.n_items = int(self.items.shape[0])
        self.max_elements = max_elements

    def search(
        self, queries: np.ndarray | torch.Tensor, k: int, *, exclude: sp.spmatrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` per query row (Q, d), exactly."""
        return exact_top_k(self.items, queries, k, exclude=exclude, max_elements=self.max_elements)


class FaissIndex:
    """A FAISS inner-product index over ``items`` (N, d): IVF-Flat (default) or HNSW; parameters in the module doc.

    Needs the ``ann`` extra (``pip install 'attnrec[ann]'``). ``threads`` sets FAISS's OpenMP threads (None: as is).
    """

    def __init__(
        self,
        items: np.ndarray | torch.Tensor,
        *,
        kind: IndexKind = "ivf_flat",
        nlist: int | None = None,
        nprobe: int = 32,
        train_size: int = 100_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        max_overfetch: int = 1000,
        seed: int = 0,
        threads: int | None = None,
    ) -> None:
        faiss: Any = require("faiss", "ann")
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        x = np.ascontiguousarray(_as_tensor(items).numpy(), dtype=np.float32)
        n, d = x.shape
        if n == 0:
            raise ConfigError("FaissIndex: no items to index")
        self.n_items, self.kind, self.max_overfetch = n, kind, max_overfetch
        if kind == "ivf_flat":
            cap = max(1, n // 39)  # FAISS warns below 39 training points per list
            self.nlist = min(nlist or max(1, round(4 * math.sqrt(n))), cap)
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            size = max(train_size, 40 * self.nlist)  # FAISS asks for at least 39 points per list
            sample = x if n <= size else x[rng.choice(n, size, replace=False)]
            index.cp.seed = seed
            index.train(sample)
            index.nprobe = self.nprobe = min(nprobe, self.nlist)
            self._quantizer = quantizer  # the IVF index keeps a pointer to it: it must outlive the index
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        else:
            raise ConfigError(f"FaissIndex: kind must be 'ivf_flat' or 'hnsw', got {kind!r}")
        index.add(x)
        self.index = index

    def search(
        self, queries: np.ndarray | torch.Tensor, k: int, *, exclude: sp.spmatrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` per query row (Q, d); excluded items dropped after over-fetching."""
        q = np.ascontiguousarray(_as_tensor(queries).numpy(), dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.index.d:
            raise ConfigError(f"FaissIndex.search: queries {q.shape} must be (Q, {self.index.d})")
        if k < 1:
            raise ConfigError(f"FaissIndex.search: k must be >= 1, got {k}")
        ex = None if exclude is None else sp.csr_matrix(exclude)
        extra = 0 if ex is None else min(int(np.diff(ex.indptr).max(initial=0)), self.max_overfetch)
        fetch = min(k + extra, self.n_items)
        scores, idx = self.index.search(q, fetch)
        scores = np.where(idx >= 0, scores, -np.inf).astype(np.float32)
        if ex is not None and extra:
            for r in range(len(q)):
                banned = ex.indices[ex.indptr[r] : ex.indptr[r + 1]]
                if len(banned):
                    drop = np.isin(idx[r], banned)
                    scores[r, drop], idx[r, drop] = -np.inf, -1
            order = np.argsort(-scores, axis=1, kind="stable")
            scores, idx = np.take_along_axis(scores, order, 1), np.take_along_axis(idx, order, 1)
        out_s = np.full((len(q), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(q), k), -1, dtype=np.int64)
        kk = min(k, fetch)
        out_s[:, :kk], out_i[:, :kk] = scores[:, :kk], idx[:, :kk]
        return out_s, out_i


def build_index(
    items: np.ndarray | torch.Tensor,
    *,
    ann: bool | None = None,
    ann_threshold: int = ANN_THRESHOLD,
    **faiss_options: Any,
) -> ExactIndex | FaissIndex:
    """The index for a catalogue: FAISS when ``ann`` is True, exact when False; None picks by size (FAISS from
    ``ann_threshold`` items on, when it is installed; exact otherwise). ``faiss_options`` go to :class:`FaissIndex`."""
    n = int(items.shape[0])
    if ann is None:
        ann = n >= ann_threshold
        if ann:
            try:
                require("faiss", "ann")
            except ImportError:  # MissingExtraError is an ImportError: exact still answers, only slower
                ann = False
    return FaissIndex(items, **faiss_options) if ann else ExactIndex(items)


@dataclass(frozen=True)
class RetrievalSpace:
    """A model's scores as inner products: ``score(u, i) = users[u] · items[i] + offset[u]``.

    ``users`` (n_users, d) or None (hybrid_csa's text stage: queries are encoded texts); ``items`` (n_items, d);
    ``offset`` (n_users,) or None; ``what`` says which vectors these are.
    """

    users: torch.Tensor | None
    items: torch.Tensor
    offset: torch.Tensor | None
    what: str


def retrieval_space(model: Estimator[Any]) -> RetrievalSpace | None:
    """The inner-product space of ``model`` (see the module docstring), or None for a model without one."""
    with torch.no_grad():
        if isinstance(model, HybridCSA):
            text = model.csa.item_text.detach().float().cpu()
            unit = text / text.norm(dim=1, keepdim=True).clamp_min(1e-12)
            return RetrievalSpace(None, unit, None, "hybrid_csa item text (unit), for text-query retrieval")
        if isinstance(model, SVD):
            m = model.mf
            users = torch.cat([m.p.detach(), torch.ones(m.p.shape[0], 1, device=m.p.device)], dim=1)
            items = torch.cat([m.q.detach(), m.bi.detach()[:, None]], dim=1)
            offset = m.bu.detach() + m.mu.detach()
            return RetrievalSpace(
                users.float().cpu(), items.float().cpu(), offset.float().cpu(), "svd [p_u, 1] · [q_i, b_i]"
            )
        if isinstance(model, PairwiseRecommender) and model.module is not None:
            eu, ei = model.module.user_item_embeddings()  # type: ignore[operator]
            return RetrievalSpace(
                eu.detach().float().cpu(), ei.detach().float().cpu(), None, f"{model.name} embeddings"
            )
    return None


class ModelIndex:
    """Top-k for a model's known users through an index over its retrieval space (the service's known-user path).

    ``ModelIndex.for_model(model)`` is None for a model without a user space (pop, hybrid_csa, CTR); otherwise
    :meth:`top_k` answers like ``model.top_k(Query(users=...), k)`` — scores include svd's ``μ + b_u`` — exactly
    (:class:`ExactIndex`) or approximately (:class:`FaissIndex`, chosen by :func:`build_index`).
    """

    def __init__(self, space: RetrievalSpace, index: ExactIndex | FaissIndex) -> None:
        if space.users is None:
            raise ConfigError(f"ModelIndex: {space.what} has no user vectors")
        self.space, self.index = space, index

    @classmethod
    def for_model(
        cls,
        model: Estimator[Any],
        *,
        ann: bool | None = None,
        ann_threshold: int = ANN_THRESHOLD,
        **faiss_options: Any,
    ) -> ModelIndex | None:
        """The index for ``model``'s items (see :func:`build_index`), or None when it has no user space."""
        space = retrieval_space(model)
        if space is None or space.users is None:
            return None
        return cls(space, build_index(space.items, ann=ann, ann_threshold=ann_threshold, **faiss_options))

    @property
    def approximate(self) -> bool:
        return isinstance(self.index, FaissIndex)

    def top_k(
        self, users: np.ndarray, k: int, *, exclude: sp.spmatrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (Q, k) float32, items (Q, k) int64)`` for known user indices ``users`` (Q,); ``exclude`` as in
        :func:`exact_top_k` (e.g. ``model.exclusion(Query(users=users))``); ``-inf`` / ``-1`` padding."""
        assert self.space.users is not None
        u = torch.from_numpy(np.asarray(users, dtype=np.int64))
        vals, idx = self.index.search(self.space.users[u], k, exclude=exclude)
        if self.space.offset is not None:
            vals = vals + self.space.offset[u].numpy()[:, None]
        return vals, idx
