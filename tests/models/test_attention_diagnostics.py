"""|cos(X, X')| for the self-attention layers of the library (hybrid_csa's SelfAttentionBlock, secn's and autoint's
InteractingLayer): X' computed by hand, recorded on any forward pass, nothing left attached afterwards."""

from __future__ import annotations

import math

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
    assert not layer._forward_hooks  # removed on exit


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
