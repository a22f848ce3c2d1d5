"""secn: both readings of the cross product and every attention position pass the conformance suite; the
module computes the documented pipeline (checked by hand on a tiny case)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnrec.data.batches import CTRBatch
from attnrec.models.ctr.secn import SECN, SECNConfig, SECNModule
from attnrec.testing import ConformanceTests, planted_ctr


class TestSECN(ConformanceTests):
    """The default: H(i-1) * H(i-1) as printed, self-attention after the cross network."""

    model_class = SECN
    config = {"embedding_dim": 8, "cross_layers": 2}


class TestSECNFirstBefore(ConformanceTests):
    """The alternative reading: H(0) * H(i-1), self-attention on the embeddings."""

    model_class = SECN
    config = {"embedding_dim": 8, "cross_layers": 2, "cross_product": "first", "attention_position": "before"}


class TestSECNNoAttentionPerDimension(ConformanceTests):
    model_class = SECN
    config = {
        "embedding_dim": 8,
        "cross_layers": 2,
        "attention_position": "none",
        "per_dimension_weights": True,
        "pool_layers": "all",
        "embedding_bias": False,
    }


def test_defaults_are_the_documented_reading() -> None:
    cfg = SECNConfig()
    assert cfg.cross_product == "previous"
    assert cfg.attention_position == "after"
    assert cfg.cross_activation == "relu"
    assert not cfg.per_dimension_weights and cfg.pool_layers == "last" and cfg.embedding_bias


def tiny_batch() -> tuple[CTRBatch, object]:
    train, _, _ = planted_ctr()
    b = train.subset(slice(0, 4))
    return (
        CTRBatch(
            torch.from_numpy(b.labels),
            torch.from_numpy(b.categorical),
            torch.from_numpy(b.numeric),
            torch.from_numpy(b.multi),
        ),
        train.schema,
    )


@pytest.mark.parametrize("reading", ["previous", "first"])
def test_module_is_embed_cross_sumpool_linear(reading: str) -> None:
    batch, schema = tiny_batch()
    cfg = SECNConfig(
        embedding_dim=3,
        cross_layers=2,
        cross_product=reading,
        cross_activation="identity",
        attention_position="none",
        dropout=0.0,  # the paper's equation has no dropout (the default's 0.5 is a benchmark choice)
    )
    torch.manual_seed(0)
    module = SECNModule(schema, cfg)  # type: ignore[arg-type]
    with torch.no_grad():
        module.field_bias.normal_()  # type: ignore[union-attr]
        for layer in module.cross:
            layer.b_c.normal_()
    with torch.no_grad():
        h0 = module.embedding(batch) + module.field_bias
        h = h0
        for layer in module.cross:
            z = h * h if reading == "previous" else h0 * h
            # per dimension k: W_C z[:, :, k] + W_R h[:, :, k] + b_C, as explicit loops
            out = torch.empty_like(h)
            for k in range(3):
                out[:, :, k] = z[:, :, k] @ layer.w_c.T + h[:, :, k] @ layer.w_r.T + layer.b_c
            h = out
        want = h.sum(1) @ module.predict.weight[0] + module.predict.bias
        torch.testing.assert_close(module(batch), want)


def test_cross_product_option_changes_the_model() -> None:
    batch, schema = tiny_batch()
    outs = []
    for reading in ("previous", "first"):
        torch.manual_seed(0)
        outs.append(SECNModule(schema, SECNConfig(embedding_dim=4, cross_product=reading))(batch))  # type: ignore[arg-type]
    assert not torch.allclose(outs[0], outs[1])


@pytest.mark.parametrize("position", ["before", "after"])
def test_attention_position_is_used(position: str) -> None:
    batch, schema = tiny_batch()
    torch.manual_seed(0)
    module = SECNModule(schema, SECNConfig(embedding_dim=4, attention_position=position))  # type: ignore[arg-type]
    before = module(batch).detach().clone()
    with torch.no_grad():
        module.attention.value.weight.mul_(3.0)  # type: ignore[union-attr]
    assert not np.allclose(module(batch).detach().numpy(), before.numpy())
    none = SECNModule(schema, SECNConfig(embedding_dim=4, attention_position="none"))  # type: ignore[arg-type]
    assert none.attention is None
