"""Evaluation protocols: each one equals the evaluator it wraps, the default follows the model's task and
capabilities, per-domain pools draw only from the positive's domain, and a missing capability is a clear error."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl
import pytest
import torch

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.evaluators import evaluate_full_ranking, evaluate_rating, evaluate_sampled_ranking
from attnrec.evaluation.metrics import auc, graded_ndcg_at_k, logloss
from attnrec.evaluation.protocols import CTR, FullRanking, Rating, SampledRanking, default_protocol, evaluate
from attnrec.models.capabilities import ItemScorer, RatingPredictor, TaskKind
from attnrec.models.ctr.lr import LR
from attnrec.models.query import Query
from attnrec.models.rating.svd import SVD
from attnrec.models.topk.bpr import BPR
from attnrec.models.topk.pop import Pop
from attnrec.testing import checkerboard, planted_ctr
from attnrec.training.trainer import TrainerConfig

QUICK = TrainerConfig(epochs=3, lr=0.02, batch_size=128, progress=False, device="cpu")


@pytest.fixture(scope="module")
def svd() -> SVD:
    train, valid, _ = checkerboard()
    m = SVD(factors=4, iterations=2)
    m.fit(train, valid)
    return m


@pytest.fixture(scope="module")
def bpr() -> BPR:
    m = BPR(dim=8)
    m.fit(checkerboard(implicit=True)[0], None, trainer=QUICK)
    return m


@pytest.fixture(scope="module")
def lr() -> LR:
    m = LR()
    m.fit(planted_ctr(pattern="first_order")[0], None, trainer=QUICK)
    return m


class FixedScorer(ItemScorer):
    """Scores from a fixed (n_users, n_items) table; records every item it is asked to score by pairs."""

    name = "fixed"

    def __init__(self, table: np.ndarray) -> None:
        self.table = torch.from_numpy(table.astype(np.float32))
        self.scored: list[np.ndarray] = []

    @property
    def n_items(self) -> int:
        return int(self.table.shape[1])

    def score(self, query: Query) -> torch.Tensor:
        self.check_query(query)
        assert query.users is not None
        return self.table[torch.from_numpy(query.users)].clone()

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        self.scored.append(np.asarray(items).copy())
        return super().score_pairs(users, items)


def _interactions(users: list[int], items: list[int], n_users: int, n_items: int) -> Interactions:
    df = pl.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items]})
    uv = Vocabulary([f"u{k}" for k in range(n_users)], kind="user")
    iv = Vocabulary([f"i{k}" for k in range(n_items)], kind="item")
    return Interactions.encode(df, uv, iv)[0]


# ------------------------------------------------------------------------------------------ each protocol
def test_rating_protocol_is_the_rating_evaluator(svd: SVD):
    _, _, test = checkerboard()
    got = evaluate(svd, test, Rating(batch_size=17))
    assert got == evaluate_rating(svd.predict, test.users, test.items, test.ratings)
    assert set(got) >= {"rmse", "mae"} and got["rmse"] > 0


def test_rating_protocol_uses_a_models_own_row_predictions():
    class RowAware(RatingPredictor):
        name = "row_aware"

        def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
            return np.full(len(users), 3.0, dtype=np.float32)

        def predict_interactions(self, data: Interactions) -> np.ndarray:
            return data.ratings + 1.0  # off by exactly one on every row

    _, _, test = checkerboard()
    got = evaluate(RowAware(), test, Rating(batch_size=5))
    assert got["rmse"] == pytest.approx(1.0) and got["mae"] == pytest.approx(1.0)

    class Reversed(RowAware):
        def predict_interactions(self, data: Interactions) -> np.ndarray:
            return 6.0 - data.ratings  # each user's rows ranked worst first

    # the graded NDCG ranks each user's rows (the split's users, not the row positions predict is called with)
    got = evaluate(Reversed(), test, Rating(batch_size=5))
    assert got["graded_ndcg@10"] == pytest.approx(_graded_ndcg_by_hand(test, 6.0 - test.ratings), rel=1e-12)
    assert got["graded_ndcg@10"] < 1.0


def _graded_ndcg_by_hand(test: Interactions, pred: np.ndarray, k: int = 10) -> float:
    """Mean graded_ndcg_at_k over the users with two test rows or more (rows with a positive rating each)."""
    users, counts = np.unique(test.users, return_counts=True)
    keep = np.isin(test.users, users[counts >= 2])
    return float(graded_ndcg_at_k(test.users[keep], test.ratings[keep], pred[keep], k)[1].mean())


def test_rating_protocol_reports_the_graded_ndcg_of_eq_16(svd: SVD):
    _, _, test = checkerboard()
    assert test.ratings.min() > 0 and np.bincount(test.users).max() >= 2
    got = evaluate(svd, test, Rating(batch_size=17))
    pred = np.asarray(svd.predict(test.users, test.items), dtype=np.float64)
    assert got["graded_ndcg@10"] == pytest.approx(_graded_ndcg_by_hand(test, pred), rel=1e-12)
    users = np.unique(test.users, return_counts=True)[1]
    assert got["graded_ndcg_users"] == (users >= 2).sum()
    assert evaluate(svd, test, Rating(ndcg_k=3))["graded_ndcg@3"] == pytest.approx(
        _graded_ndcg_by_hand(test, pred, 3), rel=1e-12
    )


def test_sharded_rating_gathers_every_users_rows(svd: SVD, monkeypatch):
    """Two ranks (simulated in this process): each predicts its block of rows, the predictions are gathered in
    rank order and every rank scores all rows, so a user split across the blocks is ranked whole."""
    from attnrec.evaluation import sharded
    from attnrec.training.distributed import DistContext

    _, _, test = checkerboard()
    parts: list[np.ndarray] = []

    class Gathered(Exception):
        pass

    def capture(obj, what=""):
        parts.append(obj)
        raise Gathered

    monkeypatch.setattr(sharded, "all_gather_objects", capture)
    for rank in (0, 1):
        monkeypatch.setattr(sharded, "context", lambda rank=rank: DistContext(rank, 2))
        with pytest.raises(Gathered):
            sharded.evaluate(svd, test, Rating())
    assert [len(p) for p in parts] == [len(test) // 2, len(test) - len(test) // 2]
    monkeypatch.setattr(sharded, "all_gather_objects", lambda obj, what="": parts)
    got = sharded.evaluate(svd, test, Rating())
    one = evaluate(svd, test, Rating())
    assert got.keys() == one.keys() and "graded_ndcg@10" in got
    for key, value in one.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_ctr_protocol_is_auc_and_logloss_of_the_probabilities(lr: LR):
    _, _, test = planted_ctr(pattern="first_order")
    got = evaluate(lr, test, CTR(batch_size=33))
    p = lr.predict_proba(test)
    assert got["auc"] == pytest.approx(auc(test.labels, p), rel=1e-12)
    assert got["logloss"] == pytest.approx(logloss(test.labels, p), rel=1e-12)
    assert got["n"] == len(test)
    with pytest.raises(DataError, match="no rows"):
        evaluate(lr, test.subset(slice(0, 0)), CTR())
    with pytest.raises(ConfigError, match="CTRData"):
        evaluate(lr, checkerboard()[2], CTR())


def test_full_ranking_protocol_is_the_full_ranking_evaluator_with_exclude(bpr: BPR):
    train, _, test = checkerboard(implicit=True)
    protocol = FullRanking(ks=(5, 10), metrics=("recall", "ndcg"), batch_size=7)
    got = evaluate(bpr, test, protocol, exclude=train.csr())
    want = evaluate_full_ranking(
        bpr.score_users, test.csr(), train.csr(), ks=(5, 10), metrics=("recall", "ndcg")
    )
    assert got == pytest.approx(want, rel=1e-12)
    # exclude reaches the evaluator: without it the training items crowd the top of the list
    assert evaluate(bpr, test, protocol)["recall@5"] < got["recall@5"]


def test_sampled_ranking_protocol_is_the_sampled_evaluator(bpr: BPR):
    train, _, test = checkerboard(implicit=True)
    protocol = SampledRanking(n_negatives=10, seed=4, ks=(1, 5), metrics=("hit", "ndcg"), batch_size=9)
    got = evaluate(bpr, test, protocol, exclude=train.csr())
    # negatives never include the user's own held-out items: the masked items plus the evaluated split's positives
    want = evaluate_sampled_ranking(
        bpr.score_pairs,
        test.users,
        test.items,
        bpr.n_items,
        (train.csr() + test.csr()).tocsr(),
        n_negatives=10,
        seed=4,
        ks=(1, 5),
        metrics=("hit", "ndcg"),
        batch_size=9,
        ties="pessimistic",
    )
    assert got == want


def test_sampled_negatives_are_never_the_users_other_held_out_items():
    from attnrec.evaluation import protocols

    train, _, test = checkerboard(implicit=True)
    drawn: list[tuple[np.ndarray, np.ndarray]] = []

    class Recording(Pop):
        def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
            drawn.append((users.copy(), items.copy()))
            return super().score_pairs(users, items)

    model = Recording()
    model.fit(train)
    protocols.evaluate(model, test, SampledRanking(n_negatives=5, seed=0), exclude=train.csr())
    truth = test.csr()
    for users, items in drawn:
        u, i = users.reshape(-1, 6), items.reshape(-1, 6)
        negs_u, negs_i = u[:, 1:].ravel(), i[:, 1:].ravel()
        assert truth[negs_u, negs_i].sum() == 0


# ------------------------------------------------------------------------------------------ per-domain pools
N_ITEMS = 40
DOMAINS = (np.arange(N_ITEMS) >= 20).astype(np.int64)  # items 0-19: domain 0, items 20-39: domain 1


def _ordered_scorer() -> FixedScorer:
    # every user scores item i as i: all of domain 1 outranks all of domain 0
    return FixedScorer(np.tile(np.arange(N_ITEMS, dtype=np.float32), (4, 1)))


def test_domain_pool_draws_negatives_only_from_the_positives_domain():
    # each positive is the best item of its own domain (19 and 39), so only a negative from the other domain
    # can beat it: hit@1 is 1 for a per-domain pool and well below 1 for the all-items pool
    data = _interactions([0, 1, 2, 3, 0, 1], [19, 19, 19, 39, 39, 39], 4, N_ITEMS)
    model = _ordered_scorer()
    protocol = SampledRanking(n_negatives=8, pool="domain", item_domains=DOMAINS, ks=(1,), metrics=("hit",))
    got = evaluate(model, data, protocol)
    assert got["hit@1"] == 1.0 and got["n_rows"] == 6
    assert model.scored, "the pool was never scored"
    for items in model.scored:  # each call scores one domain's rows: the positive and its negatives
        assert len(np.unique(DOMAINS[items])) == 1, items
    everything = evaluate(_ordered_scorer(), data, SampledRanking(n_negatives=8, ks=(1,), metrics=("hit",)))
    assert everything["hit@1"] < 1.0  # domain-0 positives meet domain-1 negatives


def test_domain_pool_equals_the_evaluator_on_that_domains_candidates():
    data = _interactions([0, 1, 2, 3], [25, 30, 22, 39], 4, N_ITEMS)  # every positive in domain 1
    rng = np.random.default_rng(0)
    table = rng.normal(size=(4, N_ITEMS)).astype(np.float32)
    protocol = SampledRanking(n_negatives=5, pool="domain", item_domains=DOMAINS, seed=3, ks=(1, 5))
    got = evaluate(FixedScorer(table), data, protocol)
    want = evaluate_sampled_ranking(
        FixedScorer(table).score_pairs,
        data.users,
        data.items,
        N_ITEMS,
        None,
        n_negatives=5,
        seed=3 + 1,  # the domain's id offsets the seed
        ks=(1, 5),
        metrics=protocol.metrics,
        batch_size=protocol.batch_size,
        candidates=np.flatnonzero(DOMAINS == 1),
        ties="pessimistic",
    )
    assert got == pytest.approx(want, rel=1e-12)


def test_domain_pool_needs_a_domain_per_item():
    data = _interactions([0], [3], 4, N_ITEMS)
    for domains in (None, DOMAINS[:-1]):
        with pytest.raises(ConfigError, match="item_domains"):
            evaluate(
                _ordered_scorer(), data, SampledRanking(n_negatives=2, pool="domain", item_domains=domains)
            )


# ------------------------------------------------------------------------------------------ defaults, capabilities
def test_default_protocol_by_task_then_capability(svd: SVD, bpr: BPR, lr: LR):
    assert default_protocol(svd) == Rating()
    assert default_protocol(lr) == CTR()
    assert default_protocol(bpr) == FullRanking()
    assert default_protocol(bpr, ks=(5,)) == FullRanking(ks=(5,))
    pop = Pop()
    pop.fit(checkerboard(implicit=True)[0])
    assert default_protocol(pop, ks=(3, 7)) == FullRanking(ks=(3, 7))

    class RankingOnly(FixedScorer):  # a rating predictor trained for top-K is ranked, not rated
        task: ClassVar[TaskKind] = TaskKind.TOPK

    assert default_protocol(RankingOnly(np.zeros((1, 3)))) == FullRanking()
    with pytest.raises(ConfigError, match="declares no capability"):
        default_protocol(object())
    # evaluate() without a protocol uses the default
    _, _, test = checkerboard()
    assert evaluate(svd, test) == evaluate(svd, test, Rating())


def test_a_missing_capability_is_a_clear_error(svd: SVD, bpr: BPR, lr: LR):
    _, _, ratings = checkerboard()
    _, _, implicit = checkerboard(implicit=True)
    _, _, rows = planted_ctr(pattern="first_order")
    with pytest.raises(
        ConfigError,
        match="bpr cannot be evaluated with Rating: it does not declare the RatingPredictor capability",
    ):
        evaluate(bpr, implicit, Rating())
    with pytest.raises(
        ConfigError,
        match="lr cannot be evaluated with FullRanking: it does not declare the ItemScorer capability",
    ):
        evaluate(lr, implicit, FullRanking())
    with pytest.raises(ConfigError, match="lr cannot be evaluated with SampledRanking"):
        evaluate(lr, implicit, SampledRanking(n_negatives=3))
    with pytest.raises(
        ConfigError, match="svd cannot be evaluated with CTR: it does not declare the RowScorer capability"
    ):
        evaluate(svd, rows, CTR())
    with pytest.raises(ConfigError, match="evaluates an encoded split"):
        evaluate(bpr, rows, FullRanking())
    with pytest.raises(ConfigError, match="evaluates an encoded split"):
        evaluate(svd, rows, Rating())
