"""Next-item evaluation per target domain (cross-domain sequential recommendation), as ABXI evaluates.

For every held-out row ``(user, target)`` the model scores every item given the user's context, once, and two
rankings are read off those scores, per TARGET DOMAIN (rows are grouped by the domain of their target; results are
never merged across domains, only averaged at the end for early stopping):

* **sampled**: the target against ``n_negatives`` (999) items drawn uniformly without replacement from the
  target's own domain, never an item of the user's context or of ``exclude`` (the user's history) nor the target;
  ABXI's rank rule ``1 + #(negatives scored above the target)`` (ties favour the target; ``ties="pessimistic"``
  counts them against it). Metrics: ``hit@k``, ``ndcg@k`` (``1 / log2(rank + 1)`` when ``rank <= k``), ``mrr``
  (``1 / rank`` over the whole candidate list, not cut), ``auc`` (the fraction of the negatives scored below the
  target: ``(n_negatives - (rank - 1)) / n_negatives``).
* **full**: the target against every item of its domain that is not in the context or ``exclude``; the same
  metrics under ``full/``.

Keys: ``"{domain}/{metric}"``, ``"{domain}/full/{metric}"``, ``"{domain}/n_rows"``, and the unweighted means over
the domains present, ``"{metric}"`` / ``"full/{metric}"`` (``ndcg@10`` is what early stopping watches; ABXI selects
on the sum of the per-domain MRR, which orders epochs the same way as the mean).

**Context (what the model reads).** ``context=None``: the model's stored state (its training sequences, for
validation). ``context=History`` (one row per user index, oldest first): the rows are scored from that history
(``Query(users, history, domain)``); at test time it is the training sequence plus the validation item
(:func:`context_history`), so no test item is ever in an input. Items of the context are never negatives and are
masked in the full ranking.

**Negatives are the split's, not the model's**: they depend only on the rows, the exclusions, ``seed`` and the
domain, drawn in fixed chunks of :data:`SAMPLE_CHUNK` rows (``numpy`` generator seeded by ``(seed, domain id,
chunk)``), so every model evaluated on a split meets the same negatives whatever its batch size.

Deliberate differences from ABXI's code (commit 72e52c9, ``models/data/dataloader.py``): it draws the negatives
unseeded, anew at every evaluation; and its domain-B pool starts one id early (``arange(n_item_a, n_item + 1)``), so
the last A item can be a B negative. Ours are seeded and the pools are exactly the domains' items. Its model
selection sums the per-domain validation MRR; early stopping here watches the mean per-domain NDCG@10 (issue 16).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.evaluators import _isin_sorted
from attnrec.models.capabilities import ItemScorer
from attnrec.models.query import History, Query

log = logging.getLogger(__name__)

#: rows per negative-sampling chunk (fixed, so that the negatives do not depend on the scoring batch size)
SAMPLE_CHUNK = 2048


@dataclass(frozen=True)
class SequentialRanking:
    """The per-target-domain protocol (see the module docstring). ``item_domains`` (n_items,) domain id per item
    index and ``domain_names`` (id -> name) are required; ``context`` is the History the rows are scored from
    (None: the model's stored state). ``on_short``: when a row has fewer admissible negatives than
    ``n_negatives`` (a small domain), ``"error"`` (a DataError naming the user) or ``"cap"`` (every row of that
    domain gets as many as the shortest row has; logged, and reported as ``{domain}/n_negatives``)."""

    item_domains: np.ndarray | None = None
    domain_names: tuple[str, ...] = ()
    n_negatives: int = 999
    seed: int = 0
    ks: tuple[int, ...] = (1, 5, 10)
    full: bool = True
    ties: Literal["optimistic", "pessimistic"] = "optimistic"
    batch_size: int = 512
    context: History | None = None
    on_short: Literal["error", "cap"] = "error"


def context_history(parts: list[Interactions], n_users: int) -> History:
    """One history row per user index ``0 .. n_users - 1``: the interactions of ``parts`` in that order (e.g.
    ``[train, valid]``: the validation item after the training sequence), each part ordered by ``timestamp``
    then frame order (frame order without timestamps). ``timestamps`` are kept when every part has them."""
    users, items, ts, part_no, row_no = [], [], [], [], []
    with_ts = all("timestamp" in p.frame.columns for p in parts)
    for k, p in enumerate(parts):
        users.append(p.users)
        items.append(p.items)
        part_no.append(np.full(len(p), k, dtype=np.int64))
        row_no.append(np.arange(len(p), dtype=np.int64))
        ts.append(p.frame["timestamp"].to_numpy().astype(np.int64) if with_ts else np.zeros(len(p), np.int64))
    u, i, t = np.concatenate(users), np.concatenate(items), np.concatenate(ts)
    order = np.lexsort((np.concatenate(row_no), t, np.concatenate(part_no), u))
    u, i, t = u[order], i[order], t[order]
    if len(u) and (u.min() < 0 or u.max() >= n_users):
        raise ConfigError(f"context_history: user index out of range 0..{n_users - 1}")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=n_users))]).astype(np.int64)
    return History(i, offsets, timestamps=t if with_ts else None)


def take_history(h: History, rows: np.ndarray) -> History:
    """Rows ``rows`` of ``h`` (any order, repeats allowed), vectorised (no loop over rows)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = h.offsets[rows], np.diff(h.offsets)[rows]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # position of every output entry in h.items: its row's start plus its rank within the row
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    return History(
        h.items[idx],
        offsets,
        None if h.values is None else h.values[idx],
        None if h.timestamps is None else h.timestamps[idx],
    )


def draw_negatives(
    excl: sp.csr_matrix, targets: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(B, n) int64: per row, ``n`` distinct items of ``pool`` (sorted item indices), uniformly without
    replacement, none of them in row ``b`` of ``excl`` (B, n_items) nor ``targets[b]``. Every row must have room
    (see :func:`_negatives_for`).

    Why not :func:`~attnrec.evaluation.evaluators.sample_negatives`: that one re-sorts every row in each of its
    rejection rounds (about six for 999 of 12,000 items); here a row draws ``k > n`` items with replacement once,
    keeps its first ``n`` admissible distinct ones in draw order (the same law: a uniform ``n``-subset of the
    admissible items), and only the rare rows left short draw again. When ``n`` is over half the pool, each row
    takes the ``n`` admissible items of smallest random key instead (a random permutation; no rejection).
    """
    b, n_items, size = len(targets), excl.shape[1], len(pool)
    excl_keys = _keys(excl)  # sorted row * n_items + item
    tgt_keys = np.arange(b, dtype=np.int64) * n_items + targets
    out = np.empty((b, n), dtype=np.int64)
    if 2 * n > size:
        keys = rng.random((b, size))
        cand = np.arange(b, dtype=np.int64)[:, None] * n_items + pool[None, :]
        bad = _isin_sorted(cand, excl_keys) | (cand == tgt_keys[:, None])
        keys[bad] = np.inf
        first = np.argpartition(keys, n - 1, axis=1)[:, :n] if n < size else np.argsort(keys, axis=1)
        first = np.take_along_axis(first, np.argsort(np.take_along_axis(keys, first, 1), axis=1), 1)
        return pool[first]
    per_row = np.diff(excl.indptr)
    todo = np.arange(b)
    # draws per row: n, the expected repeats (n^2 / 2 size, doubled) and the row's exclusions, plus slack
    k = n + 2 * (n * n // (2 * size)) + int(per_row.max(initial=0)) + 16
    while len(todo):
        draw = pool[rng.integers(0, size, (len(todo), k))]
        keys = todo[:, None] * n_items + draw
        ok = ~(_isin_sorted(keys, excl_keys) | (keys == tgt_keys[todo][:, None]))
        # a repeat within a row is not admissible: after a stable sort, every later copy is marked
        order = np.argsort(draw, axis=1, kind="stable")
        srt = np.take_along_axis(draw, order, axis=1)
        rep = np.zeros_like(ok)
        rep[:, 1:] = srt[:, 1:] == srt[:, :-1]
        np.put_along_axis(ok, order, np.take_along_axis(ok, order, 1) & ~rep, axis=1)
        enough = ok.sum(1) >= n
        rows = np.flatnonzero(enough)
        take = ok[rows] & (np.cumsum(ok[rows], axis=1) <= n)  # the first n admissible draws, in draw order
        out[todo[rows]] = draw[rows][take].reshape(len(rows), n)
        todo = todo[~enough]
        k = 2 * k
    return out


def _keys(m: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys ``row * n_cols + col`` of the stored entries of ``m``."""
    m = sp.csr_matrix(m)
    m.sum_duplicates()
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * m.shape[1] + m.indices.astype(np.int64)


def _rank_metrics(rank: torch.Tensor, n_cands: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """Sums over rows: ``hit@k``, ``ndcg@k``, ``mrr`` and ``auc`` from 1-based ranks among ``n_cands`` candidates
    (the target included)."""
    r = rank.to(torch.float64)
    out = {}
    for k in ks:
        inside = r <= k
        out[f"hit@{k}"] = float(inside.sum())
        out[f"ndcg@{k}"] = float(torch.where(inside, 1.0 / torch.log2(r + 1.0), 0.0).sum())
    out["mrr"] = float((1.0 / r).sum())
    others = (n_cands - 1).to(torch.float64).clamp(min=1)
    out["auc"] = float(((others - (r - 1)) / others).sum())
    return out


def _exclusion(
    users: np.ndarray, rows_hist: History | None, exclude: sp.csr_matrix | None, n_items: int
) -> sp.csr_matrix:
    """(B, n_items) 0/1: the items of each row's context and of ``exclude[user]``."""
    parts = []
    if exclude is not None:
        parts.append(exclude[users])
    if rows_hist is not None:
        parts.append(rows_hist.csr(n_items))
    if not parts:
        return sp.csr_matrix((len(users), n_items), dtype=np.float32)
    m = sp.csr_matrix(sum(parts[1:], parts[0]))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def evaluate_sequential(
    model: ItemScorer,
    data: Interactions,
    protocol: SequentialRanking,
    exclude: sp.csr_matrix | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on the held-out rows of ``data`` under ``protocol`` (see the module docstring).

    ``exclude``: users x items CSR of items that are never negatives and are masked in the full ranking (the
    user's known history: train for validation, train + valid for test); the context's items are added to it.
    """
    doms = protocol.item_domains
    if doms is None or len(doms) != model.n_items:
        raise ConfigError(
            "SequentialRanking needs item_domains: one domain id per item of the model's vocabulary "
            f"({model.n_items} items)"
        )
    doms = np.asarray(doms, dtype=np.int64)
    names = protocol.domain_names or tuple(str(d) for d in range(int(doms.max()) + 1))
    if len(data) == 0:
        raise ConfigError("SequentialRanking: the split has no rows to rank")
    if protocol.n_negatives < 1:
        raise ConfigError(f"SequentialRanking: n_negatives={protocol.n_negatives}; expected >= 1")
    users, targets = data.users, data.items
    ctx = protocol.context
    if ctx is not None and len(users) and users.max() >= len(ctx):
        raise ConfigError(
            f"SequentialRanking: the context has {len(ctx)} rows, the split has user {users.max()}"
        )
    exclude = None if exclude is None else sp.csr_matrix(exclude)
    row_dom = doms[targets]
    out: dict[str, float] = {}
    per_domain: list[dict[str, float]] = []
    for d in np.unique(row_dom):
        sel = np.flatnonzero(row_dom == d)
        name = names[int(d)]
        pool = np.flatnonzero(doms == d)
        sums: dict[str, float] = {}
        hist_all = None if ctx is None else take_history(ctx, users[sel])
        excl_all = _exclusion(users[sel], hist_all, exclude, model.n_items)
        n_neg = _negatives_for(excl_all, pool, targets[sel], users[sel], protocol, data, name)
        for c, start in enumerate(range(0, len(sel), SAMPLE_CHUNK)):
            rows = sel[start : start + SAMPLE_CHUNK]
            hist = None if hist_all is None else take_history(hist_all, np.arange(start, start + len(rows)))
            excl = excl_all[start : start + len(rows)]
            rng = np.random.default_rng([protocol.seed, int(d), c])
            neg = draw_negatives(excl, targets[rows], pool, n_neg, rng)
            for b in range(0, len(rows), protocol.batch_size):
                part = slice(b, b + protocol.batch_size)
                query = Query(
                    users=users[rows[part]],
                    history=None if hist is None else take_history(hist, np.arange(len(rows))[part]),
                    domain=name,
                    exclude="none",
                )
                with torch.no_grad():
                    scores = model.score(query)
                batch_sums = _score_rows(scores, targets[rows[part]], neg[part], excl[part], pool, protocol)
                for key, v in batch_sums.items():
                    sums[key] = sums.get(key, 0.0) + v
        n = float(len(sel))
        res = {key: v / n for key, v in sums.items()}
        per_domain.append(res)
        out.update({f"{name}/{key}": v for key, v in res.items()})
        out[f"{name}/n_rows"] = n
        out[f"{name}/n_negatives"] = float(n_neg)
    for key in per_domain[0]:
        out[key] = float(np.mean([r[key] for r in per_domain]))
    out["n_rows"] = float(len(data))
    return out


def _negatives_for(
    excl: sp.csr_matrix,
    pool: np.ndarray,
    targets: np.ndarray,
    users: np.ndarray,
    protocol: SequentialRanking,
    data: Interactions,
    domain: str,
) -> int:
    """How many negatives the rows of one domain get: ``protocol.n_negatives``; when a row has fewer admissible
    items, a DataError naming the user, or with ``on_short="cap"`` the smallest room of any row (logged; the
    count is reported as ``{domain}/n_negatives``)."""
    in_pool = np.asarray(excl[:, pool].sum(axis=1)).ravel()
    tgt_excluded = np.asarray(excl[np.arange(len(targets)), targets]).ravel() > 0
    room = len(pool) - in_pool - (~tgt_excluded)
    short = room < protocol.n_negatives
    if not short.any():
        return protocol.n_negatives
    r = int(np.flatnonzero(short)[0])
    if protocol.on_short == "cap" and room.min() >= 1:
        log.info(
            "domain %r: %d row(s) have fewer than %d items to draw negatives from; every row of the domain gets "
            "%d negatives",
            domain,
            int(short.sum()),
            protocol.n_negatives,
            int(room.min()),
        )
        return int(room.min())
    raise DataError(
        f"user {str(data.user_vocab.ids[users[r]])!r} has only {int(room[r])} item(s) of domain {domain!r} to "
        f"sample negatives from ({int(short.sum())} row(s) in all)",
        field="n_negatives",
        value=protocol.n_negatives,
        expected=f"<= {int(room[r])}, or a domain with more items",
    )


def _score_rows(
    scores: torch.Tensor,
    targets: np.ndarray,
    neg: np.ndarray,
    excl: sp.csr_matrix,
    pool: np.ndarray,
    protocol: SequentialRanking,
) -> dict[str, float]:
    """Metric sums of one scored batch: sampled ranks from the gathered candidates, full ranks within ``pool``."""
    b = len(targets)
    if scores.shape != (b, excl.shape[1]):
        raise DataError(
            "the model's scores have the wrong shape",
            field="score",
            value=tuple(scores.shape),
            expected=f"({b}, {excl.shape[1]})",
        )
    scores = scores.float()
    dev = scores.device
    tgt = torch.from_numpy(targets).to(dev)
    t_score = scores.gather(1, tgt[:, None])
    if bool(torch.isnan(t_score).any()) or bool(torch.isinf(t_score).any()):
        row = int(torch.nonzero(~torch.isfinite(t_score))[0, 0])
        raise DataError(
            f"non-finite score of the target item {int(targets[row])}",
            field="score",
            value=float(t_score[row, 0]),
            expected="a finite score for every item of the target's domain",
        )
    beats = torch.gt if protocol.ties == "optimistic" else torch.ge
    neg_scores = scores.gather(1, torch.from_numpy(neg).to(dev))
    if bool(torch.isnan(neg_scores).any()):
        raise DataError("NaN score of a sampled negative", field="score", expected="non-NaN scores")
    rank = 1 + beats(neg_scores, t_score).sum(1)
    n_s = torch.full((b,), neg.shape[1] + 1, device=dev)
    out = _rank_metrics(rank, n_s, protocol.ks)
    if protocol.full:
        cand = scores[:, torch.from_numpy(pool).to(dev)]  # advanced indexing: a copy
        # the context/history items of the pool are masked (never the target itself)
        sub = excl[:, pool].tocoo()
        keep = pool[sub.col] != targets[sub.row]
        r_ex = torch.from_numpy(sub.row[keep].astype(np.int64)).to(dev)
        c_ex = torch.from_numpy(sub.col[keep].astype(np.int64)).to(dev)
        cand[r_ex, c_ex] = float("-inf")
        if bool(torch.isnan(cand).any()):
            raise DataError("NaN score in the target's domain", field="score", expected="non-NaN scores")
        # the pool holds the target itself: under ties="pessimistic" (>=) it would beat itself, one rank too many
        f_rank = 1 + beats(cand, t_score).sum(1) - int(protocol.ties == "pessimistic")
        n_f = torch.full((b,), len(pool), device=dev) - torch.bincount(r_ex, minlength=b)
        out.update({f"full/{k}": v for k, v in _rank_metrics(f_rank, n_f, protocol.ks).items()})
    return out
