"""Evaluators: full ranking over all items, sampled ranking against drawn negatives, rating error.

Each evaluator takes a plain scoring callable, so it needs nothing from the trainer or the model classes:

* :func:`evaluate_full_ranking` — for every user with at least one relevant item, score *all* items in user
  batches, mask the excluded items (e.g. training interactions), take the top ``max(ks)`` and compute the
  ranking metrics of :mod:`attnrec.evaluation.metrics`. Memory is one batch of scores, ``batch_size x
  n_items``; no users x items matrix is ever built.
* :func:`evaluate_sampled_ranking` — the leave-one-out protocol of SASRec and its successors: one held-out
  positive per row ranked against ``n_negatives`` sampled items the user has not interacted with.
* :func:`evaluate_rating` — RMSE / MAE / MSE of a rating predictor, in batches, and the graded NDCG@10 per
  user of SAFMR's eq. 16 (:func:`rating_report`).

All three return ``dict[str, float]`` keyed like ``"recall@20"``, ``"ndcg@10"``, ``"rmse"``, plus a count
(``"n_users"``, ``"n_rows"`` or ``"n"``) so that a reader can see how many cases a number averages over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.metrics import _check_names_ks, graded_ndcg_at_k, ranking_metric_sums

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_METRICS",
    "PairScoreFn",
    "PredictFn",
    "ScoreFn",
    "evaluate_full_ranking",
    "evaluate_rating",
    "evaluate_sampled_ranking",
    "rating_predictions",
    "rating_report",
    "sample_negatives",
]

#: Scores for all items: given user indices (int64, shape ``(B,)``) return a float tensor ``(B, n_items)`` on
#: any device. It is called under ``torch.no_grad()``; the evaluator writes ``-inf`` into the returned tensor
#: in place, so return a fresh tensor (``U[u] @ V.T`` is) — a view of a larger tensor is detected and copied
#: first.
ScoreFn = Callable[[np.ndarray], torch.Tensor]
#: Scores of (user, item) pairs: two int64 arrays of shape ``(N,)`` -> float scores of shape ``(N,)``.
PairScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Predicted ratings of (user, item) pairs: two int64 arrays of shape ``(N,)`` -> ratings of shape ``(N,)``.
PredictFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

DEFAULT_KS: tuple[int, ...] = (10, 20)
DEFAULT_METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "hit", "mrr", "map")


def _as_csr(m: object, name: str, shape: tuple[int, int] | None = None) -> sp.csr_matrix:
    """A canonical CSR copy (sorted indices, no duplicates); every stored entry counts, whatever its value."""
    if not sp.issparse(m):
        raise DataError(
            "not a sparse matrix",
            field=name,
            value=type(m).__name__,
            expected="a scipy.sparse csr_matrix (users x items)",
        )
    out = sp.csr_matrix(m, copy=True)
    if shape is not None and out.shape != shape:
        raise DataError("shape mismatch", field=name, value=out.shape, expected=f"shape {shape}")
    out.sum_duplicates()  # also sorts indices, which _row_keys relies on
    return out


def _to_numpy_1d(x: object, name: str, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError("wrong shape", field=name, value=arr.shape, expected="a 1-D array")
    if dtype is np.int64 and arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError("not integer indices", field=name, value=str(arr.dtype), expected="integer indices")
    return arr.astype(dtype, copy=False)


def _check_range(idx: np.ndarray, n: int, name: str) -> None:
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"index out of range at position {pos}",
            field=name,
            value=int(idx[pos]),
            expected=f"0 <= index < {n}",
        )


def _row_keys(m: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Sorted int64 keys ``position * n_cols + col`` of the entries of ``m[rows]`` (position in ``rows``)."""
    sub = m[rows]
    pos = np.repeat(np.arange(len(rows), dtype=np.int64), np.diff(sub.indptr))
    return pos * m.shape[1] + sub.indices.astype(np.int64)


def _isin_sorted(keys: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """``np.isin(keys, sorted_ref)`` for a sorted reference, by binary search (no sort of ``keys``)."""
    if sorted_ref.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    at = np.searchsorted(sorted_ref, keys)
    return sorted_ref[np.minimum(at, sorted_ref.size - 1)] == keys


def _finish(sums: dict[str, float], n: int, count_key: str) -> dict[str, float]:
    out = {key: (value / n if n else float("nan")) for key, value in sums.items()}
    out[count_key] = float(n)
    return out


def evaluate_full_ranking(
    score_fn: ScoreFn,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 1024,
    users: np.ndarray | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Full-ranking top-k evaluation over all items, in user batches.

    Args:
        score_fn: user indices ``(B,)`` int64 -> scores ``(B, n_items)`` float tensor (see :data:`ScoreFn`).
        truth: users x items CSR; the stored entries of row ``u`` are the relevant items of user ``u`` in the
            split being evaluated (``n_relevant`` = their count, whether or not they are also excluded).
        exclude: users x items CSR of items never to recommend (train for validation, train + valid for test);
            they get score ``-inf`` before the top-k.
        ks: cut-offs; the list length is ``max(ks)``.
        metrics: names from :data:`attnrec.evaluation.metrics.RANKING_METRICS`.
        batch_size: users per batch; peak memory is about ``batch_size * n_items * 4`` bytes twice over
            (scores and the top-k work space of torch).
        users: the users to evaluate (default: all); users without relevant items are skipped in both cases.
        progress: show a tqdm bar over batches.

    Returns:
        ``{"{metric}@{k}": mean over evaluated users, ..., "n_users": number evaluated}`` (``nan`` means when
        no user has a relevant item).

    Ranking details: an item in the list whose score is ``-inf`` (excluded, or scored ``-inf`` by the model)
    never counts as a hit, which matters only when a user has fewer than ``max(ks)`` candidate items; when
    ``n_items < max(ks)`` the list is shorter and the missing ranks count as misses (precision still divides
    by ``k``). Ties: which of several equally scored items enter the list is decided by ``torch.topk``
    (deterministic for a given device and torch build, but unspecified; nothing random is added); within the
    list, equal scores are ordered by ascending item index. A NaN score of an item that is not excluded
    raises :class:`DataError`.
    """
    ks_l, names_l = _check_names_ks(ks, metrics)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    truth_c = _as_csr(truth, "truth")
    n_users, n_items = truth_c.shape
    excl_c = _as_csr(exclude, "exclude", (n_users, n_items)) if exclude is not None else None
    n_relevant = np.diff(truth_c.indptr).astype(np.int64)
    if users is None:
        todo = np.flatnonzero(n_relevant > 0).astype(np.int64)
    else:
        todo = _to_numpy_1d(users, "users", np.int64)
        _check_range(todo, n_users, "users")
        todo = todo[n_relevant[todo] > 0]
    kmax = max(ks_l)
    k_list = min(kmax, n_items)
    sums = dict.fromkeys((f"{m}@{k}" for m in names_l for k in ks_l), 0.0)

    starts = range(0, len(todo), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="full ranking", unit="batch")
    for start in starts:
        batch = todo[start : start + batch_size]
        b = len(batch)
        with torch.no_grad():
            scores = score_fn(batch)
            if not isinstance(scores, torch.Tensor) or scores.shape != (b, n_items):
                shape = tuple(scores.shape) if hasattr(scores, "shape") else type(scores).__name__
                raise DataError(
                    "score_fn returned the wrong shape",
                    field="score_fn",
                    value=shape,
                    expected=f"a torch.Tensor of shape ({b}, {n_items})",
                )
            if not scores.is_floating_point():
                scores = scores.float()
            elif scores._base is not None or scores.requires_grad:
                scores = scores.detach().clone()  # never write -inf into the caller's tensor
            if excl_c is not None:
                keys = _row_keys(excl_c, batch)
                if keys.size:
                    rows = torch.from_numpy(keys // n_items).to(scores.device)
                    cols = torch.from_numpy(keys % n_items).to(scores.device)
                    scores[rows, cols] = float("-inf")
            top_val, top_idx = torch.topk(scores, k_list, dim=1, largest=True, sorted=True)
            # torch orders NaN above every number, so a row with a NaN (outside the mask) has one at rank 1;
            # checking there costs nothing, where torch.isnan over the batch costs half a matmul
            nan_rows = torch.isnan(top_val[:, 0])
            if bool(nan_rows.any()):
                row = int(torch.nonzero(nan_rows)[0, 0])
                col = int(torch.nonzero(torch.isnan(scores[row]))[0, 0])
                raise DataError(
                    f"NaN score for user {int(batch[row])}, item {col}",
                    field="score_fn",
                    value=float("nan"),
                    expected="finite scores (or -inf)",
                )
            # order equal scores inside the list by item index: sort by index, then stably by score
            top_idx, perm = torch.sort(top_idx, dim=1)
            top_val = torch.gather(top_val, 1, perm)
            top_val, perm = torch.sort(top_val, dim=1, descending=True, stable=True)
            top_idx = torch.gather(top_idx, 1, perm)
            finite = (top_val > float("-inf")).cpu().numpy()
            items = top_idx.cpu().numpy().astype(np.int64)
            del scores, top_val, top_idx, perm
        cand = np.arange(b, dtype=np.int64)[:, None] * n_items + items
        hits = _isin_sorted(cand, _row_keys(truth_c, batch)) & finite
        if k_list < kmax:
            hits = np.concatenate([hits, np.zeros((b, kmax - k_list), dtype=bool)], axis=1)
        for key, value in ranking_metric_sums(hits, n_relevant[batch], ks_l, names_l).items():
            sums[key] += value
    return _finish(sums, len(todo), "n_users")


def sample_negatives(
    users: np.ndarray,
    positives: np.ndarray,
    n_items: int,
    exclude: sp.csr_matrix | None,
    n_negatives: int,
    rng: np.random.Generator,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``n_negatives`` distinct negatives per row, uniformly, without replacement within a row.

    A negative of row ``i`` is an item of ``candidates`` (default: all ``n_items`` items) that is neither
    ``positives[i]`` nor a stored entry of ``exclude[users[i]]``. Vectorised rejection sampling: draw for all
    rows at once, then redraw only the rejected slots (excluded, the positive, or a repeat within the row)
    until none is left. Returns int64 ``(len(users), n_negatives)``. Raises :class:`DataError` when a row has
    fewer than ``n_negatives`` admissible items.
    """
    users = _to_numpy_1d(users, "users", np.int64)
    positives = _to_numpy_1d(positives, "positives", np.int64)
    n = len(users)
    pool = None if candidates is None else np.unique(_to_numpy_1d(candidates, "candidates", np.int64))
    if pool is not None:
        _check_range(pool, n_items, "candidates")
    pool_size = n_items if pool is None else len(pool)
    if exclude is not None and not (isinstance(exclude, sp.csr_matrix) and exclude.has_canonical_format):
        exclude = _as_csr(exclude, "exclude")
    # admissible count per row = pool size - |excluded ∪ {positive}| within the pool
    excl_keys = np.zeros(0, dtype=np.int64)
    if exclude is not None and n:
        excl_keys = _row_keys(exclude, users)
    row_ids = np.arange(n, dtype=np.int64)
    if pool is None:
        in_pool = np.ones(excl_keys.size, dtype=bool)
        pos_in_pool = np.ones(n, dtype=bool)
    else:
        in_pool = _isin_sorted(excl_keys % n_items, pool)
        pos_in_pool = _isin_sorted(positives, pool)
    n_excl = np.bincount(excl_keys[in_pool] // n_items, minlength=n)
    pos_keys = row_ids * n_items + positives
    pos_extra = pos_in_pool & ~_isin_sorted(pos_keys, excl_keys)
    available = pool_size - n_excl - pos_extra
    short = available < n_negatives
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise DataError(
            f"row {i} (user {int(users[i])}) has only {int(available[i])} items to sample negatives from",
            field="n_negatives",
            value=n_negatives,
            expected=f"<= {int(available[i])}",
        )

    out = np.empty((n, n_negatives), dtype=np.int64)
    todo = np.ones((n, n_negatives), dtype=bool)
    while True:
        n_todo = int(todo.sum())
        if n_todo == 0:
            break
        draw = rng.integers(0, pool_size, size=n_todo, dtype=np.int64)
        out[todo] = draw if pool is None else pool[draw]
        keys = row_ids[:, None] * n_items + out
        bad = _isin_sorted(keys, excl_keys) | (out == positives[:, None])
        # repeats within a row: after a stable sort, every later copy of a value is rejected
        order = np.argsort(out, axis=1, kind="stable")
        srt = np.take_along_axis(out, order, axis=1)
        dup_sorted = np.zeros_like(todo)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        dup = np.zeros_like(todo)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        todo = bad | dup
    return out


def evaluate_sampled_ranking(
    score_pairs: PairScoreFn,
    truth_users: np.ndarray,
    truth_items: np.ndarray,
    n_items: int,
    exclude: sp.csr_matrix | None,
    n_negatives: int = 100,
    seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 4096,
    candidates: np.ndarray | None = None,
    ties: Literal["optimistic", "pessimistic"] = "optimistic",
) -> dict[str, float]:
    """Sampled ranking: each held-out positive ranked against ``n_negatives`` sampled negatives.

    Args:
        score_pairs: ``(users (N,), items (N,))`` int64 -> scores ``(N,)`` (see :data:`PairScoreFn`).
        truth_users, truth_items: one row per test case, ``(R,)`` each: the user and its held-out positive
            item.
        n_items: number of items (indices are ``0 .. n_items - 1``).
        exclude: users x items CSR of the items a user has interacted with (never drawn as negatives).
        n_negatives: negatives per row, drawn by :func:`sample_negatives` (uniform, distinct within a row).
        seed: seed of the NumPy generator; the negatives depend on ``seed`` and ``batch_size`` only.
        ks, metrics: cut-offs and metric names, as in :func:`evaluate_full_ranking`.
        batch_size: rows per batch (``batch_size * (n_negatives + 1)`` pairs are scored per call).
        candidates: item pool to draw negatives from (e.g. the items of one domain); default all items.
        ties: rank of the positive. ``"optimistic"`` (the SASRec / C2DSR evaluation code): rank =
            1 + #(negatives scoring strictly higher), so ties favour the positive — beware that a model giving
            every item the same score then gets hit@k = 1; ``"pessimistic"``: rank = 1 + #(negatives scoring
            higher or equal).

    Returns:
        ``{"{metric}@{k}": mean over rows, ..., "n_rows": R}`` with ``n_relevant = 1`` per row.
    """
    ks_l, names_l = _check_names_ks(ks, metrics)
    if ties not in ("optimistic", "pessimistic"):
        raise ConfigError(f"ties must be 'optimistic' or 'pessimistic', got {ties!r}")
    if n_negatives < 1:
        raise ConfigError(f"n_negatives must be >= 1, got {n_negatives!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    users = _to_numpy_1d(truth_users, "truth_users", np.int64)
    items = _to_numpy_1d(truth_items, "truth_items", np.int64)
    if users.shape != items.shape:
        raise DataError(
            "length mismatch", field="truth_items", value=items.shape, expected=f"shape {users.shape}"
        )
    _check_range(items, n_items, "truth_items")
    excl_c = None
    if exclude is not None:
        excl_c = _as_csr(exclude, "exclude")
        if excl_c.shape[1] != n_items:
            raise DataError(
                "shape mismatch", field="exclude", value=excl_c.shape, expected=f"{n_items} columns"
            )
        _check_range(users, excl_c.shape[0], "truth_users")
    elif users.size and users.min() < 0:
        _check_range(users, np.iinfo(np.int64).max, "truth_users")

    rng = np.random.default_rng(seed)
    kmax = max(ks_l)
    sums = dict.fromkeys((f"{m}@{k}" for m in names_l for k in ks_l), 0.0)
    for start in range(0, len(users), batch_size):
        u = users[start : start + batch_size]
        pos = items[start : start + batch_size]
        b = len(u)
        neg = sample_negatives(u, pos, n_items, excl_c, n_negatives, rng, candidates)
        cand = np.concatenate([pos[:, None], neg], axis=1)  # column 0 is the positive
        raw = score_pairs(np.repeat(u, n_negatives + 1), cand.reshape(-1))
        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().numpy()
        scores = np.asarray(raw, dtype=np.float64)
        if scores.shape != (b * (n_negatives + 1),):
            raise DataError(
                "score_pairs returned the wrong shape",
                field="score_pairs",
                value=scores.shape,
                expected=f"({b * (n_negatives + 1)},)",
            )
        if np.isnan(scores).any():
            i = int(np.flatnonzero(np.isnan(scores))[0])
            raise DataError(
                f"NaN score for user {int(u[i // (n_negatives + 1)])}",
                field="score_pairs",
                value=float("nan"),
                expected="non-NaN scores",
            )
        scores = scores.reshape(b, n_negatives + 1)
        above = scores[:, 1:] > scores[:, :1] if ties == "optimistic" else scores[:, 1:] >= scores[:, :1]
        rank = 1 + above.sum(axis=1)
        hits = np.arange(1, kmax + 1)[None, :] == rank[:, None]
        for key, value in ranking_metric_sums(hits, np.ones(b, dtype=np.int64), ks_l, names_l).items():
            sums[key] += value
    return _finish(sums, len(users), "n_rows")


def evaluate_rating(
    predict: PredictFn,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    batch_size: int = 65536,
    *,
    groups: np.ndarray | None = None,
    ndcg_k: int = 10,
) -> dict[str, float]:
    """RMSE, MAE, MSE and graded NDCG@``ndcg_k`` of ``predict(users, items)`` against ``ratings``.

    ``users``, ``items`` are int64 ``(N,)``, ``ratings`` ``(N,)``; ``predict`` is called on batches of
    ``batch_size`` rows and returns ``(N_batch,)`` ratings (NumPy or torch). ``groups`` (``(N,)``, default
    ``users``) are the users the NDCG ranks within, for a ``predict`` whose first argument is not the user.
    Returns :func:`rating_report` of the predictions: ``{"rmse", "mae", "mse", "n"}`` and the graded NDCG.
    """
    pred = rating_predictions(predict, users, items, ratings, batch_size)
    g = users if groups is None else _to_numpy_1d(groups, "groups", np.int64)
    return rating_report(g, ratings, pred, ndcg_k)


def rating_predictions(
    predict: PredictFn, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, batch_size: int = 65536
) -> np.ndarray:
    """``predict(users, items)`` in batches of ``batch_size`` rows as one float64 ``(N,)`` array, checked: the
    shape of each batch, finite values, finite ``ratings`` of the same length as ``users`` and ``items``."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    u = _to_numpy_1d(users, "users", np.int64)
    i = _to_numpy_1d(items, "items", np.int64)
    r = _to_numpy_1d(ratings, "ratings", np.float64)
    if not np.isfinite(r).all():
        j = int(np.flatnonzero(~np.isfinite(r))[0])
        raise DataError(
            f"non-finite rating at row {j}", field="ratings", value=float(r[j]), expected="finite ratings"
        )
    _check_rows("items/ratings", u, i, r)
    out = np.empty(len(u), dtype=np.float64)
    for start in range(0, len(u), batch_size):
        sl = slice(start, start + batch_size)
        with torch.no_grad():
            raw = predict(u[sl], i[sl])
        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().numpy()
        pred = np.asarray(raw, dtype=np.float64)
        if pred.shape != r[sl].shape:
            raise DataError(
                "predict returned the wrong shape",
                field="predict",
                value=pred.shape,
                expected=f"{r[sl].shape}",
            )
        if not np.isfinite(pred).all():
            j = int(np.flatnonzero(~np.isfinite(pred))[0])
            raise DataError(
                f"non-finite prediction for user {int(u[start + j])}, item {int(i[start + j])}",
                field="predict",
                value=float(pred[j]),
                expected="finite ratings",
            )
        out[sl] = pred
    return out


def _check_rows(field: str, *arrays: np.ndarray) -> None:
    """The three per-row arrays of a rating evaluation have one length, and it is not zero."""
    if len({x.shape for x in arrays}) > 1:
        raise DataError(
            "length mismatch",
            field=field,
            value=tuple(x.shape for x in arrays),
            expected="three arrays of the same length",
        )
    if arrays[0].size == 0:
        raise DataError("no rows to evaluate", field="ratings", expected="at least one rating")


def rating_report(
    users: np.ndarray, ratings: np.ndarray, pred: np.ndarray, ndcg_k: int = 10
) -> dict[str, float]:
    """The rating metrics of predictions ``pred`` against ``ratings`` (both ``(N,)``, rows of ``users``).

    ``{"rmse", "mae", "mse", "n"}`` over every row (errors in float64), plus ``"graded_ndcg@K"`` (K =
    ``ndcg_k``): SAFMR's eq. 16, :func:`~attnrec.evaluation.metrics.graded_ndcg_at_k` per user over that
    user's rows ranked by ``pred`` with the true rating as graded relevance (gain ``2^r - 1``), averaged over
    the users with at least two rows (one row always scores 1) and some rating above 0 (all-zero relevance has
    no NDCG), as ``benchmarks/bench_review.py``'s ``ndcg10``; ``"graded_ndcg_users"`` counts them. Both keys
    are absent when no user qualifies or a rating is negative (relevance must be >= 0).
    """
    u = _to_numpy_1d(users, "users", np.int64)
    r = _to_numpy_1d(ratings, "ratings", np.float64)
    p = _to_numpy_1d(pred, "pred", np.float64)
    _check_rows("ratings/pred", u, r, p)
    err = p - r
    n = len(u)
    mse_v = float(np.dot(err, err)) / n
    out = {"rmse": float(np.sqrt(mse_v)), "mae": float(np.abs(err).sum()) / n, "mse": mse_v, "n": float(n)}
    if (r < 0).any():
        return out
    uniq, gid, counts = np.unique(u, return_inverse=True, return_counts=True)
    top = np.zeros(len(uniq))
    np.maximum.at(top, gid, r)
    keep = ((counts >= 2) & (top > 0))[gid]
    if keep.any():
        _, ndcg = graded_ndcg_at_k(u[keep], r[keep], p[keep], ndcg_k)
        out[f"graded_ndcg@{ndcg_k}"] = float(ndcg.mean())
        out["graded_ndcg_users"] = float(len(ndcg))
    return out
