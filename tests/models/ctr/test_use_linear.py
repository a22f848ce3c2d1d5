"""``use_linear`` for dcn and secn (as autoint has it): a first-order term ``b + sum_f w_f(x_f)`` added to the
logit, off by default (the model before the option, bit for bit), kept in bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from attnrec.data.batches import CTRBatch
from attnrec.data.ctr import CTRData, ctr_batches
from attnrec.models.base import get_model_class
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import planted_ctr
from attnrec.testing.ctr import tiny_ctr
from attnrec.testing.tamper import as_written_before
from attnrec.training.trainer import TrainerConfig

MODELS = ("dcn", "secn", "autoint")


def batch_of(data: CTRData, n: int = 64) -> CTRBatch:
    """The first ``n`` rows of ``data`` as one batch."""
    return next(ctr_batches(data, n, shuffle=False))


def built(name: str, seed: int, schema: Any, **cfg: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    module = get_model_class(name)(**cfg).build_ctr_module(schema)
    module.eval()  # no dropout between passes
    return module


@pytest.mark.parametrize("name", MODELS)
def test_the_term_is_added_to_the_logit(name: str) -> None:
    """By hand, on two categorical fields (vocabularies 3 and 2: table rows 0-2 for a, 3-4 for b) with the
    first-order row r set to 0.5 - 0.25 r and the bias to -0.7: row (a=1, b=0) adds w[1] + w[3] + b = 0.25 - 0.25
    - 0.7 and row (a=2, b=1) adds w[2] + w[4] + b = 0 - 0.5 - 0.7 to the logit of the same model without it."""
    schema, batch = tiny_ctr()
    plain = built(name, 0, schema, embedding_dim=4)
    with_lin = built(name, 0, schema, embedding_dim=4, use_linear=True)
    assert plain.first_order() is None and with_lin.first_order() is not None
    with torch.no_grad():
        with_lin.linear.weights.table.weight.copy_(0.5 - 0.25 * torch.arange(5.0)[:, None])
        with_lin.linear.bias.fill_(-0.7)
        hand = torch.tensor([0.25 - 0.25 - 0.7, 0.0 - 0.5 - 0.7])
        torch.testing.assert_close(with_lin(batch), plain(batch) + hand)


@pytest.mark.parametrize("name", MODELS)
def test_the_term_covers_every_field_kind(name: str) -> None:
    """On a set with categorical, numeric and multi-valued fields: the logit grows by exactly the first-order
    term's own output (its weights all non-zero)."""
    train, _, _ = planted_ctr()
    batch = batch_of(train)
    plain = built(name, 0, train.schema)
    with_lin = built(name, 0, train.schema, use_linear=True)
    linear = with_lin.linear
    with torch.no_grad():
        table = linear.weights.table.weight
        table.copy_(torch.linspace(-1.0, 1.0, table.numel()).reshape(table.shape))
        linear.weights.numeric_weight.fill_(0.3)
        linear.bias.fill_(-0.7)
        term = linear(batch)
        assert term.std() > 0.1
        torch.testing.assert_close(with_lin(batch), plain(batch) + term)


@pytest.mark.parametrize("name", MODELS)
def test_default_is_the_model_before_the_option(name: str) -> None:
    """Off by default; the term is built after every other layer, so the other parameters are the same draws with
    and without it, the default has no ``linear`` weights, and with the term at 0 the logits agree bit for bit."""
    train, _, _ = planted_ctr()
    batch = batch_of(train)
    model = get_model_class(name)()
    assert model.config.use_linear is False and not model.config.has_first_order()
    plain = built(name, 1, train.schema)
    with_lin = built(name, 1, train.schema, use_linear=True)
    keys = set(plain.state_dict())
    assert not any(k.startswith("linear.") for k in keys)
    assert set(with_lin.state_dict()) - keys == {k for k in with_lin.state_dict() if k.startswith("linear.")}
    for k, v in plain.state_dict().items():
        assert torch.equal(v, with_lin.state_dict()[k]), k
    with torch.no_grad():
        assert torch.equal(plain(batch), with_lin(batch))  # the term starts at 0 (weights and bias)
        assert torch.equal(plain.loss(batch), with_lin.loss(batch))


@pytest.mark.parametrize("name", ("dcn", "secn"))
def test_use_linear_travels_in_the_bundle(name: str, tmp_path: Path) -> None:
    train, valid, _ = planted_ctr()
    fast = TrainerConfig(epochs=2, batch_size=128, lr=0.02, progress=False, device="cpu")
    model = get_model_class(name)(embedding_dim=4, use_linear=True, linear_reg=0.0)
    model.fit(train, valid, trainer=fast)
    assert model.first_order().weights.table.weight.abs().sum() > 0  # trained
    save_bundle(model, tmp_path / "new")
    loaded = load_bundle(tmp_path / "new")
    assert loaded.config.use_linear is True and loaded.module.first_order() is not None
    np.testing.assert_array_equal(loaded.predict_proba(valid), model.predict_proba(valid))
    # a bundle written before the field existed: no use_linear in its config -> False, the model it was
    old = get_model_class(name)(embedding_dim=4)
    old.fit(train, valid, trainer=fast)
    save_bundle(old, tmp_path / "old")
    as_written_before(tmp_path / "old", "use_linear")
    legacy = load_bundle(tmp_path / "old")
    assert legacy.config.use_linear is False and legacy.config == old.config
    np.testing.assert_array_equal(legacy.predict_proba(valid), old.predict_proba(valid))
