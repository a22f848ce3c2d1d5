"""Negative samplers: never a positive, right distribution, seeded, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import chi2

from attnrec.data.samplers import NegativeSampler
from attnrec.errors import ConfigError, DataError


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = (
        np.concatenate([np.asarray(x, dtype=np.int64) for x in rows])
        if r.size
        else np.zeros(0, dtype=np.int64)
    )
    return sp.csr_matrix((np.ones(r.size), (r, c)), shape=(len(rows), n_items))


def _chi_square(observed: np.ndarray, expected_p: np.ndarray) -> tuple[float, float]:
    """Statistic and the 99.9% critical value."""
    expected = expected_p * observed.sum()
    stat = float(((observed - expected) ** 2 / expected).sum())
    return stat, float(chi2.ppf(0.999, df=observed.size - 1))


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_never_samples_a_positive_large_random(distribution: str) -> None:
    pos = sp.random(1500, 400, density=0.3, format="csr", random_state=7)
    pos.data[:] = 1.0
    sampler = NegativeSampler(pos, distribution)
    users = np.random.default_rng(1).integers(0, 1500, 3000)
    neg = sampler.sample(users, 20, np.random.default_rng(2))
    assert neg.shape == (3000, 20) and neg.dtype == np.int64
    assert neg.min() >= 0 and neg.max() < 400
    hits = np.asarray(pos[np.repeat(users, 20), neg.ravel()]).ravel()
    assert hits.sum() == 0
    assert not sampler.contains(np.repeat(users, 20), neg.ravel()).any()


def test_contains_matches_the_matrix() -> None:
    pos = _csr([[1, 3], [], [0, 2, 3]], 4)
    s = NegativeSampler(pos)
    u, i = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    assert np.array_equal(s.contains(u, i), pos.toarray() > 0)


def test_uniform_is_uniform_over_non_positives() -> None:
    pos = _csr([[0, 3, 7, 11], []], 20)
    s = NegativeSampler(pos, "uniform")
    neg = s.sample(np.array([0]), 16_000, np.random.default_rng(0)).ravel()
    counts = np.bincount(neg, minlength=20)
    assert counts[[0, 3, 7, 11]].sum() == 0
    free = np.setdiff1d(np.arange(20), [0, 3, 7, 11])
    stat, crit = _chi_square(counts[free].astype(float), np.full(free.size, 1 / free.size))
    assert stat < crit
    # and a user without positives sees all 20 items uniformly
    all_counts = np.bincount(s.sample(np.array([1]), 20_000, np.random.default_rng(1)).ravel(), minlength=20)
    stat2, crit2 = _chi_square(all_counts.astype(float), np.full(20, 1 / 20))
    assert stat2 < crit2


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_popularity_follows_counts(alpha: float) -> None:
    # item j is a positive of j+1 users among users 1..8 -> counts 1..8; user 0 has no positives
    n_items = 8
    rows: list[list[int]] = [[]] + [[j for j in range(n_items) if j + 1 >= k] for k in range(1, 9)]
    pos = _csr(rows, n_items)
    s = NegativeSampler(pos, "popularity", alpha=alpha)
    counts = np.arange(1, 9, dtype=float)
    expect = counts**alpha / (counts**alpha).sum()
    assert np.allclose(s.probabilities, expect)
    draws = np.bincount(s.sample(np.array([0]), 40_000, np.random.default_rng(3)).ravel(), minlength=n_items)
    stat, crit = _chi_square(draws.astype(float), expect)
    assert stat < crit
    assert draws[7] / draws[0] == pytest.approx(8**alpha, rel=0.15)
    # user 8 has only item 7 as a positive: the rest, renormalised
    d8 = np.bincount(s.sample(np.array([8]), 20_000, np.random.default_rng(4)).ravel(), minlength=n_items)
    assert d8[7] == 0
    stat8, crit8 = _chi_square(d8[:7].astype(float), expect[:7] / expect[:7].sum())
    assert stat8 < crit8


def test_popularity_with_given_counts_and_zero_weight_items() -> None:
    pos = _csr([[0], [1]], 4)
    s = NegativeSampler(pos, "popularity", counts=np.array([0.0, 3.0, 1.0, 0.0]))
    neg = s.sample(np.array([0, 1]), 4000, np.random.default_rng(5))
    assert set(np.unique(neg[0])) == {1, 2}  # zero-count items 0 and 3 are never drawn
    assert set(np.unique(neg[1])) == {2}  # user 1's positive (item 1) removed, only item 2 left
    assert (neg[0] == 1).mean() == pytest.approx(0.75, abs=0.03)


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_dense_users_use_exact_fallback(distribution: str) -> None:
    n_items = 3000
    full_but_two = [j for j in range(n_items) if j not in (5, 2999)]
    pos = _csr([full_but_two, list(range(0, n_items, 2)), [1, 2]], n_items)
    s = NegativeSampler(pos, distribution, counts=np.ones(n_items) if distribution == "popularity" else None)
    neg = s.sample(np.array([0, 1, 2]), 4000, np.random.default_rng(6))
    assert set(np.unique(neg[0])) == {5, 2999}
    assert (neg[0] == 5).mean() == pytest.approx(0.5, abs=0.04)
    assert np.all(neg[1] % 2 == 1)
    assert not np.isin(neg[2], [1, 2]).any()


def test_deterministic_under_seed() -> None:
    pos = sp.random(200, 50, density=0.2, format="csr", random_state=3)
    users = np.arange(200)
    for distribution in ("uniform", "popularity"):
        s = NegativeSampler(pos, distribution)
        a = s.sample(users, 5, np.random.default_rng(11))
        b = s.sample(users, 5, np.random.default_rng(11))
        c = s.sample(users, 5, np.random.default_rng(12))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


def test_user_with_every_item_positive_raises() -> None:
    pos = _csr([[0, 1, 2], [0]], 3)
    s = NegativeSampler(pos)
    with pytest.raises(DataError, match="every item as a positive") as exc:
        s.sample(np.array([1, 0, 1]), 2, np.random.default_rng(0))
    assert exc.value.field == "user" and exc.value.value == 0
    # popularity: counts are (2, 2, 0); user 0's only non-positive (item 2) has zero weight
    p = NegativeSampler(_csr([[0, 1], [0], [1]], 3), "popularity")
    assert p.sample(np.array([1, 2]), 3, np.random.default_rng(0)).tolist() == [[1, 1, 1], [0, 0, 0]]
    with pytest.raises(DataError, match="zero-weight") as exc2:
        p.sample(np.array([2, 0]), 1, np.random.default_rng(0))
    assert exc2.value.value == 0


def test_bad_arguments() -> None:
    pos = _csr([[0], []], 3)
    s = NegativeSampler(pos)
    with pytest.raises(DataError, match="out of range") as exc:
        s.sample(np.array([0, 2]), 1, np.random.default_rng(0))
    assert exc.value.value == 2
    with pytest.raises(DataError, match="bad user indices"):
        s.sample(np.array([0.5]), 1, np.random.default_rng(0))
    assert s.sample(np.array([0, 1]), 0, np.random.default_rng(0)).shape == (2, 0)
    assert s.sample(np.array([], dtype=np.int64), 3, np.random.default_rng(0)).shape == (0, 3)
    with pytest.raises(ConfigError, match="distribution"):
        NegativeSampler(pos, "zipf")
    with pytest.raises(ConfigError, match="alpha"):
        NegativeSampler(pos, "popularity", alpha=-1.0)
    with pytest.raises(DataError, match="counts"):
        NegativeSampler(pos, "popularity", counts=np.array([1.0, -1.0, 2.0]))
