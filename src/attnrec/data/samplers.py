"""Negative sampling over index-encoded interactions (int64 user/item indices).

A :class:`NegativeSampler` draws, for each requested user, items that are not among that user's
positives: uniformly, or with probability proportional to ``count ** alpha`` (popularity). Candidates are
drawn in bulk and checked against the positives with one ``searchsorted`` over sorted
``user * n_items + item`` keys; only the rejected draws are redrawn. Draws still rejected after
``max_rounds`` (and users whose positives hold most of the probability mass) are taken exactly from each
user's complement distribution, so the loop is bounded and the result has the same distribution as pure
rejection sampling.

Speed sanity (2-core CPU, measured once, not asserted anywhere): 10,000 users x 100 negatives over 50,000
items at 1% density takes about 0.2 s (uniform) and 0.3 s (popularity), after about 0.1 s to build.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from attnrec.errors import ConfigError, DataError

DISTRIBUTIONS: tuple[str, str] = ("uniform", "popularity")


class NegativeSampler:
    """Samples non-positive items per user.

    Args:
        positives: users x items sparse matrix; every stored non-zero entry is a positive (values ignored).
        distribution: ``"uniform"`` over items, or ``"popularity"`` with ``p(item) ∝ count(item) ** alpha``.
        alpha: popularity exponent (>= 0; 0 is uniform over items with a nonzero count).
        counts: item counts for popularity sampling, shape ``(n_items,)``; default: positives per item (column
            non-zeros of ``positives``).
        max_rounds: rejection rounds before the exact per-user fallback.

    The sampling distribution for user ``u`` is the chosen item distribution restricted to items that are not
    positives of ``u`` (renormalised).
    """

    def __init__(
        self,
        positives: sp.spmatrix | sp.sparray,
        distribution: str = "uniform",
        alpha: float = 1.0,
        *,
        counts: np.ndarray | None = None,
        max_rounds: int = 16,
    ) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ConfigError(
                f"unknown negative sampling distribution {distribution!r}; expected one of {DISTRIBUTIONS}"
            )
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ConfigError(f"popularity exponent alpha={alpha!r}; expected a finite number >= 0")
        m = sp.csr_matrix(positives, copy=True)
        m.sum_duplicates()
        m.eliminate_zeros()
        m.sort_indices()
        self.n_users, self.n_items = int(m.shape[0]), int(m.shape[1])
        if self.n_items == 0:
            raise DataError(
                "no items to sample from", field="positives", expected="a matrix with at least one item"
            )
        self.distribution = distribution
        self.alpha = float(alpha)
        self.max_rounds = int(max_rounds)
        self._csr = m
        indptr = m.indptr.astype(np.int64)
        self._items = m.indices.astype(np.int64)
        self._rows = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(indptr))
        # sorted because rows are sorted and indices are sorted within each row
        self._keys = self._rows * self.n_items + self._items

        if distribution == "uniform":
            weights = np.ones(self.n_items, dtype=np.float64)
        else:
            if counts is None:
                c = np.bincount(self._items, minlength=self.n_items).astype(np.float64)
            else:
                c = np.asarray(counts, dtype=np.float64)
                if c.shape != (self.n_items,) or not np.all(np.isfinite(c)) or np.any(c < 0):
                    raise DataError(
                        "bad item counts",
                        field="counts",
                        value=c.shape,
                        expected=f"{self.n_items} finite non-negative counts",
                    )
            weights = np.where(c > 0, c**self.alpha, 0.0)
        total = weights.sum()
        self._p = weights / total if total > 0 else weights
        self._cdf = np.cumsum(self._p)
        support = np.flatnonzero(self._p > 0)
        self._last = int(support[-1]) if support.size else 0
        # exact integer count of sampleable items per user: support size minus the user's positives in it
        pos_in_support = np.bincount(self._rows, weights=(self._p[self._items] > 0), minlength=self.n_users)
        self._free = support.size - np.rint(pos_in_support).astype(np.int64)
        self._free_mass = 1.0 - np.bincount(self._rows, weights=self._p[self._items], minlength=self.n_users)

    def stuck_users(self) -> np.ndarray:
        """Indices of the users no negative can be drawn for (every drawable item is a positive), int64, sorted."""
        return np.flatnonzero(self._free <= 0).astype(np.int64)

    @property
    def probabilities(self) -> np.ndarray:
        """Item probabilities before excluding positives, shape ``(n_items,)``, summing to 1."""
        return self._p.copy()

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each ``(users[k], items[k])`` is a positive; bool array of the broadcast shape."""
        u, i = np.broadcast_arrays(np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64))
        keys = u * self.n_items + i
        if self._keys.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.searchsorted(self._keys, keys)
        return self._keys[np.minimum(pos, self._keys.size - 1)] == keys

    def sample(self, users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` negatives for each user (with replacement), int64 array of shape ``(len(users), n)``.

        Raises :class:`DataError` naming the user when a user index is out of range or a user has no item it
        could be given (every item is a positive, or every non-positive item has zero popularity).
        """
        users = np.asarray(users)
        if users.ndim != 1 or not (users.size == 0 or np.issubdtype(users.dtype, np.integer)):
            raise DataError(
                "bad user indices",
                field="users",
                value=users.dtype,
                expected="a 1-d array of integer indices",
            )
        if n < 0:
            raise ConfigError(f"number of negatives n={n}; expected n >= 0")
        users = users.astype(np.int64)
        out_of_range = (users < 0) | (users >= self.n_users)
        if out_of_range.any():
            bad = int(users[np.argmax(out_of_range)])
            raise DataError(
                "user index out of range", field="user", value=bad, expected=f"0 <= user < {self.n_users}"
            )
        stuck = self._free[users] <= 0
        if stuck.any():
            bad = int(users[np.argmax(stuck)])
            raise DataError(
                "user has every item as a positive (or only zero-weight items left); no negative to sample",
                field="user",
                value=bad,
                expected="a user with at least one non-positive item that the distribution can draw",
            )
        flat_users = np.repeat(users, n)
        out = np.empty(flat_users.size, dtype=np.int64)
        # users whose positives hold most of the mass would need many rounds; take them exactly at once
        dense = self._free_mass[flat_users] < 0.25
        easy = np.flatnonzero(~dense)
        out[easy] = self._draw(easy.size, rng)
        todo = easy[self.contains(flat_users[easy], out[easy])]
        rounds = 0
        while todo.size and rounds < self.max_rounds:
            out[todo] = self._draw(todo.size, rng)
            todo = todo[self.contains(flat_users[todo], out[todo])]
            rounds += 1
        rest = np.concatenate([np.flatnonzero(dense), todo])
        if rest.size:
            out[rest] = self._exact(flat_users[rest], rng)
        return out.reshape(users.size, n)

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` items from the item distribution, ignoring positives."""
        if self.distribution == "uniform":
            return rng.integers(0, self.n_items, size=size, dtype=np.int64)
        idx = np.searchsorted(self._cdf, rng.random(size) * self._cdf[-1], side="right")
        return np.minimum(idx, self._last).astype(np.int64)

    def _exact(self, flat_users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One draw per entry from that user's distribution with positives removed, via dense per-user CDFs.

        Users are processed in chunks so that a chunk's CDF block stays around 16 MB.
        """
        uniq, inv = np.unique(flat_users, return_inverse=True)
        out = np.empty(flat_users.size, dtype=np.int64)
        chunk = max(1, (1 << 21) // self.n_items)
        for start in range(0, uniq.size, chunk):
            block_users = uniq[start : start + chunk]
            w = np.broadcast_to(self._p, (block_users.size, self.n_items)).copy()
            w[self._csr[block_users].toarray() != 0] = 0.0
            cdf = np.cumsum(w, axis=1)
            sel = np.flatnonzero((inv >= start) & (inv < start + block_users.size))
            row = inv[sel] - start
            total = cdf[row, -1]
            # strictly below the row total, so the first CDF entry above it has positive weight
            target = np.minimum(rng.random(sel.size) * total, np.nextafter(total, 0.0))
            lo = np.zeros(sel.size, dtype=np.int64)
            hi = np.full(sel.size, self.n_items - 1, dtype=np.int64)
            while np.any(lo < hi):  # vectorised bisection: first column with cdf > target
                active = lo < hi
                mid = (lo + hi) // 2
                right = active & (cdf[row, mid] <= target)
                lo = np.where(right, mid + 1, lo)
                hi = np.where(active & ~right, mid, hi)
            out[sel] = lo
        return out
