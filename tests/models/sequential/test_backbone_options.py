"""The backbone options towards BERT / RecBole's SASRec (issue 16, session 23): ``init``, ``activation``,
``ffn_inner_dropout``, ``embed_scale``, ``embed_norm``, ``layer_norm_eps`` and ``mask_own_items``. Each test would
fail if its option did nothing or did the wrong thing; the defaults are checked to be today's behaviour."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from attnrec.models.sequential.base import SequenceBatch, SequentialModule
from attnrec.models.sequential.gca import GCAConfig, GCAModule
from attnrec.models.sequential.layers import FeedForward, SequenceEncoder
from attnrec.models.sequential.sasrec import SASRecConfig, SASRecModule

#: domains interleaved in the item index (A = 0, 2, 4, ...; B = 1, 3, ...)
DOM_OF = torch.arange(12) % 2


def sasrec(**overrides: Any) -> SASRecModule:
    torch.manual_seed(0)
    cfg = SASRecConfig(dim=64, heads=2, n_blocks=2, dropout=0.0, **overrides)
    return SASRecModule(4000, cfg, 1)


# --------------------------------------------------------------------------------- defaults


def test_defaults_are_sasrecs() -> None:
    c = SASRecConfig()
    assert (c.init, c.activation, c.ffn_inner_dropout, c.embed_scale, c.embed_norm) == (
        "scaled",
        "relu",
        True,
        True,
        False,
    )
    assert c.layer_norm_eps == 1e-5 and c.mask_own_items
    m = sasrec()
    enc = m.encoder
    assert isinstance(enc.embed_norm, nn.Identity)
    assert all(ln.eps == 1e-5 for ln in enc.modules() if isinstance(ln, nn.LayerNorm))
    # the item table N(0, 1/d), the positions torch's N(0, 1)
    assert float(m.item.weight[1:].detach().std()) == pytest.approx(64**-0.5, rel=0.05)
    assert float(enc.position.weight.detach().std()) == pytest.approx(1.0, rel=0.1)


# --------------------------------------------------------------------------------- init


def test_normal_init_draws_every_backbone_weight_at_init_std() -> None:
    m = sasrec(init="normal", init_std=0.02)
    assert float(m.item.weight[1:].detach().std()) == pytest.approx(0.02, rel=0.05)
    assert bool((m.item.weight[0] == 0).all())  # padding stays zero
    enc = m.encoder
    assert float(enc.position.weight.detach().std()) == pytest.approx(0.02, rel=0.1)
    linears = [x for x in enc.modules() if isinstance(x, nn.Linear)]
    assert len(linears) == 2 * 6  # q, k, v, out, inner, outer per block
    for lin in linears:
        assert float(lin.weight.detach().std()) == pytest.approx(0.02, rel=0.15)
        assert bool((lin.bias == 0).all())
    # another std is honoured
    assert float(sasrec(init="normal", init_std=0.1).encoder.position.weight.detach().std()) == pytest.approx(
        0.1, rel=0.1
    )


def test_normal_init_leaves_the_gca_modules_own_init() -> None:
    torch.manual_seed(0)
    cfg = GCAConfig(
        dim=16, heads=2, n_blocks=2, positions=[0], gate_form="ffn", gate_init=-1.5, init="normal"
    )
    m = GCAModule(50, cfg, ("A", "B"))
    for enc in [m.mixed, *m.domains]:
        assert float(enc.position.weight.detach().std()) == pytest.approx(0.02, rel=0.3)
    for mod in m.cross["0"]:
        last = mod.gate_ffn[-1]
        assert bool((last.weight == 0).all()) and bool((last.bias == -1.5).all())
        assert float(mod.attn.q.weight.detach().abs().max()) > 0.1  # torch's uniform ±1/4, not N(0, 0.02)


# --------------------------------------------------------------------------------- feed-forward


def test_gelu_activation_is_the_exact_gelu() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8)
    ffn = FeedForward(8, 16, 0.0, activation="gelu").eval()
    want = ffn.outer(F.gelu(ffn.inner(x)))
    torch.testing.assert_close(ffn(x), want)
    relu = ffn.outer(F.relu(ffn.inner(x)))
    assert not torch.allclose(ffn(x), relu)
    # and through the config
    blk = sasrec(activation="gelu").encoder.blocks[0].ffn
    y = torch.randn(2, 64)
    torch.testing.assert_close(blk(y), blk.outer(F.gelu(blk.inner(y))))


def test_ffn_inner_dropout_switch() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8)
    on = FeedForward(8, 16, 0.5, inner_dropout=True).train()
    off = FeedForward(8, 16, 0.5, inner_dropout=False).train()
    off.load_state_dict(on.state_dict())
    plain = off.outer(F.relu(off.inner(x)))
    torch.testing.assert_close(off(x), plain)  # no dropout between the layers, even in training
    assert not torch.allclose(on(x), plain)
    assert isinstance(sasrec(ffn_inner_dropout=False).encoder.blocks[1].ffn.dropout, nn.Identity)


# --------------------------------------------------------------------------------- input embedding


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("norm", [True, False])
def test_embedding_scale_and_layer_norm(scale: bool, norm: bool) -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(8, 2, 8, 1, 0.0, "pre", 10, embed_scale=scale, embed_norm=norm, eps=1e-12).eval()
    v = torch.randn(2, 4, 8)
    real = torch.tensor([[False, True, True, True], [True, True, True, True]])
    got = enc.embed(v, real)
    pos = torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3]])
    want = v * (math.sqrt(8) if scale else 1.0) + enc.position(pos)
    if norm:
        want = F.layer_norm(want, (8,), eps=1e-12)
    want = want * real[..., None]
    torch.testing.assert_close(got, want)
    if norm:
        assert float(got[real].detach().mean(-1).abs().max()) < 1e-5
        torch.testing.assert_close(got[real].detach().var(-1, unbiased=False), torch.ones(int(real.sum())))


def test_layer_norm_eps_reaches_every_backbone_layer_norm() -> None:
    m = sasrec(embed_norm=True, layer_norm_eps=1e-12)
    norms = [x for x in m.encoder.modules() if isinstance(x, nn.LayerNorm)]
    assert len(norms) == 1 + 2 * 2 + 1  # input, two per block, final (pre-norm)
    assert all(x.eps == 1e-12 for x in norms)


def test_layer_norm_eps_reaches_every_layer_norm_of_gca() -> None:
    """The cross-attention modules' two LayerNorms take the backbone's eps too (review s23, finding 2)."""
    config = GCAConfig(dim=8, heads=2, n_blocks=2, positions=[0, 1], embed_norm=True, layer_norm_eps=1e-12)
    m = GCAModule(40, config, ("A", "B"))
    norms = [x for x in m.modules() if isinstance(x, nn.LayerNorm)]
    assert (
        len(norms) == 3 * (1 + 2 * 2 + 1) + 2 * 2 * 2
    )  # three encoders; two modules per position, two LNs each
    assert all(x.eps == 1e-12 for x in norms)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_gca_layer_norm_switch_is_the_identity_at_init_only_on_a_post_norm_backbone(norm: str) -> None:
    """A post-norm block's output is already LayerNormed, so the modules' own LayerNorms (scale 1, shift 0) start as
    the identity there: layer_norm on and off give the same states until their scale and shift learn (BENCHMARKS.md,
    the sampled-loss grid: GCA[0]-sigmoid's two measured seed for seed within 0.0005). On a pre-norm backbone they differ."""
    items = torch.tensor([[0, 0, 3, 7, 2, 9, 4, 5], [1, 8, 6, 3, 2, 11, 7, 10]])
    domains = torch.tensor([[0, 0, 0, 1, 0, 1, 1, 0], [1, 0, 1, 1, 0, 0, 1, 0]])
    states = []
    for ln in (True, False):
        torch.manual_seed(0)  # the LayerNorms draw nothing: both modules get the same weights
        config = GCAConfig(dim=8, heads=2, n_blocks=2, positions=[0], norm=norm, layer_norm=ln, gate_init=2.0)
        with torch.no_grad():
            states.append(GCAModule(12, config, ("A", "B")).eval().states(items, domains))
    gap = float((states[0] - states[1]).abs().max())
    if norm == "post":
        assert gap < 1e-5
    else:
        assert gap > 1e-3


# --------------------------------------------------------------------------------- own items in the loss


def _batch(negatives: torch.Tensor, per_row: bool, catalogue: bool) -> SequenceBatch:
    # row 0 re-consumes item 2 (index + 1 = 3) and holds A items 0, 2, 4, 8 (index + 1: 1, 3, 5, 9)
    items = torch.tensor([[0, 1, 3, 5, 3, 9, 4], [2, 5, 8, 11, 12, 7, 10]])
    domains = torch.where(items > 0, DOM_OF[(items - 1).clamp(min=0)], torch.tensor(-1))
    return SequenceBatch(items, domains, negatives, per_row, item_domains=DOM_OF if catalogue else None)


def _reference(module: SequentialModule, batch: SequenceBatch, mask: bool, loss: str) -> torch.Tensor:
    """Position by position: the candidates are the target and its domain's negatives (every item for softmax,
    the batch's draws for sampled_softmax, one per position for bce) less the row's own items (``mask``) or
    less the target alone."""
    s = module.states(batch.items, batch.domains)[:, :-1, 0]
    table = module.item.weight[1:]
    terms = []
    for b in range(len(batch.items)):
        row = set((batch.items[b][batch.items[b] > 0] - 1).tolist())
        for t in range(batch.items.shape[1] - 1):
            if batch.items[b, t] == 0 or batch.items[b, t + 1] == 0:
                continue
            target = int(batch.items[b, t + 1]) - 1
            d = int(DOM_OF[target])
            if loss == "softmax":
                negs = [i for i in range(len(DOM_OF)) if int(DOM_OF[i]) == d]
            elif loss == "sampled_softmax":
                negs = batch.negatives[d].tolist()
            else:
                negs = [int(batch.negatives[b, t])]
            negs = [i for i in negs if i != target and not (mask and i in row)]
            pos = table[target] @ s[b, t]
            neg = table[negs] @ s[b, t] if negs else pos.new_zeros(0)
            if loss == "bce":
                terms.append(F.softplus(-pos) + F.softplus(neg).sum())
            else:
                terms.append(torch.logsumexp(torch.cat([pos[None], neg]), 0) - pos)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("loss", ["softmax", "sampled_softmax", "bce"])
@pytest.mark.parametrize("mask", [True, False])
def test_mask_own_items_in_every_loss(loss: str, mask: bool) -> None:
    torch.manual_seed(0)
    cfg = SASRecConfig(dim=8, heads=2, n_blocks=1, dropout=0.0, loss=loss, mask_own_items=mask)  # type: ignore[arg-type]
    module = SASRecModule(12, cfg, 2)
    if loss == "softmax":
        batch = _batch(torch.zeros(2, 0, dtype=torch.long), False, True)
    elif loss == "sampled_softmax":
        # A draws 2 (row 0's re-consumed item), 8 (row 0's), 6 (row 1's), 10 (nobody's); B draws 1, 3, 5, 7
        batch = _batch(torch.tensor([[2, 8, 6, 10], [1, 3, 5, 7]]), False, False)
    else:
        # per position, one draw of the target's domain: some are the row's items, one the target itself
        batch = _batch(torch.tensor([[0, 2, 8, 2, 4, 6], [3, 6, 9, 11, 8, 1]]), True, False)
    got = module.loss(batch)
    torch.testing.assert_close(got, _reference(module, batch, mask, loss), rtol=1e-5, atol=1e-6)
    # and the switch matters on this batch
    other = _reference(module, batch, not mask, loss)
    assert abs(float(got) - float(other)) > 1e-4
