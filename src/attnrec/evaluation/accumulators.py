"""Streaming (state-based) metrics: feed batches with ``update``, combine shards with ``merge``, read ``compute``.

The metrics themselves are the pure functions of :mod:`attnrec.evaluation.metrics`; an accumulator keeps the
smallest state from which the same number follows exactly, so evaluation can run batch by batch and, later,
shard by shard across processes (each rank accumulates its rows, the states are merged, one rank computes).

* :class:`LoglossAccumulator`: the sum of per-row losses (probabilities clipped as in
  :func:`~attnrec.evaluation.metrics.logloss`) and the row count.
* :class:`AUCAccumulator`: exact AUC from per-score counts. The state is the sorted array of distinct scores
  with the number of positive and negative rows at each, so ``merge`` is exact (integer counts added at equal
  scores) and ties between a positive and a negative count one half, as in
  :func:`~attnrec.evaluation.metrics.auc` and scikit-learn's ``roc_auc_score``. Memory grows with the number
  of distinct scores (about 24 bytes each; at most one per row).
* :class:`CTRAccumulator`: both of the above from one ``update(labels, probabilities)``, plus the expected
  calibration error over equal-mass bins, which follows exactly from the AUC state (distinct probabilities with
  their positive and negative counts; :mod:`attnrec.evaluation.calibration`).
* :class:`RatingAccumulator`: MSE, RMSE and MAE of predicted ratings (sums of squared and absolute errors).
* :class:`MeanAccumulator`: a weighted mean of values (e.g. per-batch losses weighted by batch size).

Integer state (counts) merges exactly in any order; float sums agree up to rounding (a few ulps).
Updates with no rows are allowed and change nothing (an empty shard on some rank).
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np

from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.calibration import DEFAULT_BINS, ReliabilityCurve, reliability_from_counts
from attnrec.evaluation.metrics import _binary_labels, _pair, _to_numpy, logloss, require_both_classes

__all__ = [
    "AUCAccumulator",
    "CTRAccumulator",
    "LoglossAccumulator",
    "MeanAccumulator",
    "RatingAccumulator",
]


def _rows(y: Any, p: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(y, p)`` as validated 1-D float64 arrays of equal length, or None when both are empty."""
    a, b = _to_numpy(y, names[0]), _to_numpy(p, names[1])
    if a.size == 0 and b.size == 0 and a.ndim == 1 and b.ndim == 1:
        return None
    return _pair(a, b, names)


def _same_kind(acc: object, other: object) -> None:
    if type(other) is not type(acc):
        raise ConfigError(f"cannot merge {type(other).__name__} into {type(acc).__name__}")


class LoglossAccumulator:
    """Binary cross-entropy in nats over a stream of ``(labels 0/1, probabilities of 1)`` batches.

    Probabilities are clipped to ``[eps, 1 - eps]`` exactly as :func:`~attnrec.evaluation.metrics.logloss`
    does; ``compute()`` equals ``logloss`` of all rows seen (up to float rounding of the sum).
    """

    def __init__(self, eps: float = 1e-7) -> None:
        if not 0.0 < eps < 0.5:
            raise ConfigError(f"logloss eps must be in (0, 0.5), got {eps!r}")
        self.eps = eps
        self.total = 0.0  # sum of per-row losses, nats
        self.count = 0

    def update(self, y: Any, p: Any) -> None:
        """Add rows: ``y`` (n,) 0/1 labels, ``p`` (n,) probabilities in [0, 1]."""
        rows = _rows(y, p, ("y_true", "p"))
        if rows is None:
            return
        # the pure metric validates and clips; its mean times the row count is this batch's sum
        self.total += logloss(rows[0], rows[1], self.eps) * rows[0].size
        self.count += int(rows[0].size)

    def merge(self, other: LoglossAccumulator) -> Self:
        """Add ``other``'s rows to this one (same ``eps``); returns ``self``."""
        _same_kind(self, other)
        if other.eps != self.eps:
            raise ConfigError(f"cannot merge logloss states with eps {other.eps!r} and {self.eps!r}")
        self.total += other.total
        self.count += other.count
        return self

    def compute(self) -> float:
        """Mean loss per row (nats); DataError when no row was added."""
        if self.count == 0:
            raise DataError("no rows accumulated", field="logloss", expected="at least one row")
        return self.total / self.count


class AUCAccumulator:
    """Exact area under the ROC curve over a stream of ``(labels 0/1, scores)`` batches.

    State: ``scores`` (S,) distinct scores ascending, ``positives`` / ``negatives`` (S,) int64 row counts at
    each. Batches are buffered and folded into the state when the buffer outgrows it, so ``update`` costs
    amortised ``O(n log n)``.
    """

    def __init__(self) -> None:
        self._scores = np.zeros(0, dtype=np.float64)
        self._positives = np.zeros(0, dtype=np.int64)
        self._negatives = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0

    def update(self, y: Any, score: Any) -> None:
        """Add rows: ``y`` (n,) 0/1 labels, ``score`` (n,) finite scores (higher = more likely positive)."""
        rows = _rows(y, score, ("y_true", "y_score"))
        if rows is None:
            return
        yt, s = rows
        pos = _binary_labels(yt, "y_true")
        uniq, inv = np.unique(s, return_inverse=True)
        n_pos = np.bincount(inv[pos], minlength=uniq.size).astype(np.int64)
        n_neg = np.bincount(inv[~pos], minlength=uniq.size).astype(np.int64)
        self._pending.append((uniq, n_pos, n_neg))
        self._pending_rows += uniq.size
        # fold when the buffer outgrows the state: few large merges, memory within a constant of the state
        if self._pending_rows > max(1 << 16, self._scores.size):
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        parts = [(self._scores, self._positives, self._negatives), *self._pending]
        self._pending, self._pending_rows = [], 0
        scores, inv = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
        pos = np.bincount(inv, np.concatenate([p[1] for p in parts]), scores.size)
        neg = np.bincount(inv, np.concatenate([p[2] for p in parts]), scores.size)
        # bincount sums in float64: exact for counts below 2**53
        self._scores, self._positives, self._negatives = scores, pos.astype(np.int64), neg.astype(np.int64)

    @property
    def scores(self) -> np.ndarray:
        """(S,) float64: the distinct scores seen, ascending."""
        self._fold()
        return self._scores

    @property
    def positives(self) -> np.ndarray:
        """(S,) int64: positive rows at each of :attr:`scores`."""
        self._fold()
        return self._positives

    @property
    def negatives(self) -> np.ndarray:
        """(S,) int64: negative rows at each of :attr:`scores`."""
        self._fold()
        return self._negatives

    def merge(self, other: AUCAccumulator) -> Self:
        """Add ``other``'s rows to this one; the result does not depend on the order of merges. Returns self."""
        _same_kind(self, other)
        self._pending.append((other.scores, other.positives, other.negatives))
        self._fold()
        return self

    @property
    def n_positive(self) -> int:
        """Positive rows seen."""
        return int(self.positives.sum())

    @property
    def n_negative(self) -> int:
        """Negative rows seen."""
        return int(self.negatives.sum())

    def compute(self) -> float:
        """AUC in [0, 1]: ``sum_s pos(s) * (neg(< s) + neg(s) / 2) / (P * N)`` over distinct scores ``s``.

        Raises DataError when only one class was seen (AUC is undefined), like :func:`metrics.auc`.
        """
        pos, neg = self.positives, self.negatives
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        require_both_classes(n_pos, n_neg)
        neg_below = np.cumsum(neg) - neg
        # twice the numerator is an integer; float64 keeps it exact up to 2**53
        twice = np.dot(pos.astype(np.float64), (2 * neg_below + neg).astype(np.float64))
        return float(twice / (2.0 * n_pos * n_neg))


class CTRAccumulator:
    """AUC and logloss of click probabilities, from one ``update(labels, probabilities)`` per batch."""

    def __init__(self, eps: float = 1e-7) -> None:
        self.auc = AUCAccumulator()
        self.logloss = LoglossAccumulator(eps)

    def update(self, y: Any, p: Any) -> None:
        """Add rows: ``y`` (n,) 0/1 labels, ``p`` (n,) probabilities of a click in [0, 1]."""
        self.logloss.update(y, p)  # validates p's range before the AUC state changes
        self.auc.update(y, p)

    def merge(self, other: CTRAccumulator) -> Self:
        """Add ``other``'s rows to this one; returns ``self``."""
        _same_kind(self, other)
        self.auc.merge(other.auc)
        self.logloss.merge(other.logloss)
        return self

    def reliability(self, n_bins: int = DEFAULT_BINS) -> ReliabilityCurve:
        """The equal-mass reliability curve of every row seen (exact, from the AUC state)."""
        return reliability_from_counts(self.auc.scores, self.auc.positives, self.auc.negatives, n_bins)

    def compute(self) -> dict[str, float]:
        """``{"auc", "logloss", "ece", "n"}``; ``auc`` is NaN when the rows hold one class only; ``ece`` over
        :data:`~attnrec.evaluation.calibration.DEFAULT_BINS` equal-mass bins."""
        both = self.auc.n_positive > 0 and self.auc.n_negative > 0
        return {
            "auc": self.auc.compute() if both else math.nan,
            "logloss": self.logloss.compute(),
            "ece": self.reliability().ece(),
            "n": float(self.logloss.count),
        }


class RatingAccumulator:
    """MSE, RMSE and MAE of predicted against true ratings over a stream of batches (rating units).

    No graded NDCG: it ranks each user's rows together, so it is not a sum over batches. The ``Rating``
    protocol (:func:`~attnrec.evaluation.evaluators.rating_report`) and its sharded form keep every row's
    prediction instead.
    """

    def __init__(self) -> None:
        self.sum_squared = 0.0
        self.sum_absolute = 0.0
        self.count = 0

    def update(self, y: Any, pred: Any) -> None:
        """Add rows: ``y`` (n,) true ratings, ``pred`` (n,) predictions, finite."""
        rows = _rows(y, pred, ("y_true", "y_pred"))
        if rows is None:
            return
        err = rows[1] - rows[0]
        self.sum_squared += float(np.dot(err, err))
        self.sum_absolute += float(np.abs(err).sum())
        self.count += int(err.size)

    def merge(self, other: RatingAccumulator) -> Self:
        """Add ``other``'s rows to this one; returns ``self``."""
        _same_kind(self, other)
        self.sum_squared += other.sum_squared
        self.sum_absolute += other.sum_absolute
        self.count += other.count
        return self

    def compute(self) -> dict[str, float]:
        """``{"rmse", "mae", "mse"}`` like :func:`~attnrec.evaluation.metrics.rating_metrics`."""
        if self.count == 0:
            raise DataError("no rows accumulated", field="y_true", expected="at least one rating")
        mse = self.sum_squared / self.count
        return {"rmse": math.sqrt(mse), "mae": self.sum_absolute / self.count, "mse": mse}


class MeanAccumulator:
    """Weighted mean of a stream of values, e.g. per-batch losses weighted by their batch sizes."""

    def __init__(self) -> None:
        self.total = 0.0
        self.weight = 0.0

    def update(self, values: Any, weights: Any = None) -> None:
        """Add ``values`` (n,) (or one number) with ``weights`` (n,) >= 0 (default 1 each)."""
        v = np.atleast_1d(_to_numpy(values, "values")).astype(np.float64).ravel()
        w = np.ones_like(v) if weights is None else np.atleast_1d(_to_numpy(weights, "weights")).ravel()
        if v.size == 0 and w.size == 0:
            return
        v, w = _pair(v, w, ("values", "weights"))
        if (w < 0).any():
            i = int(np.flatnonzero(w < 0)[0])
            raise DataError(
                f"negative weight at position {i}", field="weights", value=float(w[i]), expected=">= 0"
            )
        self.total += float(np.dot(v, w))
        self.weight += float(w.sum())

    def merge(self, other: MeanAccumulator) -> Self:
        """Add ``other``'s values to this one; returns ``self``."""
        _same_kind(self, other)
        self.total += other.total
        self.weight += other.weight
        return self

    def compute(self) -> float:
        """``sum(w * v) / sum(w)``; DataError when the weights sum to 0."""
        if self.weight <= 0:
            raise DataError("no weight accumulated", field="weights", expected="a positive total weight")
        return self.total / self.weight
