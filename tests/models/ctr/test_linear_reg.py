"""``linear_reg``: the first-order weights' own L2 weight (None: they share ``embedding_reg``, the loss before it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnrec.data.batches import CTRBatch
from attnrec.data.ctr import ctr_batches
from attnrec.data.schema import FeatureSchema
from attnrec.errors import ConfigError
from attnrec.models.base import get_model_class
from attnrec.models.ctr.base import CTRModule
from attnrec.models.ctr.fm import FM
from attnrec.models.ctr.lr import LR
from attnrec.models.layers.features import l2_per_row
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import planted_ctr
from attnrec.testing.ctr import first_order_models, tiny_ctr
from attnrec.testing.tamper import as_written_before
from attnrec.training.trainer import TrainerConfig

#: the CTR models with a first-order term, and the options that give them one (autoint, dcn, secn: use_linear)
FIRST_ORDER = first_order_models()


def tiny() -> tuple[FeatureSchema, CTRBatch]:
    """Two categorical fields (vocabularies 3 and 2), a batch of two rows."""
    return tiny_ctr()


def tiny_fm(**cfg: Any) -> tuple[CTRModule, CTRBatch]:
    """An FM (dim 2) on :func:`tiny` with known weights: embedding row r = (r + 1) * (0.1, -0.2) (shared table,
    field b's rows after field a's 3), first-order row r = 0.5 - 0.25 * r."""
    schema, batch = tiny()
    module = FM(embedding_dim=2, **cfg).build_ctr_module(schema)
    with torch.no_grad():
        rows = torch.arange(1.0, 6.0)[:, None]
        module.embedding.table.weight.copy_(rows * torch.tensor([0.1, -0.2]))
        module.linear.weights.table.weight.copy_(0.5 - 0.25 * (rows - 1))
    return module, batch


#: by hand, for tiny_fm's batch: row 0 looks up table rows 1 (a=1) and 3 (b=0, offset 3); row 1 rows 2 and 4
#: embedding squares: (r+1)^2 * 0.05 -> rows 1,3,2,4: 4, 16, 9, 25 times 0.05 -> 2.7 in all, / 2 rows
HAND_EMB = (4 + 16 + 9 + 25) * 0.05 / 2
#: first-order weights: 0.5 - 0.25 r -> rows 1,3,2,4: 0.25, -0.25, 0, -0.5 -> squares 0.0625 + 0.0625 + 0 + 0.25
HAND_LIN = (0.0625 + 0.0625 + 0.0 + 0.25) / 2


def bce_of(module: CTRModule, batch: CTRBatch) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(module(batch), batch.labels)


def test_hand_computed_pieces_are_what_the_tiny_fm_looks_up() -> None:
    module, batch = tiny_fm()
    torch.testing.assert_close(l2_per_row(module.embedding(batch)).item(), HAND_EMB)
    torch.testing.assert_close(l2_per_row(module.linear.terms(batch)).item(), HAND_LIN)


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"embedding_reg": 0.5}, 0.5 * (HAND_EMB + HAND_LIN)),  # None: one weight over both, as before
        ({"embedding_reg": 0.5, "linear_reg": 0.0}, 0.5 * HAND_EMB),  # the linear terms left out exactly
        ({"embedding_reg": 0.0, "linear_reg": 0.2}, 0.2 * HAND_LIN),  # only the linear terms
        ({"embedding_reg": 0.5, "linear_reg": 0.2}, 0.5 * HAND_EMB + 0.2 * HAND_LIN),  # each its own weight
        ({"embedding_reg": 0.0, "linear_reg": 0.0}, 0.0),
    ],
)
def test_penalty_weighs_each_piece_with_its_own_weight(cfg: dict[str, float], expected: float) -> None:
    module, batch = tiny_fm(**cfg)
    loss = module.loss(batch)
    torch.testing.assert_close((loss - bce_of(module, batch)).item(), expected, rtol=1e-6, atol=1e-7)


def test_linear_reg_zero_gives_the_linear_weights_no_penalty_gradient() -> None:
    module, batch = tiny_fm(embedding_reg=0.5, linear_reg=0.0)
    module.loss(batch).backward()
    with_reg = module.linear.weights.table.weight.grad.clone()
    module.zero_grad()
    bce_of(module, batch).backward()
    torch.testing.assert_close(with_reg, module.linear.weights.table.weight.grad, rtol=0, atol=0)
    assert with_reg.abs().sum() > 0  # the BCE part is there


def batch_of(data: Any, n: int = 4) -> CTRBatch:
    """The first ``n`` rows of ``data`` as one batch."""
    return next(ctr_batches(data, n, shuffle=False))


@pytest.mark.parametrize(
    ("name", "extra"), [("lr", {}), ("dcn", {}), ("secn", {}), ("autoint", {}), *FIRST_ORDER.items()]
)
def test_none_is_the_loss_before_the_option_bit_for_bit(name: str, extra: dict[str, Any]) -> None:
    """The loss before linear_reg existed, written out: bce + embedding_reg * l2_per_row(embeddings, terms)
    (autoint with and without its first-order term)."""
    train, _, _ = planted_ctr()
    batch = batch_of(train)
    torch.manual_seed(0)
    module = get_model_class(name)(embedding_reg=0.3, **extra).build_ctr_module(train.schema)
    module.eval()  # no dropout draws between the two passes
    linear = getattr(module, "linear", None)
    if linear is not None:
        with torch.no_grad():
            linear.weights.table.weight.normal_()
    tensors = [] if name == "lr" else [module.embedding(batch)]
    if linear is not None:
        tensors.append(linear.terms(batch))
    old = bce_of(module, batch) + 0.3 * l2_per_row(*tensors)
    assert torch.equal(module.loss(batch), old)


@pytest.mark.parametrize("name", list(FIRST_ORDER))
def test_linear_reg_zero_drops_exactly_the_first_order_part(name: str) -> None:
    train, _, _ = planted_ctr()
    batch = batch_of(train)
    torch.manual_seed(0)
    module = get_model_class(name)(embedding_reg=0.3, linear_reg=0.0, **FIRST_ORDER[name]).build_ctr_module(
        train.schema
    )
    module.eval()
    with torch.no_grad():
        module.linear.weights.table.weight.normal_()
    expected = bce_of(module, batch) + 0.3 * l2_per_row(module.embedding(batch))
    assert torch.equal(module.loss(batch), expected)
    module.linear_reg = 0.7
    expected = expected + 0.7 * l2_per_row(module.linear.terms(batch))
    torch.testing.assert_close(module.loss(batch), expected)


def test_lr_uses_linear_reg_when_set_and_refuses_a_second_weight() -> None:
    train, _, _ = planted_ctr()
    batch = batch_of(train)
    with_lin = LR(linear_reg=0.4).build_ctr_module(train.schema)
    with torch.no_grad():
        with_lin.linear.weights.table.weight.normal_()
    terms = with_lin.linear.terms(batch)
    torch.testing.assert_close(with_lin.loss(batch), bce_of(with_lin, batch) + 0.4 * l2_per_row(terms))
    # the same penalty as embedding_reg 0.4 with linear_reg unset: LR's only weights are first-order
    old = LR(embedding_reg=0.4).build_ctr_module(train.schema)
    old.load_state_dict(with_lin.state_dict())
    assert torch.equal(old.loss(batch), with_lin.loss(batch))
    with pytest.raises(ConfigError, match="embedding_reg.*linear_reg"):
        LR(embedding_reg=0.1, linear_reg=0.0)
    LR(embedding_reg=0.0, linear_reg=0.0)  # 0 and 0 is fine


@pytest.mark.parametrize(("name", "extra"), [("dcn", {}), ("secn", {}), ("autoint", {})])
def test_models_without_a_first_order_term_refuse_linear_reg(name: str, extra: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="linear_reg = 0.0: this model has no first-order term"):
        get_model_class(name)(linear_reg=0.0, **extra)
    assert get_model_class(name)(**extra).config.linear_reg is None


def test_a_negative_linear_reg_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="'linear_reg'"):
        FM(linear_reg=-0.1)


def test_linear_reg_travels_in_the_bundle_and_an_older_bundle_loads_unchanged(tmp_path: Path) -> None:
    train, valid, _ = planted_ctr()
    fast = TrainerConfig(epochs=2, batch_size=128, lr=0.02, progress=False, device="cpu")
    model = FM(embedding_dim=4, embedding_reg=0.01, linear_reg=0.0)
    model.fit(train, valid, trainer=fast)
    save_bundle(model, tmp_path / "new")
    loaded = load_bundle(tmp_path / "new")
    assert loaded.config.linear_reg == 0.0 and loaded.module.linear_reg == 0.0
    np.testing.assert_array_equal(loaded.predict_proba(valid), model.predict_proba(valid))
    # a bundle written before the field existed: its config has no linear_reg -> None, today's shared penalty
    old = FM(embedding_dim=4, embedding_reg=0.01)
    old.fit(train, valid, trainer=fast)
    save_bundle(old, tmp_path / "old")
    as_written_before(tmp_path / "old", "linear_reg")
    legacy = load_bundle(tmp_path / "old")
    assert legacy.config.linear_reg is None and legacy.module.linear_reg is None
    assert legacy.config == old.config
    np.testing.assert_array_equal(legacy.predict_proba(valid), old.predict_proba(valid))
