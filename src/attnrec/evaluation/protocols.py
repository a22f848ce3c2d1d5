"""Evaluation protocols as data, and the one :func:`evaluate` that runs them on any model.

A protocol says *how* a split is scored; the model's declared capabilities say *what* it can be scored by:

=================  ======================  ==================================================================
protocol           needs                   metrics
=================  ======================  ==================================================================
:class:`Rating`    RatingPredictor         rmse, mae, mse over the split's rows; graded_ndcg@10 per user
                                           (SAFMR's eq. 16: rows ranked by prediction, relevance = rating)
:class:`CTR`       RowScorer               auc, logloss over feature rows (streaming, mergeable state)
:class:`FullRanking` ItemScorer            recall/ndcg/precision/hit/mrr/map@k over all items, ``exclude`` masked
:class:`SampledRanking` ItemScorer         the same @k against ``n_negatives`` drawn per row from a pool
                                           (all items, or the items of the positive's own domain)
:class:`SequentialRanking` ItemScorer      next item per target domain, sampled (999 domain negatives) and
                                           full within the domain, from a context (``evaluation/sequential.py``)
=================  ======================  ==================================================================

Models never evaluate themselves: the run, the CLI, benchmarks and validation during fit all call
:func:`evaluate`. Select on validation (``exclude`` = train); report test once (``exclude`` = train + valid).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.evaluation.accumulators import CTRAccumulator
from attnrec.evaluation.evaluators import (
    DEFAULT_KS,
    DEFAULT_METRICS,
    evaluate_full_ranking,
    evaluate_rating,
    evaluate_sampled_ranking,
)
from attnrec.evaluation.sequential import SequentialRanking, evaluate_sequential
from attnrec.models.capabilities import DomainItemScorer, ItemScorer, RatingPredictor, RowScorer, TaskKind
from attnrec.models.query import Query


@dataclass(frozen=True)
class Rating:
    """RMSE / MAE / MSE of predicted ratings against the split's ``rating`` column, and the graded
    NDCG@``ndcg_k`` per user of :func:`~attnrec.evaluation.evaluators.rating_report` (SAFMR's eq. 16; the
    paper's p = 10)."""

    batch_size: int = 65536
    ndcg_k: int = 10


@dataclass(frozen=True)
class CTR:
    """AUC and logloss of click probabilities against the rows' labels, accumulated batch by batch."""

    batch_size: int = 4096


@dataclass(frozen=True)
class FullRanking:
    """Every item ranked for every user with a held-out item; ``exclude`` (train, or train + valid) masked."""

    ks: tuple[int, ...] = DEFAULT_KS
    metrics: tuple[str, ...] = DEFAULT_METRICS
    batch_size: int = 1024


@dataclass(frozen=True)
class SampledRanking:
    """Each held-out (user, item) row ranked against ``n_negatives`` items drawn from a pool.

    ``pool="all"`` draws from every item; ``pool="domain"`` from the items of the positive's own domain
    (``item_domains`` maps item index -> domain id; per-domain pools of cross-domain data). Items in ``exclude``
    (the user's known interactions) are never drawn. ``ties`` as in
    :func:`~attnrec.evaluation.evaluators.evaluate_sampled_ranking`.
    """

    n_negatives: int = 999
    pool: Literal["all", "domain"] = "all"
    item_domains: np.ndarray | None = None
    seed: int = 0
    ks: tuple[int, ...] = (1, 5, 10)
    metrics: tuple[str, ...] = ("hit", "ndcg", "mrr")
    ties: Literal["optimistic", "pessimistic"] = "pessimistic"
    batch_size: int = 1024


Protocol = Rating | CTR | FullRanking | SampledRanking | SequentialRanking


def default_protocol(model: object, ks: Sequence[int] = DEFAULT_KS) -> Protocol:
    """The protocol a model is selected and reported on by default: by its task, then its capabilities."""
    task = getattr(type(model), "task", None)
    if isinstance(model, RowScorer) and task == TaskKind.CTR:
        return CTR()
    if isinstance(model, RatingPredictor) and task == TaskKind.RATING:
        return Rating()
    if isinstance(model, DomainItemScorer) and task == TaskKind.SEQUENTIAL:
        # ABXI's protocol: per target domain, 999 seeded negatives of that domain; a small domain caps them
        return SequentialRanking(
            item_domains=model.item_domains(), domain_names=tuple(model.domain_names), on_short="cap"
        )
    if isinstance(model, ItemScorer):
        return FullRanking(ks=tuple(ks))
    raise ConfigError(f"{type(model).__name__} declares no capability an evaluation protocol can use")


def _need(model: object, cap: type, protocol: Protocol) -> None:
    if not isinstance(model, cap):
        raise ConfigError(
            f"{getattr(model, 'name', type(model).__name__)} cannot be evaluated with {type(protocol).__name__}: "
            f"it does not declare the {cap.__name__} capability"
        )


def evaluate(
    model: object,
    data: Any,
    protocol: Protocol | None = None,
    *,
    exclude: sp.csr_matrix | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on ``data`` (an encoded split, or CTR rows) under ``protocol`` (default: by task).

    ``exclude``: users x items CSR masked at ranking time (ranking protocols); never drawn as a sampled negative.
    """
    protocol = protocol if protocol is not None else default_protocol(model)
    if isinstance(protocol, CTR):
        _need(model, RowScorer, protocol)
        assert isinstance(model, RowScorer)
        return _ctr(model, data, protocol)
    if not isinstance(data, Interactions):
        raise ConfigError(
            f"{type(protocol).__name__} evaluates an encoded split (Interactions), not {type(data).__name__}"
        )
    if isinstance(protocol, Rating):
        _need(model, RatingPredictor, protocol)
        assert isinstance(model, RatingPredictor)
        return evaluate_rating(
            *rating_inputs(model, data),
            data.ratings,
            protocol.batch_size,
            groups=data.users,
            ndcg_k=protocol.ndcg_k,
        )
    _need(model, ItemScorer, protocol)
    assert isinstance(model, ItemScorer)
    if isinstance(protocol, SequentialRanking):  # next item per target domain (evaluation/sequential.py)
        return evaluate_sequential(model, data, protocol, exclude)
    if isinstance(protocol, FullRanking):
        return evaluate_full_ranking(
            _score_users(model),
            data.csr(),
            exclude,
            ks=protocol.ks,
            metrics=protocol.metrics,
            batch_size=protocol.batch_size,
        )
    return _sampled(model, data, protocol, exclude)


def rating_inputs(
    model: RatingPredictor, data: Interactions
) -> tuple[Callable[[np.ndarray, np.ndarray], Any], np.ndarray, np.ndarray]:
    """``(predict, users, items)`` for :func:`evaluate_rating` on ``data``'s rows."""
    if type(model).predict_interactions is RatingPredictor.predict_interactions:
        return model.predict, data.users, data.items
    # a model whose rows carry more than their ids: predict the rows once, then score them by position
    pred = model.predict_interactions(data)
    rows = np.arange(len(data), dtype=np.int64)
    return (lambda r, _: pred[r]), rows, rows


def _score_users(model: ItemScorer) -> Callable[[np.ndarray], Any]:
    return lambda users: model.score(Query(users=users, exclude="none"))


def _ctr(model: RowScorer, data: Any, protocol: CTR) -> dict[str, float]:
    from attnrec.data.ctr import CTRData
    from attnrec.data.ctr_shards import ShardedCTRData

    parts = list(data) if isinstance(data, ShardedCTRData) else [data]
    # state per part, merged: the same reduction shards across processes later (merge is exact)
    acc = CTRAccumulator()
    for part in parts:
        if not isinstance(part, CTRData):
            raise ConfigError(f"the CTR protocol evaluates CTRData rows, not {type(part).__name__}")
        acc.update(part.labels, model.predict_proba(part, protocol.batch_size))
    return acc.compute()


def _sampled(
    model: ItemScorer, data: Interactions, protocol: SampledRanking, exclude: sp.csr_matrix | None
) -> dict[str, float]:
    if protocol.pool not in ("all", "domain"):
        raise ConfigError(f"SampledRanking pool: expected 'all' or 'domain', got {protocol.pool!r}")
    users, items = data.users, data.items
    # a negative is never an item the user has interacted with: the masked items and every positive of the split
    # being evaluated (the user's other held-out items are not negatives)
    own = data.csr()
    exclude = own if exclude is None else (sp.csr_matrix(exclude) + own).tocsr()
    if len(data) == 0:
        raise ConfigError("SampledRanking: the split has no rows to rank")
    # one group of rows per negative pool: every item, or the items of each positive's domain
    groups: list[tuple[np.ndarray, np.ndarray | None, int]]
    if protocol.pool == "all":
        groups = [(np.ones(len(data), dtype=bool), None, protocol.seed)]
    else:
        doms = protocol.item_domains
        if doms is None or len(doms) != model.n_items:
            raise ConfigError(
                "SampledRanking(pool='domain') needs item_domains: one domain id per item of the model's vocabulary"
            )
        row_dom = doms[items]
        groups = [
            (row_dom == d, np.flatnonzero(doms == d), protocol.seed + int(d)) for d in np.unique(row_dom)
        ]
    parts = [
        evaluate_sampled_ranking(
            model.score_pairs,
            users[sel],
            items[sel],
            model.n_items,
            exclude,
            n_negatives=protocol.n_negatives,
            seed=seed,
            ks=protocol.ks,
            metrics=protocol.metrics,
            batch_size=protocol.batch_size,
            candidates=pool,
            ties=protocol.ties,
        )
        for sel, pool, seed in groups
    ]
    if len(parts) == 1:
        return parts[0]
    total = sum(r["n_rows"] for r in parts)
    out = {k: sum(r["n_rows"] * r[k] for r in parts) / total for k in parts[0] if k != "n_rows"}
    out["n_rows"] = float(total)
    return out
