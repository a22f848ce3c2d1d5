"""TransNet: conformance, the three losses (which part each trains), the transform loss pulling the source
representation toward the target review's, and test-time scoring without any target review."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from attnrec.data.reviews import ReviewBatch
from attnrec.data.side import ReviewCorpus, SideInputs
from attnrec.errors import ConfigError
from attnrec.models.review.transnet import TransNet, TransNetModule
from attnrec.testing import ConformanceTests, review_checkerboard
from attnrec.training.trainer import TrainerConfig

#: tiny sizes: the documents of the checkerboard are short. The source network learns the pattern only once the
#: target network's representation carries it (it imitates it), so it gets more kernels than DeepCoNN's test
TRANSNET_SMALL: dict[str, Any] = {
    "word_dim": 8,
    "n_kernels": 16,
    "cnn_out": 16,
    "review_count": 3,
    "review_length": 6,
    "max_words": 100,
    "dropout": 0.0,
}
TRAINER: dict[str, Any] = {"epochs": 15, "lr": 0.01, "batch_size": 64, "patience": None}


class TestTransNetConformance(ConformanceTests):
    model_class = TransNet
    config = TRANSNET_SMALL
    trainer = TRAINER

    @classmethod
    def data(cls) -> tuple[Any, Any, Any]:
        return review_checkerboard()

    @classmethod
    def side_inputs(cls) -> SideInputs:
        return SideInputs(reviews=ReviewCorpus.from_split(cls.data()[0]))


def fitted_module(**config: Any) -> tuple[TransNet, ReviewBatch]:
    """A TransNet after one epoch on the review checkerboard, and a batch of 64 training rows."""
    train, _, _ = review_checkerboard()
    model = TransNet(**{**TRANSNET_SMALL, **config})
    side = SideInputs(reviews=ReviewCorpus.from_split(train))
    model.fit(train, side=side, trainer=TrainerConfig(epochs=1, progress=False, device="cpu"))
    rows = torch.arange(64)
    batch = ReviewBatch(
        rows,
        torch.tensor(train.users[:64]),
        torch.tensor(train.items[:64]),
        torch.tensor(train.ratings[:64], dtype=torch.float32),
    )
    return model, batch


def _grad_owners(module: TransNetModule, loss: torch.Tensor) -> set[str]:
    module.zero_grad(set_to_none=True)
    loss.backward()
    return {
        name.split(".")[0]
        for name, p in module.named_parameters()
        if p.grad is not None and bool(p.grad.abs().sum() > 0)
    }


def test_each_loss_trains_only_its_part() -> None:
    model, batch = fitted_module()
    m = model.review_module
    assert isinstance(m, TransNetModule)
    m.train()
    assert _grad_owners(m, m.loss_parts(batch)["target"]) == {"target_net", "fm_target"}
    assert _grad_owners(m, m.loss_parts(batch)["transform"]) == {"user_net", "item_net", "transform"}
    assert _grad_owners(m, m.loss_parts(batch)["source"]) == {"fm_source"}


def test_transform_loss_is_the_squared_distance_to_the_target_representation() -> None:
    model, batch = fitted_module()
    m = model.review_module
    assert isinstance(m, TransNetModule)
    m.eval()
    with torch.no_grad():
        x_t = m.target_net(m.row_tokens[batch.rows])
        ud, idoc = m.documents(batch.users, batch.items, batch.rows)
        z = m.transformed(m.user_vectors(ud), m.item_vectors(idoc))
        expected = float(((z - x_t) ** 2).sum(1).mean())
        assert float(m.loss_parts(batch)["transform"]) == pytest.approx(expected, rel=1e-6)
        assert expected > 0


def test_transform_loss_moves_the_source_representation_toward_the_target() -> None:
    model, batch = fitted_module()
    m = model.review_module
    assert isinstance(m, TransNetModule)
    m.train()

    def distance() -> tuple[float, torch.Tensor]:
        with torch.no_grad():
            x_t = m.target_net(m.row_tokens[batch.rows])
            ud, idoc = m.documents(batch.users, batch.items, batch.rows)
            z = m.transformed(m.user_vectors(ud), m.item_vectors(idoc))
        return float((z - x_t).norm(dim=1).mean()), x_t

    before, target_before = distance()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        m.loss_parts(batch)["transform"].backward()
        opt.step()
    after, target_after = distance()
    torch.testing.assert_close(target_after, target_before)  # the target network did not move toward z
    assert after < 0.5 * before, (before, after)


def test_test_time_scores_use_the_source_network_only() -> None:
    model, batch = fitted_module()
    m = model.review_module
    assert isinstance(m, TransNetModule)
    _, _, test = review_checkerboard()
    pred = model.predict(test.users, test.items)
    with torch.no_grad():
        m.eval()
        ud, idoc = m.documents(torch.tensor(test.users), torch.tensor(test.items))
        by_hand = m.fm_source(m.transformed(m.user_net(ud), m.item_net(idoc)))
    np.testing.assert_allclose(pred, by_hand.clamp(*model.rating_range).numpy(), rtol=1e-5, atol=1e-6)
    m.row_tokens = torch.zeros(0, dtype=torch.int64)  # no target review is needed to score
    np.testing.assert_array_equal(model.predict(test.users, test.items), pred)


class _Stop(Exception):
    pass


def test_both_fms_start_at_the_mean_training_rating(monkeypatch: pytest.MonkeyPatch) -> None:
    """From w0 = 0 the quickest way up to 1-5 star ratings is to saturate every tanh feature with one sign, after
    which x_T and z_L no longer depend on the text (the collapse seen on Musical Instruments)."""
    train, _, _ = review_checkerboard()
    model = TransNet(**TRANSNET_SMALL)
    seen: dict[str, float] = {}

    def capture(module: TransNetModule, *_: Any, **__: Any) -> None:
        seen["source"] = float(module.fm_source.w0.detach())
        seen["target"] = float(module.fm_target.w0.detach())
        raise _Stop

    monkeypatch.setattr(model, "train_module", capture)
    with pytest.raises(_Stop):
        model.fit(train, side=SideInputs(reviews=ReviewCorpus.from_split(train)))
    mean = float(np.mean(train.ratings))
    assert seen == {"source": pytest.approx(mean, abs=1e-6), "target": pytest.approx(mean, abs=1e-6)}


def test_high_ratings_do_not_saturate_the_target_representation() -> None:
    """Ratings 4 and 5 (mean near 4.5, as on Amazon): after training, the target network's tanh features are not
    saturated and its predictions separate the two groups. With w0 starting at 0 and N(0, 1) word vectors (the
    former setting) 91% of the features sat beyond ±0.95 after these 4 epochs and the separation was 0.02."""
    train, _, _ = review_checkerboard()
    train = train.with_frame(train.frame.with_columns(((train.frame["rating"] - 1) / 4 + 4).alias("rating")))
    model = TransNet(**{**TRANSNET_SMALL, "dropout": 0.5})
    side = SideInputs(reviews=ReviewCorpus.from_split(train))
    model.fit(
        train,
        side=side,
        trainer=TrainerConfig(epochs=4, batch_size=64, lr=0.008, progress=False, device="cpu"),
    )
    m = model.review_module
    assert isinstance(m, TransNetModule)
    m.eval()
    rows = torch.arange(len(train))
    with torch.no_grad():
        x_t = m.target_net(m.target(rows))
        y_t = m.fm_target(x_t).numpy()
    assert float((x_t.abs() > 0.95).float().mean()) < 0.5
    high = train.ratings > 4.5
    assert y_t[high].mean() - y_t[~high].mean() > 0.3, (y_t[high].mean(), y_t[~high].mean())


# ------------------------------------------------------------------ TransNet-Ext (``extended``)


class TestTransNetExtConformance(TestTransNetConformance):
    config = {**TRANSNET_SMALL, "extended": True, "id_l2": 1e-3}


def test_ext_full_loss_trains_only_the_ids_and_its_fm() -> None:
    model, batch = fitted_module(extended=True, id_l2=1e-2)
    m = model.review_module
    assert isinstance(m, TransNetModule)
    m.train()
    parts = m.loss_parts(batch)
    assert set(parts) == {"target", "transform", "source", "full"}
    assert _grad_owners(m, m.loss_parts(batch)["full"]) == {"user_ids", "item_ids", "fm_full"}
    # the id embeddings do not reach the transform: its loss trains what it trained without them
    assert _grad_owners(m, m.loss_parts(batch)["transform"]) == {"user_net", "item_net", "transform"}
    assert _grad_owners(m, m.loss_parts(batch)["source"]) == {"fm_source"}


def test_ext_rates_with_fm_f_over_ids_and_z_computed_by_hand() -> None:
    """ŷ = FM_F([ω_u; Ω_i; z_L]) with FM_F = w0 + Σ w_j x_j + Σ_{j<k} <v_j, v_k> x_j x_k written out pairwise."""
    model, _ = fitted_module(extended=True)
    m = model.review_module
    assert isinstance(m, TransNetModule) and m.fm_full is not None
    assert m.user_ids is not None and m.item_ids is not None
    _, _, test = review_checkerboard()
    u, i = test.users[:5], test.items[:5]
    pred = model.predict(u, i)
    m.eval()
    with torch.no_grad():
        ud, idoc = m.documents(torch.tensor(u), torch.tensor(i))
        z = m.transformed(m.user_net(ud), m.item_net(idoc))
        x = torch.cat([m.user_ids(torch.tensor(u)), m.item_ids(torch.tensor(i)), z], 1).double()
        fm = m.fm_full
        w, v = fm.linear.weight.double()[0], fm.v.double()
        n = x.shape[1]
        by_hand = []
        for row in x:
            pair = sum(float(v[j] @ v[k]) * float(row[j] * row[k]) for j in range(n) for k in range(j + 1, n))
            by_hand.append(float(fm.w0) + float(w @ row) + pair)
    lo, hi = model.rating_range
    np.testing.assert_allclose(pred, np.clip(by_hand, lo, hi), rtol=1e-4, atol=1e-4)
    # the ids matter: another user's id embedding in the same slot changes the rating
    with torch.no_grad():
        other = m.full_input(
            torch.cat([m.user_net(ud), m.user_ids(torch.tensor(u[::-1].copy()))], 1),
            torch.cat([m.item_net(idoc), m.item_ids(torch.tensor(i))], 1),
            z,
        )
        assert not torch.allclose(m.fm_full(other), torch.tensor(by_hand, dtype=torch.float32), atol=1e-3)


def test_ext_id_l2_adds_the_penalty_on_the_batch_ids() -> None:
    model, batch = fitted_module(extended=True)
    m = model.review_module
    assert isinstance(m, TransNetModule) and m.user_ids is not None and m.item_ids is not None
    m.eval()
    with torch.no_grad():
        plain = float(m.loss_parts(batch)["full"])
        m.id_l2 = 0.5
        penalised = float(m.loss_parts(batch)["full"])
        sq = (m.user_ids(batch.users).square().sum(1) + m.item_ids(batch.items).square().sum(1)).mean()
    assert penalised - plain == pytest.approx(0.5 * float(sq), rel=1e-5)


def test_ext_is_off_by_default_and_needs_the_ids() -> None:
    model, batch = fitted_module()
    m = model.review_module
    assert isinstance(m, TransNetModule)
    assert m.fm_full is None and m.user_ids is None
    # the default model holds exactly the parameters it held before Ext existed, and the three losses only
    prefixes = {k.split(".")[0] for k in m.state_dict()}
    assert prefixes == {
        "user_docs",
        "item_docs",
        "user_net",
        "item_net",
        "target_net",
        "transform",
        "fm_source",
        "fm_target",
    }
    assert set(m.loss_parts(batch)) == {"target", "transform", "source"}
    ext, batch = fitted_module(extended=True)
    me = ext.review_module
    assert isinstance(me, TransNetModule)
    ud, _ = me.documents(batch.users, batch.items)
    with pytest.raises(ConfigError, match="user indices"):
        me.user_vectors(ud)


def test_ext_id_init_std_sets_the_ids_scale() -> None:
    train, _, _ = review_checkerboard()
    for std, expect in ((None, (1 / 3) ** 0.5), (0.05, 0.05)):
        model = TransNet(**{**TRANSNET_SMALL, "extended": True, "id_init_std": std})
        model.fit(
            train,
            side=SideInputs(reviews=ReviewCorpus.from_split(train)),
            trainer=TrainerConfig(epochs=1, lr=1e-9, progress=False, device="cpu"),
        )
        m = model.review_module
        assert isinstance(m, TransNetModule) and m.user_ids is not None
        assert float(m.user_ids.weight.std()) == pytest.approx(expect, rel=0.15)
