"""Calibration: ECE and reliability curves against hand-computed cases and scikit-learn; post-hoc scaling."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from attnrec.errors import DataError
from attnrec.evaluation.accumulators import AUCAccumulator
from attnrec.evaluation.calibration import (
    Calibrator,
    expected_calibration_error,
    fit_calibrator,
    fit_calibrator_logits,
    reliability_curve,
    reliability_from_counts,
)
from attnrec.evaluation.metrics import auc, logloss


def test_hand_computed_two_bins() -> None:
    # bins {0.1, 0.4} -> mean 0.25, rate 0; {0.6, 0.9} -> mean 0.75, rate 1: ECE = (0.25 + 0.25) / 2
    curve = reliability_curve([0, 0, 1, 1], [0.1, 0.4, 0.6, 0.9], n_bins=2)
    np.testing.assert_allclose(curve.mean_predicted, [0.25, 0.75])
    np.testing.assert_allclose(curve.observed, [0.0, 1.0])
    np.testing.assert_allclose(curve.mass, [2, 2])
    np.testing.assert_allclose(curve.lower, [0.1, 0.6])
    np.testing.assert_allclose(curve.upper, [0.4, 0.9])
    assert curve.ece() == pytest.approx(0.25)
    assert curve.max_gap() == pytest.approx(0.25)


def test_uneven_hand_computed() -> None:
    # 3 rows, 2 bins of mass 1.5: bin 1 = row 0.2 (y 1) + half of row 0.5 (y 0); bin 2 = half of 0.5 + 0.8 (y 1)
    curve = reliability_curve([1, 0, 1], [0.2, 0.5, 0.8], n_bins=2)
    np.testing.assert_allclose(curve.mean_predicted, [(0.2 + 0.25) / 1.5, (0.25 + 0.8) / 1.5])
    np.testing.assert_allclose(curve.observed, [1 / 1.5, 1 / 1.5])
    expected = 0.5 * abs(0.45 / 1.5 - 1 / 1.5) + 0.5 * abs(1.05 / 1.5 - 1 / 1.5)
    assert curve.ece() == pytest.approx(expected)


def test_ties_are_spread_not_broken_by_sort_order() -> None:
    # all rows at 0.5, 3 of 4 positive: every bin holds a share of the tie group, rate 0.75 everywhere
    for y in ([0, 1, 1, 1], [1, 1, 1, 0]):
        curve = reliability_curve(y, [0.5] * 4, n_bins=2)
        np.testing.assert_allclose(curve.observed, [0.75, 0.75])
        assert curve.ece() == pytest.approx(0.25)


def test_matches_sklearn_quantile_bins_on_distinct_scores() -> None:
    rng = np.random.default_rng(0)
    p = rng.permutation(np.linspace(0.01, 0.99, 300))
    y = (rng.random(300) < p**1.5).astype(int)
    ours = reliability_curve(y, p, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(ours.observed, prob_true, atol=1e-12)
    np.testing.assert_allclose(ours.mean_predicted, prob_pred, atol=1e-12)
    assert ours.ece() == pytest.approx(np.mean(np.abs(prob_true - prob_pred)))


def test_perfectly_calibrated_constant_is_zero_and_streaming_state_matches() -> None:
    assert expected_calibration_error([0, 1, 0, 1], [0.5] * 4) == pytest.approx(0.0)
    rng = np.random.default_rng(1)
    p = np.round(rng.random(1000), 2)  # many ties
    y = (rng.random(1000) < p).astype(int)
    acc = AUCAccumulator()
    for lo in range(0, 1000, 128):
        acc.update(y[lo : lo + 128], p[lo : lo + 128])
    streamed = reliability_from_counts(acc.scores, acc.positives, acc.negatives, n_bins=15)
    assert streamed.ece() == pytest.approx(expected_calibration_error(y, p, 15), abs=1e-12)


def test_bad_probabilities_are_named() -> None:
    with pytest.raises(DataError, match="outside"):
        expected_calibration_error([0, 1], [0.2, 1.5])


def test_temperature_scaling_recovers_overconfidence_and_keeps_the_ranking() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    p_over = 1 / (1 + np.exp(-3 * z))  # logits three times too large
    cal = fit_calibrator(y, p_over, "temperature")
    assert cal.temperature == pytest.approx(3.0, rel=0.05)
    fixed = cal.apply(p_over)
    assert logloss(y, fixed) < logloss(y, p_over) - 0.05
    assert auc(y, fixed) == pytest.approx(auc(y, p_over))
    assert expected_calibration_error(y, fixed) < 0.02 < expected_calibration_error(y, p_over)


def test_platt_fits_an_offset() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(z - 1.0)))).astype(int)
    p_shift = 1 / (1 + np.exp(-z))  # the true logit is z - 1
    cal = fit_calibrator(y, p_shift, "platt")
    assert cal.a == pytest.approx(1.0, abs=0.08)
    assert cal.b == pytest.approx(-1.0, abs=0.08)


def test_calibrator_json_round_trip_and_checks() -> None:
    cal = Calibrator("platt", 0.5, -0.2)
    assert Calibrator.from_json(cal.to_json()) == cal
    for bad in (
        {"method": "x", "a": 1, "b": 0},
        {"method": "platt", "a": -1, "b": 0},
        {"method": "platt", "a": float("nan"), "b": 0},
        {"method": "temperature", "a": 1, "b": 1},
        [1],
    ):
        with pytest.raises(DataError):
            Calibrator.from_json(bad, "extra.json")
    with pytest.raises(DataError, match="both classes"):
        fit_calibrator([1, 1], [0.2, 0.3])


def test_fitting_on_logits_sees_the_confident_rows_float32_probabilities_hide() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(0, 12, 5000)  # logits far past float32's ~16.6 saturation
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z / 4))).astype(int)  # truly T = 4
    on_logits = fit_calibrator_logits(y, z, "temperature")
    assert on_logits.temperature == pytest.approx(4.0, rel=0.1)
    p32 = (1 / (1 + np.exp(-z))).astype(np.float32)
    assert (
        fit_calibrator(y, p32, "temperature").temperature < on_logits.temperature
    )  # capped logits under-estimate
    with pytest.raises(DataError, match="non-finite"):
        fit_calibrator_logits([0, 1], [0.0, np.inf])
