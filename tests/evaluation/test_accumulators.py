"""Streaming accumulators equal the pure metrics and scikit-learn, for any split into shards merged in any order."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.accumulators import (
    AUCAccumulator,
    CTRAccumulator,
    LoglossAccumulator,
    MeanAccumulator,
    RatingAccumulator,
)
from attnrec.evaluation.calibration import expected_calibration_error
from attnrec.evaluation.metrics import auc, logloss, rating_metrics


def _shards(n: int, n_shards: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random partition of ``range(n)`` into ``n_shards`` index arrays (some may be empty)."""
    labels = rng.integers(0, n_shards, n)
    return [np.flatnonzero(labels == k) for k in range(n_shards)]


def _merged(factory, shards, y, p, order, batch: int):  # type: ignore[no-untyped-def]
    """One accumulator per shard, fed in batches of ``batch`` rows, merged in ``order``."""
    accs = []
    for idx in shards:
        acc = factory()
        for start in range(0, max(len(idx), 1), batch):
            part = idx[start : start + batch]
            acc.update(y[part], p[part])
        accs.append(acc)
    out = accs[order[0]]
    for k in order[1:]:
        out.merge(accs[k])
    return out


def _tied_ctr(rng: np.random.Generator, n: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with both classes and probabilities on ``levels`` distinct values (many ties)."""
    y = rng.integers(0, 2, n).astype(np.float64)
    y[:2] = [0.0, 1.0]
    p = rng.integers(0, levels + 1, n) / levels  # includes exactly 0 and 1 (clipped by logloss)
    return y, p


def test_hand_computed_auc_with_ties() -> None:
    # positives at 0.5, 0.9; negatives at 0.1, 0.5: pairs (0.5 vs 0.1)=1, (0.5 vs 0.5)=1/2, (0.9 vs both)=2
    acc = AUCAccumulator()
    acc.update([1, 0], [0.5, 0.1])
    acc.update([0, 1], [0.5, 0.9])
    assert acc.compute() == pytest.approx(3.5 / 4, abs=0)
    np.testing.assert_array_equal(acc.scores, [0.1, 0.5, 0.9])
    np.testing.assert_array_equal(acc.positives, [0, 1, 1])
    np.testing.assert_array_equal(acc.negatives, [1, 1, 0])


@pytest.mark.parametrize("seed", range(6))
def test_random_shards_equal_sklearn_and_metrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y, p = _tied_ctr(rng, n, levels=int(rng.integers(2, 40)))
    n_shards = int(rng.integers(1, 6))
    shards = _shards(n, n_shards, rng)
    order = rng.permutation(n_shards)
    batch = int(rng.integers(1, 400))
    a = _merged(AUCAccumulator, shards, y, p, order, batch)
    assert a.compute() == pytest.approx(roc_auc_score(y, p), rel=1e-12, abs=1e-12)
    assert a.compute() == pytest.approx(auc(y, p), rel=1e-12, abs=1e-12)
    ll = _merged(LoglossAccumulator, shards, y, p, order, batch)
    assert ll.compute() == pytest.approx(logloss(y, p), rel=1e-11)
    assert ll.compute() == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), rel=1e-11)
    assert ll.count == n


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=60),
    n_shards=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_split_any_merge_order_is_exact(data: list[tuple[int, int]], n_shards: int, seed: int) -> None:
    y = np.array([d[0] for d in data], dtype=np.float64)
    p = np.array([d[1] for d in data], dtype=np.float64) / 6.0
    rng = np.random.default_rng(seed)
    shards = _shards(len(y), n_shards, rng)
    one = AUCAccumulator()
    one.update(y, p)
    merged = _merged(AUCAccumulator, shards, y, p, rng.permutation(n_shards), int(rng.integers(1, 8)))
    # integer state: identical whatever the split and order
    np.testing.assert_array_equal(merged.scores, one.scores)
    np.testing.assert_array_equal(merged.positives, one.positives)
    np.testing.assert_array_equal(merged.negatives, one.negatives)
    ctr = _merged(CTRAccumulator, shards, y, p, rng.permutation(n_shards), 3).compute()
    if 0 < y.sum() < len(y):
        assert merged.compute() == one.compute() == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert ctr["auc"] == pytest.approx(auc(y, p), abs=1e-12)
    else:
        with pytest.raises(DataError, match="only one class"):
            merged.compute()
        assert math.isnan(ctr["auc"])
    assert ctr["logloss"] == pytest.approx(logloss(y, p), rel=1e-11)
    assert ctr["ece"] == pytest.approx(expected_calibration_error(y, p), abs=1e-12)
    assert ctr["n"] == len(y)


def test_large_stream_folds_and_stays_exact() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(200_000) < 0.3).astype(np.float64)
    p = np.round(np.clip(0.3 + 0.2 * (y - 0.3) + rng.normal(0, 0.2, y.size), 0, 1), 4)
    acc = AUCAccumulator()
    for start in range(0, y.size, 20_000):
        acc.update(y[start : start + 20_000], p[start : start + 20_000])
    assert acc.compute() == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert acc.scores.size == np.unique(p).size
    assert acc.n_positive == int(y.sum()) and acc.n_negative == int(y.size - y.sum())


def test_rating_accumulator_equals_metrics() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(1, 6, 1000).astype(np.float64)
    pred = y + rng.normal(0, 0.8, y.size)
    shards = _shards(y.size, 4, rng)
    acc = _merged(RatingAccumulator, shards, y, pred, [2, 0, 3, 1], 77).compute()
    want = rating_metrics(y, pred)
    for key in ("rmse", "mae", "mse"):
        assert acc[key] == pytest.approx(want[key], rel=1e-12)
    assert acc["mse"] == pytest.approx(mean_squared_error(y, pred), rel=1e-12)
    assert acc["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-12)


def test_mean_accumulator() -> None:
    a, b = MeanAccumulator(), MeanAccumulator()
    a.update([1.0, 3.0])
    a.update(10.0, weights=2.0)
    b.update([4.0], weights=[0.0])
    b.update(np.zeros(0))
    assert a.merge(b).compute() == pytest.approx((1 + 3 + 20) / 4)
    with pytest.raises(DataError, match="negative weight"):
        a.update([1.0], weights=[-1.0])
    with pytest.raises(DataError, match="no weight"):
        MeanAccumulator().compute()


def test_empty_updates_and_errors() -> None:
    acc = CTRAccumulator()
    acc.update(np.zeros(0), np.zeros(0))
    with pytest.raises(DataError, match="no rows"):
        acc.compute()
    with pytest.raises(DataError, match="only one class"):
        a = AUCAccumulator()
        a.update([1, 1], [0.2, 0.3])
        a.compute()
    with pytest.raises(DataError, match="non-binary label at position 1"):
        acc.update([0, 2], [0.1, 0.2])
    with pytest.raises(DataError, match="probability out of range at position 0"):
        acc.update([0], [1.5])
    assert acc.logloss.count == 0 and acc.auc.n_positive == 0  # a rejected batch leaves no trace
    with pytest.raises(DataError, match="length mismatch"):
        RatingAccumulator().update([1.0, 2.0], [1.0])
    with pytest.raises(DataError, match="non-finite"):
        AUCAccumulator().update([0, 1], [0.1, float("nan")])
    with pytest.raises(ConfigError, match="cannot merge"):
        AUCAccumulator().merge(LoglossAccumulator())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="eps"):
        LoglossAccumulator(1e-7).merge(LoglossAccumulator(1e-3))
    with pytest.raises(ConfigError):
        LoglossAccumulator(0.7)
