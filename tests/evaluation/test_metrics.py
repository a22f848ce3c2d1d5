"""Metrics: hand-computed cases (arithmetic in the comments) and agreement with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    ndcg_score,
    roc_auc_score,
)

from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.metrics import (
    auc,
    graded_ndcg_at_k,
    hit_at_k,
    logloss,
    mae,
    map_at_k,
    mrr_at_k,
    mse,
    ndcg_at_k,
    precision_at_k,
    ranking_metric_sums,
    ranking_metrics,
    rating_metrics,
    recall_at_k,
    rmse,
)

L3 = math.log2(3)  # 1.5849625
L5 = math.log2(5)  # 2.3219281

# ----------------------------------------------------------------------------------------------- rating / CTR


def test_rating_metrics_by_hand() -> None:
    y = [3.0, 5.0, 1.0, 4.0]
    p = [2.5, 5.0, 2.0, 2.0]
    # errors: -0.5, 0, 1, -2 -> squares 0.25, 0, 1, 4 (sum 5.25); abs 0.5, 0, 1, 2 (sum 3.5)
    assert mse(y, p) == pytest.approx(5.25 / 4)
    assert rmse(y, p) == pytest.approx(math.sqrt(5.25 / 4))
    assert mae(y, p) == pytest.approx(3.5 / 4)
    assert rating_metrics(y, p) == pytest.approx({"rmse": math.sqrt(1.3125), "mae": 0.875, "mse": 1.3125})


def test_rating_metrics_accept_torch_and_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 5, 500)
    p = y + rng.normal(0, 0.7, 500)
    assert mse(torch.from_numpy(y), torch.from_numpy(p).float()) == pytest.approx(
        mean_squared_error(y, p.astype(np.float32)), rel=1e-12
    )
    assert mae(y, p) == pytest.approx(mean_absolute_error(y, p), rel=1e-12)
    assert rmse(y, p) == pytest.approx(math.sqrt(mean_squared_error(y, p)), rel=1e-12)


def test_rating_metrics_reject_bad_input() -> None:
    with pytest.raises(DataError, match="length mismatch"):
        mse([1.0, 2.0], [1.0])
    with pytest.raises(DataError, match="empty"):
        mae([], [])
    with pytest.raises(DataError, match="non-finite value at position 1"):
        rmse([1.0, 2.0], [1.0, float("nan")])


def test_auc_by_hand_with_a_tie() -> None:
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8]
    # pairs (pos, neg): (0.35,0.1)=1 (0.35,0.4)=0 (0.8,0.1)=1 (0.8,0.4)=1 -> 3/4
    assert auc(y, s) == pytest.approx(0.75)
    # a positive tied with a negative counts 1/2: pairs (0.4,0.1)=1 (0.4,0.4)=0.5 (0.8,*)=1,1 -> 3.5/4
    assert auc(y, [0.1, 0.4, 0.4, 0.8]) == pytest.approx(0.875)
    # everything tied -> 0.5
    assert auc(y, [1.0, 1.0, 1.0, 1.0]) == pytest.approx(0.5)


def test_auc_matches_sklearn_with_many_ties() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    s = rng.integers(0, 7, 2000).astype(np.float64)  # heavy ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    s2 = rng.normal(size=2000)
    assert auc(torch.from_numpy(y), torch.from_numpy(s2)) == pytest.approx(roc_auc_score(y, s2), abs=1e-12)


def test_auc_rejects_one_class_and_non_binary_labels() -> None:
    with pytest.raises(DataError, match="only one class"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="non-binary label at position 2"):
        auc([0, 1, 2], [0.1, 0.2, 0.3])


def test_logloss_by_hand_and_clipping() -> None:
    # -(log 0.8 + log(1 - 0.4)) / 2 = -(ln 0.8 + ln 0.6) / 2
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    # p = 0 for a positive is clipped to eps: cost -ln(eps)
    assert logloss([1], [0.0], eps=1e-7) == pytest.approx(-math.log(1e-7))
    assert logloss([0], [1.0], eps=1e-3) == pytest.approx(-math.log(1e-3))
    with pytest.raises(DataError, match="probability out of range"):
        logloss([1, 0], [0.5, 1.5])
    with pytest.raises(ConfigError):
        logloss([1], [0.5], eps=0.0)


def test_logloss_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1000)
    p = rng.uniform(0.01, 0.99, 1000)  # far from the clip bounds, where the definitions coincide
    assert logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)


# ------------------------------------------------------------------------------------------------ ranking

# user A: hits 1,0,1,0, 2 relevant; user B: hits 0,1,0,0, 3 relevant; user C: no hit, 1 relevant
HITS = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
NREL = np.array([2, 3, 1])


def test_precision_recall_hit_by_hand() -> None:
    # k=4: A 2/4, B 1/4, C 0 | k=2: A 1/2, B 1/2, C 0
    np.testing.assert_allclose(precision_at_k(HITS, NREL, 4), [0.5, 0.25, 0.0])
    np.testing.assert_allclose(precision_at_k(HITS, NREL, 2), [0.5, 0.5, 0.0])
    # k=4: A 2/2, B 1/3, C 0/1 | k=1: A 1/2, B 0, C 0
    np.testing.assert_allclose(recall_at_k(HITS, NREL, 4), [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(recall_at_k(HITS, NREL, 1), [0.5, 0.0, 0.0])
    np.testing.assert_allclose(hit_at_k(HITS, NREL, 4), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(hit_at_k(HITS, NREL, 1), [1.0, 0.0, 0.0])


def test_ndcg_by_hand() -> None:
    # k=4: A DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG (min(2,4)=2 ideal) = 1 + 1/log2(3)
    #      B DCG = 1/log2(3); IDCG (3 ideal) = 1 + 1/log2(3) + 1/2
    a4 = 1.5 / (1 + 1 / L3)
    b4 = (1 / L3) / (1 + 1 / L3 + 0.5)
    np.testing.assert_allclose(ndcg_at_k(HITS, NREL, 4), [a4, b4, 0.0])
    np.testing.assert_allclose(ndcg_at_k(HITS, NREL, 4), [0.9197207891, 0.2960819109, 0.0], rtol=1e-9)
    # k=2: A DCG = 1, IDCG = 1 + 1/log2(3); B DCG = 1/log2(3), IDCG over min(3,2)=2 positions = 1 + 1/log2(3)
    np.testing.assert_allclose(ndcg_at_k(HITS, NREL, 2), [1 / (1 + 1 / L3), (1 / L3) / (1 + 1 / L3), 0.0])
    # a hit at rank 5 with one relevant item: 1/log2(6) / 1
    h5 = np.array([[0, 0, 0, 0, 1]])
    np.testing.assert_allclose(ndcg_at_k(h5, [1], 5), [1 / math.log2(6)])


def test_mrr_by_hand() -> None:
    # first hits: A rank 1, B rank 2, C none
    np.testing.assert_allclose(mrr_at_k(HITS, NREL, 4), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(mrr_at_k(HITS, NREL, 1), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(mrr_at_k(np.array([[0, 0, 1, 1]]), [2], 4), [1 / 3])


def test_map_by_hand() -> None:
    # k=4: A (1/min(2,4)) * (P@1*1 + P@3*1) = 1/2 * (1 + 2/3) = 5/6;  B (1/3) * P@2 = 1/3 * 1/2 = 1/6
    np.testing.assert_allclose(map_at_k(HITS, NREL, 4), [5 / 6, 1 / 6, 0.0])
    # k=2: A (1/2) * P@1 = 1/2;  B (1/min(3,2)) * P@2 = 1/2 * 1/2 = 1/4
    np.testing.assert_allclose(map_at_k(HITS, NREL, 2), [0.5, 0.25, 0.0])
    # hits at 2,3,5 of 5 with 4 relevant: (1/4) * (1/2 + 2/3 + 3/5)
    np.testing.assert_allclose(map_at_k(np.array([[0, 1, 1, 0, 1]]), [4], 5), [(0.5 + 2 / 3 + 0.6) / 4])


def test_ranking_metrics_dict_means_and_sums() -> None:
    out = ranking_metrics(HITS, NREL, ks=(2, 4), names=("recall", "ndcg", "mrr"))
    assert set(out) == {"recall@2", "recall@4", "ndcg@2", "ndcg@4", "mrr@2", "mrr@4"}
    assert out["recall@4"] == pytest.approx((1.0 + 1 / 3 + 0.0) / 3)
    assert out["mrr@2"] == pytest.approx(1.5 / 3)
    assert out["ndcg@4"] == pytest.approx((1.5 / (1 + 1 / L3) + (1 / L3) / (1 + 1 / L3 + 0.5)) / 3)
    sums = ranking_metric_sums(torch.from_numpy(HITS), torch.from_numpy(NREL), (4,), ("precision", "map"))
    assert sums == pytest.approx({"precision@4": 0.75, "map@4": 1.0})
    # bool hits give the same answer as 0/1 ints
    assert ranking_metrics(HITS.astype(bool), NREL, (4,), ("hit",)) == pytest.approx({"hit@4": 2 / 3})


def test_ranking_metrics_reject_bad_input() -> None:
    with pytest.raises(DataError, match="no relevant item"):
        recall_at_k(HITS, np.array([2, 0, 1]), 4)
    with pytest.raises(DataError, match="at least k=5 columns"):
        ndcg_at_k(HITS, NREL, 5)
    with pytest.raises(DataError, match="0/1"):
        precision_at_k(np.array([[2, 0]]), [1], 2)
    with pytest.raises(DataError, match="more hits than relevant"):
        map_at_k(np.array([[1, 1]]), [1], 2)
    with pytest.raises(DataError, match="wrong shape"):
        mrr_at_k(HITS, np.array([1, 1]), 2)
    with pytest.raises(ConfigError, match="unknown ranking metric"):
        ranking_metrics(HITS, NREL, (2,), ("ndcgg",))
    with pytest.raises(ConfigError, match="positive integer"):
        hit_at_k(HITS, NREL, 0)


def _hits_from_scores(scores: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(rel, order, axis=1)


def test_ndcg_matches_sklearn_without_ties() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 60, 40
    scores = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(np.float64)  # all distinct
    rel = (rng.random((n_users, n_items)) < 0.15).astype(np.int64)
    rel[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1  # >= 1 relevant per user
    n_rel = rel.sum(axis=1)
    for k in (1, 5, 10, 40):
        hits = _hits_from_scores(scores, rel, k)
        ours = ndcg_at_k(hits, n_rel, k)
        ref = np.array([ndcg_score(rel[u : u + 1], scores[u : u + 1], k=k) for u in range(n_users)])
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
        assert ours.mean() == pytest.approx(ndcg_score(rel, scores, k=k), rel=1e-12)


def test_map_over_full_list_matches_sklearn_average_precision() -> None:
    # with k = n_items, min(n_relevant, k) = n_relevant and map@k is sklearn's (tie-free) average precision
    rng = np.random.default_rng(4)
    n_users, n_items = 30, 25
    scores = rng.normal(size=(n_users, n_items))
    rel = (rng.random((n_users, n_items)) < 0.3).astype(np.int64)
    rel[:, 0] = 1
    hits = _hits_from_scores(scores, rel, n_items)
    ours = map_at_k(hits, rel.sum(axis=1), n_items)
    ref = np.array([average_precision_score(rel[u], scores[u]) for u in range(n_users)])
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    # and recall over the full list is 1 for everyone
    np.testing.assert_allclose(recall_at_k(hits, rel.sum(axis=1), n_items), 1.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=6, max_size=6), min_size=1, max_size=8), st.integers(0, 4))
def test_ranking_metric_properties(rows: list[list[bool]], extra: int) -> None:
    hits = np.array(rows, dtype=bool)
    n_rel = np.maximum(hits.sum(axis=1), 1) + extra
    for name, fn in (
        ("recall", recall_at_k),
        ("hit", hit_at_k),
        ("ndcg", ndcg_at_k),
        ("mrr", mrr_at_k),
        ("map", map_at_k),
        ("precision", precision_at_k),
    ):
        prev = None
        for k in range(1, 7):
            v = fn(hits, n_rel, k)
            assert ((v >= 0) & (v <= 1 + 1e-12)).all(), name
            if name in ("recall", "hit", "mrr") and prev is not None:
                assert (v >= prev - 1e-12).all(), name  # cumulative metrics never drop as k grows
            prev = v
    # a perfect list (all relevant items first, n_rel <= k) has ndcg = map = recall = 1
    n = 3
    perfect = np.zeros((1, 6), dtype=bool)
    perfect[0, :n] = True
    for fn in (ndcg_at_k, map_at_k, recall_at_k):
        assert fn(perfect, [n], 6)[0] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ graded ndcg of rows


def test_graded_ndcg_by_hand_with_a_tie() -> None:
    # user 7: (true, pred) = (5, .9), (3, .8), (4, .1); gains 2^r - 1 = 31, 7, 15
    #   DCG = 31 + 7/log2(3) + 15/2; IDCG (5, 4, 3) = 31 + 15/log2(3) + 7/2
    # user 3: (2, .5), (4, .5) tied at ranks 1-2: each gets (1 + 1/log2(3)) / 2; gains 3 + 15 = 18
    #   IDCG = 15 + 3/log2(3)
    # user 9: one row -> 1
    users = [7, 3, 7, 9, 3, 7]
    true = [5, 2, 3, 1, 4, 4]
    pred = [0.9, 0.5, 0.8, 0.3, 0.5, 0.1]
    ids, nd = graded_ndcg_at_k(users, true, pred, 10)
    np.testing.assert_array_equal(ids, [3, 7, 9])
    u3 = 18 * (1 + 1 / L3) / 2 / (15 + 3 / L3)
    u7 = (31 + 7 / L3 + 7.5) / (31 + 15 / L3 + 3.5)
    np.testing.assert_allclose(nd, [u3, u7, 1.0], rtol=1e-12)
    # = 18 * 0.8154649 / 16.8927893 and 42.9165105 / 43.9639500
    np.testing.assert_allclose(nd, [0.8689132, 0.9761751, 1.0], rtol=1e-6)
    # k=1: user 7's top row is its best (1.0); user 3's tie spreads ranks 1-2 with discounts 1 and 0: 18 * 0.5 / 15
    _, nd1 = graded_ndcg_at_k(users, true, pred, 1)
    np.testing.assert_allclose(nd1, [0.6, 1.0, 1.0], rtol=1e-12)


def test_graded_ndcg_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(5)
    n_users, n_rows = 30, 12
    true = rng.integers(1, 6, (n_users, n_rows)).astype(np.float64)
    pred = rng.integers(1, 5, (n_users, n_rows)).astype(np.float64)  # many ties
    users = np.repeat(np.arange(n_users), n_rows)
    perm = rng.permutation(users.size)  # rows of a user need not be contiguous
    for k in (1, 3, 10):
        _, ours = graded_ndcg_at_k(users[perm], true.ravel()[perm], pred.ravel()[perm], k)
        ref = [ndcg_score(np.exp2(true[u : u + 1]) - 1, pred[u : u + 1], k=k) for u in range(n_users)]
        np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_graded_ndcg_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="groups"):
        graded_ndcg_at_k([1, 2], [3.0, 4.0, 5.0], [1.0, 2.0, 3.0], 10)
    with pytest.raises(DataError, match="negative relevance"):
        graded_ndcg_at_k([1, 1], [3.0, -1.0], [1.0, 2.0], 10)
    with pytest.raises(DataError, match="positive relevance"):
        graded_ndcg_at_k([1, 1, 2], [0.0, 0.0, 3.0], [1.0, 2.0, 3.0], 10)
    with pytest.raises(ConfigError):
        graded_ndcg_at_k([1], [3.0], [1.0], 0)
