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
