"""Exact evaluation metrics as pure functions of arrays.

Nothing here keeps state: every function takes arrays (NumPy, or torch tensors, which are copied to the CPU)
and returns numbers or per-user arrays. Accumulating over batches is the caller's business
(:mod:`attnrec.evaluation.evaluators`); :func:`ranking_metric_sums` returns sums so that batches, or ranks of
a distributed run, can be added before dividing.

Rating / CTR metrics
    :func:`mse`, :func:`rmse`, :func:`mae` (in rating units, squared for ``mse``), :func:`auc` (exact, ties
    get average ranks as in scikit-learn's ``roc_auc_score``), :func:`logloss` (natural log, probabilities
    clipped).

Ranking metrics
    Computed from a *hit matrix*: ``hits`` has shape ``(n_users, K)`` and ``hits[u, r]`` is 1 when the item at
    rank ``r + 1`` of user ``u``'s recommended list is relevant; ``n_relevant`` has shape ``(n_users,)`` and
    counts the relevant items of each user (all of them, not only those in the list). Each ``*_at_k`` function
    uses the first ``k <= K`` columns and returns one value per user, as ``float64``. The definitions follow
    RecBole and the usual literature (``r`` is 1-based, ``hit_r`` is ``hits[u, r - 1]``):

    * precision@k = (sum_{r<=k} hit_r) / k
    * recall@k = (sum_{r<=k} hit_r) / n_relevant
    * hit@k = 1 if any hit_r with r <= k, else 0
    * ndcg@k = DCG / IDCG with binary gains: DCG = sum_{r<=k} hit_r / log2(r + 1) and
      IDCG = sum_{r <= min(n_relevant, k)} 1 / log2(r + 1)
    * mrr@k = 1 / (rank of the first hit) if there is a hit within k, else 0
    * map@k = (1 / min(n_relevant, k)) * sum_{r<=k} precision@r * hit_r

    Users with no relevant item have no defined recall, ndcg or map; passing one raises :class:`DataError`
    (evaluators skip such users and report how many users were evaluated).

Graded ranking of rated rows
    :func:`graded_ndcg_at_k` ranks each user's held-out rows by predicted rating and uses the true rating as
    graded relevance, ``ndcg@k = DCG / IDCG`` with ``DCG = sum_{r<=k} (2^rel_r - 1) / log2(r + 1)`` (the form
    of SAFMR's eq. 16); rows tied on the prediction share the mean discount of the positions they occupy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from attnrec.errors import ConfigError, DataError

__all__ = [
    "RANKING_METRICS",
    "auc",
    "graded_ndcg_at_k",
    "hit_at_k",
    "logloss",
    "mae",
    "map_at_k",
    "mrr_at_k",
    "mse",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metric_sums",
    "ranking_metrics",
    "rating_metrics",
    "recall_at_k",
    "rmse",
]


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """A NumPy view/copy of ``x``; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor; no torch import needed here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise DataError("not a numeric array", field=name, value=type(x).__name__, expected="a numeric array")
    return arr


def _pair(y_true: Any, y_pred: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two non-empty 1-D float64 arrays of equal length, finite."""
    a = _to_numpy(y_true, names[0]).astype(np.float64, copy=False)
    b = _to_numpy(y_pred, names[1]).astype(np.float64, copy=False)
    for arr, name in ((a, names[0]), (b, names[1])):
        if arr.ndim != 1:
            raise DataError("wrong shape", field=name, value=arr.shape, expected="a 1-D array")
        if arr.size == 0:
            raise DataError("empty array", field=name, expected="at least one value")
        bad = ~np.isfinite(arr)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"non-finite value at position {pos}",
                field=name,
                value=float(arr[pos]),
                expected="finite numbers",
            )
    if a.shape != b.shape:
        raise DataError(
            "length mismatch", field=names[1], value=b.shape, expected=f"shape {a.shape} like {names[0]}"
        )
    return a, b


# ----------------------------------------------------------------------------------------------- rating / CTR


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error, ``mean((y_true - y_pred) ** 2)``, 1-D arrays of equal length (squared units)."""
    a, b = _pair(y_true, y_pred, ("y_true", "y_pred"))
    return float(np.mean(np.square(a - b)))


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error, ``sqrt(mse)`` (rating units)."""
    return float(np.sqrt(mse(y_true, y_pred)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error, ``mean(|y_true - y_pred|)`` (rating units)."""
    a, b = _pair(y_true, y_pred, ("y_true", "y_pred"))
    return float(np.mean(np.abs(a - b)))


def _binary_labels(y: np.ndarray, name: str) -> np.ndarray:
    bad = (y != 0) & (y != 1)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"non-binary label at position {pos}", field=name, value=float(y[pos]), expected="0 or 1"
        )
    return y.astype(bool)


def require_both_classes(n_pos: int, n_neg: int) -> None:
    """Raise :class:`DataError` unless both labels occur (AUC is undefined with one class)."""
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            "only one class present; AUC is undefined",
            field="y_true",
            value=f"{n_pos} positives, {n_neg} negatives",
            expected="both 0 and 1 labels",
        )


def auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve, exact, via the Mann-Whitney rank statistic.

    ``y_true`` is 0/1 (shape ``(n,)``), ``y_score`` any real score (higher = more likely positive). Tied
    scores get their average rank, so a tie between a positive and a negative counts one half, as in
    scikit-learn's ``roc_auc_score``:
    ``AUC = (sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos * n_neg)``.
    Raises :class:`DataError` when only one class is present (AUC is undefined).
    """
    from scipy.stats import rankdata

    y, s = _pair(y_true, y_score, ("y_true", "y_score"))
    pos = _binary_labels(y, "y_true")
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    require_both_classes(n_pos, n_neg)
    ranks = rankdata(s, method="average")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(y_true: Any, p: Any, eps: float = 1e-7) -> float:
    """Binary cross-entropy in nats, ``-mean(y log p + (1 - y) log(1 - p))``.

    ``y_true`` is 0/1, ``p`` the predicted probability of label 1, clipped to ``[eps, 1 - eps]`` so that a
    confident mistake costs ``-log(eps)`` instead of infinity.
    """
    if not 0.0 < eps < 0.5:
        raise ConfigError(f"logloss eps must be in (0, 0.5), got {eps!r}")
    y, q = _pair(y_true, p, ("y_true", "p"))
    y = _binary_labels(y, "y_true").astype(np.float64)
    if ((q < 0) | (q > 1)).any():
        pos = int(np.flatnonzero((q < 0) | (q > 1))[0])
        raise DataError(
            f"probability out of range at position {pos}",
            field="p",
            value=float(q[pos]),
            expected="values in [0, 1]",
        )
    q = np.clip(q, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def rating_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``{"rmse", "mae", "mse"}`` of predicted against true ratings (1-D, equal length)."""
    m = mse(y_true, y_pred)
    return {"rmse": float(np.sqrt(m)), "mae": mae(y_true, y_pred), "mse": m}


# ---------------------------------------------------------------------------------------------------- ranking


def _check_hits(hits: Any, n_relevant: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` columns of ``hits`` as float64 and ``n_relevant`` as float64, validated."""
    h = _to_numpy(hits, "hits")
    n = _to_numpy(n_relevant, "n_relevant")
    if h.ndim != 2:
        raise DataError("wrong shape", field="hits", value=h.shape, expected="a 2-D (n_users, K) 0/1 array")
    if n.ndim != 1 or n.shape[0] != h.shape[0]:
        raise DataError("wrong shape", field="n_relevant", value=n.shape, expected=f"shape ({h.shape[0]},)")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if k > h.shape[1]:
        raise DataError(
            f"hits has only {h.shape[1]} columns",
            field="hits",
            value=h.shape,
            expected=f"at least k={k} columns",
        )
    h = h[:, :k]
    if h.dtype != bool and ((h != 0) & (h != 1)).any():
        raise DataError("hits must be 0/1", field="hits", value=np.unique(h)[:5].tolist(), expected="0 or 1")
    h = h.astype(np.float64)
    n = n.astype(np.float64)
    if (n < 1).any():
        row = int(np.flatnonzero(n < 1)[0])
        raise DataError(
            f"user at row {row} has no relevant item",
            field="n_relevant",
            value=float(n[row]),
            expected=">= 1 (drop users without relevant items before ranking metrics)",
        )
    over = h.sum(axis=1) > n
    if over.any():
        row = int(np.flatnonzero(over)[0])
        raise DataError(
            f"row {row} has more hits than relevant items",
            field="n_relevant",
            value=float(n[row]),
            expected=f">= {int(h[row].sum())} hits in the list",
        )
    return h, n


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(r + 1)`` for ranks ``r = 1..k``."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def precision_at_k(hits: Any, n_relevant: Any, k: int) -> np.ndarray:
    """Per-user precision@k = (number of hits among the first k) / k; shape ``(n_users,)``."""
    h, _ = _check_hits(hits, n_relevant, k)
    return h.sum(axis=1) / k


def recall_at_k(hits: Any, n_relevant: Any, k: int) -> np.ndarray:
    """Per-user recall@k = (number of hits among the first k) / n_relevant; shape ``(n_users,)``."""
    h, n = _check_hits(hits, n_relevant, k)
    return h.sum(axis=1) / n


def hit_at_k(hits: Any, n_relevant: Any, k: int) -> np.ndarray:
    """Per-user hit@k (hit ratio): 1.0 when any of the first k items is relevant, else 0.0."""
    h, _ = _check_hits(hits, n_relevant, k)
    return (h.sum(axis=1) > 0).astype(np.float64)


def ndcg_at_k(hits: Any, n_relevant: Any, k: int) -> np.ndarray:
    """Per-user ndcg@k with binary gains.

    DCG = sum_{r<=k} hit_r / log2(r + 1); IDCG = sum_{r <= min(n_relevant, k)} 1 / log2(r + 1);
    ndcg = DCG / IDCG.
    """
    h, n = _check_hits(hits, n_relevant, k)
    disc = _discounts(k)
    ideal = np.cumsum(disc)  # ideal[j - 1] = IDCG when j relevant items fill the top of the list
    n_ideal = np.minimum(n, k).astype(np.int64)
    return (h @ disc) / ideal[n_ideal - 1]


def mrr_at_k(hits: Any, n_relevant: Any, k: int) -> np.ndarray:
    """Per-user reciprocal rank: 1 / (1-based rank of the first hit within k), 0.0 when there is none."""
    h, _ = _check_hits(hits, n_relevant, k)
    any_hit = h.any(axis=1)
    first = np.argmax(h > 0, axis=1) + 1
    return np.where(any_hit, 1.0 / first, 0.0)


def map_at_k(hits: Any, n_relevant: Any, k: int) -> np.ndarray:
    """Per-user average precision@k = (1 / min(n_relevant, k)) * sum_{r<=k} precision@r * hit_r."""
    h, n = _check_hits(hits, n_relevant, k)
    prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    return (prec_at_r * h).sum(axis=1) / np.minimum(n, k)


def graded_ndcg_at_k(groups: Any, y_true: Any, y_pred: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group ndcg@k of rated rows ranked by prediction, with the true rating as graded relevance.

    ``groups`` (user ids), ``y_true`` (relevance, e.g. ratings, >= 0) and ``y_pred`` (scores) are 1-D arrays of
    equal length, one entry per rated row. Within each group the rows are ranked by ``y_pred`` (descending);
    DCG = sum_{r<=k} (2^rel_r - 1) / log2(r + 1), IDCG the same over the rows sorted by ``y_true``. Rows tied
    on ``y_pred`` each get the mean discount of the positions the tie occupies (discount 0 past ``k``), so the
    value is the expectation over a random order of the tie, not an artefact of input order; this equals
    scikit-learn's ``ndcg_score`` (``ignore_ties=False``) on gains ``2^rel - 1``. A group with one row scores 1.

    Returns ``(group_ids, ndcg)``: the sorted distinct groups, shape ``(n_groups,)``, and their ndcg@k as
    float64. A group whose rows all have relevance 0 has no defined ndcg: :class:`DataError`.
    """
    rel, pred = _pair(y_true, y_pred, ("y_true", "y_pred"))
    g = _to_numpy(groups, "groups")
    if g.shape != rel.shape:
        raise DataError(
            "wrong shape", field="groups", value=g.shape, expected=f"shape {rel.shape} like y_true"
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if (rel < 0).any():
        pos = int(np.flatnonzero(rel < 0)[0])
        raise DataError(
            f"negative relevance at position {pos}", field="y_true", value=float(rel[pos]), expected=">= 0"
        )
    gain = np.exp2(rel) - 1.0
    uniq, gid = np.unique(g, return_inverse=True)
    n = len(gid)
    by_pred = np.lexsort((-pred, gid))  # group-major, best prediction first
    by_true = np.lexsort((-rel, gid))
    gs = gid[by_pred]  # the same group-major order for both sorts, so one position array serves both
    starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
    rank0 = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))  # 0-based rank within the group
    disc = np.where(rank0 < k, 1.0 / np.log2(rank0 + 2.0), 0.0)
    ps = pred[by_pred]
    ties = np.flatnonzero(np.r_[True, (gs[1:] != gs[:-1]) | (ps[1:] != ps[:-1])])
    sizes = np.diff(np.r_[ties, n])
    tied_disc = np.repeat(np.add.reduceat(disc, ties) / sizes, sizes)
    dcg = np.bincount(gs, weights=gain[by_pred] * tied_disc, minlength=len(uniq))
    idcg = np.bincount(gid[by_true], weights=gain[by_true] * disc, minlength=len(uniq))
    if (idcg <= 0).any():
        bad = uniq[int(np.flatnonzero(idcg <= 0)[0])]
        raise DataError(
            "a group has no row with positive relevance",
            field="groups",
            value=bad,
            expected="some y_true > 0",
        )
    return uniq, dcg / idcg


#: metric name -> per-user function, as used in keys like ``"ndcg@10"``.
RANKING_METRICS: dict[str, Callable[[Any, Any, int], np.ndarray]] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "hit": hit_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "map": map_at_k,
}


def _check_names_ks(ks: Iterable[int], names: Iterable[str]) -> tuple[list[int], list[str]]:
    ks_l = [int(k) for k in ks]
    names_l = [str(n).lower() for n in names]
    if not ks_l:
        raise ConfigError("ks is empty; give at least one cut-off such as (10, 20)")
    if any(k < 1 for k in ks_l):
        raise ConfigError(f"every k must be >= 1, got {ks_l}")
    unknown = [n for n in names_l if n not in RANKING_METRICS]
    if unknown:
        raise ConfigError(f"unknown ranking metric(s) {unknown}; known: {sorted(RANKING_METRICS)}")
    if not names_l:
        raise ConfigError(f"no ranking metric named; known: {sorted(RANKING_METRICS)}")
    return ks_l, names_l


def ranking_metric_sums(
    hits: Any, n_relevant: Any, ks: Sequence[int], names: Sequence[str]
) -> dict[str, float]:
    """Sums over users of each per-user metric, keyed ``"{name}@{k}"`` (divide by the user count for means).

    Sums add across batches and across ranks of a distributed run, which means do not.
    """
    ks_l, names_l = _check_names_ks(ks, names)
    h = _to_numpy(hits, "hits")
    n = _to_numpy(n_relevant, "n_relevant")
    _check_hits(h, n, max(ks_l))  # validate once; the per-metric calls then see valid input
    return {f"{name}@{k}": float(RANKING_METRICS[name](h, n, k).sum()) for name in names_l for k in ks_l}


def ranking_metrics(hits: Any, n_relevant: Any, ks: Sequence[int], names: Sequence[str]) -> dict[str, float]:
    """Means over users of each per-user metric, keyed ``"{name}@{k}"`` such as ``"recall@20"``.

    ``hits`` is the ``(n_users, K)`` 0/1 hit matrix with ``K >= max(ks)``, ``n_relevant`` the ``(n_users,)``
    relevant-item counts (all >= 1); ``names`` come from :data:`RANKING_METRICS`.
    """
    h = _to_numpy(hits, "hits")
    if h.ndim != 2 or h.shape[0] == 0:
        raise DataError("no users to average over", field="hits", value=h.shape, expected="(n_users >= 1, K)")
    sums = ranking_metric_sums(h, n_relevant, ks, names)
    return {key: value / h.shape[0] for key, value in sums.items()}
