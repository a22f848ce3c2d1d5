"""``linear_init``: the first-order term starts at 0 ("zero", the behaviour before the option) or from an LR fitted
first on the same data, trainer and seed ("lr")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from attnrec.data.batches import CTRBatch
from attnrec.data.ctr import CTRData, ctr_batches
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.errors import ConfigError, DataError
from attnrec.models.base import get_model_class
from attnrec.models.ctr.base import CTRModule, CTRRecommender
from attnrec.models.ctr.fm import FM
from attnrec.models.ctr.lr import LR
from attnrec.models.layers.features import FeatureLinear
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import planted_ctr
from attnrec.testing.ctr import first_order_models
from attnrec.testing.tamper import as_written_before
from attnrec.training.trainer import TrainerConfig
from attnrec.training.types import FitReport

#: the CTR models with a first-order term, and the options that give them one (autoint, dcn, secn: use_linear)
FIRST_ORDER = first_order_models()


def data() -> tuple[CTRData, CTRData]:
    """A small planted set whose clicks follow field ``a`` alone (so LR learns clearly non-zero weights); it has
    categorical, numeric and multi-valued fields, so every part of the first-order table is copied."""
    train, valid, _ = planted_ctr(n_rows=800, pattern="first_order", seed=1)
    return train, valid


def fast() -> TrainerConfig:
    return TrainerConfig(epochs=4, patience=2, batch_size=64, lr=0.05, progress=False, device="cpu")


def whole(d: CTRData) -> CTRBatch:
    return next(ctr_batches(d, len(d), shuffle=False))


def linear_logits(linear: FeatureLinear, batch: CTRBatch) -> torch.Tensor:
    with torch.no_grad():
        return linear(batch)


def reference_lr(seed: int, l2: float, train: CTRData, valid: CTRData) -> LR:
    """The LR a user would fit by hand: embedding_reg (LR's own knob, linear_reg unset) at ``l2``; its fit report
    is kept as ``report``."""
    lr = LR(seed=seed, embedding_reg=l2, calibration="none")
    lr.report = lr.fit(train, valid, trainer=fast())  # type: ignore[attr-defined]
    return lr


def start_of_training(
    model: CTRRecommender[Any], train: CTRData, valid: CTRData, monkeypatch: Any
) -> CTRModule:
    """Run ``model.fit`` up to the training loop and return the module the loop receives, before any step."""
    seen: list[CTRModule] = []

    def no_training(module: CTRModule, *args: Any, **kwargs: Any) -> FitReport:
        seen.append(module)
        return FitReport(seconds=0.0)

    monkeypatch.setattr(model, "train_module", no_training)
    model.fit(train, valid, trainer=fast())
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(("name", "extra"), list(FIRST_ORDER.items()))
def test_lr_init_starts_the_first_order_term_at_the_fitted_lr(
    name: str, extra: dict[str, Any], monkeypatch: Any
) -> None:
    train, valid = data()
    batch = whole(valid)
    ref = reference_lr(3, 0.01, train, valid)
    want = linear_logits(ref.first_order(), batch)
    assert want.std() > 0.3  # LR learnt something: a first-order term left at 0 fails below
    model = get_model_class(name)(seed=3, embedding_reg=0.01, linear_init="lr", calibration="none", **extra)
    module = start_of_training(model, train, valid, monkeypatch)
    linear = module.first_order()
    assert linear is not None
    # the same fit as the hand-fitted LR (same data, trainer, seed, L2), copied exactly: logits bit for bit
    assert torch.equal(linear_logits(linear, batch), want)
    assert torch.equal(linear.bias, ref.first_order().bias)
    assert model.first_order_report is not None
    assert model.first_order_report.best_epoch == ref.report.best_epoch  # type: ignore[attr-defined]
    assert model.first_order_report.best_valid == ref.report.best_valid  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "extra"), list(FIRST_ORDER.items()))
def test_everything_but_the_first_order_term_starts_as_with_zero(
    name: str, extra: dict[str, Any], monkeypatch: Any
) -> None:
    """The LR is fitted before the seed is set: the other parameters are those of a "zero" start, and the "zero"
    start is the module the seed builds, first-order term at 0 (the behaviour before the option)."""
    train, valid = data()
    cls = get_model_class(name)
    warm = start_of_training(
        cls(seed=5, linear_init="lr", calibration="none", **extra), train, valid, monkeypatch
    )
    cold_model = cls(seed=5, calibration="none", **extra)
    assert cold_model.config.linear_init == "zero"
    cold = start_of_training(cold_model, train, valid, monkeypatch)
    assert cold_model.first_order_report is None
    torch.manual_seed(5)
    before_option = cold_model.build_ctr_module(train.schema)
    for key, value in cold.state_dict().items():
        assert torch.equal(value, before_option.state_dict()[key]), key
        if key.startswith("linear."):
            assert not value.any(), key
            assert warm.state_dict()[key].any(), key  # the warm start did change it
        else:
            assert torch.equal(warm.state_dict()[key], value), key


def test_lr_init_uses_the_l2_the_model_puts_on_its_first_order_weights(monkeypatch: Any) -> None:
    """linear_reg when set (here 0 beside embedding_reg 0.5), else embedding_reg."""
    train, valid = data()
    batch = whole(valid)
    free = reference_lr(2, 0.0, train, valid)
    shrunk = reference_lr(2, 0.5, train, valid)
    assert not torch.allclose(
        linear_logits(free.first_order(), batch), linear_logits(shrunk.first_order(), batch)
    )
    for cfg, ref in (({"linear_reg": 0.0}, free), ({}, shrunk)):
        model = FM(seed=2, embedding_reg=0.5, linear_init="lr", calibration="none", **cfg)
        linear = start_of_training(model, train, valid, monkeypatch).first_order()
        assert linear is not None
        assert torch.equal(linear_logits(linear, batch), linear_logits(ref.first_order(), batch)), cfg


def test_fm_with_vanishing_interactions_starts_as_the_lr(monkeypatch: Any) -> None:
    """FM = first-order term + pairwise term: with the embeddings at 0 the whole FM is the fitted LR; with the
    default small embedding init it is the LR to within the tiny pairwise term."""
    train, valid = data()
    batch = whole(valid)
    ref = reference_lr(4, 0.0, train, valid)
    with torch.no_grad():
        lr_logits = ref.module(batch)
    module = start_of_training(
        FM(seed=4, embedding_dim=4, linear_init="lr", calibration="none"), train, valid, monkeypatch
    )
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(batch), lr_logits, rtol=0, atol=1e-2)
        assert (module(batch) - lr_logits).abs().max() > 0  # the pairwise term is there, just small
        module.embedding.table.weight.zero_()
        module.embedding.numeric_weight.zero_()
        torch.testing.assert_close(module(batch), lr_logits, rtol=0, atol=1e-6)
    assert lr_logits.std() > 0.3


@pytest.mark.parametrize(("name", "extra"), [("dcn", {}), ("secn", {}), ("autoint", {}), ("lr", {})])
def test_models_without_a_first_order_term_and_lr_refuse_lr_init(name: str, extra: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="linear_init = 'lr'"):
        get_model_class(name)(linear_init="lr", **extra)
    assert get_model_class(name)(**extra).config.linear_init == "zero"


def test_an_unknown_linear_init_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="'linear_init'"):
        FM(linear_init="embedding")


def test_copy_from_refuses_a_term_of_another_schema() -> None:
    a = FeatureSchema(fields=[FieldSpec(name="a", vocab_size=3), FieldSpec(name="b", vocab_size=2)])
    b = FeatureSchema(fields=[FieldSpec(name="b", vocab_size=2), FieldSpec(name="a", vocab_size=3)])
    same_shape = FeatureSchema(fields=[FieldSpec(name="a", vocab_size=2), FieldSpec(name="b", vocab_size=3)])
    target = FeatureLinear(a)
    for other in (b, same_shape):  # same table size (5 rows), other rows per feature
        with pytest.raises(DataError, match="another feature schema"):
            target.copy_from(FeatureLinear(other))
    source = FeatureLinear(a)
    with torch.no_grad():
        source.weights.table.weight.copy_(torch.arange(5.0)[:, None])
        source.bias.fill_(-1.5)
    target.copy_from(source)
    assert torch.equal(target.weights.table.weight, source.weights.table.weight)
    assert target.bias.item() == -1.5


def test_linear_init_travels_in_the_bundle_and_an_older_bundle_loads_as_zero(tmp_path: Path) -> None:
    train, valid = data()
    model = FM(embedding_dim=4, linear_init="lr")
    model.fit(train, valid, trainer=fast())
    assert model.first_order_report is not None
    save_bundle(model, tmp_path / "new")
    loaded = load_bundle(tmp_path / "new")
    assert loaded.config.linear_init == "lr"
    np.testing.assert_array_equal(loaded.predict_proba(valid), model.predict_proba(valid))
    # a bundle written before the field existed: no linear_init in its config -> "zero", how it was trained
    old = FM(embedding_dim=4)
    old.fit(train, valid, trainer=fast())
    save_bundle(old, tmp_path / "old")
    as_written_before(tmp_path / "old", "linear_init")
    legacy = load_bundle(tmp_path / "old")
    assert legacy.config.linear_init == "zero" and legacy.config == old.config
    np.testing.assert_array_equal(legacy.predict_proba(valid), old.predict_proba(valid))
    # the warm start changed the fit (it is not a no-op under the same seed and trainer)
    assert not np.array_equal(model.predict_proba(valid), old.predict_proba(valid))


def test_epoch_callbacks_see_the_models_epochs_not_the_lrs() -> None:
    """A tuner prunes on (epoch, value) through epoch_callbacks: the warm start's LR fit must not report its
    epochs as the model's first ones (inner_fit)."""
    from attnrec.training.trainer import epoch_callbacks

    train, valid = data()
    seen: list[tuple[int, float]] = []
    model = FM(seed=0, linear_init="lr", calibration="none")
    with epoch_callbacks(lambda epoch, row: seen.append((epoch, row["valid_auc"]))):
        report = model.fit(train, valid, trainer=fast())
    assert model.first_order_report is not None and model.first_order_report.epochs_run >= 1
    assert [e for e, _ in seen] == [r["epoch"] for r in report.history]
    assert [v for _, v in seen] == [r["valid_auc"] for r in report.history]
