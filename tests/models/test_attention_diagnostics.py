"""|cos(X, X')| for the self-attention layers of the library (hybrid_csa's SelfAttentionBlock, secn's and autoint's
InteractingLayer): X' computed by hand, recorded on any forward pass, nothing left attached afterwards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from attnrec.models.layers.attention import SelfAttentionBlock
from attnrec.models.layers.diagnostics import attention_orthogonality, mean_abs_cosine, self_attention_output
from attnrec.models.layers.interaction import InteractingLayer


def test_interacting_layer_output_by_hand_and_recorded() -> None:
    torch.manual_seed(0)
    layer = InteractingLayer(4, 2, 2, residual=True, scaled=True, relu=True)
    x = torch.randn(3, 5, 4)
    b, t = 3, 5
    q = layer.query(x).view(b, t, 2, 2).transpose(1, 2)
    k = layer.key(x).view(b, t, 2, 2).transpose(1, 2)
    v = layer.value(x).view(b, t, 2, 2).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(2), dim=-1)
    by_hand = (w @ v).transpose(1, 2).reshape(b, t, 4)  # before the residual W_res x and the ReLU
    with torch.no_grad():
        torch.testing.assert_close(self_attention_output(layer, x), by_hand)
        parent = torch.nn.Sequential(layer)
        with attention_orthogonality(parent) as meters:
            layer(x)
            layer(x[:1])
        expected = mean_abs_cosine(torch.cat([x, x[:1]]), torch.cat([by_hand, by_hand[:1]]))
    assert list(meters) == ["0"] and meters["0"].count == 4 * 5
    assert meters["0"].value == pytest.approx(expected, rel=1e-6)
    assert not layer._forward_hooks and "attend" not in vars(layer)  # nothing left on exit
    torch.testing.assert_close(layer.attend(x)[0], by_hand)  # the class's method: X' itself


def test_nested_contexts_each_record_and_unwind() -> None:
    """An inner context (e.g. a fit's validation inside a caller's own measurement) records beside the outer one
    and, on exit, leaves the outer one's wrappers in place."""
    torch.manual_seed(2)
    model = torch.nn.Sequential(InteractingLayer(4, 2, 2), SelfAttentionBlock(4, 2)).eval()
    x = torch.randn(2, 3, 4)
    with torch.no_grad(), attention_orthogonality(model) as outer:
        with attention_orthogonality(model) as inner:
            model[0](x)
            model[1](x)
        model[0](x)
        model[1](x)
    assert {k: m.count for k, m in inner.items()} == {"0": 6, "1": 6}
    assert {k: m.count for k, m in outer.items()} == {"0": 12, "1": 12}
    assert "attend" not in vars(model[0]) and "project" not in vars(model[1])


def test_self_attention_block_output_by_hand_and_recorded() -> None:
    torch.manual_seed(1)
    block = SelfAttentionBlock(4, 2, norm="pre", residual=True).eval()
    x = torch.randn(2, 3, 4) * 3
    h = torch.nn.functional.layer_norm(x, (4,), block.norm.weight, block.norm.bias)  # type: ignore[arg-type]
    q, k, v = block.qkv(h).view(2, 3, 3, 2, 2).permute(2, 0, 3, 1, 4)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(2), dim=-1)
    by_hand = block.out((w @ v).transpose(1, 2).reshape(2, 3, 4))  # before the residual
    with torch.no_grad():
        torch.testing.assert_close(self_attention_output(block, x), by_hand)
        out, weights = block(x)
        torch.testing.assert_close(self_attention_output(block, x, weights), by_hand)
        with attention_orthogonality(block) as meters:
            block(x)
            block.project(x[0])  # a 2-D table (hybrid_csa's pair scorer projects tables): not recorded
        assert meters[""].count == 6
        assert meters[""].value == pytest.approx(mean_abs_cosine(x, by_hand), rel=1e-6)
    assert "project" not in vars(block)  # the class's method again
    torch.testing.assert_close(block(x)[0], out)


def test_a_layer_that_changes_width_is_skipped() -> None:
    layer = InteractingLayer(4, 3, 2)  # 6 output channels for 4 input
    with attention_orthogonality(layer) as meters:
        layer(torch.randn(2, 3, 4))
    assert meters == {}


def test_secn_reports_its_attention_orthogonality() -> None:
    from attnrec.models.ctr.secn import SECN
    from attnrec.testing.data import planted_ctr
    from attnrec.training.trainer import TrainerConfig

    train, _, test = planted_ctr(n_rows=1000)
    model = SECN(embedding_dim=8, cross_layers=1)
    model.fit(train, trainer=TrainerConfig(epochs=1, batch_size=512, progress=False, device="cpu"))
    assert model.module is not None
    with attention_orthogonality(model.module) as meters:
        model.predict_proba(test)
    assert list(meters) == ["attention"]
    assert 0.0 <= meters["attention"].value <= 1.0 and meters["attention"].count == len(test) * 5


def test_hybrid_csa_reports_its_token_attention_orthogonality() -> None:
    """On a fitted hybrid_csa, ``predict`` (the module's forward over stacked tokens: user, item, text) records
    |cos(X, X')| of its one SelfAttentionBlock, X' recomputed by hand from the same tokens; ``score_users`` (the
    pair scorer: token tables projected one by one) is not recorded."""
    import polars as pl

    from attnrec.data.side import SideInputs
    from attnrec.models.rating.hybrid_csa import HybridCSA
    from attnrec.testing import checkerboard
    from attnrec.text import HashingTextModel, SentenceEncoder
    from attnrec.training.trainer import TrainerConfig

    train, _, test = checkerboard()
    ids = train.item_vocab.ids
    titles = pl.DataFrame(
        {"item_id": ids, "title": [f"group {'ab'[k % 2]} item {k}" for k in range(len(ids))]}
    )
    model = HybridCSA(svd_factors=4, svd_iterations=2, d_model=8, heads=2, mlp_hidden=4)
    model.fit(
        train,
        trainer=TrainerConfig(epochs=1, batch_size=64, progress=False, device="cpu"),
        side=SideInputs(items=titles),
        encoder=SentenceEncoder(HashingTextModel(dim=16), progress=False),
    )
    module = model.module
    assert module is not None and module.attention is not None
    with attention_orthogonality(module) as meters:
        model.score_users(test.users[:3])
        assert meters == {}
        model.predict(test.users, test.items)
    with torch.no_grad():
        users, items = torch.tensor(test.users), torch.tensor(test.items)
        tokens = module.stack(
            module.user_tokens(users), module.item_token(items), module.text_token(module.item_text[items])
        )
        want = mean_abs_cosine(tokens, self_attention_output(module.attention, tokens))
    assert list(meters) == ["attention"] and meters["attention"].count == len(test) * 3 == tokens.shape[0] * 3
    assert meters["attention"].value == pytest.approx(want, rel=1e-5) and 0.0 < want < 1.0


# ----------------------------------------------------------------- logged by every fit that validates (issue 16)
@pytest.mark.parametrize(
    ("name", "config", "layers"),
    [
        ("secn", {"embedding_dim": 8, "cross_layers": 1}, ["attention"]),
        ("autoint", {"embedding_dim": 8, "heads": 2, "head_dim": 4}, ["attention.0", "attention.1"]),
    ],
)
def test_a_ctr_fit_logs_its_attention_orthogonality_each_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, config: dict, layers: list[str]
) -> None:
    """Every validated epoch logs ``valid_abs_cos[<layer>]`` (fit report and train log), the best epoch's metrics
    keep it, it is the |cos| of the validation's own forward passes, nothing stays attached, and the selection is
    the one of a fit without the diagnostic (extra keys only)."""
    from attnrec.models.base import get_model_class
    from attnrec.models.ctr.base import CTRRecommender
    from attnrec.testing.data import planted_ctr
    from attnrec.training.trainer import TrainerConfig

    train, valid, _ = planted_ctr(n_rows=1000)
    log = tmp_path / "train_log.jsonl"
    trainer = TrainerConfig(epochs=2, batch_size=256, progress=False, device="cpu", log_path=log)
    model = get_model_class(name)(**config)
    assert isinstance(model, CTRRecommender)
    report = model.fit(train, valid, trainer=trainer)
    assert report.best_epoch is not None
    keys = [f"abs_cos[{layer}]" for layer in layers]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == len(report.history) == 2
    for row in [*rows, *report.history]:
        assert all(0.0 <= row[f"valid_{k}"] <= 1.0 for k in keys)
    best = report.history[report.best_epoch - 1]
    assert {k: report.best_valid[k] for k in keys} == {k: best[f"valid_{k}"] for k in keys}
    assert model.module is not None
    assert not any(  # nothing left attached
        m._forward_hooks or {"attend", "project"} & set(vars(m)) for m in model.module.modules()
    )
    with attention_orthogonality(model.module) as meters:  # the best weights are restored: the same number
        model.predict_logits(valid, 4096)
    assert {f"abs_cos[{k}]": m.value for k, m in meters.items()} == pytest.approx(
        {k: report.best_valid[k] for k in keys}, rel=1e-9
    )
    # the same fit without the diagnostic: the same epochs, metrics and selection, the abs_cos keys aside
    import attnrec.models.layers.diagnostics as diagnostics

    monkeypatch.setattr(diagnostics, "has_self_attention", lambda root: False)
    plain = get_model_class(name)(**config).fit(
        train, valid, trainer=trainer.model_copy(update={"log_path": None})
    )
    assert plain.best_epoch == report.best_epoch
    assert plain.best_valid == {k: v for k, v in report.best_valid.items() if k not in keys}
    drop = {f"valid_{k}" for k in keys} | {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in report.history] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in plain.history
    ]


def test_a_model_without_attention_logs_no_orthogonality() -> None:
    from attnrec.models.ctr.fm import FM
    from attnrec.testing.data import planted_ctr
    from attnrec.training.trainer import TrainerConfig

    train, valid, _ = planted_ctr(n_rows=1000)
    report = FM(embedding_dim=4).fit(
        train, valid, trainer=TrainerConfig(epochs=1, batch_size=256, progress=False, device="cpu")
    )
    assert report.history and not any("abs_cos" in k for r in report.history for k in r)
    assert not any("abs_cos" in k for k in report.best_valid)


def test_secn_without_attention_logs_no_orthogonality() -> None:
    from attnrec.models.ctr.secn import SECN
    from attnrec.testing.data import planted_ctr
    from attnrec.training.trainer import TrainerConfig

    train, valid, _ = planted_ctr(n_rows=1000)
    report = SECN(embedding_dim=8, cross_layers=1, attention_position="none").fit(
        train, valid, trainer=TrainerConfig(epochs=1, batch_size=256, progress=False, device="cpu")
    )
    assert not any("abs_cos" in k for k in report.best_valid)


def test_orthogonality_metrics_merge_the_ranks_sums() -> None:
    """Distributed: each rank's (sum, count) per layer is gathered and added in rank order (a rank that saw no
    row has no meter); a layer no rank measured is left out."""
    from attnrec.models.layers.diagnostics import CosineMeter, orthogonality_metrics

    mine = CosineMeter()
    mine.total, mine.count = 3.0, 4
    meters = {"attention": mine, "never": CosineMeter()}
    other = {"attention": (1.0, 4), "never": (0.0, 0)}
    assert orthogonality_metrics(meters, lambda part: [part, other, {}]) == {"abs_cos[attention]": 0.5}
    assert orthogonality_metrics(meters) == {"abs_cos[attention]": 0.75}


def test_hybrid_csa_fit_logs_its_token_attention_orthogonality() -> None:
    """hybrid_csa's validation (the Rating protocol: ``predict`` over stacked tokens) is seen: each epoch logs
    ``valid_abs_cos[attention]``; with ``fusion="concat_mlp"`` (no attention) there is no such key."""
    import polars as pl

    from attnrec.data.side import SideInputs
    from attnrec.models.rating.hybrid_csa import HybridCSA
    from attnrec.testing import checkerboard
    from attnrec.text import HashingTextModel, SentenceEncoder
    from attnrec.training.trainer import TrainerConfig

    train, valid, _ = checkerboard()
    ids = train.item_vocab.ids
    titles = pl.DataFrame(
        {"item_id": ids, "title": [f"group {'ab'[k % 2]} item {k}" for k in range(len(ids))]}
    )
    for fusion, logged in (("attention", True), ("concat_mlp", False)):
        model = HybridCSA(svd_factors=4, svd_iterations=2, d_model=8, heads=2, mlp_hidden=4, fusion=fusion)
        report = model.fit(
            train,
            valid,
            trainer=TrainerConfig(epochs=2, batch_size=64, progress=False, device="cpu"),
            side=SideInputs(items=titles),
            encoder=SentenceEncoder(HashingTextModel(dim=16), progress=False),
        )
        got = [r.get("valid_abs_cos[attention]") for r in report.history]
        if logged:
            assert report.best_epoch is not None
            assert all(v is not None and 0.0 <= v <= 1.0 for v in got), got
            assert report.best_valid["abs_cos[attention]"] == got[report.best_epoch - 1]
        else:
            assert got == [None, None] and "abs_cos[attention]" not in report.best_valid
