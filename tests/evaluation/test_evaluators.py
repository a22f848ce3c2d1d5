"""Evaluators: full ranking vs a dense brute-force reference, exclusion, sampled ranking, rating error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error

from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.evaluators import (
    evaluate_full_ranking,
    evaluate_rating,
    evaluate_sampled_ranking,
    rating_report,
    sample_negatives,
)
from attnrec.evaluation.metrics import RANKING_METRICS, graded_ndcg_at_k, ranking_metrics

ALL = tuple(RANKING_METRICS)


def _random_csr(rng: np.random.Generator, n_users: int, n_items: int, p: float) -> sp.csr_matrix:
    return sp.csr_matrix((rng.random((n_users, n_items)) < p).astype(np.float32))


def _dense_reference(
    scores: np.ndarray, truth: sp.csr_matrix, exclude: sp.csr_matrix | None, ks: tuple[int, ...]
) -> dict[str, float]:
    """Brute force: dense masking and a stable argsort per user (a test may loop)."""
    s = scores.astype(np.float64).copy()
    if exclude is not None:
        s[exclude.toarray() > 0] = -np.inf
    rel = truth.toarray() > 0
    keep = rel.sum(axis=1) > 0
    kmax = max(ks)
    rows = []
    for u in np.flatnonzero(keep):
        order = np.argsort(-s[u], kind="stable")[:kmax]
        rows.append(rel[u, order] & np.isfinite(s[u, order]))
    out = ranking_metrics(np.array(rows), rel.sum(axis=1)[keep], ks, ALL)
    out["n_users"] = float(keep.sum())
    return out


@pytest.fixture
def tiny() -> tuple[np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(0)
    n_users, n_items = 37, 23
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)  # continuous: no ties
    rel = rng.random((n_users, n_items)) < 0.15
    rel[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    rel[5] = False  # a user without relevant items is skipped
    excl = (rng.random((n_users, n_items)) < 0.3) & ~rel  # disjoint, as train and test are
    return scores, sp.csr_matrix(rel.astype(np.float32)), sp.csr_matrix(excl.astype(np.float32))


@pytest.mark.parametrize("batch_size", [1, 4, 7, 100])
def test_full_ranking_matches_dense_reference_for_any_batch_size(tiny, batch_size: int) -> None:
    scores, truth, exclude = tiny
    table = torch.from_numpy(scores)
    seen: list[int] = []

    def score_fn(u: np.ndarray) -> torch.Tensor:
        assert u.dtype == np.int64 and len(u) <= batch_size
        seen.extend(u.tolist())
        return table[torch.from_numpy(u)]

    got = evaluate_full_ranking(score_fn, truth, exclude, ks=(1, 5, 10), metrics=ALL, batch_size=batch_size)
    ref = _dense_reference(scores, truth, exclude, (1, 5, 10))
    assert got == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert got["n_users"] == 36.0 and 5 not in seen and len(seen) == 36
    assert 0.0 < got["recall@10"] < 1.0


def test_full_ranking_without_exclusion_and_with_a_user_subset(tiny) -> None:
    scores, truth, _ = tiny
    table = torch.from_numpy(scores)
    got = evaluate_full_ranking(lambda u: table[torch.from_numpy(u)], truth, None, ks=(3, 20), batch_size=8)
    assert got == pytest.approx(_dense_reference(scores, truth, None, (3, 20)), rel=1e-12)
    sub = np.array([0, 5, 9, 2])  # user 5 has no relevant item: skipped
    got_sub = evaluate_full_ranking(lambda u: table[torch.from_numpy(u)], truth, users=sub, ks=(3,))
    ref_sub = _dense_reference(scores[[0, 9, 2]], truth[[0, 9, 2]], None, (3,))
    assert got_sub == pytest.approx(ref_sub, rel=1e-12)
    assert got_sub["n_users"] == 3.0


def test_excluded_top_item_is_never_counted() -> None:
    # scores fall with the item index: item 0 is everyone's best; user 0's relevant items are 0 and 3
    n_items = 8
    scores = -torch.arange(n_items, dtype=torch.float32).repeat(2, 1)
    truth = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [0, 3, 1])), shape=(2, n_items))
    exclude = sp.csr_matrix(([1], ([0], [0])), shape=(2, n_items))
    plain = evaluate_full_ranking(lambda u: scores[torch.from_numpy(u)].clone(), truth, None, ks=(1, 5))
    masked = evaluate_full_ranking(lambda u: scores[torch.from_numpy(u)].clone(), truth, exclude, ks=(1, 5))
    # no mask: user 0 list 0,1,2,.. -> first hit rank 1; user 1 list 0,1 -> rank 2.  mrr@5 = (1 + 1/2) / 2
    assert plain["mrr@5"] == pytest.approx(0.75)
    # mask item 0 for user 0: list 1,2,3,.. -> first hit at rank 3 (item 3); user 1 unchanged
    assert masked["mrr@5"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert masked["hit@1"] == 0.0
    # user 0 recall@5 = 1/2 (item 0 is relevant but can never be recommended); user 1 = 1
    assert masked["recall@5"] == pytest.approx(0.75)


def test_excluded_items_at_the_end_of_a_short_list_are_not_hits() -> None:
    # 3 items, k=3; user 0 excludes items 0 and 1, which are also relevant: only item 2 can be recommended
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    truth = sp.csr_matrix(np.array([[1, 1, 0]]))
    exclude = sp.csr_matrix(np.array([[1, 1, 0]]))
    out = evaluate_full_ranking(
        lambda u: scores.clone(), truth, exclude, ks=(3,), metrics=("hit", "precision")
    )
    assert out == {"hit@3": 0.0, "precision@3": 0.0, "n_users": 1.0}


def test_k_larger_than_n_items_pads_with_misses() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5]])
    truth = sp.csr_matrix(np.array([[0, 0, 1]]))
    out = evaluate_full_ranking(
        lambda u: scores.clone(), truth, ks=(2, 10), metrics=("precision", "mrr", "ndcg")
    )
    # list: item 1, item 2, item 0 (then 7 empty ranks); the hit is at rank 2
    assert out["precision@10"] == pytest.approx(1 / 10)
    assert out["precision@2"] == pytest.approx(1 / 2)
    assert out["mrr@10"] == pytest.approx(1 / 2)
    assert out["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_ties_inside_the_list_are_ordered_by_item_index() -> None:
    scores = torch.zeros(1, 5)
    truth = sp.csr_matrix(np.array([[0, 0, 0, 1, 0]]))
    out = evaluate_full_ranking(lambda u: scores.clone(), truth, ks=(5,), metrics=("mrr",))
    assert out["mrr@5"] == pytest.approx(1 / 4)  # list 0,1,2,3,4 -> item 3 at rank 4


def test_full_ranking_does_not_write_into_a_view_returned_by_score_fn() -> None:
    table = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    before = table.clone()
    truth = sp.csr_matrix(np.eye(3, 4))
    exclude = sp.csr_matrix(np.ones((3, 4)) - np.eye(3, 4))
    evaluate_full_ranking(lambda u: table[int(u[0]) : int(u[-1]) + 1], truth, exclude, ks=(2,), batch_size=2)
    assert torch.equal(table, before)


def test_full_ranking_rejects_bad_scores_and_config() -> None:
    truth = sp.csr_matrix(np.eye(2, 3))
    with pytest.raises(DataError, match="wrong shape"):
        evaluate_full_ranking(lambda u: torch.zeros(len(u), 2), truth, ks=(1,))
    with pytest.raises(DataError, match="NaN score for user 1, item 2"):
        evaluate_full_ranking(lambda u: torch.tensor([[0.0, 1, 2], [0, 1, float("nan")]]), truth, ks=(1,))
    with pytest.raises(DataError, match="shape mismatch"):
        evaluate_full_ranking(lambda u: torch.zeros(len(u), 3), truth, sp.csr_matrix((2, 4)), ks=(1,))
    with pytest.raises(ConfigError, match="unknown ranking metric"):
        evaluate_full_ranking(lambda u: torch.zeros(len(u), 3), truth, metrics=("auc",))
    with pytest.raises(DataError, match="index out of range"):
        evaluate_full_ranking(lambda u: torch.zeros(len(u), 3), truth, users=np.array([0, 2]))


# ------------------------------------------------------------------------------------------------ sampled


def _sampled_case() -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(1)
    n_users, n_items = 50, 300
    exclude = _random_csr(rng, n_users, n_items, 0.2)
    users = np.arange(n_users, dtype=np.int64)
    excl_dense = exclude.toarray() > 0
    items = np.array([rng.choice(np.flatnonzero(~excl_dense[u])) for u in users], dtype=np.int64)
    scores = rng.normal(size=(n_users, n_items))
    return users, items, exclude, scores


def test_sample_negatives_respects_exclusion_positive_and_distinctness() -> None:
    users, items, exclude, _ = _sampled_case()
    neg = sample_negatives(users, items, 300, exclude, 100, np.random.default_rng(0))
    assert neg.shape == (50, 100) and neg.dtype == np.int64
    dense = exclude.toarray() > 0
    assert not dense[users[:, None], neg].any()
    assert not (neg == items[:, None]).any()
    assert all(len(np.unique(row)) == 100 for row in neg)
    # a pool restricts the draws
    pool = np.arange(0, 300, 2)
    neg_pool = sample_negatives(users, items, 300, exclude, 20, np.random.default_rng(0), candidates=pool)
    assert np.isin(neg_pool, pool).all() and not dense[users[:, None], neg_pool].any()


def test_sample_negatives_can_take_every_admissible_item_and_refuses_more() -> None:
    # user 0: 6 items, excludes 1 and 4, positive 2 -> exactly 0, 3, 5 are admissible
    exclude = sp.csr_matrix(([1, 1], ([0, 0], [1, 4])), shape=(1, 6))
    neg = sample_negatives(np.array([0]), np.array([2]), 6, exclude, 3, np.random.default_rng(0))
    assert sorted(neg[0].tolist()) == [0, 3, 5]
    with pytest.raises(DataError, match="has only 3 items"):
        sample_negatives(np.array([0]), np.array([2]), 6, exclude, 4, np.random.default_rng(0))


def test_sampled_ranking_matches_brute_force_and_is_deterministic() -> None:
    users, items, exclude, scores = _sampled_case()

    def score_pairs(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return scores[u, i]

    kw = dict(n_items=300, exclude=exclude, n_negatives=100, ks=(1, 5, 10), metrics=ALL, batch_size=16)
    a = evaluate_sampled_ranking(score_pairs, users, items, seed=7, **kw)
    b = evaluate_sampled_ranking(score_pairs, users, items, seed=7, **kw)
    assert a == b
    assert a["n_rows"] == 50.0
    # brute force with the same draws: negatives come batch by batch from one generator
    rng = np.random.default_rng(7)
    neg = np.concatenate(
        [
            sample_negatives(users[s : s + 16], items[s : s + 16], 300, exclude, 100, rng)
            for s in range(0, 50, 16)
        ]
    )
    rank = 1 + (scores[users[:, None], neg] > scores[users, items][:, None]).sum(axis=1)
    assert a["hit@10"] == pytest.approx(np.mean(rank <= 10))
    assert a["mrr@10"] == pytest.approx(np.mean(np.where(rank <= 10, 1 / rank, 0.0)))
    assert a["ndcg@5"] == pytest.approx(np.mean(np.where(rank <= 5, 1 / np.log2(rank + 1), 0.0)))
    assert a["recall@5"] == a["hit@5"]
    c = evaluate_sampled_ranking(score_pairs, users, items, seed=8, **kw)
    assert c != a


def test_sampled_ranking_positive_always_first_gives_perfect_scores() -> None:
    users, items, exclude, _ = _sampled_case()

    def score_pairs(u: np.ndarray, i: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((i == items[u]).astype(np.float32))  # positive 1, negatives 0

    out = evaluate_sampled_ranking(
        score_pairs, users, items, 300, exclude, ks=(1, 10), metrics=("hit", "ndcg", "mrr")
    )
    assert out == {
        "hit@1": 1.0,
        "hit@10": 1.0,
        "ndcg@1": 1.0,
        "ndcg@10": 1.0,
        "mrr@1": 1.0,
        "mrr@10": 1.0,
        "n_rows": 50.0,
    }


def test_sampled_ranking_tie_conventions() -> None:
    users, items, exclude, _ = _sampled_case()

    def constant(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.zeros(len(u))

    kw = dict(n_items=300, exclude=exclude, ks=(10,), metrics=("hit",))
    # optimistic: rank = 1 + #(neg > pos) = 1;  pessimistic: rank = 1 + #(neg >= pos) = 101
    assert evaluate_sampled_ranking(constant, users, items, **kw)["hit@10"] == 1.0
    assert evaluate_sampled_ranking(constant, users, items, ties="pessimistic", **kw)["hit@10"] == 0.0


# ------------------------------------------------------------------------------------------------ rating


def test_evaluate_rating_matches_sklearn_for_any_batch_size() -> None:
    rng = np.random.default_rng(2)
    users = rng.integers(0, 20, 1000)
    items = rng.integers(0, 30, 1000)
    ratings = rng.integers(1, 6, 1000).astype(np.float32)
    bias = rng.normal(size=30)

    def predict(u: np.ndarray, i: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(3.0 + bias[i]).float()

    pred = (3.0 + bias[items]).astype(np.float32).astype(np.float64)
    ref_mse = mean_squared_error(ratings, pred)
    for bs in (7, 1000, 65536):
        out = evaluate_rating(predict, users, items, ratings, batch_size=bs)
        assert out["mse"] == pytest.approx(ref_mse, rel=1e-10)
        assert out["rmse"] == pytest.approx(math.sqrt(ref_mse), rel=1e-10)
        assert out["mae"] == pytest.approx(mean_absolute_error(ratings, pred), rel=1e-10)
        assert out["n"] == 1000.0


def test_evaluate_rating_rejects_bad_predictions() -> None:
    u = np.array([0, 1])
    with pytest.raises(DataError, match="wrong shape"):
        evaluate_rating(lambda a, b: np.zeros(3), u, u, np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="non-finite prediction for user 1, item 1"):
        evaluate_rating(lambda a, b: np.array([1.0, np.inf]), u, u, np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="length mismatch"):
        evaluate_rating(lambda a, b: a, u, u, np.array([1.0]))


def test_evaluate_rating_graded_ndcg_of_two_users_by_hand() -> None:
    # SAFMR's eq. 16 per user: rows ranked by prediction, gain 2^rating - 1, discount 1 / log2(rank + 1)
    users = np.array([0, 0, 0, 1, 1, 2])
    items = np.arange(6)
    ratings = np.array([5.0, 3.0, 1.0, 4.0, 2.0, 5.0])
    pred = np.array([2.0, 4.0, 1.0, 3.0, 3.5, 1.0])
    l3 = math.log2(3)
    # user 0 ranks its rows 3, 5, 1 (ideal 5, 3, 1); user 1 ranks 2, 4 (ideal 4, 2); user 2 (1 row): left out
    u0 = (7 + 31 / l3 + 1 / 2) / (31 + 7 / l3 + 1 / 2)
    u1 = (3 + 15 / l3) / (15 + 3 / l3)
    for bs in (1, 4, 100):
        out = evaluate_rating(lambda u, i: pred[i], users, items, ratings, batch_size=bs)
        assert out["graded_ndcg@10"] == pytest.approx((u0 + u1) / 2, rel=1e-12)
        assert out["graded_ndcg_users"] == 2.0
        assert out["mse"] == pytest.approx(float(np.mean((pred - ratings) ** 2)), rel=1e-12)
    # the same value graded_ndcg_at_k gives on the users with two rows or more
    _, ref = graded_ndcg_at_k(users[:5], ratings[:5], pred[:5], 10)
    assert out["graded_ndcg@10"] == pytest.approx(ref.mean(), rel=1e-12)
    # the cut-off: at k = 1 only the top row counts
    got = evaluate_rating(lambda u, i: pred[i], users, items, ratings, ndcg_k=1)
    assert (
        got["graded_ndcg@1"] == pytest.approx((7 / 31 + 3 / 15) / 2, rel=1e-12)
        and "graded_ndcg@10" not in got
    )
    # groups: the users the rows belong to when predict's first argument is a row index
    rows = np.arange(6)
    by_row = evaluate_rating(lambda r, _: pred[r], rows, rows, ratings, groups=users)
    assert by_row == out


def test_rating_report_leaves_out_users_without_a_defined_ndcg() -> None:
    pred = np.array([1.0, 2.0, 3.0, 1.0, 2.0])
    # user 1's rows are all rated 0 (no ideal gain): left out, not an error
    out = rating_report(np.array([0, 0, 1, 1, 2]), np.array([2.0, 1.0, 0.0, 0.0, 3.0]), pred)
    assert out["graded_ndcg_users"] == 1.0
    l3 = math.log2(3)  # user 0 ranks its rows 1, 2 (ideal 2, 1)
    assert out["graded_ndcg@10"] == pytest.approx((1 + 3 / l3) / (3 + 1 / l3), rel=1e-12)
    # no user with two rows, or a negative rating (no graded relevance): rmse/mae/mse/n only
    assert set(rating_report(np.arange(3), np.ones(3), np.ones(3))) == {"rmse", "mae", "mse", "n"}
    assert set(rating_report(np.zeros(3, dtype=np.int64), np.array([-1.0, 1, 2]), np.ones(3))) == {
        "rmse",
        "mae",
        "mse",
        "n",
    }
