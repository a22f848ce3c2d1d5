"""Early stopping on several validation metrics: patience runs while any watched metric improves, the selection
metric alone picks the restored epoch."""

import pytest
import torch

from attnrec.data.batches import rating_batches
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.testing.toy import ToyMF, toy_ratings
from attnrec.training.trainer import Trainer, TrainerConfig


@pytest.fixture(scope="module")
def data() -> Interactions:
    return toy_ratings(100)


def fit(data, curve, **kw):
    """Fit with validation metrics read from ``curve`` (one dict per epoch); the weights after every epoch kept."""
    it, snapshots = iter(curve), {}
    torch.manual_seed(0)
    model = ToyMF()
    config = TrainerConfig(progress=False, device="cpu", epochs=len(curve), **kw)
    report = Trainer(config, valid_metric="logloss", mode="min").fit(
        model,
        lambda epoch, gen: rating_batches(data, 32, generator=gen),
        validate=lambda: next(it),
        seed=1,
        on_epoch_end=lambda epoch, row: snapshots.__setitem__(epoch, model.u.weight.detach().clone()),
    )
    return report, model, snapshots


# logloss best at epoch 2; AUC keeps improving until epoch 5, then neither improves
CURVE = [
    {"logloss": 0.50, "auc": 0.70},
    {"logloss": 0.45, "auc": 0.72},
    {"logloss": 0.46, "auc": 0.74},
    {"logloss": 0.48, "auc": 0.75},
    {"logloss": 0.52, "auc": 0.76},
    {"logloss": 0.55, "auc": 0.75},
    {"logloss": 0.57, "auc": 0.74},
    {"logloss": 0.60, "auc": 0.73},
    {"logloss": 0.61, "auc": 0.72},
]


def test_logloss_alone_stops_after_patience(data):
    report, _, _ = fit(data, CURVE, patience=2)
    assert report.best_epoch == 2 and report.epochs_run == 4


def test_both_stop_when_neither_improves_and_restore_the_selection_metric_best(data):
    report, model, snapshots = fit(data, CURVE, patience=2, valid_also={"auc": "max"})
    # AUC improves through epoch 5, so the count restarts there; epochs 6 and 7 improve nothing
    assert report.epochs_run == 7
    assert report.best_epoch == 2 and report.best_valid == {"logloss": 0.45, "auc": 0.72}
    assert torch.equal(model.u.weight, snapshots[2])


def test_unknown_also_metric_is_named(data):
    with pytest.raises(ConfigError, match="valid_also.*ece"):
        fit(data, CURVE[:2], valid_also={"ece": "min"})


def test_also_mode_is_checked():
    with pytest.raises(Exception, match="valid_also"):
        TrainerConfig(valid_also={"auc": "up"})
