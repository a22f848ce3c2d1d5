"""What the CTR benchmark's peer runners share with attnrec's side: the early-stopping rule and the scoring.

* :class:`StopRule` is the rule of attnrec's Trainer (``valid_metric`` + ``valid_also``): keep the weights of the best
  (strictly better) selection metric; an epoch where the selection metric *or* an extra watched metric improves on
  its own best resets the patience count; stop after ``patience`` epochs with no improvement.
* :func:`report_scores` reports a run's test AUC / logloss / ECE twice: raw, and after temperature scaling fitted on
  the validation split only (attnrec's :func:`~attnrec.evaluation.calibration.fit_calibrator`), as the benchmark
  does for attnrec's models.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attnrec.evaluation.calibration import expected_calibration_error, fit_calibrator
from attnrec.evaluation.metrics import auc, logloss

#: the direction of each metric a rule may watch
DIRECTIONS = {"auc": "max", "logloss": "min"}
#: --stop choices: (selection metric, extra watched metrics)
STOP_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "auc": ("auc", ()),
    "logloss": ("logloss", ()),
    "both": ("logloss", ("auc",)),
}


@dataclass
class StopRule:
    """Early stopping on ``metric`` (restored) with ``also`` extending patience; feed :meth:`update` per epoch."""

    metric: str = "logloss"
    also: tuple[str, ...] = ("auc",)
    patience: int = 3
    best: dict[str, float] = field(default_factory=dict)
    bad: int = 0

    @classmethod
    def named(cls, name: str, patience: int) -> StopRule:
        """The rule ``name`` of :data:`STOP_RULES`."""
        metric, also = STOP_RULES[name]
        return cls(metric, also, patience)

    def _improves(self, name: str, value: float) -> bool:
        old = self.best.get(name)
        if not math.isfinite(value):
            return False
        if old is None or (value > old if DIRECTIONS[name] == "max" else value < old):
            self.best[name] = value
            return True
        return False

    def update(self, metrics: dict[str, float]) -> tuple[bool, bool]:
        """``(keep, stop)`` after an epoch with validation ``metrics``: keep this epoch's weights (the selection
        metric improved), and stop training (no watched metric improved for ``patience`` epochs)."""
        keep = self._improves(self.metric, float(metrics[self.metric]))
        others = [self._improves(m, float(metrics[m])) for m in self.also]
        if keep or any(others):
            self.bad = 0
        else:
            self.bad += 1
        return keep, self.bad >= self.patience


def valid_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Validation AUC and logloss of probabilities ``p`` (N,) against labels ``y`` (N,)."""
    return {"auc": float(auc(y, p)), "logloss": float(logloss(y, p))}


def report_scores(
    y_valid: np.ndarray, p_valid: np.ndarray, y_test: np.ndarray, p_test: np.ndarray
) -> dict[str, Any]:
    """Test ``auc``/``logloss``/``ece`` raw, the same with ``cal_`` prefix after temperature scaling fitted on
    (``y_valid``, ``p_valid``) only, and the fitted ``temperature``."""
    cal = fit_calibrator(y_valid, p_valid, "temperature")
    q = cal.apply(p_test)
    return {
        "auc": float(auc(y_test, p_test)),
        "logloss": float(logloss(y_test, p_test)),
        "ece": float(expected_calibration_error(y_test, p_test)),
        "cal_auc": float(auc(y_test, q)),
        "cal_logloss": float(logloss(y_test, q)),
        "cal_ece": float(expected_calibration_error(y_test, q)),
        "temperature": cal.temperature,
    }


def train_with_rule(
    model: Any,
    train_epoch: Callable[[int], None],
    predict_valid: Callable[[], np.ndarray],
    predict_test: Callable[[], np.ndarray],
    y_valid: np.ndarray,
    y_test: np.ndarray,
    rule: StopRule,
    max_epochs: int,
) -> dict[str, Any]:
    """A peer's epoch loop: ``train_epoch(epoch)`` (timed), validation after each epoch, ``rule`` keeps and stops,
    the kept ``state_dict`` restored, test scored once by :func:`report_scores`. Adds ``s_per_epoch`` (median
    training seconds), ``best_epoch``, ``epochs_run``, ``valid_auc``, ``valid_logloss`` (at the kept epoch)."""
    best_state, best_epoch, best_valid, secs = None, 0, {}, []
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        train_epoch(epoch)
        secs.append(time.perf_counter() - t0)
        vm = valid_metrics(y_valid, predict_valid())
        keep, done = rule.update(vm)
        if keep:
            best_state, best_epoch, best_valid = copy.deepcopy(model.state_dict()), epoch, vm
        if done:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    row = report_scores(y_valid, predict_valid(), y_test, predict_test())
    row.update(
        s_per_epoch=float(statistics.median(secs)),
        best_epoch=best_epoch,
        epochs_run=epoch,
        valid_auc=best_valid.get("auc", float("nan")),
        valid_logloss=best_valid.get("logloss", float("nan")),
    )
    return row
