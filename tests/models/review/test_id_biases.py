"""The opt-in per-user/item rating biases of the review models (``id_biases``, NARRE's prediction layer): the
prediction is the head's output + b_u + b_i, off is the model before, the gradient reaches the biases, their L2
enters the loss at ``bias_l2``, users without training rows keep b = 0, bundles keep them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from attnrec.data.reviews import ReviewBatch
from attnrec.data.side import ReviewCorpus, SideInputs
from attnrec.data.table import Interactions
from attnrec.models.review.base import (
    RatingBiases,
    ReviewConfig,
    ReviewModule,
    ReviewRatingModel,
    baseline_offsets,
)
from attnrec.models.review.deepconn import DeepCoNN
from attnrec.models.review.safmr import SAFMR
from attnrec.models.review.safmr_module import SAFMRModule
from attnrec.models.review.transnet import TransNet, TransNetModule
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import review_checkerboard
from attnrec.testing.data import TINY_REVIEW_MODEL
from attnrec.testing.tamper import as_written_before
from attnrec.training.trainer import TrainerConfig

SMALL: dict[str, Any] = dict(TINY_REVIEW_MODEL)
#: every model and head the biases can join: DeepCoNN's FM, TransNet's FM_S and TransNet-Ext's FM_F, safmr's
#: source head with and without the target network
CASES: dict[str, tuple[type[ReviewRatingModel[Any]], dict[str, Any]]] = {
    "deepconn": (DeepCoNN, {}),
    "transnet": (TransNet, {}),
    "transnet_ext": (TransNet, {"extended": True}),
    "safmr": (SAFMR, {}),
    "safmr_no_transform": (SAFMR, {"transform_loss": False}),
}


def fit(case: str, train: Interactions | None = None, epochs: int = 1, **cfg: Any) -> ReviewRatingModel[Any]:
    cls, extra = CASES[case]
    train = review_checkerboard()[0] if train is None else train
    model = cls(**{**SMALL, **extra, **cfg})
    side = SideInputs(reviews=ReviewCorpus.from_split(train))
    model.fit(train, side=side, trainer=TrainerConfig(epochs=epochs, progress=False, device="cpu"))
    return model


def head_output(m: ReviewModule, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
    """The rating head's output without biases: what the model predicted before ``id_biases`` existed."""
    u, i = torch.tensor(np.asarray(users)), torch.tensor(np.asarray(items))
    ud, idoc = m.documents(u, i)
    return m.rate(m.user_vectors(ud, u), m.item_vectors(idoc, i))


def batch_of(train: Interactions, n: int = 64) -> ReviewBatch:
    ratings = torch.tensor(train.ratings[:n], dtype=torch.float32)
    return ReviewBatch(torch.arange(n), torch.tensor(train.users[:n]), torch.tensor(train.items[:n]), ratings)


def set_biases(m: ReviewModule, user: np.ndarray, item: np.ndarray) -> None:
    assert m.biases is not None
    m.biases.start_at(user, item)


def test_rating_biases_on_a_hand_computed_case() -> None:
    b = RatingBiases(3, 2, l2=0.5)
    assert float((b.user.weight.abs().sum() + b.item.weight.abs().sum()).detach()) == 0.0  # zero at the start
    with torch.no_grad():
        b.user.weight.copy_(torch.tensor([[0.1], [-0.2], [0.3]]))
        b.item.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    users, items = torch.tensor([0, 1, 2, 2]), torch.tensor([1, 0, 1, 1])
    np.testing.assert_allclose(b(users, items).detach().numpy(), [-0.9, 0.8, -0.7, -0.7], rtol=1e-6)
    # 0.5 · mean(0.01 + 1, 0.04 + 1, 0.09 + 1, 0.09 + 1): a row counts once per occurrence in the batch
    assert float(b.penalty(users, items)) == pytest.approx(0.5 * (1.01 + 1.04 + 1.09 + 1.09) / 4, rel=1e-6)


def test_config_defaults_and_bounds() -> None:
    c = ReviewConfig()
    assert c.id_biases is False and c.bias_l2 >= 0
    assert c.bias_init == "zero"
    assert ReviewConfig.bundle_legacy == {"id_biases": False, "bias_l2": c.bias_l2, "bias_init": "zero"}
    with pytest.raises(ValueError, match="bias_l2"):
        ReviewConfig(bias_l2=-0.1)
    with pytest.raises(ValueError, match="id_biases"):  # an option that would do nothing is refused
        ReviewConfig(bias_init="baseline")
    with pytest.raises(ValueError, match="bias_l2"):  # so is a penalty on offsets that do not exist
        ReviewConfig(bias_l2=0.1)
    assert ReviewConfig(id_biases=True, bias_l2=0.1).bias_l2 == 0.1


def test_baseline_offsets_on_a_hand_computed_case() -> None:
    """μ = 4; one sweep from zeros with reg 1: b_i0 = (1 + 0) / (1 + 2), b_i1 = −1 / (1 + 1);
    b_u0 = ((5 − 4 − 1/3) + (3 − 4 + 1/2)) / (1 + 2), b_u1 = (4 − 4 − 1/3) / (1 + 1); user 2 has no rows."""
    users, items, ratings = np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([5.0, 3.0, 4.0])
    b_u, b_i = baseline_offsets(users, items, ratings, 3, 2, reg_user=1.0, reg_item=1.0, sweeps=1)
    np.testing.assert_allclose(b_i, [1 / 3, -0.5], rtol=1e-6)
    np.testing.assert_allclose(b_u, [(2 / 3 - 0.5) / 3, -1 / 6, 0.0], rtol=1e-6)
    # more sweeps converge to the ridge solution: the residual's sums are then the penalty's gradient
    b_u, b_i = baseline_offsets(users, items, ratings, 3, 2, reg_user=1.0, reg_item=1.0, sweeps=200)
    res = ratings - 4.0 - b_u[users] - b_i[items]
    np.testing.assert_allclose(np.bincount(items, res, 2), 1.0 * b_i, atol=1e-5)
    np.testing.assert_allclose(np.bincount(users, res, 3), 1.0 * b_u, atol=1e-5)


def test_bias_init_baseline_starts_the_offsets_at_the_training_estimates() -> None:
    train, valid, _ = review_checkerboard()
    want_u, want_i = baseline_offsets(train.users, train.items, train.ratings, train.n_users, train.n_items)
    assert np.abs(want_u).max() > 0.1 and np.abs(want_i).max() > 0.1
    # the estimates from training + validation rows differ, so a start that read validation would fail below
    cat = [np.concatenate([getattr(train, f), getattr(valid, f)]) for f in ("users", "items", "ratings")]
    leaky_u, _ = baseline_offsets(*cat, train.n_users, train.n_items)
    assert np.abs(leaky_u - want_u).max() > 1e-3
    for init, (exp_u, exp_i) in (("baseline", (want_u, want_i)), ("zero", (0 * want_u, 0 * want_i))):
        model = SAFMR(**SMALL, id_biases=True, bias_init=init)
        model.fit(
            train,
            valid,
            side=SideInputs(reviews=ReviewCorpus.from_split(train)),
            trainer=TrainerConfig(epochs=1, lr=1e-12, progress=False, device="cpu"),
        )
        b = model.review_module.biases
        assert b is not None
        np.testing.assert_allclose(b.user.weight.detach()[:, 0].numpy(), exp_u, atol=1e-6)
        np.testing.assert_allclose(b.item.weight.detach()[:, 0].numpy(), exp_i, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_off_by_default_predicts_exactly_the_head_output(case: str) -> None:
    model = fit(case)
    m = model.review_module
    assert model.config.id_biases is False and m.biases is None
    assert not any(k.startswith("biases") for k in m.state_dict())  # the bundle holds what it held before
    _, _, test = review_checkerboard()
    with torch.no_grad():
        m.eval()
        old = head_output(m, test.users, test.items).clamp(*model.rating_range).numpy()
    np.testing.assert_array_equal(model.predict(test.users, test.items), old)


@pytest.mark.parametrize("case", list(CASES))
def test_prediction_is_the_head_output_plus_hand_set_biases(case: str) -> None:
    model = fit(case, id_biases=True)
    m = model.review_module
    bu = np.linspace(-0.4, 0.4, model.n_users)
    bi = np.linspace(0.3, -0.3, model.n_items)
    set_biases(m, bu, bi)
    _, _, test = review_checkerboard()
    u, i = test.users, test.items
    m.eval()
    with torch.no_grad():
        head = head_output(m, u, i).double().numpy()
        scores = model.score_users(np.array([0, 3])).double().numpy()
        forward = m(torch.as_tensor(u), torch.as_tensor(i)).double().numpy()
        head_rows = np.stack(
            [head_output(m, np.full(model.n_items, k), np.arange(model.n_items)) for k in (0, 3)]
        )
    expected = head + bu[u] + bi[i]
    np.testing.assert_allclose(
        model.predict(u, i), np.clip(expected, *model.rating_range), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(forward, expected, rtol=1e-5, atol=1e-5)
    # score_users (unclipped) adds the same offsets to the whole row of every user
    np.testing.assert_allclose(scores, head_rows + bu[[0, 3], None] + bi[None, :], rtol=1e-5, atol=1e-5)
    assert np.abs(bu[u] + bi[i]).max() > 0.1  # the offsets are large enough to be seen


@pytest.mark.parametrize("case", list(CASES))
def test_at_zero_biases_the_loss_is_the_old_one_and_the_gradient_reaches_the_biases(case: str) -> None:
    """Same seed: the model with biases starts as the one without (the biases draw no random number); at b = 0
    the loss and every other gradient are the old model's, and b_u, b_i of the batch get a gradient."""
    with_b = fit(case, id_biases=True, bias_l2=0.0)
    without = fit(case)
    mb, m0 = with_b.review_module, without.review_module
    assert mb.biases is not None
    set_biases(mb, np.zeros(with_b.n_users), np.zeros(with_b.n_items))
    missing = mb.load_state_dict(m0.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["biases.item.weight", "biases.user.weight"]
    batch = batch_of(review_checkerboard()[0])
    grads = []
    for m in (mb, m0):
        m.train()
        m.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks
        loss = m.loss(batch)
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
        grads[-1]["loss"] = loss.detach()
    gb, g0 = grads
    torch.testing.assert_close(gb["loss"], g0["loss"])
    for k, g in g0.items():
        torch.testing.assert_close(gb[k], g, msg=k)
    bu, bi = gb["biases.user.weight"][:, 0], gb["biases.item.weight"][:, 0]
    seen_u, seen_i = torch.unique(batch.users), torch.unique(batch.items)
    # (not every row: under L1 a user's rows in the batch can cancel)
    assert float(bu[seen_u].abs().sum()) > 0 and float(bi[seen_i].abs().sum()) > 0
    others = torch.ones_like(bu, dtype=torch.bool)
    others[seen_u] = False
    assert bool((bu[others] == 0).all())  # only the batch's users
    other_items = torch.ones_like(bi, dtype=torch.bool)
    other_items[seen_i] = False
    assert bool(other_items.any()) and bool((bi[other_items] == 0).all())  # and only its items


@pytest.mark.parametrize("case", list(CASES))
def test_bias_l2_enters_the_loss_of_the_predicting_head(case: str) -> None:
    model = fit(case, id_biases=True)
    m = model.review_module
    assert m.biases is not None
    set_biases(m, np.linspace(-1, 1, model.n_users), np.linspace(0.5, -0.5, model.n_items))
    batch = batch_of(review_checkerboard()[0])
    m.eval()  # no dropout: the two losses differ by the penalty alone

    def loss(l2: float) -> float:
        assert m.biases is not None
        m.biases.l2 = l2
        with torch.no_grad():
            return float(m.loss(batch))

    sq = (m.biases.user.weight[batch.users, 0] ** 2 + m.biases.item.weight[batch.items, 0] ** 2).mean()
    assert loss(0.5) - loss(0.0) == pytest.approx(0.5 * float(sq), rel=1e-4)
    if isinstance(m, TransNetModule):  # the penalty sits in the loss of the head that rates at test time
        m.biases.l2 = 0.5
        with torch.no_grad():
            parts = m.loss_parts(batch)
            m.biases.l2 = 0.0
            plain = m.loss_parts(batch)
        rating_head = "full" if m.fm_full is not None else "source"
        for name in parts:
            delta = float(parts[name] - plain[name])
            assert delta == pytest.approx(0.5 * float(sq) if name == rating_head else 0.0, abs=1e-6), name


def test_the_target_head_has_no_biases() -> None:
    """TransNet's FM_T and safmr's target head read the user's own review: their losses never reach b_u, b_i."""
    batch = batch_of(review_checkerboard()[0])
    for case in ("transnet", "safmr"):
        m = fit(case, id_biases=True).review_module
        m.train()
        m.zero_grad(set_to_none=True)
        if isinstance(m, TransNetModule):
            target = m.loss_parts(batch)["target"]
        else:
            assert isinstance(m, SAFMRModule)
            target = m.losses(batch).target
        assert target is not None
        target.backward()
        assert m.biases is not None and m.biases.user.weight.grad is None, case


def test_a_user_without_training_rows_keeps_a_zero_bias() -> None:
    full, _, test = review_checkerboard()
    train = full.with_frame(full.frame.filter(pl.col("user") != 0))  # user 0 stays in the vocabulary, no rows
    model = fit("safmr", train=train, epochs=2, id_biases=True, bias_l2=0.01)
    m = model.review_module
    assert m.biases is not None
    assert float(m.biases.user.weight[0, 0]) == 0.0
    assert float(m.biases.user.weight[1:].abs().max()) > 0  # the others moved
    items = np.arange(model.n_items)
    with torch.no_grad():
        m.eval()
        head = head_output(m, np.zeros_like(items), items).numpy() + m.biases.item.weight[:, 0].numpy()
    np.testing.assert_allclose(
        model.predict(np.zeros_like(items), items), head.clip(*model.rating_range), rtol=1e-5, atol=1e-6
    )


def test_bundle_keeps_the_biases_and_an_older_bundle_loads_without_them(tmp_path: Path) -> None:
    _, _, test = review_checkerboard()
    model = fit("deepconn", epochs=2, id_biases=True, bias_l2=0.05, bias_init="baseline")
    save_bundle(model, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert isinstance(loaded, DeepCoNN)
    assert loaded.config.id_biases is True and loaded.config.bias_l2 == 0.05
    assert loaded.config.bias_init == "baseline"
    np.testing.assert_array_equal(
        loaded.predict(test.users, test.items), model.predict(test.users, test.items)
    )
    plain = fit("deepconn")
    save_bundle(plain, tmp_path / "old")
    as_written_before(tmp_path / "old", "id_biases", "bias_l2", "bias_init")
    old = load_bundle(tmp_path / "old")
    assert isinstance(old, DeepCoNN) and old.config.id_biases is False and old.review_module.biases is None
    np.testing.assert_array_equal(old.predict(test.users, test.items), plain.predict(test.users, test.items))
