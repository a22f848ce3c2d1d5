"""CTR models' post-hoc calibration: fitted on validation only, applied in predict_proba, switchable, in the bundle."""

from pathlib import Path

import numpy as np
import pytest

from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.calibration import Calibrator, fit_calibrator_logits
from attnrec.evaluation.metrics import auc, logloss
from attnrec.evaluation.protocols import evaluate
from attnrec.experiments.config import RunConfig
from attnrec.experiments.run import trainer_config
from attnrec.models.ctr.deepfm import DeepFM
from attnrec.models.ctr.fm import FM
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing.data import planted_ctr
from attnrec.training.trainer import TrainerConfig

# a high learning rate and several epochs: an over-confident model that calibration has something to correct
FAST = {"epochs": 6, "batch_size": 128, "lr": 0.05, "progress": False, "device": "cpu", "patience": None}


@pytest.fixture(scope="module")
def data():
    return planted_ctr(n_rows=3000, seed=3)


@pytest.fixture(scope="module")
def fitted(data):
    train, valid, _ = data
    model = DeepFM(embedding_dim=4, hidden=[16], seed=0)
    model.fit(train, valid, trainer=TrainerConfig(**FAST))
    return model


def test_temperature_is_fitted_on_valid_and_keeps_the_ranking(data, fitted) -> None:
    _, valid, test = data
    cal = fitted.calibrator
    # fitted on the validation logits themselves (float32 probabilities would cap the confident rows' |z| near 16)
    assert cal == fit_calibrator_logits(
        valid.labels, fitted.predict_logits(valid).astype(np.float64), "temperature"
    )
    raw_valid = fitted.predict_proba(valid, calibrated=False)
    assert cal.temperature > 1.0  # the over-trained model is over-confident
    raw, scaled = fitted.predict_proba(test, calibrated=False), fitted.predict_proba(test)
    assert auc(test.labels, scaled) == pytest.approx(auc(test.labels, raw), abs=1e-12)
    assert logloss(valid.labels, fitted.predict_proba(valid)) < logloss(valid.labels, raw_valid)


def test_uncalibrated_view_reports_the_raw_model(data, fitted) -> None:
    _, _, test = data
    raw = evaluate(fitted.uncalibrated(), test)
    cal = evaluate(fitted, test)
    assert fitted.calibrator is not None  # the view did not change the model
    assert raw["logloss"] == pytest.approx(logloss(test.labels, fitted.predict_proba(test, calibrated=False)))
    assert cal["logloss"] == pytest.approx(logloss(test.labels, fitted.predict_proba(test)))
    assert raw["logloss"] != cal["logloss"] and raw["auc"] == pytest.approx(cal["auc"], abs=1e-9)


def test_none_and_no_valid_leave_raw_probabilities(data) -> None:
    train, valid, test = data
    off = FM(embedding_dim=4, calibration="none")
    off.fit(train, valid, trainer=TrainerConfig(**{**FAST, "epochs": 2}))
    assert off.calibrator is None
    np.testing.assert_array_equal(off.predict_proba(test), off.predict_proba(test, calibrated=False))
    novalid = FM(embedding_dim=4)
    novalid.fit(train, None, trainer=TrainerConfig(**{**FAST, "epochs": 2}))
    assert novalid.calibrator is None


def test_platt_has_an_offset(data) -> None:
    train, valid, test = data
    model = FM(embedding_dim=4, calibration="platt")
    model.fit(train, valid, trainer=TrainerConfig(**{**FAST, "epochs": 2}))
    cal = model.calibrator
    assert cal is not None and cal.method == "platt" and cal.b != 0.0
    z = model.predict_logits(test).astype(np.float64)
    np.testing.assert_allclose(model.predict_proba(test), 1 / (1 + np.exp(-(cal.a * z + cal.b))), rtol=1e-5)


def test_calibrator_travels_in_the_bundle(tmp_path: Path, data, fitted) -> None:
    _, _, test = data
    save_bundle(fitted, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.calibrator == fitted.calibrator
    np.testing.assert_array_equal(loaded.predict_proba(test), fitted.predict_proba(test))
    np.testing.assert_array_equal(
        loaded.predict_proba(test, calibrated=False), fitted.predict_proba(test, calibrated=False)
    )


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"method": "temperature", "a": -1.0, "b": 0.0}, "a"),
        ({"method": "isotonic", "a": 1.0, "b": 0.0}, "method"),
        ({"method": "temperature", "a": 1.0, "b": 0.5}, "b"),
        ("T=2", None),
    ],
)
def test_a_bad_calibrator_in_the_bundle_json_is_named(fitted, bad, field) -> None:
    extra = fitted.bundle_json()
    extra["calibrator"] = bad
    clone = DeepFM(fitted.config)
    with pytest.raises(DataError, match="calibrat") as err:
        clone.load_bundle_json(extra)
    if field is not None:
        assert err.value.field == field


def test_an_old_bundle_without_a_calibrator_scores_raw(fitted) -> None:
    extra = fitted.bundle_json()
    del extra["calibrator"]
    clone = DeepFM(fitted.config)
    clone.load_bundle_json(extra)
    assert clone.calibrator is None
    assert isinstance(fitted.calibrator, Calibrator)


def test_default_trainer_keeps_the_best_logloss_epoch(data) -> None:
    train, valid, _ = data
    cfg = FM().make_trainer_config(None)
    assert (cfg.valid_metric, cfg.valid_mode, cfg.valid_also) == ("logloss", "min", {"auc": "max"})
    assert FM().make_trainer_config(TrainerConfig(valid_metric="auc")).valid_mode == "max"
    model = FM(embedding_dim=4)
    fast = {
        **FM.default_trainer,
        "epochs": 6,
        "lr": 0.05,
        "batch_size": 128,
        "progress": False,
        "device": "cpu",
    }
    report = model.fit(train, valid, trainer=TrainerConfig(**fast))
    lls = [h["valid_logloss"] for h in report.history]
    assert report.best_epoch == 1 + int(np.argmin(lls))
    assert report.best_valid["logloss"] == min(lls)


def test_a_valid_mode_that_contradicts_the_metric_is_refused() -> None:
    # an older run file's valid_mode = "max" (meant for AUC) must not maximise the default logloss
    model = FM(embedding_dim=4, seed=0)
    run = RunConfig(
        model="fm",
        train=Path("t.csv"),
        test=Path("s.csv"),
        trainer={"valid_mode": "max"},
        ctr={"format": "csv"},
    )
    merged = trainer_config(run, FM, progress=False)  # the model's default_trainer under the run file's table
    assert merged.valid_metric == "logloss" and merged.valid_mode == "max"
    with pytest.raises(ConfigError, match="contradicts"):
        model.make_trainer_config(merged)
    assert model.make_trainer_config(TrainerConfig(valid_metric="auc", valid_mode="max")).valid_mode == "max"
    assert model.make_trainer_config(TrainerConfig(valid_metric="auc")).valid_mode == "max"


def test_a_trainer_config_naming_no_metric_gets_the_ctr_stopping_rule(data) -> None:
    # the README's `TrainerConfig(epochs=10)`: without this, early stopping fell back to AUC alone (the drift)
    cfg = FM().make_trainer_config(TrainerConfig(epochs=10))
    assert (cfg.valid_metric, cfg.valid_mode, cfg.valid_also) == ("logloss", "min", {"auc": "max"})
    # nothing else is taken from the default trainer
    assert cfg.epochs == 10 and cfg.patience == TrainerConfig().patience
    own = FM().make_trainer_config(TrainerConfig(valid_also={"ece": "min"}))
    assert (own.valid_metric, own.valid_also) == ("logloss", {"ece": "min"})
    auc = FM().make_trainer_config(TrainerConfig(valid_metric="auc"))
    assert (auc.valid_metric, auc.valid_mode, auc.valid_also) == ("auc", "max", {})
    with pytest.raises(ConfigError, match="contradicts"):  # "max" once meant AUC: now say which metric
        FM().make_trainer_config(TrainerConfig(valid_mode="max"))
    train, valid, _ = data
    report = FM(embedding_dim=4).fit(train, valid, trainer=TrainerConfig(**{**FAST, "epochs": 6}))
    lls = [h["valid_logloss"] for h in report.history]
    assert report.best_epoch == 1 + int(np.argmin(lls))
