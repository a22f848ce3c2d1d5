"""The HTTP service's index over a model's items (issue 17): which index a slot builds and how a known user uses it.

A slot builds a :class:`~attnrec.serving.ann.ModelIndex` at warm-up (:func:`slot_index`) when its model has a user
retrieval space (bpr, lightgcn, svd) and either the catalogue has at least ``ann_threshold`` items (``ann="auto"``:
FAISS IVF-Flat when installed, else the chunked exact product) or the service was started with ``ann="exact"`` /
``ann="faiss"``. Only the known-user path without allow / deny lists or a domain uses it (:func:`index_top`); the
others (histories, texts, filters, domains, cold start) score every item with the model, as before.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.errors import ConfigError
from attnrec.models.base import Recommender
from attnrec.serving.ann import ANN_THRESHOLD, FaissIndex, ModelIndex

AnnMode = Literal["auto", "exact", "faiss"]


def check_ann(mode: str) -> AnnMode:
    """``mode`` if it is one of auto / exact / faiss, else a :class:`ConfigError` naming it."""
    if mode not in get_args(AnnMode):
        raise ConfigError(f"ann: expected one of {', '.join(get_args(AnnMode))}, got {mode!r}")
    return mode  # type: ignore[return-value]


def slot_index(rec: Recommender[Any], mode: str, ann_threshold: int = ANN_THRESHOLD) -> ModelIndex | None:
    """The index a slot serves known users from, or None (score every item): None for a model without a user
    space, and under ``auto`` for a catalogue below ``ann_threshold`` items; ``faiss`` needs the ``ann`` extra."""
    mode = check_ann(mode)
    if mode == "auto" and rec.n_items < ann_threshold:
        return None
    return ModelIndex.for_model(rec, ann={"auto": None, "exact": False, "faiss": True}[mode], ann_threshold=0)


def index_kind(index: ModelIndex | None) -> str:
    """What /metadata reports: ``none`` (every item scored), ``exact`` (chunked product) or the FAISS index."""
    if index is None:
        return "none"
    fi = index.index
    if isinstance(fi, FaissIndex):
        return f"faiss_{fi.kind}" + (
            f" (nlist={fi.nlist}, nprobe={fi.nprobe})" if fi.kind == "ivf_flat" else ""
        )
    return "exact"


def index_note(index: ModelIndex) -> str:
    """The response's note on how its items were found."""
    fi = index.index
    if not isinstance(fi, FaissIndex):
        return "exact (chunked matrix product over the item vectors)"
    if fi.kind == "ivf_flat":
        return f"approximate (FAISS IVF-Flat nlist={fi.nlist} nprobe={fi.nprobe})"
    return "approximate (FAISS HNSW)"


def index_top(
    index: ModelIndex, user: int, k: int, exclude: np.ndarray | None, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Known user ``user``'s best ``k`` items from ``index``: (item indices (<= k,) int64, scores float32), the
    ``exclude`` item indices never among them and the padding dropped, as the service's exact top-k returns them."""
    ex = None
    if exclude is not None and len(exclude):
        cols = np.asarray(exclude, dtype=np.int64)
        ex = sp.csr_matrix(
            (np.ones(len(cols)), (np.zeros(len(cols), dtype=np.int64), cols)), shape=(1, n_items)
        )
    vals, idx = index.top_k(np.array([user], dtype=np.int64), k, exclude=ex)
    keep = (idx[0] >= 0) & np.isfinite(vals[0])
    return idx[0][keep], vals[0][keep].astype(np.float32)


def scores_top(
    scores: torch.Tensor,
    k: int,
    exclude: np.ndarray | None,
    allow: np.ndarray | None,
    deny: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of (n_items,) ``scores``: item indices and scores, excluded/denied items never among them,
    only ``allow`` items when given; fewer than ``k`` when too few remain. Ties come in ``torch.topk``'s order."""
    s = scores
    for idx in (exclude, deny):
        if idx is not None and len(idx):
            if s is scores:
                s = scores.clone()  # never write into a tensor the model or the slot owns
            s[torch.from_numpy(np.asarray(idx, dtype=np.int64))] = -torch.inf
    cand = None
    if allow is not None:
        cand = torch.from_numpy(np.unique(allow))
        s = s[cand]
    kk = min(k, s.shape[0])
    if kk == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    top = torch.topk(s, kk, sorted=True)
    keep = torch.isfinite(top.values)
    idx_t = top.indices[keep]
    if cand is not None:
        idx_t = cand[idx_t]
    return idx_t.numpy().astype(np.int64), top.values[keep].numpy()
