"""``TrainerConfig.validate_start``: the starting point is validated as epoch 0, counts for the best state and for
patience, and is restored exactly when no trained epoch beats it; resume never validates it again; off by default."""

import json

import pytest
import torch

from attnrec.data.batches import rating_batches
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.testing.toy import ToyMF, toy_ratings
from attnrec.training.trainer import CHECKPOINT_NAME, Trainer, TrainerConfig, epoch_callbacks


@pytest.fixture(scope="module")
def data() -> Interactions:
    return toy_ratings(200, base=1.0)


def batches(data):
    return lambda epoch, gen: rating_batches(data, 32, generator=gen)


def cfg(**kw) -> TrainerConfig:
    return TrainerConfig(**{"progress": False, "device": "cpu", "lr": 0.05, "patience": 2, **kw})


def drift(model: ToyMF, start: torch.Tensor):
    """A validation metric that every step of training worsens: the distance of ``u`` from its starting weights."""
    return lambda: {"drift": float((model.u.weight - start).norm())}


def test_training_that_only_worsens_validation_restores_the_start_exactly(data):
    torch.manual_seed(0)
    model = ToyMF()
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer = Trainer(cfg(epochs=10, validate_start=True), valid_metric="drift", mode="min")
    report = trainer.fit(model, batches(data), validate=drift(model, start["u.weight"]), seed=1)
    assert report.best_epoch == 0 and report.best_valid == {"drift": 0.0}
    assert report.epochs_run == 2  # epochs 1 and 2 did not beat epoch 0: patience 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k]), k
    assert [r["epoch"] for r in report.history] == [0, 1, 2]
    assert report.history[0] == {"epoch": 0, "seconds": 0.0, "valid_drift": 0.0}  # no loss: nothing trained
    assert all("loss" in r and r["valid_drift"] > 0 for r in report.history[1:])


def test_default_off_never_validates_the_start(data):
    torch.manual_seed(0)
    model = ToyMF()
    start = model.u.weight.detach().clone()
    calls = []

    def validate():
        calls.append(1)
        return drift(model, start)()

    report = Trainer(cfg(epochs=10), valid_metric="drift", mode="min").fit(
        model, batches(data), validate=validate, seed=1
    )
    assert TrainerConfig().validate_start is False
    assert report.best_epoch == 1 and report.epochs_run == 3 and len(calls) == 3
    assert [r["epoch"] for r in report.history] == [1, 2, 3]
    assert not torch.equal(model.u.weight, start)


def curve_fit(data, curve, start=True, **kw):
    """Fit with validation metrics read from ``curve`` (its first entry is epoch 0's when ``start``)."""
    it = iter(curve)
    torch.manual_seed(0)
    model = ToyMF()
    snapshots = {0: model.u.weight.detach().clone()}
    epochs = len(curve) - 1 if start else len(curve)
    report = Trainer(cfg(epochs=epochs, validate_start=start, **kw), valid_metric="ll", mode="min").fit(
        model,
        batches(data),
        validate=lambda: next(it),
        seed=1,
        on_epoch_end=lambda epoch, row: snapshots.__setitem__(epoch, model.u.weight.detach().clone()),
    )
    return report, model, snapshots


def test_epochs_must_beat_the_start_to_reset_patience(data):
    # epoch 0 at 0.50; epoch 1 worse (bad 1), epoch 2 beats it (reset), then 3 and 4 bad: stop at 4, restore 2
    curve = [{"ll": v} for v in (0.5, 0.6, 0.45, 0.5, 0.46, 0.4)]
    report, model, snaps = curve_fit(data, curve)
    assert report.best_epoch == 2 and report.epochs_run == 4
    assert torch.equal(model.u.weight, snaps[2])
    # epochs 1 and 2 worse than the start: stop at 2 with the start restored; without the start, epoch 1 is the
    # first best, epoch 2 only one bad epoch, and epoch 3 the best
    curve = [{"ll": v} for v in (0.5, 0.6, 0.7, 0.45)]
    report, model, snaps = curve_fit(data, curve)
    assert report.best_epoch == 0 and report.epochs_run == 2 and torch.equal(model.u.weight, snaps[0])
    report, model, snaps = curve_fit(data, curve[1:], start=False)
    assert report.best_epoch == 3 and report.epochs_run == 3 and torch.equal(model.u.weight, snaps[3])


def test_valid_also_counts_at_epoch_0(data):
    # logloss never beats epoch 0; AUC improves at epoch 1 (resets patience) but not after: stop at 3, restore 0
    curve = [
        {"ll": 0.5, "auc": 0.6},
        {"ll": 0.55, "auc": 0.7},
        {"ll": 0.56, "auc": 0.7},
        {"ll": 0.57, "auc": 0.6},
    ]
    report, model, snaps = curve_fit(data, curve, valid_also={"auc": "max"})
    assert report.best_epoch == 0 and report.epochs_run == 3
    assert torch.equal(model.u.weight, snaps[0])


def test_callbacks_see_trained_epochs_only(data):
    seen, also = [], []
    torch.manual_seed(0)
    model = ToyMF()
    start = model.u.weight.detach().clone()
    with epoch_callbacks(lambda epoch, row: also.append(epoch)):
        Trainer(cfg(epochs=5, validate_start=True), valid_metric="drift", mode="min").fit(
            model,
            batches(data),
            validate=drift(model, start),
            seed=1,
            on_epoch_end=lambda epoch, row: seen.append(epoch),
        )
    assert seen == also == [1, 2]


def test_no_validation_function_no_effect(data):
    def run(flag):
        torch.manual_seed(0)
        model = ToyMF()
        report = Trainer(cfg(epochs=2, validate_start=flag)).fit(model, batches(data), seed=1)
        return report, model.u.weight.detach().clone()

    (r0, w0), (r1, w1) = run(False), run(True)
    assert torch.equal(w0, w1) and r1.best_epoch is None
    assert [r["epoch"] for r in r1.history] == [r["epoch"] for r in r0.history] == [1, 2]


class Killed(Exception):
    pass


def test_resume_keeps_epoch_0_and_does_not_validate_it_again(data, tmp_path):
    def run(ckdir, kill_at=None, init_seed=0):
        torch.manual_seed(init_seed)
        model = ToyMF()
        calls = []
        first_start = model.u.weight.detach().clone()

        def validate():
            calls.append(1)
            return {"ll": 1.0}  # never improves after epoch 0: epoch 0 stays the best

        def kill(epoch, row):
            if epoch == kill_at:
                raise Killed

        c = cfg(
            epochs=4, patience=None, validate_start=True, checkpoint_dir=ckdir, log_path=ckdir / "log.jsonl"
        )
        report = Trainer(c, valid_metric="ll", mode="min").fit(
            model, batches(data), validate=validate, seed=1, on_epoch_end=kill
        )
        return report, model, calls, first_start

    straight, model, calls, start = run(tmp_path / "a")
    assert len(calls) == 5 and straight.best_epoch == 0 and torch.equal(model.u.weight, start)

    with pytest.raises(Killed):
        run(tmp_path / "b", kill_at=2)
    assert (tmp_path / "b" / CHECKPOINT_NAME).exists()
    # another starting draw: the checkpoint (its epoch-0 weights kept as the best) must win, and epoch 0 is not
    # validated again (that would validate the checkpoint's epoch-2 weights as "epoch 0")
    resumed, model2, calls2, _ = run(tmp_path / "b", init_seed=123)
    assert len(calls2) == 2  # epochs 3 and 4
    assert resumed.best_epoch == 0 and torch.equal(model2.u.weight, start)
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3, 4]
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2, 3, 4]


def test_checkpoint_identity(data, tmp_path):
    # the default is left out of the identity (checkpoints written before the option stay resumable) ...
    assert "validate_start" not in Trainer(cfg()).identity(None)["trainer config"]
    assert Trainer(cfg(validate_start=True)).identity(None)["trainer config"]["validate_start"] is True
    # ... and a checkpoint of one setting is not resumed under the other
    torch.manual_seed(0)
    c = cfg(epochs=2, checkpoint_dir=tmp_path)
    Trainer(c, valid_metric="ll").fit(ToyMF(), batches(data), validate=lambda: {"ll": 1.0}, seed=1)
    with pytest.raises(ConfigError, match="validate_start"):
        Trainer(c.model_copy(update={"validate_start": True}), valid_metric="ll").fit(
            ToyMF(), batches(data), validate=lambda: {"ll": 1.0}, seed=1
        )


def test_a_non_finite_start_is_no_candidate_and_no_bad_epoch(data):
    # patience 1: had the NaN start counted as a bad epoch, the run would stop before training anything
    curve = [{"ll": float("nan")}, {"ll": 0.5}, {"ll": 0.6}, {"ll": 0.4}]
    report, model, snaps = curve_fit(data, curve, patience=1)
    assert report.epochs_run == 2 and report.best_epoch == 1
    assert torch.equal(model.u.weight, snaps[1])


def test_without_restore_best_the_start_is_reported_but_the_last_epoch_kept(data):
    curve = [{"ll": v} for v in (0.5, 0.6, 0.7)]
    report, model, snaps = curve_fit(data, curve, restore_best=False)
    assert report.best_epoch == 0 and report.epochs_run == 2
    assert torch.equal(model.u.weight, snaps[2]) and not torch.equal(model.u.weight, snaps[0])


def test_checkpoints_written_before_a_model_field_existed_stay_resumable(data, tmp_path):
    """A model-config field at its legacy value (``RunIdentity.legacy``, ``ModelConfig.bundle_legacy``) is left
    out of the identity on both sides: a checkpoint that lacks it, or holds it at that value, resumes; another
    value is another run."""
    from attnrec.training.types import RunIdentity

    def fit(model_config, legacy, ckdir):
        torch.manual_seed(0)
        calls = []
        c = cfg(epochs=2, patience=None, checkpoint_dir=ckdir)
        Trainer(c, valid_metric="ll").fit(
            ToyMF(),
            batches(data),
            validate=lambda: calls.append(1) or {"ll": 1.0},
            seed=1,
            identity=RunIdentity(model_config, "toy", legacy),
        )
        return len(calls)

    legacy = {"new_field": "old"}
    for written in ({"dim": 4}, {"dim": 4, "new_field": "old"}):  # before the field existed / after, at "old"
        ckdir = tmp_path / str(len(written))
        assert fit(written, {}, ckdir) == 2
        assert (
            fit({"dim": 4, "new_field": "old"}, legacy, ckdir) == 0
        )  # resumed: both epochs in the checkpoint
        with pytest.raises(ConfigError, match="new_field '<unset>' -> 'new'"):
            fit({"dim": 4, "new_field": "new"}, legacy, ckdir)
