"""Evaluation across the ranks of a distributed run: each rank scores its share, the states are gathered and merged.

:func:`evaluate` is :func:`attnrec.evaluation.protocols.evaluate` on one process. Under a process group (a run
launched by ``torchrun`` or ``attnrec train --nproc N``) every rank must call it with the same arguments; each
rank then scores a part and every rank returns the same merged metrics (merged in rank order, so the numbers are
identical on every rank and early stopping decides alike):

============================  ===========================================================================
protocol                      what a rank scores, and how the parts are merged
============================  ===========================================================================
``Rating``                    a contiguous block of rows; the parts' predictions are gathered in rank
                              order and every rank scores all rows (the graded NDCG ranks each user's
                              rows together, so it needs them all: O(rows) floats gathered)
``CTR``                       a contiguous block of rows of every part; :class:`CTRAccumulator` states
                              (exact: AUC from merged per-score counts)
``FullRanking``               every ``world``-th evaluated user; per-metric sums over users and the counts
``SampledRanking``            all rows on every rank (its negatives are drawn per batch from one seed, so
                              a split would draw others than one process does): no speed-up, same numbers
============================  ===========================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.evaluation import protocols
from attnrec.evaluation.accumulators import CTRAccumulator
from attnrec.evaluation.evaluators import evaluate_full_ranking, rating_predictions, rating_report
from attnrec.models.capabilities import ItemScorer, RatingPredictor, RowScorer
from attnrec.models.query import Query
from attnrec.training.distributed import DistContext, all_gather_objects, context, shard_bounds

__all__ = ["evaluate", "merge_ranking"]


def evaluate(
    model: object,
    data: Any,
    protocol: protocols.Protocol | None = None,
    *,
    exclude: sp.csr_matrix | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on ``data`` under ``protocol`` (see :func:`attnrec.evaluation.protocols.evaluate`),
    sharded across the ranks of the default process group when there is one (call it on every rank)."""
    ctx = context()
    if not ctx.active:
        return protocols.evaluate(model, data, protocol, exclude=exclude)
    protocol = protocol if protocol is not None else protocols.default_protocol(model)
    if isinstance(protocol, protocols.CTR):
        return _ctr(model, data, protocol, ctx)
    if isinstance(protocol, protocols.Rating) and isinstance(data, Interactions):
        if not isinstance(model, RatingPredictor):
            return protocols.evaluate(model, data, protocol)  # its error names the capability
        lo, hi = shard_bounds(len(data), ctx.rank, ctx.world)
        pred = np.empty(0, dtype=np.float64)
        if hi > lo:
            block = data.with_frame(data.frame.slice(lo, hi - lo))
            pred = rating_predictions(
                *protocols.rating_inputs(model, block), block.ratings, protocol.batch_size
            )
        parts = all_gather_objects(pred, "gathering the rating predictions")
        return rating_report(data.users, data.ratings, np.concatenate(parts), protocol.ndcg_k)
    if isinstance(protocol, protocols.FullRanking) and isinstance(data, Interactions):
        if not isinstance(model, ItemScorer):
            return protocols.evaluate(
                model, data, protocol, exclude=exclude
            )  # its error names the capability
        truth = data.csr()
        users = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)[ctx.rank :: ctx.world]
        part = evaluate_full_ranking(
            lambda u: model.score(Query(users=u, exclude="none")),
            truth,
            exclude,
            ks=protocol.ks,
            metrics=protocol.metrics,
            batch_size=protocol.batch_size,
            users=users,
        )
        return merge_ranking(all_gather_objects(part, "gathering the ranking metrics"), "n_users")
    # sampled ranking (and anything a protocol refuses): the same on every rank
    return protocols.evaluate(model, data, protocol, exclude=exclude)


def merge_ranking(parts: list[dict[str, float]], count_key: str) -> dict[str, float]:
    """Means over disjoint groups of users merged into the mean over all of them: each part's ``metric`` values
    weighted by its ``count_key``; a part that evaluated no one (NaN means, count 0) adds nothing."""
    total = sum(p[count_key] for p in parts)
    keys = [k for k in parts[0] if k != count_key]
    out = {
        k: (sum(p[k] * p[count_key] for p in parts if p[count_key] > 0) / total if total else float("nan"))
        for k in keys
    }
    out[count_key] = float(total)
    return out


def _ctr(model: object, data: Any, protocol: protocols.CTR, ctx: DistContext) -> dict[str, float]:
    from attnrec.data.ctr import CTRData
    from attnrec.data.ctr_shards import ShardedCTRData

    if not isinstance(model, RowScorer):
        return protocols.evaluate(model, data, protocol)  # its error names the missing capability
    parts = list(data) if isinstance(data, ShardedCTRData) else [data]
    acc = CTRAccumulator()
    for part in parts:
        if not isinstance(part, CTRData):
            raise ConfigError(f"the CTR protocol evaluates CTRData rows, not {type(part).__name__}")
        lo, hi = shard_bounds(len(part), ctx.rank, ctx.world)
        if hi > lo:
            rows = part.subset(slice(lo, hi))
            acc.update(rows.labels, model.predict_proba(rows, protocol.batch_size))
    merged = CTRAccumulator()
    for other in all_gather_objects(acc, "gathering the CTR metrics"):
        merged.merge(other)
    return merged.compute()
