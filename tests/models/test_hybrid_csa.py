"""hybrid_csa: conformance, one check per equation (6-16), fusion ablations, the leakage guarantee, text queries,
cold-start items, explanations and bundles. Texts are encoded by HashingTextModel (fast, deterministic, offline)."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from attnrec.data.side import SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError, MissingExtraError
from attnrec.evaluation.protocols import evaluate
from attnrec.models.layers.attention import SelfAttentionBlock, attention_shares
from attnrec.models.rating.hybrid_csa import (
    FitInputs,
    HybridCSA,
    HybridCSAModule,
    fit_text_to_factors,
    text_to_factors,
)
from attnrec.models.rating.hybrid_csa.inference import top_stable
from attnrec.models.rating.hybrid_csa.inputs import crossfit_tables
from attnrec.models.rating.hybrid_csa.module import projection
from attnrec.models.rating.svd import SVD
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import ConformanceTests, checkerboard
from attnrec.text import HashingTextModel, SentenceEncoder
from attnrec.training.trainer import TrainerConfig

CONFIG: dict[str, Any] = {"svd_factors": 8, "svd_iterations": 4, "d_model": 16, "heads": 2, "mlp_hidden": 8}
TRAINER: dict[str, Any] = {"epochs": 10, "lr": 1e-2, "batch_size": 64}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: thread hand-offs cost more than the work on a busy 2-core box
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class RecordingModel(HashingTextModel):
    """HashingTextModel that remembers every text it was asked to encode."""

    def __init__(self) -> None:
        super().__init__(dim=32, max_seq_length=64)
        self.seen_texts: list[str] = []

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
        self.seen_texts.extend(sentences)
        return super().encode(sentences, **kwargs)


def encoder(model: HashingTextModel | None = None) -> SentenceEncoder:
    return SentenceEncoder(model or HashingTextModel(dim=32), progress=False)


def item_meta(train: Interactions) -> pl.DataFrame:
    """Checkerboard has no text: item k gets "group a/b item k" by its group (parity)."""
    ids = train.item_vocab.ids
    return pl.DataFrame({"item_id": ids, "title": [f"group {'ab'[k % 2]} item {k}" for k in range(len(ids))]})


def trainer(**kw: Any) -> TrainerConfig:
    return TrainerConfig(**{"progress": False, "device": "cpu", **TRAINER, **kw})


def fit_model(epochs: int = 4, enc: SentenceEncoder | None = None, **cfg: Any) -> HybridCSA:
    train, valid, _ = checkerboard()
    m = HybridCSA(**{**CONFIG, **cfg})
    m.fit(
        train,
        valid,
        trainer=trainer(epochs=epochs),
        side=SideInputs(items=item_meta(train)),
        encoder=enc or encoder(),
    )
    return m


@pytest.fixture(scope="module")
def fitted() -> HybridCSA:
    return fit_model(epochs=10)


class TestHybridCSAConformance(ConformanceTests):
    model_class = HybridCSA
    config = CONFIG
    trainer = TRAINER

    @classmethod
    def fit_kwargs(cls) -> dict[str, Any]:
        return {"encoder": encoder()}

    @classmethod
    def side_inputs(cls) -> SideInputs:
        return SideInputs(items=item_meta(cls.data()[0]))

    def test_loss_decreases(self, fit_result) -> None:  # stronger than the shared test: the loss halves
        _, report = fit_result
        losses = [row["loss"] for row in report.history]
        assert losses[-1] < 0.5 * losses[0]


def assert_bundle_reproduces(fitted: HybridCSA) -> None:
    """save_bundle + load_bundle gives the same test predictions, bit for bit; the manifest names the class by
    the path bundles have always recorded (the package re-exports it from its model.py)."""
    _, _, test = checkerboard()
    with tempfile.TemporaryDirectory() as tmp:
        save_bundle(fitted, tmp)
        manifest = json.loads((Path(tmp) / "manifest.json").read_text())
        loaded = load_bundle(tmp)
    assert manifest["model_class"] == "attnrec.models.rating.hybrid_csa:HybridCSA"
    np.testing.assert_array_equal(
        loaded.predict(test.users, test.items), fitted.predict(test.users, test.items)
    )


# ------------------------------------------------------------------------------------------ one test per equation
def small_module(fusion: str = "attention", user_text: bool = False, **kw: Any) -> HybridCSAModule:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    m = HybridCSAModule(
        torch.randn(6, 5, generator=g),
        torch.randn(7, 5, generator=g),
        torch.randn(7, 12, generator=g),
        torch.randn(6, 12, generator=g) if user_text else None,
        d_model=8,
        heads=2,
        dropout=0.2,
        mlp_hidden=4,
        fusion=fusion,  # type: ignore[arg-type]
        freeze_svd=True,
        **kw,
    )
    return m.eval()


def test_eq6_9_projections_batchnorm_and_stacking():
    m = small_module()
    users, items = torch.tensor([0, 3, 5]), torch.tensor([1, 1, 6])
    text = m.item_text[items]
    x = m.stack(m.user_tokens(users), m.item_token(items), m.text_token(text))
    assert x.shape == (3, 3, 8)
    assert m.token_names == ("user", "item", "text")
    # eq. 6-8, each followed by BatchNorm1d (eval: running statistics)
    for j, (proj, inp) in enumerate(
        [(m.proj_user, m.user_factors[users]), (m.proj_item, m.item_factors[items]), (m.proj_text, text)]
    ):
        lin, bn = proj[0], proj[1]
        assert isinstance(bn, torch.nn.BatchNorm1d)
        expect = (inp @ lin.weight.T + lin.bias - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
        expect = expect * bn.weight + bn.bias
        torch.testing.assert_close(x[:, j], expect)
    # text_source="item+user": a fourth token from the user's text
    m4 = small_module(user_text=True)
    x4 = m4.stack(m4.user_tokens(users), m4.item_token(items), m4.text_token(text))
    assert x4.shape == (3, 4, 8) and m4.token_names[-1] == "user_text"


@pytest.mark.parametrize("tokens", [3, 6])  # the broadcasting path for a few tokens, the matmul path beyond
def test_eq10_12_attention_is_multihead_attention_and_weights_are_distributions(tokens):
    torch.manual_seed(0)
    block = SelfAttentionBlock(8, 2, norm="none", residual=False).eval()
    x = torch.randn(5, tokens, 8)
    out, w = block(x)
    assert out.shape == (5, tokens, 8) and w.shape == (5, 2, tokens, tokens)
    torch.testing.assert_close(w.sum(-1), torch.ones(5, 2, tokens))
    # the same as torch's reference multi-head attention with the same weights (eq. 11-12)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(block.qkv.weight)
        ref.in_proj_bias.copy_(block.qkv.bias)
        ref.out_proj.weight.copy_(block.out.weight)
        ref.out_proj.bias.copy_(block.out.bias)
    ref_out, ref_w = ref(x, x, x, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    # a padded token is ignored exactly as torch ignores it
    pad = torch.zeros(5, tokens, dtype=torch.bool)
    pad[:, -1] = True
    out_m, w_m = block(x, key_padding_mask=pad)
    ref_out_m, ref_w_m = ref(x, x, x, key_padding_mask=pad, average_attn_weights=False)
    torch.testing.assert_close(out_m, ref_out_m)
    torch.testing.assert_close(w_m, ref_w_m)
    shares = attention_shares(w)
    assert shares.shape == (5, tokens)
    torch.testing.assert_close(shares.sum(-1), torch.ones(5))
    torch.testing.assert_close(shares, w.mean(1).mean(1))  # mean over heads, then over query tokens


def test_layer_norm_placement():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8) * 50 + 7
    pre = SelfAttentionBlock(8, 2, norm="pre").eval()
    # pre-norm: the block sees LN(X), so shifting and scaling every token leaves the output unchanged
    torch.testing.assert_close(pre(x)[0], pre(3 * x + 1)[0], rtol=1e-4, atol=1e-4)
    post = SelfAttentionBlock(8, 2, norm="post", residual=True).eval()
    out, _ = post(x)
    torch.testing.assert_close(out.mean(-1), torch.zeros(4, 3), atol=1e-5, rtol=0)  # post-LN output rows


@pytest.mark.parametrize(
    ("norm", "residual"), [("pre", False), ("pre", True), ("post", True), ("none", False)]
)
@pytest.mark.parametrize("tokens", [3, 6])
def test_attention_on_shared_tokens_projected_once_equals_the_block(norm, residual, tokens):
    """project(table)[index] then mix == the block on table[index]; pool=True == mean over tokens."""
    torch.manual_seed(0)
    block = SelfAttentionBlock(8, 2, norm=norm, residual=residual).eval()
    table = torch.randn(5, 8)
    index = torch.randint(0, 5, (4, tokens), generator=torch.Generator().manual_seed(1))
    x = table[index]
    out, w = block(x)
    mixed, w2 = block.mix(block.project(table)[index], x)
    torch.testing.assert_close(mixed, out)
    torch.testing.assert_close(w2, w)
    pooled, _ = block.mix(block.project(table)[index], x, pool=True)
    torch.testing.assert_close(pooled, out.mean(1))


@pytest.mark.parametrize(
    ("norm", "residual"), [("pre", False), ("pre", True), ("post", True), ("none", False)]
)
def test_mix_tokens_on_shared_tokens_equals_mix_on_the_stack(norm, residual):
    """Tokens given one by one and broadcast over a (Q, P) batch — one shared by every pair, one per row, one per
    pair — give mix()'s pooled output and weights on the stacked, broadcast tokens."""
    torch.manual_seed(0)
    block = SelfAttentionBlock(8, 2, norm=norm, residual=residual).eval()
    tokens = [torch.randn(1, 1, 8), torch.randn(3, 5, 8), torch.randn(3, 1, 8)]
    flat = torch.stack(torch.broadcast_tensors(*tokens), dim=2).reshape(15, 3, 8)
    want, w_want = block.mix(block.project(flat), flat, pool=True)
    got, w = block.mix_tokens([block.project(t) for t in tokens], tokens)
    assert got.shape == (3, 5, 8) and w.shape == (3, 5, 2, 3, 3)
    torch.testing.assert_close(got.reshape(15, 8), want)
    torch.testing.assert_close(w.reshape(15, 2, 3, 3), w_want)
    every, _ = block.mix_tokens([block.project(t) for t in tokens], tokens, pool=False)
    assert every.shape == (3, 5, 3, 8)
    torch.testing.assert_close(every.reshape(15, 3, 8), block.mix(block.project(flat), flat)[0])
    if residual or norm == "post":
        with pytest.raises(ConfigError, match="input tokens"):
            block.mix_tokens([block.project(t) for t in tokens])


def test_concat_pooling_feeds_the_attended_tokens_side_by_side():
    """pooling="concat" (not the paper): the MLP reads the block's T outputs concatenated, in token order."""
    m = small_module(pooling="concat")
    block = m.attention
    assert block is not None and m.mlp.net[0].in_features == 3 * 8  # type: ignore[union-attr]
    x = torch.randn(4, 3, 8)
    with torch.no_grad():
        pred, w = m.fuse(x)
        out, w_ref = block(x)
        torch.testing.assert_close(pred, m.mlp(out.flatten(1)).squeeze(-1))
        swapped, _ = m.fuse(x[:, [1, 0, 2]])  # token order matters now (it does not for the mean)
    torch.testing.assert_close(w, w_ref.mean(1))
    assert not torch.allclose(pred, swapped)
    with pytest.raises(ValueError, match="concat_mlp"):
        HybridCSA(pooling="concat", fusion="concat_mlp")
    assert_bundle_reproduces(fit_model(epochs=2, pooling="concat", attn_residual=True))  # the wider MLP


def test_eq13_mean_pooling_equals_share_weighted_values():
    """With pre-LN and no residual, mean_q Z_q = W_O concat_h(Σ_t share_{h,t} V_{h,t}) + b_O: the shares we
    report are exactly each token's weight in the pooled vector."""
    m = small_module()
    block = m.attention
    assert block is not None
    x = torch.randn(4, 3, 8)
    z, w = block(x)
    pooled = z.mean(1)
    v = block.qkv(block.norm(x))[..., 16:].view(4, 3, 2, 4).transpose(1, 2)  # (B, H, T, dh)
    per_head_share = w.mean(2)  # (B, H, T): mean over queries
    mixed = (per_head_share[..., None] * v).sum(2).reshape(4, 8)
    torch.testing.assert_close(pooled, block.out(mixed))


def test_eq14_16_mlp_shapes_and_mse_loss():
    m = small_module()
    lin1, bn, _relu, drop, lin2 = m.mlp.net
    assert (lin1.in_features, lin1.out_features) == (8, 4)
    assert isinstance(bn, torch.nn.BatchNorm1d) and isinstance(drop, torch.nn.Dropout) and drop.p == 0.2
    assert (lin2.in_features, lin2.out_features) == (4, 1)
    x = torch.randn(5, 3, 8)
    pred, w = m.fuse(x)
    assert pred.shape == (5,) and w is not None and w.shape == (5, 3, 3)
    torch.testing.assert_close(pred, m.mlp(m.attention(x)[0].mean(1)).squeeze(-1))  # type: ignore[misc]
    from attnrec.models.rating.hybrid_csa import HybridBatch

    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    ratings = torch.tensor([1.0, 3.0, 5.0])
    no = torch.zeros(3, dtype=torch.bool)
    batch = HybridBatch(users, items, ratings, m.item_text[items], no, no)
    pred, _ = m(users, items, m.item_text[items])
    torch.testing.assert_close(m.loss(batch), ((pred - ratings) ** 2).mean())


def test_unknown_user_token_replaces_the_user_vector():
    m = small_module()
    users = torch.tensor([0, 1])
    with torch.no_grad():
        m.unknown_user.fill_(0.5)
    (u,) = m.user_tokens(users, torch.tensor([True, False]))
    (ref,) = m.user_tokens(torch.tensor([0, 1]))
    torch.testing.assert_close(u[1], ref[1])
    torch.testing.assert_close(u[0], m.proj_user(torch.full((1, 5), 0.5))[0])


# ------------------------------------------------------------------------------------------ fusion variants
def test_fusion_variants_differ():
    _, _, test = checkerboard()
    text_only = fit_model(fusion="text_only")
    assert text_only.csa.token_names == ("text",)
    pred = text_only.predict(test.users, test.items)
    swapped = text_only.predict(np.roll(test.users, 7), test.items)
    np.testing.assert_array_equal(pred, swapped)  # no user token: users cannot matter
    concat = fit_model(fusion="concat_mlp")
    assert concat.csa.attention is None and concat.csa.mlp.net[0].in_features == 3 * CONFIG["d_model"]
    c_pred = concat.predict(test.users, test.items)
    assert not np.allclose(c_pred, concat.predict(np.roll(test.users, 7), test.items))
    assert np.isnan(concat.explain(["u0"], ["i0"])["share_user"][0])
    shares = text_only.explain(["u0"], ["i0"])
    assert shares["share_text"][0] == pytest.approx(1.0) and shares["share_user"][0] == 0.0


def test_config_validation():
    with pytest.raises(ConfigError, match="divisible"):
        HybridCSA(d_model=10, heads=4)
    with pytest.raises(ConfigError, match="fusion"):
        HybridCSA(fusion="sum")


# ------------------------------------------------------------------------------------------ leakage
def with_reviews() -> tuple[Interactions, Interactions, Interactions]:
    """Checkerboard splits with a review per row whose words name the split ("validsecret3", ...)."""
    out = []
    for name, part in zip(("train", "valid", "test"), checkerboard(), strict=True):
        df = part.decode().with_row_index("k")
        df = df.with_columns(
            pl.format("{}secret{} stars {}", pl.lit(name), pl.col("k"), pl.col("rating").round(0)).alias(
                "review"
            )
        ).drop("k")
        out.append(Interactions.encode(df, part.user_vocab, part.item_vocab)[0])
    return out[0], out[1], out[2]


def test_default_mode_never_encodes_validation_or_test_reviews():
    train, valid, test = with_reviews()
    model = RecordingModel()
    m = HybridCSA(**CONFIG, text_source="item+user")
    m.fit(train, valid, trainer=trainer(epochs=2), encoder=encoder(model))  # item text = training reviews
    evaluate(m, valid)
    evaluate(m, test)
    m.predict_interactions(test)
    m.explain(["u0"], ["i1"])
    m.recommend(["u0"], k=3)
    m.recommend_by_text("stars 5", user="u0")
    m.attention_report(test, train)
    seen = " ".join(model.seen_texts)
    assert "trainsecret" in seen  # the recorder works: training reviews were encoded
    assert "validsecret" not in seen and "testsecret" not in seen
    assert not m.leaky and "leaky" not in evaluate(m, test)


def test_leaky_mode_uses_own_reviews_and_flags_everything():
    train, valid, test = with_reviews()
    model = RecordingModel()
    m = HybridCSA(**CONFIG, target_review_leakage=True)
    report = m.fit(train, valid, trainer=trainer(epochs=2), encoder=encoder(model))
    assert report.best_valid["leaky"]
    assert any("validsecret" in t for t in model.seen_texts)  # early stopping read valid rows' own reviews
    metrics = evaluate(m, test)
    assert m.leaky is True and metrics["n"] == len(test)
    assert any("testsecret" in t for t in model.seen_texts)
    with pytest.raises(ConfigError, match="target_review_leakage"):
        m.predict(test.users, test.items)
    with pytest.raises(ConfigError, match="target_review_leakage"):
        m.explain(["u0"], ["i1"])
    assert m.explain(["u0"], ["i1"], texts=["great stars 5"])["leaky"].to_list() == [True]
    assert m.attention_report(test, train)["leaky"].all()
    assert m.recommend_by_text("stars 5")["leaky"].all()
    with tempfile.TemporaryDirectory() as tmp:
        save_bundle(m, tmp)
        loaded = load_bundle(tmp)
    loaded.set_encoder(encoder())  # type: ignore[attr-defined]
    assert loaded.leaky is True and evaluate(loaded, test) == metrics


def test_leaky_mode_needs_reviews():
    train, valid, _ = checkerboard()
    with pytest.raises(ConfigError, match="review"):
        HybridCSA(**CONFIG, target_review_leakage=True).fit(
            train,
            valid,
            trainer=trainer(epochs=1),
            side=SideInputs(items=item_meta(train)),
            encoder=encoder(),
        )
    with pytest.raises(ConfigError, match="item text"):
        HybridCSA(**CONFIG).fit(train, valid, trainer=trainer(epochs=1), encoder=encoder())


# ------------------------------------------------------------------------------------------ text queries
def test_recommend_by_text_known_and_unknown_users(fitted: HybridCSA, caplog):
    train, _, _ = checkerboard()
    recs = fitted.recommend_by_text("group a item", user="u0", k=5)
    assert recs.columns == [
        "item_id",
        "title",
        "predicted_rating",
        "share_user",
        "share_item",
        "share_text",
        "relevance",
        "score",
        "new_user",
    ]
    assert recs.height == 5 and not recs["new_user"].any()
    seen = set(train.decode().filter(pl.col("user_id") == "u0")["item_id"].to_list())
    assert not seen & set(recs["item_id"].to_list())
    assert np.all(np.diff(recs["score"].to_numpy()) <= 1e-6)  # ranked by the blend of relevance and rating
    # u0 is in group 0: its top items are group "a" items (even indices), as the planted pattern says
    assert all(t.startswith("group a") for t in recs["title"].to_list())
    total = recs.select(pl.col("share_user") + pl.col("share_item") + pl.col("share_text"))
    np.testing.assert_allclose(total.to_series().to_numpy(), 1.0, atol=1e-5)

    anon = fitted.recommend_by_text("group a item", k=4)
    stranger = fitted.recommend_by_text("group a item", user="nobody", k=4)
    assert anon["new_user"].all() and anon.equals(stranger)
    other = fitted.recommend_by_text("zzz qqq", k=4)
    assert not np.allclose(other["predicted_rating"].to_numpy(), anon["predicted_rating"].to_numpy())

    for bad in ("", "   "):
        with pytest.raises(DataError, match="query"):
            fitted.recommend_by_text(bad)
    enc = fitted.encoder
    hits = enc.query_hits
    fitted.recommend_by_text("group a item", k=2)
    assert enc.query_hits == hits + 1  # the LRU served the repeated query
    with caplog.at_level(logging.WARNING, logger="attnrec.models.rating.hybrid_csa"):
        long = fitted.recommend_by_text(" ".join(["cable"] * 200), k=2)
    assert long.height == 2 and fitted.last_query_truncated
    assert "truncated" in caplog.text
    fitted.recommend_by_text("short query", k=2)
    assert not fitted.last_query_truncated


class ReportingModel(HashingTextModel):
    """A query model that reports what its last encode() truncated (as attnrec.text.fast's does) and must not be
    tokenized a second time."""

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
        self.last_truncated = sum(len(s.split()) > self.max_seq_length - 2 for s in sentences)
        return super().encode(sentences, **kwargs)

    def tokenizer(self, texts: list[str], **_: Any) -> dict[str, list[list[int]]]:
        raise AssertionError("the query was tokenized a second time")


def test_a_query_model_that_reports_truncation_is_not_tokenized_again(caplog):
    model = fit_model(epochs=1)
    model.set_encoder(
        SentenceEncoder(HashingTextModel(dim=32), query_model=ReportingModel(dim=32), progress=False)
    )
    with caplog.at_level(logging.WARNING, logger="attnrec.models.rating.hybrid_csa"):
        model.recommend_by_text(" ".join(["cable"] * 200), k=2)
    assert model.last_query_truncated and "truncated" in caplog.text
    model.recommend_by_text("short query", k=2)
    assert not model.last_query_truncated


# ------------------------------------------------------------------------------------------ cold start
def test_ridge_map_recovers_a_planted_linear_relation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    w_true = rng.normal(size=(16, 4)).astype(np.float32)
    b_true = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    y = x @ w_true + b_true + rng.normal(0, 0.01, size=(300, 4)).astype(np.float32)
    w = fit_text_to_factors(x, y, reg=1e-3)
    assert w.shape == (17, 4)
    np.testing.assert_allclose(w[:-1].numpy(), w_true, atol=0.01)
    np.testing.assert_allclose(w[-1].numpy(), b_true, atol=0.01)
    x_new = rng.normal(size=(5, 16)).astype(np.float32)
    np.testing.assert_allclose(text_to_factors(x_new, w).numpy(), x_new @ w_true + b_true, atol=0.05)


def test_cold_start_items_get_finite_scores_and_follow_their_text():
    m = fit_model(epochs=10)
    n0 = m.n_items
    idx = m.add_items(["new-a", "new-b"], ["group a item fresh", "group b item fresh"], titles=["A", "B"])
    np.testing.assert_array_equal(idx, [n0, n0 + 1])
    assert m.n_items == n0 + 2 and m.titles is not None and m.titles[-2:] == ["A", "B"]
    assert m.seen is not None and m.seen.shape == (m.n_users, n0 + 2)
    users = np.arange(m.n_users)
    scores = m.score_users(users).numpy()
    assert scores.shape == (m.n_users, n0 + 2) and np.isfinite(scores).all()
    even = users % 2 == 0
    # the group-a newcomer is liked by group-0 users more than by group-1 users, and the reverse for group b
    assert scores[even, n0].mean() > scores[~even, n0].mean()
    assert scores[~even, n0 + 1].mean() > scores[even, n0 + 1].mean()
    ratings = m.predict(m.user_vocab.lookup(["u0", "u1"]), m.item_vocab.lookup(["new-a", "new-a"]))
    assert np.isfinite(ratings).all()
    assert "new-a" in m.recommend_by_text("fresh", k=m.n_items)["item_id"].to_list()
    with pytest.raises(DataError, match="already"):
        m.add_items(["i0"], ["x"])
    with pytest.raises(DataError, match="empty"):
        m.add_items(["new-c"], ["  "])
    frame = pl.DataFrame({"item_id": ["i0", "new-d", "new-e"], "title": ["x", "group a item d", ""]})
    added = m.add_items_from_frame(frame)  # i0 is known, new-e has no text
    assert m.item_vocab is not None and list(m.item_vocab.ids[added]) == ["new-d"]
    with tempfile.TemporaryDirectory() as tmp:
        save_bundle(m, tmp)
        loaded = load_bundle(tmp)
    assert torch.equal(loaded.score_users(users), m.score_users(users))


def test_cold_item_rows_use_the_text_maps_in_training_and_for_new_items():
    bu, bi = torch.randn(6), torch.randn(7)
    m = small_module(mu=3.5, biases=(bu, bi))
    m.fit_cold_maps(0.5)
    # the maps are the ridge fits of the item text to the factors and to the biases
    torch.testing.assert_close(m.cold_map, fit_text_to_factors(m.item_text, m.item_factors, 0.5))
    torch.testing.assert_close(m.cold_bias_map, fit_text_to_factors(m.item_text, bi[:, None], 0.5))
    items = torch.tensor([0, 3, 5])
    cold = torch.tensor([False, True, False])
    f, b = m.item_rows(items, cold)
    assert b is not None
    torch.testing.assert_close(f[[0, 2]], m.item_factors[[0, 5]])
    torch.testing.assert_close(b[[0, 2]], bi[[0, 5]])
    torch.testing.assert_close(f[1], text_to_factors(m.item_text[3:4], m.cold_map)[0])
    torch.testing.assert_close(b[1], text_to_factors(m.item_text[3:4], m.cold_bias_map)[0, 0])
    # the forward pass (residual term and item token) sees exactly those rows
    users = torch.tensor([0, 1, 2])
    with torch.no_grad():
        pred, _ = m(users, items, m.item_text[items], None, cold)
        svd = 3.5 + bu[users] + b + (m.user_factors[users] * f).sum(-1)
        x = m.stack(m.user_tokens(users), m.proj_item(f), m.text_token(m.item_text[items]))
        torch.testing.assert_close(pred, m.fuse(x)[0] + svd)
        plain, _ = m(users, items, m.item_text[items])
    assert not torch.allclose(pred[1], plain[1]) and torch.allclose(pred[[0, 2]], plain[[0, 2]])
    # a new item gets the text-predicted bias (not 0) next to its text-predicted factors
    new_text = torch.randn(2, 12)
    m.append_items(text_to_factors(new_text, m.cold_map), new_text)
    torch.testing.assert_close(m.item_bias[7:], text_to_factors(new_text, m.cold_bias_map)[:, 0])

    # in fit(): about cold_item_rate of the training rows are marked cold
    model = HybridCSA(**CONFIG, cold_item_rate=0.3)
    train, valid, _ = checkerboard()
    model.fit(
        train, valid, trainer=trainer(epochs=1), side=SideInputs(items=item_meta(train)), encoder=encoder()
    )
    m = model.csa
    model._inputs = FitInputs(m.user_factors, m.item_factors, m.item_text, None, None, 0.0, None, None, None)
    batches = list(model.train_batches(train, 0, torch.Generator().manual_seed(0), 64))
    share = float(torch.cat([bt.cold_item for bt in batches]).float().mean())
    assert 0.2 < share < 0.4, share
    model._inputs = None


# ------------------------------------------------------------------------------------------ explanations
def test_explain_and_attention_report(fitted: HybridCSA):
    train, _, test = checkerboard()
    ex = fitted.explain(["u0", "u1", "u2"], ["i0", "i3", "i5"])
    assert ex.columns == ["user_id", "item_id", "predicted_rating", "share_user", "share_item", "share_text"]
    np.testing.assert_allclose(
        ex["predicted_rating"].to_numpy(),
        fitted.predict(
            train.user_vocab.lookup(["u0", "u1", "u2"]), train.item_vocab.lookup(["i0", "i3", "i5"])
        ),
    )
    np.testing.assert_allclose(ex.select(pl.sum_horizontal(pl.col("^share_.*$"))).to_series(), 1.0, atol=1e-5)
    rep = fitted.attention_report(test, train)
    assert rep.columns == ["bucket", "n", "share_user", "share_item", "share_text", "rmse"]
    assert rep["n"].sum() == len(test)
    history = np.bincount(train.users, minlength=train.n_users)[test.users]
    expect = {"<=5": (history <= 5).sum(), "6-20": ((history > 5) & (history <= 20)).sum()}
    expect |= {"21-50": ((history > 20) & (history <= 50)).sum(), ">50": (history > 50).sum()}
    assert dict(zip(rep["bucket"], rep["n"], strict=True)) == {k: v for k, v in expect.items() if v}
    rmse = np.sqrt(np.average(rep["rmse"].to_numpy() ** 2, weights=rep["n"].to_numpy()))
    assert rmse == pytest.approx(evaluate(fitted, test)["rmse"], rel=1e-5)


# ------------------------------------------------------------------------------------------ SVD and bundles
def test_svd_frozen_or_fine_tuned():
    frozen = fit_model(epochs=2)
    assert "user_factors" in dict(frozen.csa.named_buffers())
    assert all(n not in dict(frozen.csa.named_parameters()) for n in ("user_factors", "item_factors"))
    tuned = fit_model(epochs=2, freeze_svd=False)
    params = dict(tuned.csa.named_parameters())
    assert "user_factors" in params and "item_factors" in params
    # the same seed gives the same SVD start; fine-tuning moved it
    assert not torch.allclose(tuned.csa.user_factors, frozen.csa.user_factors)
    biased = fit_model(epochs=1, svd_biases=True)
    assert biased.csa.user_factors.shape[1] == CONFIG["svd_factors"] + 1


def test_bundle_roundtrip_item_user_text_and_queries():
    train, _, test = with_reviews()
    m = HybridCSA(**CONFIG, text_source="item+user", freeze_svd=False)
    m.fit(train, None, trainer=trainer(epochs=2), side=SideInputs(items=item_meta(train)), encoder=encoder())
    state = m.state_tensors()
    for key in ("user_factors", "item_factors", "item_text", "user_text", "cold_map", "unknown_user"):
        assert key in state
    with tempfile.TemporaryDirectory() as tmp:
        save_bundle(m, tmp)
        loaded = load_bundle(tmp)
    assert isinstance(loaded, HybridCSA) and loaded._encoder is None  # the encoder is loaded lazily
    np.testing.assert_array_equal(loaded.predict(test.users, test.items), m.predict(test.users, test.items))
    assert loaded.titles == m.titles and loaded.encoder_info == m.encoder_info
    loaded.set_encoder(encoder())
    a = loaded.recommend_by_text("group b item", user="u3", k=5)
    b = m.recommend_by_text("group b item", user="u3", k=5)
    assert a.equals(b) and "share_user_text" in a.columns


def test_svd_residual_adds_the_svd_prediction_and_survives_a_bundle():
    bu, bi = torch.randn(6), torch.randn(7)
    m = small_module(mu=3.5, biases=(bu, bi))
    last = m.mlp.net[-1]
    assert isinstance(last, torch.nn.Linear)
    # the MLP starts as a zero correction: the untrained model predicts exactly the SVD's rating
    assert float(last.bias.detach()) == 0.0 and not last.weight.detach().any()
    users, items = torch.tensor([0, 1, 5, 2]), torch.tensor([6, 0, 3, 3])
    with torch.no_grad():
        pred, _ = m(users, items, m.item_text[items])
    expected = 3.5 + bu[users] + bi[items] + (m.user_factors[users] * m.item_factors[items]).sum(-1)
    torch.testing.assert_close(pred, expected)
    # the grid path adds the same term; the unknown user gets the learned unknown vector and bias
    unknown = torch.tensor([False, True])
    with torch.no_grad():
        grid, _ = m.score_grid(torch.tensor([0, 1]), unknown, torch.arange(7), m.item_text)
    full = 3.5 + bu[0] + bi + m.user_factors[0] @ m.item_factors.T
    torch.testing.assert_close(grid[0], full)
    new_user = 3.5 + bi + m.unknown_user @ m.item_factors.T
    torch.testing.assert_close(grid[1], new_user)
    with pytest.raises(ValueError, match="svd_biases"):
        HybridCSA(svd_residual=True, svd_biases=True)

    fitted = fit_model(epochs=2, svd_residual=True)
    assert_bundle_reproduces(fitted)
    assert "user_bias" in fitted.state_tensors()


def test_text_query_candidates_and_the_cli(fitted: HybridCSA, tmp_path, monkeypatch, capsys):
    import sys

    import attnrec.models.rating.hybrid_csa.core as mod  # where the encoder is built
    from attnrec.cli import main

    everything = fitted.recommend_by_text("group b item", k=fitted.n_items, candidates=None)
    assert everything.height == fitted.n_items
    few = fitted.recommend_by_text("group b item", k=fitted.n_items, candidates=3)
    assert few.height == 3  # only the three items whose text is closest to the query are ranked
    assert set(few["relevance"]) <= set(everything.sort("relevance", descending=True)["relevance"].head(3))
    with pytest.raises(DataError, match="candidates"):
        fitted.recommend_by_text("group b item", candidates=0)

    class Offline(SentenceEncoder):  # the bundle's lazily built encoder, without the real sentence model
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(HashingTextModel(dim=32), progress=False)

    monkeypatch.setattr(mod, "SentenceEncoder", Offline)
    train, _, _ = checkerboard()
    save_bundle(fitted, tmp_path / "model", items=item_meta(train))
    out = tmp_path / "recs.csv"

    def cli(*args: str) -> int:
        monkeypatch.setattr(
            sys, "argv", ["attnrec", "recommend", "--model-dir", str(tmp_path / "model"), *args]
        )
        try:
            main()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    assert cli("--query", "group a item", "--user", "nobody", "--k", "4", "--out", str(out)) == 0
    recs = pl.read_csv(out)
    assert recs.height == 4 and recs["new_user"].all() and "share_text" in recs.columns
    assert "served as a new user" in capsys.readouterr().out
    assert cli("--query", "  ") == 2
    assert "query" in capsys.readouterr().err
    assert cli("--query", "x", "--users", "1") == 2


def test_batch_of_queries_matches_one_at_a_time(fitted: HybridCSA):
    queries = ["group a item", "group b item 3", "group a item"]
    enc = fitted.encoder
    hits, misses = enc.query_hits, enc.query_misses
    batch = fitted.recommend_by_texts(queries, user="u1", k=4)
    assert enc.query_misses - misses <= 2  # the repeated query is encoded once
    assert batch.columns[0] == "query" and batch.height == 12
    for i, q in enumerate(queries):
        one = fitted.recommend_by_text(q, user="u1", k=4)
        part = batch.filter(pl.col("query") == i).drop("query")
        assert part["item_id"].to_list() == one["item_id"].to_list()
        np.testing.assert_allclose(part["predicted_rating"], one["predicted_rating"], rtol=1e-5, atol=1e-5)
        # the batched scoring equals the pairwise forward pass with the query as the text token
        ref = fitted.explain(["u1"] * 4, part["item_id"].to_list(), texts=[q] * 4)
        np.testing.assert_allclose(part["predicted_rating"], ref["predicted_rating"], rtol=1e-5, atol=1e-5)
        for col in ("share_user", "share_item", "share_text"):
            np.testing.assert_allclose(part[col], ref[col], rtol=1e-5, atol=1e-5)
        scores = part["score"].to_numpy()
        assert (np.diff(scores) <= 1e-6).all()  # best first
    assert enc.query_hits > hits  # the single queries were LRU hits
    with pytest.raises(DataError, match=r"queries\[1\]"):
        fitted.recommend_by_texts(["fine", " "])


#: module variants every inference path is checked on (fusions, user text, norm / residual, pooling, svd residual)
VARIANTS: list[dict[str, Any]] = [
    {},
    {"fusion": "concat_mlp"},
    {"fusion": "text_only", "user_text": True},
    {"user_text": True, "attn_residual": True, "attn_norm": "post"},
    {"pooling": "concat"},
    {"pooling": "concat", "fusion": "text_only"},
    {"pooling": "concat", "fusion": "text_only", "user_text": True},
    {"pooling": "concat", "user_text": True, "attn_residual": True, "attn_norm": "post"},
    {"biases": (torch.linspace(-1, 1, 6), torch.linspace(1, -1, 7)), "mu": 3.0},
    {"fusion": "text_only", "biases": (torch.linspace(-1, 1, 6), torch.linspace(1, -1, 7)), "mu": 3.0},
    {
        "fusion": "concat_mlp",
        "user_text": True,
        "biases": (torch.linspace(1, -1, 6), torch.linspace(-1, 1, 7)),
        "mu": 2.0,
    },
]
needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs attnrec[fast]",
)


@pytest.mark.parametrize("kw", VARIANTS)
@pytest.mark.parametrize("cache", [True, False])
def test_score_pairs_equals_the_rowwise_forward(kw, cache):
    """The inference path that projects each user / item / text row once gives the forward pass's predictions
    and attention for every pair, with unknown users and text indexed apart from items; with every user's and
    item's tokens kept between calls (the table cache) or projected per call."""
    m = small_module(**kw)
    if not cache:
        m.table_cache_bytes = -1  # (a text_only module without user text has empty tables: 0 bytes)
    with torch.no_grad():
        assert (m.table_cache() is not None) == cache
    users, unknown = torch.tensor([3, 0, 5]), torch.tensor([False, True, False])
    items, text = torch.tensor([6, 1, 2, 4]), torch.randn(2, 12)
    u_idx = torch.tensor([0, 0, 1, 2, 2, 1, 0])
    i_idx = torch.tensor([0, 3, 1, 2, 2, 0, 1])
    t_idx = torch.tensor([1, 0, 0, 1, 0, 1, 1])
    with torch.no_grad():
        got, w = m.score_pairs(
            users, unknown, items, text, u_idx, i_idx, t_idx, with_weights=True, max_rows=3
        )
        want, w_ref = m(users[u_idx], items[i_idx], text[t_idx], unknown[u_idx])
    torch.testing.assert_close(got, want)
    if w_ref is None:
        assert w is None
    else:
        torch.testing.assert_close(w, w_ref)
    # the (query, candidate) layout of text queries: one user row for every pair (1, 1), a text row per query
    # (Q, 1), an item per pair (Q, P); max_rows=4 scores it one query row at a time
    u_one, t_col = torch.tensor([[2]]), torch.tensor([[1], [0]])
    i_grid = torch.tensor([[0, 3, 1], [2, 2, 0]])
    with torch.no_grad():
        got, w = m.score_pairs(
            users, unknown, items, text, u_one, i_grid, t_col, with_weights=True, max_rows=4
        )
        want, w_ref = m(
            users[2].repeat(6),
            items[i_grid].reshape(-1),
            text[t_col.expand(2, 3).reshape(-1)],
            unknown[2].repeat(6),
        )
    assert got.shape == (2, 3)
    torch.testing.assert_close(got.reshape(-1), want)
    if w_ref is not None:
        assert w is not None and w.shape == (2, 3, *w_ref.shape[1:])
        torch.testing.assert_close(w.reshape(w_ref.shape), w_ref)
    # one row wider than max_rows (one user against the catalogue) is scored in pieces along its second axis
    with torch.no_grad():
        whole, w_whole = m.score_grid(users[:1], unknown[:1], items, m.item_text[items], with_weights=True)
        pieces, w_pieces = m.score_grid(
            users[:1], unknown[:1], items, m.item_text[items], with_weights=True, max_rows=3
        )
        rowwise, _ = m(users[:1].repeat(4), items, m.item_text[items], unknown[:1].repeat(4))
    torch.testing.assert_close(pieces, whole)
    torch.testing.assert_close(pieces[0], rowwise)
    if w_whole is not None:
        torch.testing.assert_close(w_pieces, w_whole)


@needs_ort
@pytest.mark.parametrize("kw", VARIANTS)
def test_the_onnx_query_graph_equals_pytorch(kw):
    """query_scorer="onnx": the exported graph retrieves the most relevant items that are not excluded and
    scores them as score_pairs does, for known and unknown users, any number of queries and pool size."""
    from attnrec.models.rating.hybrid_csa.onnx import QueryRunner

    m = small_module(**kw)
    with torch.no_grad():
        sides = m.table_cache()
    assert sides is not None
    runner = QueryRunner(m, sides, threads=1)
    text = torch.randn(3, 12, generator=torch.Generator().manual_seed(1))
    exclude = np.zeros(7, dtype=bool)
    exclude[[1, 4]] = True
    cosine = torch.nn.functional.normalize(text, dim=1) @ torch.nn.functional.normalize(m.item_text, dim=1).T
    for user, unknown in ((3, False), (0, True)):
        row = 6 if unknown else user  # the cached user table's last row is the unknown user
        for n_q, size in ((3, 4), (1, 2), (2, 5)):
            pool, rel, pred, w = runner(text[:n_q].numpy(), row, size, exclude)
            masked = cosine[:n_q].masked_fill(torch.from_numpy(exclude)[None], -torch.inf)
            want_rel, want_pool = torch.topk(masked, size, dim=1)
            assert torch.equal(pool, want_pool)
            torch.testing.assert_close(rel, want_rel)
            with torch.no_grad():
                want, w_ref = m.score_pairs(
                    torch.tensor([user]),
                    torch.tensor([unknown]),
                    torch.arange(7),
                    text[:n_q],
                    torch.zeros((1, 1), dtype=torch.int64),
                    pool,
                    torch.arange(n_q)[:, None],
                    with_weights=True,
                )
            torch.testing.assert_close(pred, want, atol=1e-5, rtol=1e-5)
            if w_ref is None:
                assert w is None
            else:
                assert w is not None
                torch.testing.assert_close(w, w_ref, atol=1e-5, rtol=1e-5)


def _same_frames(a: list[pl.DataFrame], b: list[pl.DataFrame]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.columns == y.columns and x["item_id"].to_list() == y["item_id"].to_list()
        for col in x.columns:
            if x[col].dtype.is_float():
                np.testing.assert_allclose(x[col].to_numpy(), y[col].to_numpy(), atol=1e-5)


@needs_ort
@pytest.mark.parametrize("cfg", [{}, {"fusion": "text_only"}])
def test_query_scorer_onnx_ranks_like_pytorch_and_follows_the_model(cfg):
    """Both scorers give the same frames: known users (seen items excluded) and new ones, batches in the graph
    and above its 2,048 pairs (PyTorch), every open item, and a user who has seen everything (no rows). text_only
    has no item token: every candidate of a query gets the same prediction, so the order is all tie-breaking
    (relevance, then item index, in both)."""
    model = fit_model(epochs=10, **cfg)  # (a model fitted for 2 epochs predicts many exact ties)

    def queries() -> list[pl.DataFrame]:
        return [
            model.recommend_by_text("group a item", user="u0", k=5),  # known: seen items excluded
            model.recommend_by_text("group b item", k=4),
            model.recommend_by_texts(["group a item", "zzz qqq"], user="u1", k=3),
            model.recommend_by_text("group b item", user="u2", k=6, candidates=None),  # every open item
            model.recommend_by_texts([f"group a item {i}" for i in range(60)], k=2),  # 2,400 pairs: PyTorch
        ]

    torch_frames = queries()
    model.config.query_scorer = "onnx"
    onnx_frames = queries()
    assert model._runner is not None
    _same_frames(torch_frames, onnx_frames)
    runner = model._runner[1]
    with torch.no_grad():  # a changed model gets a new graph
        model.csa.mlp.net[0].weight.mul_(1.5)
    onnx_frames = queries()
    assert model._runner[1] is not runner
    model.config.query_scorer = "torch"
    _same_frames(queries(), onnx_frames)

    every = model.seen
    model.seen = sp.csr_matrix(np.ones(every.shape, dtype=np.float32))  # every user has seen every item
    try:
        for scorer in ("torch", "onnx"):
            model.config.query_scorer = scorer
            empty = model.recommend_by_text("group a item", user="u0", k=5)
            assert empty.height == 0 and empty.columns == torch_frames[0].columns
    finally:
        model.seen = every


@needs_ort
def test_query_scorer_onnx_falls_back_to_pytorch_or_names_the_missing_extra(
    fitted: HybridCSA, monkeypatch: pytest.MonkeyPatch, caplog
):
    want = fitted.recommend_by_text("group a item", user="u0", k=5)
    monkeypatch.setattr(fitted.config, "query_scorer", "onnx")
    monkeypatch.setattr(
        fitted.csa, "table_cache_bytes", 1024
    )  # the graph would not fit: PyTorch, logged once
    with caplog.at_level(logging.INFO, logger="attnrec.models.rating.hybrid_csa"):
        got = [fitted.recommend_by_text("group a item", user="u0", k=5) for _ in range(2)]
    assert caplog.text.count("query_scorer='onnx' not used") == 1 and fitted._runner is None
    _same_frames([want, want], got)
    monkeypatch.setattr(fitted.csa, "table_cache_bytes", 256 * 2**20)
    fitted.recommend_by_text("group a item", k=5)
    assert fitted._runner is not None
    copy.deepcopy(fitted)  # an ONNX Runtime session held by the model does not stop copies / pickles
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(MissingExtraError, match="fast"):
        fitted.recommend_by_text("group a item", k=5)


def test_top_stable_is_a_stable_descending_sort_cut_short():
    """Pools and rankings: ties in item-index order (ONNX TopK's rule), also when ties cross the cut."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (50, 300), generator=g).float()  # many ties; large enough for the topk route
    x[3] = 1.0  # one row all tied
    x[5, 7] = -torch.inf  # an excluded item
    x[6, :290] = 0.0  # a row with a tie crossing no cut
    for size in (0, 1, 5, 17, 299, 300):
        want = torch.sort(x, dim=1, descending=True, stable=True)
        vals, idx = top_stable(x, size)
        assert torch.equal(idx, want.indices[:, :size]) and torch.equal(vals, want.values[:, :size])


def test_text_queries_reject_a_non_positive_k(fitted: HybridCSA):
    for call in (lambda: fitted.recommend_by_text("x", k=0), lambda: fitted.recommend_by_texts(["x"], k=-1)):
        with pytest.raises(DataError, match="k must be positive"):
            call()


def test_the_table_cache_is_dropped_by_to_and_not_pickled():
    m = small_module()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert m.table_cache() is None  # no reduced-precision tables kept for later
    with torch.no_grad():
        assert m.table_cache() is not None
    restored = pickle.loads(pickle.dumps(m))  # weak references in the cache would not pickle
    assert restored._tables.empty
    m.double()
    assert m._tables.empty
    with torch.no_grad():
        sides = m.table_cache()
    assert sides is not None and sides[1].tokens[0].dtype == torch.float64


def test_the_table_cache_follows_the_module_state():
    """The cached user and item tables are reused while the module is unchanged and rebuilt after an in-place
    update, a state load, new items or a replaced submodule; never used in training or under autograd."""
    m = small_module(biases=(torch.linspace(-1, 1, 6), torch.linspace(1, -1, 7)), mu=3.0)
    users, unknown = torch.tensor([3, 0]), torch.tensor([False, True])
    text = torch.randn(2, 12)

    def check() -> None:  # every (user, item, text) pair against the row-wise forward
        n_items = m.item_factors.shape[0]
        items = torch.arange(n_items)
        u_idx, i_idx, t_idx = torch.tensor([0, 1])[:, None, None], items[None, :, None], torch.tensor([0, 1])
        with torch.no_grad():
            got, _ = m.score_pairs(users, unknown, items, text, u_idx, i_idx, t_idx)
            u, i, t = torch.broadcast_tensors(u_idx, i_idx, t_idx)
            want, _ = m(users[u.reshape(-1)], i.reshape(-1), text[t.reshape(-1)], unknown[u.reshape(-1)])
        torch.testing.assert_close(got.reshape(-1), want)

    with torch.no_grad():
        first = m.table_cache()
        assert first is not None and m.table_cache() is first
        assert first[1].tokens[0].shape[0] == 7 and first[0].tokens[0].shape[0] == 6 + 1  # + the unknown user
    check()
    with torch.no_grad():
        m.proj_item[0].weight.mul_(2.0)  # an in-place update (an optimiser step)
        second = m.table_cache()
    assert second is not first
    check()
    other = small_module(biases=(torch.linspace(1, -1, 6), torch.linspace(-1, 1, 7)), mu=2.0)
    with torch.no_grad():
        other.unknown_user.add_(1.0)
    m.load_state_dict(other.state_dict())
    check()
    m.append_items(torch.randn(2, 5), torch.randn(2, 12))  # cold-start items
    check()
    m.proj_user = projection(5, 8).eval()  # a replaced submodule
    check()
    m.train()
    with torch.no_grad():
        assert m.table_cache() is None
    m.eval()
    assert m.table_cache() is None  # autograd on


def test_query_relevance_follows_the_item_text_table(fitted: HybridCSA):
    """The cached inverse norms of the item texts are recomputed when the table is replaced or written in place."""
    m = fitted.csa
    original = m.item_text
    try:
        inv = fitted._item_text_inv_norm()
        torch.testing.assert_close(inv, 1 / original.norm(dim=1))
        m.item_text = original * 2  # a new tensor (as add_items / set_encoder make)
        torch.testing.assert_close(fitted._item_text_inv_norm(), inv / 2)
        m.item_text.mul_(2)  # in place: the version counter moves
        torch.testing.assert_close(fitted._item_text_inv_norm(), inv / 4)
    finally:
        m.item_text = original
    torch.testing.assert_close(fitted._item_text_inv_norm(), inv)


def test_text_query_scores_are_the_models_prediction_for_that_text(fitted: HybridCSA):
    recs = fitted.recommend_by_text("group b item", user="u2", k=6)
    same = fitted.explain(["u2"] * 6, recs["item_id"].to_list(), texts=["group b item"] * 6)
    np.testing.assert_allclose(same["predicted_rating"], recs["predicted_rating"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(same["share_text"], recs["share_text"], rtol=1e-5, atol=1e-5)


def test_a_text_query_through_score_is_the_models_prediction_for_that_text(fitted: HybridCSA):
    """score(Query(text=...)): every item with the query as its text token, for a known user or a new one, ranked
    as recommend_by_text ranks every item (the blend of relevance and that prediction)."""
    from attnrec.models.query import Query

    q = Query(users=np.array([2, -1]), text=["group b item", "group a item"], exclude="none")
    scores = fitted.score(q).numpy()
    assert scores.shape == (2, fitted.n_items) and np.isfinite(scores).all()
    items = fitted.item_vocab.ids.tolist()  # type: ignore[union-attr]
    every = fitted.recommend_by_text(
        "group b item", user="u2", k=fitted.n_items, candidates=None, exclude_seen=False
    )
    by_id = dict(zip(every["item_id"], every["score"], strict=True))
    np.testing.assert_allclose(scores[0], [by_id[i] for i in items], rtol=1e-5, atol=1e-5)
    # the new user (-1) is the learned unknown user: the same scores as an anonymous text query
    anon = fitted.score(Query(text=["group a item"])).numpy()
    np.testing.assert_allclose(scores[1], anon[0], rtol=1e-5, atol=1e-5)
    # the planted pattern: a group-b text puts group-b (odd) items first for a new user
    vals, idx = fitted.top_k(Query(users=np.array([-1]), text=["group b item"]), 5)
    assert np.isfinite(vals).all() and np.all(idx % 2 == 1)
    with pytest.raises(DataError, match="empty query"):
        fitted.score(Query(text=["  "]))


def test_crossfit_trains_on_vectors_that_never_saw_their_rating():
    train, valid, _ = checkerboard()
    with pytest.raises(ValueError, match="0 \\(off\\) or at least 2"):
        HybridCSA(svd_crossfit=1)
    with pytest.raises(ValueError, match="freeze_svd"):
        HybridCSA(svd_crossfit=3, freeze_svd=False)
    with pytest.raises(ValueError, match="text_only"):
        HybridCSA(svd_crossfit=3, fusion="text_only")
    HybridCSA(svd_crossfit=3, fusion="text_only", svd_residual=True)  # its SVD prediction reads the folds
    m = HybridCSA(**{**CONFIG, "svd_crossfit": 3, "svd_residual": True})
    base = SVD(factors=8, iterations=4)
    base.fit(train, valid)
    fold, tables = crossfit_tables(base, train, 3, seed=m.config.seed, biases=False)
    assert fold is not None and tables is not None
    counts = np.bincount(fold.numpy())
    assert len(counts) == 3 and counts.max() - counts.min() <= 1  # balanced folds
    p, bu, q, bi = tables
    assert p.shape == (3, train.n_users, 8) and bi.shape == (3, train.n_items)
    # with svd_biases the bias is one more input dimension of each fold's vectors, as for the full fit
    _, with_b = crossfit_tables(base, train, 3, seed=m.config.seed, biases=True)
    assert with_b is not None and with_b[0].shape == (3, train.n_users, 9)
    torch.testing.assert_close(with_b[2][..., -1], bi)
    # fold 0's refit is unchanged when fold 0's own ratings change: a row never sees its rating
    in0 = (fold == 0).numpy()
    flipped = Interactions(
        train.frame.with_columns(
            pl.when(pl.Series(in0)).then(6.0 - pl.col("rating")).otherwise(pl.col("rating")).alias("rating")
        ),
        train.user_vocab,
        train.item_vocab,
    )
    _, again = crossfit_tables(base, flipped, 3, seed=m.config.seed, biases=False)
    assert again is not None
    for a, b in zip(tables, again, strict=True):
        torch.testing.assert_close(a[0], b[0])
        assert not torch.equal(a[1], b[1])  # fold 1 was fitted on fold 0's rows
    # training rows read their fold's vectors; inference the full fit's; the tables are gone after fit
    module = small_module(biases=(torch.zeros(6), torch.zeros(7)), mu=3.0)
    cf = (torch.randn(2, 6, 5), torch.randn(2, 6), torch.randn(2, 7, 5), torch.randn(2, 7))
    module.set_crossfit(cf)
    users, items = torch.tensor([1, 4]), torch.tensor([2, 6])
    with torch.no_grad():
        svd_pred = module.svd_prediction(users, items, fold=torch.tensor([1, 0]))
    want = (
        3.0
        + cf[1][[1, 0], users]
        + cf[3][[1, 0], items]
        + (cf[0][[1, 0], users] * cf[2][[1, 0], items]).sum(-1)
    )
    torch.testing.assert_close(svd_pred, want)
    assert not any(k.startswith("cf_") for k in module.state_dict())
    m.fit(train, valid, trainer=trainer(epochs=2), side=SideInputs(items=item_meta(train)), encoder=encoder())
    assert not m.csa.crossfit and not any(k.startswith("cf_") for k in m.state_tensors())
    assert np.isfinite(m.predict(valid.users, valid.items)).all()
