"""safmr: conformance, the FM and self-attention terms on hand-computed cases (eqs. 5-8), attention weights summing
to one, the transform layers (eq. 10), each loss training only its part (eqs. 12-14), the transform loss pulling
the source representation toward the target's, the ablation switches, and the test-time path that never reads a
target review."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from attnrec.data.reviews import ReviewBatch
from attnrec.data.side import ReviewCorpus, SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.models.layers.diagnostics import mean_abs_cosine_per_row
from attnrec.models.review.safmr import SAFMR
from attnrec.models.review.safmr_module import SAFMRModule, SelfAttentionFM, TransformLayers
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import ConformanceTests, checkerboard
from attnrec.training.trainer import TrainerConfig

#: tiny sizes (the checkerboard's reviews are two words); no dropout, so 20 epochs recover the pattern
SMALL: dict[str, Any] = {
    "word_dim": 8,
    "n_kernels": 8,
    "cnn_out": 8,
    "fm_factors": 8,
    "review_count": 3,
    "review_length": 2,
    "max_words": 100,
    "dropout": 0.0,
}
TRAINER: dict[str, Any] = {"epochs": 14, "lr": 0.01, "batch_size": 64, "patience": None}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def group_reviews(data: Interactions) -> Interactions:
    """Checkerboard rows with a review naming the user's group (ga/gb) and the item's (ha/hb): the target review
    states the rating (same group: 5), and a user's / item's other reviews state its own group."""
    g = np.where(data.users % 2 == 0, "ga", "gb")
    h = np.where(data.items % 2 == 0, "ha", "hb")
    return data.with_frame(
        data.frame.with_columns(pl.Series("review", [f"{a} {b}" for a, b in zip(g, h, strict=True)]))
    )


def review_data() -> tuple[Interactions, Interactions, Interactions]:
    train, valid, test = checkerboard()
    return group_reviews(train), valid, test


def side(train: Interactions) -> SideInputs:
    return SideInputs(reviews=ReviewCorpus.from_split(train))


def fitted_model(epochs: int = 1, **cfg: Any) -> SAFMR:
    train, valid, _ = review_data()
    model = SAFMR(**{**SMALL, **cfg})
    model.fit(
        train,
        valid,
        side=side(train),
        trainer=TrainerConfig(**{**TRAINER, "epochs": epochs, "progress": False}),
    )
    return model


def batch_of(train: Interactions, rows: np.ndarray) -> ReviewBatch:
    r = torch.as_tensor(rows, dtype=torch.int64)
    users, items, ratings = (torch.tensor(a) for a in (train.users, train.items, train.ratings))
    return ReviewBatch(r, users[r], items[r], ratings[r])


class TestSAFMRConformance(ConformanceTests):
    model_class = SAFMR
    config = SMALL
    trainer = TRAINER

    @classmethod
    def data(cls) -> tuple[Any, Any, Any]:
        return review_data()

    @classmethod
    def side_inputs(cls) -> SideInputs:
        return side(cls.data()[0])


class TestSAFMRBiasesConformance(TestSAFMRConformance):
    """With the opt-in rating biases (``id_biases``; tests/models/review/test_id_biases.py)."""

    config = {**SMALL, "id_biases": True}


# ------------------------------------------------------------------ eqs. 5-8: the heads
def test_fm_head_on_a_hand_computed_case() -> None:
    """attention=False is eq. 5: w0 + Σ w_i x_i + Σ_{i<j} <v_i, v_j> x_i x_j (no squares)."""
    head = SelfAttentionFM(3, 2, attention=False, bias=0.5)
    with torch.no_grad():
        head.linear.copy_(torch.tensor([1.0, -1.0, 2.0]))
        head.factors.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    out = head(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    # linear 1 - 2 + 6 = 5; pairs <v1,v2>·2 = 0, <v1,v3>·3 = 3, <v2,v3>·6 = 6
    np.testing.assert_allclose(out.pred.detach().numpy(), [14.5, 0.5])
    assert out.weights is None and out.mixed is None
    assert not any(n.startswith(("query", "key", "value")) for n, _ in head.named_parameters())


def test_self_attention_head_on_a_hand_computed_case() -> None:
    """Eqs. 6-8 by hand: E = x ⊙ V, R/H/S = E W, X̂ = softmax(R Hᵀ/√k) by rows, ŷ = w0 + w·x + Σ_ij x̂_ij <e_i, s_j>."""
    head = SelfAttentionFM(2, 2, bias=0.25)
    with torch.no_grad():
        head.linear.copy_(torch.tensor([0.5, -1.0]))
        head.factors.copy_(torch.tensor([[1.0, 0.0], [1.0, 2.0]]))
        head.query.weight.copy_(torch.eye(2))  # r = e
        head.key.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # h = e swapped
        head.value.weight.copy_(2 * torch.eye(2))  # s = 2e
    x = torch.tensor([[1.0, 0.5]])
    out = head(x)
    e1, e2 = np.array([1.0, 0.0]), np.array([0.5, 1.0])
    h1, h2 = e1[::-1], e2[::-1]
    scores = np.array([[e1 @ h1, e1 @ h2], [e2 @ h1, e2 @ h2]]) / math.sqrt(2)
    w = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    pair = sum(w[i, j] * (ei @ (2 * ej)) for i, ei in enumerate((e1, e2)) for j, ej in enumerate((e1, e2)))
    expected = 0.25 + (0.5 * 1.0 - 1.0 * 0.5) + pair
    np.testing.assert_allclose(out.pred.detach().numpy(), [expected], rtol=1e-6)
    assert out.weights is not None
    np.testing.assert_allclose(out.weights[0].detach().numpy(), w, rtol=1e-6)


def test_attention_with_equal_weights_is_twice_the_fm_pairwise_term() -> None:
    """The reading of eq. 8: x̂_ij = 1 off the diagonal, 0 on it, and W_s = I give 2 Σ_{i<j} <e_i, e_j>."""
    torch.manual_seed(0)
    fm = SelfAttentionFM(5, 3, attention=False)
    with torch.no_grad():
        fm.factors.normal_()
    x = torch.randn(4, 5)
    e = x.unsqueeze(-1) * fm.factors
    equal = 1 - torch.eye(5)
    pairwise = (e * (equal @ e)).sum((1, 2))
    first = fm.bias + x @ fm.linear
    torch.testing.assert_close(pairwise, 2 * (fm(x).pred - first))


def test_attention_weights_sum_to_one_and_shares_too() -> None:
    torch.manual_seed(1)
    head = SelfAttentionFM(6, 4)
    with torch.no_grad():
        head.factors.normal_()
    out = head(torch.randn(7, 6) * 3)
    assert out.weights is not None and out.weights.shape == (7, 6, 6)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(7, 6))
    assert (out.weights >= 0).all()
    model = fitted_model(epochs=2)
    _, _, test = review_data()
    pred, shares, cos = model.attention(test.users, test.items)
    np.testing.assert_allclose(shares.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pred, model.predict(test.users, test.items), rtol=1e-6)
    assert shares.shape == (len(test), SMALL["cnn_out"]) and ((cos >= 0) & (cos <= 1 + 1e-6)).all()


def test_mean_abs_cosine_on_a_hand_made_case() -> None:
    """safmr's per-prediction |cos| is the library's diagnostic (``diagnostics``): a zero row has no direction and
    is left out, not counted as cos 0; a pair with no row left has none (NaN)."""
    a = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    b = torch.tensor([[[-2.0, 0.0], [1.0, 0.0], [3.0, 1.0]], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    # pair 0: |cos| = 1 (opposite), 1/√2, left out (zero row); pair 1: every row zero
    got = mean_abs_cosine_per_row(a, b)
    assert got[0] == pytest.approx((1 + 1 / math.sqrt(2)) / 2) and math.isnan(got[1])
    with pytest.raises(ValueError, match="differ"):
        mean_abs_cosine_per_row(a, b[:, :2])


def test_attention_abs_cos_leaves_a_zero_feature_row_out() -> None:
    """A feature whose FM factor v_i is zero has e_i = x_i v_i = 0 in every prediction: ``attention``, ``explain``
    and ``attention_summary`` leave it out of |cos(e_i, (X̂ S)_i)| (the rule of every attention-fusion model's
    diagnostic), where safmr's former own mean counted it as 0 and shrank every pair's mean by (n - 1) / n."""
    model = fitted_model(epochs=1)
    _, _, test = review_data()
    m = model.safmr_module
    with torch.no_grad():
        m.source_head.factors[0] = 0.0
        ud, idoc = m.documents(torch.as_tensor(test.users.copy()), torch.as_tensor(test.items.copy()))
        out = m.eval().source(m.user_vectors(ud), m.item_vectors(idoc))
    assert out.mixed is not None and float(out.features[:, 0].abs().max()) == 0.0
    by_hand = torch.nn.functional.cosine_similarity(out.features[:, 1:], out.mixed[:, 1:], dim=-1).abs()
    _, _, cos = model.attention(test.users, test.items)
    np.testing.assert_allclose(cos, by_hand.mean(1).numpy(), rtol=1e-5)
    summary = model.attention_summary(test)
    assert summary["abs_cos"] == pytest.approx(float(by_hand.mean()), rel=1e-5)
    with torch.no_grad():
        m.source_head.factors.zero_()  # no feature has a direction: no |cos| at all
    _, _, cos = model.attention(test.users, test.items)
    assert np.isnan(cos).all() and math.isnan(model.attention_summary(test)["abs_cos"])
    ids = (list(test.user_vocab.ids[test.users[:2]]), list(test.item_vocab.ids[test.items[:2]]))
    assert model.explain(*ids)["abs_cos"].to_list() == [None, None]  # null, so /explain's JSON stays valid


# ------------------------------------------------------------------ eq. 10 and the CNN
def test_transform_layers_follow_eq_10() -> None:
    torch.manual_seed(2)
    t = TransformLayers(400, 200, 2)
    first, second = t.layers[0], t.layers[1]
    assert isinstance(first, torch.nn.Linear) and isinstance(second, torch.nn.Linear)
    assert first.weight.shape == (200, 400) and second.weight.shape == (200, 200)
    for layer in (first, second):
        w = layer.weight.detach()
        assert (layer.bias == 0.1).all() and w.abs().max() <= 0.2  # truncated at two std
        assert 0.08 < float(w.std()) < 0.095  # N(0, 0.1) cut at ±2σ has std 0.088
    c0 = torch.randn(3, 400)
    expected = torch.tanh(torch.tanh(c0 @ first.weight.T + first.bias) @ second.weight.T + second.bias)
    torch.testing.assert_close(t(c0), expected)


# ------------------------------------------------------------------ eqs. 12-14: what each loss trains
def _module(**cfg: Any) -> tuple[SAFMRModule, ReviewBatch]:
    model = fitted_model(epochs=1, **cfg)
    train, _, _ = review_data()
    module = model.safmr_module
    module.train()
    return module, batch_of(train, np.arange(64))


def _grads(module: SAFMRModule, loss: torch.Tensor) -> dict[str, bool]:
    module.zero_grad(set_to_none=True)
    loss.backward()
    parts: dict[str, bool] = {}
    for name, p in module.named_parameters():
        part = name.split(".")[0]
        parts[part] = parts.get(part, False) or (p.grad is not None and bool(p.grad.abs().sum() > 0))
    return parts


def test_each_loss_trains_only_its_part() -> None:
    module, batch = _module()
    losses = module.losses(batch)
    assert losses.target is not None and losses.transform is not None
    got = _grads(module, losses.target)
    assert {k for k, v in got.items() if v} == {"target_net", "target_head"}
    got = _grads(module, module.losses(batch).transform)  # type: ignore[arg-type]
    assert {k for k, v in got.items() if v} == {"user_net", "item_net", "transform"}
    got = _grads(module, module.losses(batch).source)
    assert {k for k, v in got.items() if v} == {"source_head"}
    total = module.losses(batch)
    torch.testing.assert_close(total.total(), total.source + total.target + total.transform)  # type: ignore[operator]


def test_transform_loss_moves_the_source_representation_toward_the_target() -> None:
    module, batch = _module()
    for p in [*module.target_net.parameters(), *module.target_head.parameters()]:
        p.requires_grad_(False)  # hold X_A fixed to measure the pull
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=0.01)

    def distance() -> float:
        with torch.no_grad():
            ud, idoc = module.documents(batch.users, batch.items, batch.rows)
            c = module.representation(module.user_vectors(ud), module.item_vectors(idoc))
            return float((c - module.target_vectors(module.target(batch.rows))).square().sum(1).mean())

    before = distance()
    for _ in range(30):
        opt.zero_grad()
        module.loss(batch).backward()
        opt.step()
    assert distance() < 0.5 * before


def test_ablation_without_transform_loss_trains_the_source_end_to_end() -> None:
    module, batch = _module(transform_loss=False)
    losses = module.losses(batch)
    assert losses.target is None and losses.transform is None
    got = _grads(module, losses.total())
    assert {k for k, v in got.items() if v} == {"user_net", "item_net", "transform", "source_head"}
    # the same tensors either way, so a bundle's layout does not depend on the switch
    assert set(module.state_dict()) == set(_module()[0].state_dict())


def test_ablation_without_attention_has_no_attention() -> None:
    model = fitted_model(epochs=1, attention=False)
    m = model.safmr_module
    assert not hasattr(m.source_head, "query") and not hasattr(m.target_head, "query")
    with pytest.raises(ConfigError, match="attention=False"):
        model.explain(["u0"], ["i0"])


# ------------------------------------------------------------------ the estimator
def test_global_bias_starts_at_the_training_mean() -> None:
    train, valid, _ = review_data()
    train = train.with_frame(
        train.frame.with_columns(pl.when(pl.col("rating") > 3).then(4.0).otherwise(1.0).alias("rating"))
    )
    model = SAFMR(**SMALL)
    model.fit(train, valid, side=side(train), trainer=TrainerConfig(epochs=1, lr=1e-12, progress=False))
    m = model.safmr_module
    # w_0 of both heads (the FM's first-order weights start at 0.001)
    for head in (m.source_head, m.target_head):
        assert float(head.bias) == pytest.approx(float(np.mean(train.ratings)), abs=1e-6)
    assert float(np.mean(train.ratings)) != pytest.approx(3.0)


def test_random_word_vectors_have_unit_norm() -> None:
    """Choice 15: N(0, 1/word_dim) vectors (TextCNN's own N(0, 1) would have norm √word_dim); padding is zero."""
    model = fitted_model(epochs=1, word_dim=32)
    norms = model.new_module(500, None).user_net.embedding.weight.detach().norm(dim=1)
    assert float(norms[0]) == 0.0
    assert 0.9 < float(norms[1:].mean()) < 1.1


def test_prediction_reads_no_target_review(tmp_path: Any) -> None:
    """Only the source network predicts: the target reviews can be anything, or absent (a loaded bundle)."""
    model = fitted_model(epochs=2)
    _, _, test = review_data()
    before = model.predict(test.users, test.items)
    m = model.safmr_module
    m.row_tokens = torch.randint(0, 5, m.row_tokens.shape)
    np.testing.assert_array_equal(model.predict(test.users, test.items), before)
    save_bundle(model, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert isinstance(loaded, SAFMR)
    assert loaded.safmr_module.row_tokens.shape[0] == 0  # the target reviews are not in the bundle
    np.testing.assert_array_equal(loaded.predict(test.users, test.items), before)
    frame = loaded.explain(
        list(test.user_vocab.ids[test.users[:3]]), list(test.item_vocab.ids[test.items[:3]])
    )
    assert frame.columns == [
        "user_id",
        "item_id",
        "predicted_rating",
        "attention",
        "top_feature",
        "top_share",
        "abs_cos",
        "has_text",
    ]
    np.testing.assert_allclose(frame["predicted_rating"].to_numpy(), before[:3], rtol=1e-6)
    # the rating explain reports is predict's, clipped to the training scale as predict clips it
    loaded.rating_range = (float(before.min()), float(np.median(before)))
    users, items = list(test.user_vocab.ids[test.users]), list(test.item_vocab.ids[test.items])
    clipped = loaded.predict(test.users, test.items)
    assert (clipped < before).any()
    np.testing.assert_allclose(
        loaded.explain(users, items)["predicted_rating"].to_numpy(), clipped, rtol=1e-6
    )
    summary = loaded.attention_summary(test)
    assert summary["n"] == len(test) and 0 < summary["entropy"] <= math.log(SMALL["cnn_out"]) + 1e-6
