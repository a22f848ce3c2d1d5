"""Calibration of predicted probabilities: expected calibration error, reliability curves, post-hoc scaling.

A CTR model's output is used as a probability (bids and expected-value ranking multiply by it), so beside AUC
(ranking) and logloss (a proper score) we report how far the predicted probabilities are from the observed rates.

**Equal-mass bins, exactly.** Rows are ordered by predicted probability and cut into ``n_bins`` bins of equal row
mass ``n / n_bins`` (fractional edges). Rows that tie at one probability are spread over the bins their positions
fall in, in proportion, so the result does not depend on how a sort breaks ties and needs no per-row state: the
input is the distinct probabilities with their positive and negative counts, which is exactly what
:class:`~attnrec.evaluation.accumulators.AUCAccumulator` keeps, so ECE streams and merges across shards like AUC.
For bin ``b`` with mass ``n_b``, mean prediction ``p̄_b`` and observed rate ``ȳ_b``::

    ECE = Σ_b (n_b / n) · |p̄_b − ȳ_b|

With every probability distinct and ``n`` a multiple of ``n_bins`` this is the usual equal-frequency ECE
(scikit-learn's ``calibration_curve(strategy="quantile")`` bins, weighted by bin size).

**Post-hoc scaling** fitted on the validation split only: temperature scaling (one parameter,
``σ(z / T)`` on the model's logit ``z``; keeps the ranking, so AUC is unchanged) and Platt scaling
(``σ(a z + b)``; ranking kept for ``a > 0``). Both minimise the validation logloss with L-BFGS on the exact gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize

from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.metrics import _binary_labels, _pair, _to_numpy

__all__ = [
    "Calibrator",
    "ReliabilityCurve",
    "ece_noise_floor",
    "expected_calibration_error",
    "fit_calibrator",
    "fit_calibrator_logits",
    "plot_reliability",
    "reliability_curve",
    "reliability_from_counts",
]

DEFAULT_BINS = 15
CalibrationMethod = Literal["temperature", "platt"]


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin calibration data, bins in ascending predicted probability (each array (n_bins,)).

    ``mass``: rows in the bin (fractional where a tie group straddles an edge); ``mean_predicted``: the bin's mean
    probability; ``observed``: its positive rate; ``lower``/``upper``: the smallest and largest probability in it.
    """

    mass: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @property
    def n(self) -> float:
        """Rows in all bins."""
        return float(self.mass.sum())

    def ece(self) -> float:
        """Expected calibration error: the mass-weighted mean of ``|mean_predicted - observed|``."""
        if self.n == 0:
            return math.nan
        return float(np.sum(self.mass * np.abs(self.mean_predicted - self.observed)) / self.n)

    def max_gap(self) -> float:
        """Maximum calibration error: the largest ``|mean_predicted - observed|`` over non-empty bins."""
        keep = self.mass > 0
        return float(np.max(np.abs(self.mean_predicted - self.observed)[keep])) if keep.any() else math.nan

    def as_dict(self) -> dict[str, list[float]]:
        """JSON-ready lists."""
        return {
            "mass": self.mass.tolist(),
            "mean_predicted": self.mean_predicted.tolist(),
            "observed": self.observed.tolist(),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
        }


def reliability_from_counts(
    scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray, n_bins: int = DEFAULT_BINS
) -> ReliabilityCurve:
    """The equal-mass reliability curve from distinct ``scores`` (S,) ascending and their positive/negative row
    counts (S,) — the state of :class:`~attnrec.evaluation.accumulators.AUCAccumulator`.

    Cumulative sums of mass, probability mass and positives along the sorted rows are piecewise linear in the row
    position; each bin's sums are their differences at the bin's (fractional) edges.
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    count = pos + neg
    n = float(count.sum())
    if n == 0:
        empty = np.zeros(n_bins)
        return ReliabilityCurve(
            empty, np.full(n_bins, np.nan), np.full(n_bins, np.nan), empty.copy(), empty.copy()
        )
    at = np.concatenate([[0.0], np.cumsum(count)])  # row position where each score's group starts / ends
    cum_p = np.concatenate([[0.0], np.cumsum(count * s)])
    cum_y = np.concatenate([[0.0], np.cumsum(pos)])
    edges = np.linspace(0.0, n, n_bins + 1)
    mass = np.diff(edges)
    sum_p = np.diff(np.interp(edges, at, cum_p))
    sum_y = np.diff(np.interp(edges, at, cum_y))
    # the score of the row just inside each edge: groups are [at[g], at[g+1])
    first = np.searchsorted(at, edges[:-1], side="right") - 1
    last = np.searchsorted(at, edges[1:], side="left") - 1
    first = np.clip(first, 0, s.size - 1)
    last = np.clip(last, 0, s.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ReliabilityCurve(mass, sum_p / mass, sum_y / mass, s[first], s[last])


def _counts(y_true: Any, p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, prob = _pair(_to_numpy(y_true, "y_true"), _to_numpy(p, "p"), ("y_true", "p"))
    if prob.size and (prob.min() < 0 or prob.max() > 1):
        bad = prob[(prob < 0) | (prob > 1)][0]
        raise DataError(
            "probability outside [0, 1]", field="p", value=float(bad), expected="values in [0, 1]"
        )
    positive = _binary_labels(y, "y_true")
    uniq, inv = np.unique(prob, return_inverse=True)
    return (
        uniq,
        np.bincount(inv[positive], minlength=uniq.size).astype(np.int64),
        np.bincount(inv[~positive], minlength=uniq.size).astype(np.int64),
    )


def reliability_curve(y_true: Any, p: Any, n_bins: int = DEFAULT_BINS) -> ReliabilityCurve:
    """Equal-mass reliability curve of probabilities ``p`` (n,) in [0, 1] against 0/1 labels ``y_true`` (n,)."""
    return reliability_from_counts(*_counts(y_true, p), n_bins=n_bins)


def expected_calibration_error(y_true: Any, p: Any, n_bins: int = DEFAULT_BINS) -> float:
    """ECE over ``n_bins`` equal-mass bins (see the module docstring); 0 is perfectly calibrated."""
    return reliability_curve(y_true, p, n_bins).ece()


# ------------------------------------------------------------------------------------------- post-hoc scaling

_EPS = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free
    return out


@dataclass(frozen=True)
class Calibrator:
    """``p' = σ(a · logit(p) + b)``: temperature scaling is ``a = 1/T, b = 0``; Platt scaling fits both."""

    method: CalibrationMethod
    a: float
    b: float

    @property
    def temperature(self) -> float:
        """``1 / a`` (for temperature scaling, the fitted T)."""
        return 1.0 / self.a

    def apply(self, p: Any) -> np.ndarray:
        """Recalibrated probabilities for probabilities ``p`` (n,) in [0, 1]."""
        prob = np.asarray(p, dtype=np.float64)
        return _sigmoid(self.a * _logit(prob) + self.b)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (stored in bundles)."""
        return {"method": self.method, "a": self.a, "b": self.b}

    @classmethod
    def from_json(cls, obj: Any, source: str = "<calibrator>") -> Calibrator:
        """Read :meth:`to_json`'s dict back, checking every field."""
        if not isinstance(obj, dict) or set(obj) != {"method", "a", "b"}:
            raise DataError("a calibrator must be {method, a, b}", file=source, value=obj)
        method, a, b = obj["method"], obj["a"], obj["b"]
        if method not in ("temperature", "platt"):
            raise DataError("unknown calibration method", file=source, field="method", value=method)
        for name, v in (("a", a), ("b", b)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise DataError("not a finite number", file=source, field=name, value=v)
        if a <= 0:
            raise DataError(
                "the slope must be positive (it would reverse the ranking)", file=source, field="a", value=a
            )
        if method == "temperature" and b != 0:
            raise DataError("temperature scaling has no offset", file=source, field="b", value=b)
        return cls(method, float(a), float(b))


def fit_calibrator(y_true: Any, p: Any, method: CalibrationMethod = "temperature") -> Calibrator:
    """Fit temperature (``a`` only) or Platt (``a, b``) scaling to minimise the logloss of ``(y_true, p)``.

    Call it with the VALIDATION split's labels and raw model probabilities only. Raises :class:`DataError` when
    the labels hold one class (the fit would push the probabilities to 0 or 1). Where the model's logits are at
    hand, prefer :func:`fit_calibrator_logits`: a probability rounded to float32 caps ``|logit|`` near 16, so the
    most confident rows, which calibration is for, would be fitted on the wrong logits.
    """
    y, prob = _pair(_to_numpy(y_true, "y_true"), _to_numpy(p, "p"), ("y_true", "p"))
    return fit_calibrator_logits(y, _logit(prob), method)


def fit_calibrator_logits(y_true: Any, logits: Any, method: CalibrationMethod = "temperature") -> Calibrator:
    """:func:`fit_calibrator` on the model's raw logits ``z`` (n,) (the calibrator maps ``z`` to ``σ(a z + b)``)."""
    if method not in ("temperature", "platt"):
        raise ConfigError(f"unknown calibration method {method!r}; expected 'temperature' or 'platt'")
    y, z = _pair(_to_numpy(y_true, "y_true"), _to_numpy(logits, "logits"), ("y_true", "logits"))
    if not np.isfinite(z).all():
        raise DataError("non-finite logit", field="logits", value=float(z[~np.isfinite(z)][0]))
    t = _binary_labels(y, "y_true").astype(np.float64)
    if t.size == 0 or t.min() == t.max():
        raise DataError("calibration needs both classes in the validation labels", field="y_true")

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta[0], (theta[1] if method == "platt" else 0.0)
        u = a * z + b
        # logloss of σ(u): softplus(u) - t·u, gradient (σ(u) - t)
        loss = float(np.mean(np.logaddexp(0.0, u) - t * u))
        r = _sigmoid(u) - t
        grad = [float(np.mean(r * z))] + ([float(np.mean(r))] if method == "platt" else [])
        return loss, np.asarray(grad)

    x0 = np.array([1.0, 0.0] if method == "platt" else [1.0])
    bounds = [(1e-3, 1e3)] + ([(None, None)] if method == "platt" else [])
    res = minimize(nll, x0, jac=True, method="L-BFGS-B", bounds=bounds)
    a = float(res.x[0])
    b = float(res.x[1]) if method == "platt" else 0.0
    return Calibrator(method, a, b)


def ece_noise_floor(
    p: Any, n_bins: int = DEFAULT_BINS, draws: int = 200, seed: int = 0
) -> tuple[float, float]:
    """``(mean, 95th percentile)`` of the ECE a *perfectly calibrated* model shows on a test set with these
    probabilities ``p`` (n,): labels drawn as Bernoulli(p) ``draws`` times (NumPy ``default_rng(seed)``).

    On a few hundred rows this floor is several hundredths with 15 bins (each bin's observed rate has a binomial
    standard error of ``sqrt(p(1-p)/(n/n_bins))``), so a measured ECE is read against it, not against zero.
    """
    prob = np.asarray(p, dtype=np.float64).ravel()
    if prob.size == 0 or draws < 1:
        raise ConfigError("ece_noise_floor needs probabilities and draws >= 1")
    rng = np.random.default_rng(seed)
    values = np.array(
        [expected_calibration_error(rng.random(prob.size) < prob, prob, n_bins) for _ in range(draws)]
    )
    return float(values.mean()), float(np.quantile(values, 0.95))


def plot_reliability(
    curves: dict[str, ReliabilityCurve], path: str | Path, *, title: str | None = None
) -> Path:
    """Write a reliability diagram of ``curves`` (label -> curve; e.g. raw and calibrated) to ``path`` (the format
    from its suffix: .png, .svg, .pdf): observed positive rate against mean predicted probability per equal-mass
    bin, the diagonal of perfect calibration, and each curve's ECE in the legend. Needs the ``plots`` extra."""
    from attnrec.errors import require

    # a bare Figure, not pyplot: no global backend or figure registry is touched
    figure = require("matplotlib.figure", "plots")
    out = Path(path)
    fig = figure.Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    hi = 0.0
    for label, c in curves.items():
        keep = c.mass > 0
        ax.plot(
            c.mean_predicted[keep],
            c.observed[keep],
            marker="o",
            ms=3,
            label=f"{label} (ECE {c.ece():.3f})",
        )
        hi = max(
            hi,
            float(np.nanmax(c.mean_predicted[keep], initial=0)),
            float(np.nanmax(c.observed[keep], initial=0)),
        )
    hi = min(1.0, hi * 1.05 + 0.01)
    ax.plot([0, hi], [0, hi], color="grey", lw=0.8, ls="--", label="perfect calibration")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("mean predicted probability (equal-mass bins)")
    ax.set_ylabel("observed positive rate")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
