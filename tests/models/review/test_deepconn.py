"""DeepCoNN: conformance, the FM term on a hand-computed case, the CNN text processor, documents at predict time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from attnrec.data.side import ReviewCorpus, SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.models.layers.text_cnn import TextCNN
from attnrec.models.review.base import FactorizationMachine
from attnrec.models.review.deepconn import DeepCoNN
from attnrec.testing import ConformanceTests, checkerboard, review_checkerboard
from attnrec.testing.data import TINY_REVIEW_MODEL
from attnrec.training.trainer import TrainerConfig

#: tiny sizes: the documents of the checkerboard are short
SMALL: dict[str, Any] = dict(TINY_REVIEW_MODEL)
TRAINER: dict[str, Any] = {"epochs": 20, "lr": 0.01, "batch_size": 64}


def fit_one_epoch(train: Interactions) -> DeepCoNN:
    """A small DeepCoNN after one epoch on ``train`` and its own reviews."""
    model = DeepCoNN(**SMALL)
    side = SideInputs(reviews=ReviewCorpus.from_split(train))
    model.fit(train, side=side, trainer=TrainerConfig(epochs=1, progress=False, device="cpu"))
    return model


class TestDeepCoNNConformance(ConformanceTests):
    model_class = DeepCoNN
    config = SMALL
    trainer = TRAINER

    @classmethod
    def data(cls) -> tuple[Any, Any, Any]:
        return review_checkerboard()

    @classmethod
    def side_inputs(cls) -> SideInputs:
        return SideInputs(reviews=ReviewCorpus.from_split(cls.data()[0]))


def test_fm_term_on_a_hand_computed_case() -> None:
    fm = FactorizationMachine(3, 2)
    with torch.no_grad():
        fm.w0.fill_(0.5)
        fm.linear.weight.copy_(torch.tensor([[1.0, -1.0, 2.0]]))
        fm.v.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    # w0 = 0.5; linear 1 - 2 + 6 = 5; pairs <v1,v2> 1*2 = 0, <v1,v3> 1*3 = 3, <v2,v3> 2*3 = 6 (no squares z_i^2)
    np.testing.assert_allclose(fm(z).detach().numpy(), [14.5, 0.5])


def test_deepconn_rates_the_user_item_concatenation() -> None:
    """ŷ = FM([x_u; y_i]): the user's vector fills the FM's first half, the item's the second."""
    train, _, _ = review_checkerboard()
    model = fit_one_epoch(train)
    m = model.review_module
    u, i = torch.randn(2, 4), torch.randn(2, 4)
    with torch.no_grad():
        fm = m.fm
        z = torch.cat([u, i], 1)
        pair = 0.5 * ((z @ fm.v).square() - z.square() @ fm.v.square()).sum(1)
        expected = fm.w0 + z @ fm.linear.weight[0] + pair
        np.testing.assert_allclose(m.rate(u, i).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(m.rate(u, i), m.rate(i, u))


def test_text_cnn_matches_a_direct_convolution() -> None:
    torch.manual_seed(0)
    net = TextCNN(vocab_size=6, word_dim=3, n_kernels=2, kernel_size=2, out_dim=1, dropout=0.0)
    tokens = torch.tensor([[2, 3, 0, 5], [1, 0, 0, 0]])
    emb = net.embedding.weight.detach()
    w, b = net.conv.weight.detach(), net.conv.bias.detach()  # (kernels, d, v)
    expected = torch.zeros(2, 2)
    for r in range(2):
        windows = [emb[tokens[r, t : t + 2]] for t in range(3)]  # (v, d) each: the "valid" positions
        acts = torch.stack([torch.relu((w * win.T).sum((1, 2)) + b) for win in windows])
        expected[r] = acts.max(0).values
    torch.testing.assert_close(net.feature_map(tokens), expected)
    assert net(tokens).shape == (2, 1)
    assert net.feature_map(torch.tensor([[2]])).shape == (1, 2)  # shorter than the kernel: padded


def test_text_cnn_gathered_windows_equal_conv1d_relu_max_and_its_gradients() -> None:
    """The gather/arg-max computation is nn.Conv1d -> ReLU -> max over time, forward and backward."""
    torch.manual_seed(1)
    net = TextCNN(vocab_size=30, word_dim=5, n_kernels=7, kernel_size=3, out_dim=2, dropout=0.0)
    tokens = torch.randint(1, 30, (9, 40))
    tokens[torch.rand(9, 40) < 0.3] = 0  # padding inside, as between the reviews of a document
    tokens[2:, 25:] = 0  # a padded tail
    tokens[0] = 0  # a document without a word
    tokens[1] = torch.arange(1, 41) % 29 + 1  # and one without padding
    with torch.no_grad():
        net.conv.bias[0] = 5.0  # kernel 0: a padding window (value b) is the max where there is one
    weights = torch.randn(7)

    def grads(pooled: torch.Tensor) -> list[torch.Tensor]:
        net.zero_grad()
        (pooled * weights).sum().backward()
        return [p.grad.clone() for p in (net.embedding.weight, net.conv.weight, net.conv.bias)]  # type: ignore[union-attr]

    fast = net.feature_map(tokens)
    fast_grads = grads(fast)
    ref = torch.relu(net.conv(net.embedding(tokens).transpose(1, 2))).amax(dim=2)
    torch.testing.assert_close(fast, ref)
    for got, want in zip(fast_grads, grads(ref), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_text_cnn_padding_is_zero_and_word_vectors_load() -> None:
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    net = TextCNN(4, 3, 2, 2, 1, 0.0, vectors)
    np.testing.assert_array_equal(net.embedding.weight.detach()[0].numpy(), 0)
    np.testing.assert_array_equal(net.embedding.weight.detach()[1:].numpy(), vectors[1:])
    net(torch.tensor([[0, 2, 3]])).sum().backward()
    assert net.embedding.weight.grad is not None
    np.testing.assert_array_equal(net.embedding.weight.grad[0].numpy(), 0)  # padding learns nothing
    with pytest.raises(ConfigError, match=r"word_vectors has shape \(4, 3\), expected \(5, 3\)"):
        TextCNN(5, 3, word_vectors=vectors)
    frozen = TextCNN(4, 3, 2, 2, 1, 0.0, vectors, freeze_words=True)
    assert not frozen.embedding.weight.requires_grad


def test_users_without_text_fall_back_to_padding_and_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    train, _, test = review_checkerboard()
    # user u writes empty reviews only: an all-padding document
    u = int(test.users[0])
    blank = pl.when(pl.col("user") == u).then(pl.lit("")).otherwise(pl.col("review")).alias("review")
    train = train.with_frame(train.frame.with_columns(blank))
    model = fit_one_epoch(train)
    assert model.text_stats["empty_reviews"] == int((train.users == u).sum())
    assert model.text_stats["users_without_text"] == 1
    np.testing.assert_array_equal(model.has_text(np.array([u, u + 1]), np.array([0, 0])), [False, True])
    with caplog.at_level(logging.INFO, logger="attnrec.models.review.base"):
        pred = model.predict(test.users, test.items)
    assert np.isfinite(pred).all()
    n0 = int((test.users == u).sum())
    assert f"{n0} of {len(test)} pairs have a user or item without training text" in caplog.text


def test_no_review_column_trains_on_padding_and_reviews_are_required() -> None:
    train, _, test = checkerboard()
    model = DeepCoNN(**SMALL)
    with pytest.raises(ConfigError, match="reviews"):
        model.fit(train, trainer=TrainerConfig(epochs=1, progress=False, device="cpu"))
    model = fit_one_epoch(train)
    assert model.text_stats["users_without_text"] == train.n_users
    assert np.isfinite(model.predict(test.users, test.items)).all()


def test_hide_target_review_blanks_the_rows_own_review() -> None:
    train, _, _ = review_checkerboard()
    model = fit_one_epoch(train)
    m = model.review_module
    rows = torch.nonzero(m.user_slot >= 0).flatten()[:5]
    users, items = torch.tensor(train.users)[rows], torch.tensor(train.items)[rows]
    hidden, _ = m.documents(users, items, rows)
    shown, _ = m.documents(users, items)
    R, L = m.user_docs.shape[1:]
    for k, r in enumerate(rows.tolist()):
        slot = int(m.user_slot[r])
        view = hidden[k].reshape(R, L)
        assert (view[slot] == 0).all() and (shown[k].reshape(R, L)[slot] == m.row_tokens[r]).all()
        others = [s for s in range(R) if s != slot]
        assert torch.equal(view[others], shown[k].reshape(R, L)[others])


def test_skipgram_option_initialises_both_towers_from_the_training_reviews() -> None:
    pytest.importorskip("gensim", reason="gensim (the 'reviews' extra) is not installed")
    from attnrec.data.reviews import tokenize
    from attnrec.text.word2vec import skipgram_vectors

    train, _, _ = review_checkerboard()
    model = DeepCoNN(**{**SMALL, "word_vectors": "skipgram", "freeze_words": True, "skipgram_epochs": 1})
    side = SideInputs(reviews=ReviewCorpus.from_split(train))
    model.fit(train, side=side, trainer=TrainerConfig(epochs=1, progress=False, device="cpu"))
    assert model.vocab is not None
    expected = skipgram_vectors(
        tokenize(train.frame["review"]), model.vocab, SMALL["word_dim"], seed=model.config.seed, epochs=1
    )
    m = model.review_module
    for tower in (m.user_net, m.item_net):
        np.testing.assert_array_equal(tower.embedding.weight.detach().numpy(), expected)


def test_predictions_are_clipped_to_the_training_scale_and_the_bundle_keeps_it(tmp_path: Path) -> None:
    from attnrec.serving.bundle import load_bundle, save_bundle

    train, _, test = review_checkerboard()
    model = fit_one_epoch(train)
    assert model.rating_range == (float(train.ratings.min()), float(train.ratings.max()))
    model.rating_range = (2.0, 3.0)  # narrower than any fit: every prediction hits a bound
    pred = model.predict(test.users, test.items)
    assert pred.min() >= 2.0 and pred.max() <= 3.0
    raw = model.score_users(test.users[:1]).numpy()[0]  # rankings are not clipped
    np.testing.assert_allclose(np.clip(raw[test.items[:1]], 2.0, 3.0), pred[:1], rtol=1e-5)
    save_bundle(model, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.rating_range == (2.0, 3.0)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(loaded.predict(test.users, test.items), pred)  # type: ignore[attr-defined]
