"""The equations of sasrec and gca on hand-made tensors: the gate (closed = the backbone exactly; sigmoid vs tanh;
scalar, vector, FFN forms), the LayerNorm switch, causality in both domains, time-aligned views, |cos(X, X')|."""

from __future__ import annotations

import math

import pytest
import torch

from attnrec.models.layers.diagnostics import CosineMeter, abs_cosine, mean_abs_cosine
from attnrec.models.sequential.gca import GCAConfig, GCAModule
from attnrec.models.sequential.layers import (
    GatedCrossAttention,
    align_to_mixed,
    causal_mask,
    cross_mask,
    domain_view,
)
from attnrec.models.sequential.sasrec import SASRecConfig, SASRecModule

N_ITEMS = 30
#: items 0..14 are domain 0 (A), 15..29 domain 1 (B)
ITEM_DOMAINS = (torch.arange(N_ITEMS) >= 15).long()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three left-padded mixed sequences (item index + 1) with both domains interleaved, and their domains."""
    raw = [
        [-1, -1, 3, 20, 5, 17, 29, 8],
        [1, 16, 2, 3, 18, 19, 4, 22],
        [-1, -1, -1, -1, 25, 26, 7, 27],
    ]
    items = torch.tensor(raw) + 1
    domains = torch.where(items > 0, ITEM_DOMAINS[(items - 1).clamp(min=0)], -1)
    return items, domains


def gca(seed: int = 0, **overrides: object) -> GCAModule:
    torch.manual_seed(seed)
    cfg = GCAConfig(dim=8, heads=2, n_blocks=3, max_len=10, dropout=0.0, **overrides)  # type: ignore[arg-type]
    return GCAModule(N_ITEMS, cfg, ("A", "B")).eval()


# --------------------------------------------------------------------------------- |cos(X, X')|


def test_abs_cosine_hand_case() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    xp = torch.tensor([[0.0, 2.0], [-2.0, -2.0], [1.0, 1.0], [1.0, 0.0], [4.0, -3.0]])
    cos = abs_cosine(x, xp)
    assert cos[:3].tolist() == pytest.approx([0.0, 1.0, 1 / math.sqrt(2)])
    assert math.isnan(cos[3])  # a zero vector has no direction: left out
    assert cos[4] == pytest.approx(0.0)
    assert mean_abs_cosine(x, xp) == pytest.approx((0 + 1 + 1 / math.sqrt(2) + 0) / 4)
    mask = torch.tensor([True, True, False, True, False])
    assert mean_abs_cosine(x, xp, mask) == pytest.approx(0.5)
    assert math.isnan(mean_abs_cosine(x[3:4], xp[3:4]))
    meter = CosineMeter()  # batches merge exactly: sums, not means of means
    meter.add(x[:1], xp[:1])
    meter.add(x[1:3], xp[1:3])
    assert meter.value == pytest.approx((0 + 1 + 1 / math.sqrt(2)) / 3)


def test_the_gca_meter_compares_each_modules_input_stream_with_its_read_out() -> None:
    """|cos| of module ``A<-B@k`` is taken between the A stream entering the module (X, after block k) and the
    cross-attention read-out X' (before the gate), over the A positions that see a B item: captured here by a hook
    on each module and averaged by hand. (Not X after the update, X + g·X', which leans towards X'.)"""
    items, domains = batch()
    model = gca(positions=[0, 2], gate_init=2.0)
    seen: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for k in model.positions:
        for d, mod in enumerate(model.cross[str(k)]):  # type: ignore[arg-type]

            def hook(m: object, args: tuple, out: tuple, name: str = model.module_name(k, d)) -> None:
                seen[name] = (args[0], out[1], args[2][:, 0].any(-1))

            hooks.append(mod.register_forward_hook(hook))
    model.meters = {}
    with torch.no_grad():
        model.states(items, domains)
    for h in hooks:
        h.remove()
    assert set(model.meters) == set(seen) == {"A<-B@0", "B<-A@0", "A<-B@2", "B<-A@2"}
    for name, (x, x_prime, sees) in seen.items():
        real = x.abs().sum(-1) > 0
        want = mean_abs_cosine(x, x_prime, real & sees)
        assert model.meters[name].value == pytest.approx(want, rel=1e-6), name
        updated = mean_abs_cosine(x + torch.sigmoid(torch.tensor(2.0)) * x_prime, x_prime, real & sees)
        assert abs(updated - want) > 1e-3  # the test can tell the two apart


# --------------------------------------------------------------------------------- masks and views


def test_masks_are_causal_and_strict_across_domains() -> None:
    real = torch.tensor([[False, True, True]])
    m = causal_mask(real)[0, 0]
    assert m.tolist() == [[True, False, False], [False, True, False], [False, True, True]]
    q_cols = torch.tensor([[2, 5]])
    k_cols = torch.tensor([[-1, 1, 3, 4]])
    c = cross_mask(q_cols, k_cols)[0, 0]
    # query at time 2 sees the key at time 1 only; query at 5 sees 1, 3, 4; padding (-1) never
    assert c.tolist() == [[False, True, False, False], [False, True, True, True]]


def test_domain_view_and_alignment() -> None:
    items, domains = batch()
    a_items, a_cols = domain_view(items, domains, 0)
    assert a_items.tolist()[0] == [0, 4, 6, 9] and a_cols.tolist()[0] == [-1, 2, 4, 7]
    assert a_items.tolist()[2] == [0, 0, 0, 8] and a_cols.tolist()[2] == [-1, -1, -1, 6]
    # the state at mixed t = the view's state at the latest A item at or before t (0 before any)
    states = torch.arange(1.0, 5.0)[None, :, None].expand(3, 4, 1)  # view column c has value c + 1
    aligned = align_to_mixed(states, domains, 0)[..., 0]
    assert aligned[0].tolist() == [0, 0, 2, 2, 3, 3, 3, 4]
    assert aligned[2].tolist() == [0, 0, 0, 0, 0, 0, 4, 4]


def test_a_query_without_earlier_keys_gets_zero() -> None:
    torch.manual_seed(0)
    mod = GatedCrossAttention(4, 2).eval()
    x, y = torch.randn(1, 2, 4), torch.randn(1, 3, 4)
    visible = cross_mask(torch.tensor([[0, 5]]), torch.tensor([[1, 2, 3]]))
    out, x_prime = mod(x, y, visible)
    assert torch.equal(x_prime[0, 0], torch.zeros(4)) and torch.equal(out[0, 0], x[0, 0])
    assert x_prime[0, 1].abs().sum() > 0


# --------------------------------------------------------------------------------- the gate


@pytest.mark.parametrize("form", ["scalar", "vector", "ffn"])
def test_closed_gate_gives_the_backbone_exactly(form: str) -> None:
    items, domains = batch()
    backbone = gca(positions=[])
    model = gca(positions=[0, 1, 2], gate_act="tanh", gate_form=form, gate_init=0.0)
    missing, unexpected = model.load_state_dict(backbone.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("cross.") for k in missing)
    with torch.no_grad():
        assert torch.equal(model.states(items, domains), backbone.states(items, domains))
        # sigmoid can close only at -inf: set every gate's pre-activation there
        sig = gca(positions=[0, 1, 2], gate_act="sigmoid", gate_form=form)
        sig.load_state_dict(backbone.state_dict(), strict=False)
        for m in sig.cross.values():
            for g in m:  # type: ignore[union-attr]
                p = g.gate_ffn[-1].bias if g.gate_ffn is not None else g.gate_logit
                p.fill_(float("-inf"))
        assert torch.equal(sig.states(items, domains), backbone.states(items, domains))
        # and an open gate does change the output (the test can fail)
        opened = model.cross["1"][0]  # type: ignore[index]
        (opened.gate_ffn[-1].bias if form == "ffn" else opened.gate_logit).fill_(0.5)  # type: ignore[union-attr, index]
        assert not torch.equal(model.states(items, domains), backbone.states(items, domains))


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_gate_activation_scales_the_cross_output(act: str) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    visible = torch.ones(2, 1, 3, 5, dtype=torch.bool)
    f = torch.sigmoid if act == "sigmoid" else torch.tanh
    scalar = GatedCrossAttention(4, 2, gate_act=act, gate_form="scalar", gate_init=0.3).eval()  # type: ignore[arg-type]
    out, xp = scalar(x, y, visible)
    torch.testing.assert_close(out - x, f(torch.tensor(0.3)) * xp)
    vector = GatedCrossAttention(4, 2, gate_act=act, gate_form="vector").eval()  # type: ignore[arg-type]
    with torch.no_grad():
        vector.gate_logit.copy_(torch.tensor([-1.0, 0.0, 0.5, 2.0]))
    out, xp = vector(x, y, visible)
    torch.testing.assert_close(out - x, f(torch.tensor([-1.0, 0.0, 0.5, 2.0])) * xp)
    ffn = GatedCrossAttention(4, 2, gate_act=act, gate_form="ffn", gate_hidden=3).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        ffn.gate_ffn[-1].weight.normal_()  # type: ignore[index]
    out, xp = ffn(x, y, visible)
    expected = f(ffn.gate_ffn(torch.cat([x, xp], -1))) * xp  # type: ignore[misc]
    torch.testing.assert_close(out - x, expected)


def test_layer_norm_switch_normalises_queries_and_keys_only_when_on() -> None:
    torch.manual_seed(2)
    x, y = torch.randn(2, 3, 4) * 5 + 2, torch.randn(2, 4, 4) * 3 - 1
    visible = torch.ones(2, 1, 3, 4, dtype=torch.bool)
    on = GatedCrossAttention(4, 2, layer_norm=True).eval()
    off = GatedCrossAttention(4, 2, layer_norm=False).eval()
    off.attn.load_state_dict(on.attn.state_dict())
    with torch.no_grad():
        on.norm_q.weight.fill_(2.0)  # type: ignore[union-attr]
        on.norm_kv.bias.fill_(0.5)  # type: ignore[union-attr]
        ln = torch.nn.functional.layer_norm
        want_on = on.attn(ln(x, (4,)) * 2.0, ln(y, (4,)) + 0.5, visible)
        torch.testing.assert_close(on.cross(x, y, visible), want_on)
        torch.testing.assert_close(off.cross(x, y, visible), on.attn(x, y, visible))
        assert not torch.allclose(on.cross(x, y, visible), off.cross(x, y, visible))
    assert not any("norm" in k for k in off.state_dict())


# --------------------------------------------------------------------------------- causality


@pytest.mark.parametrize("kind", ["sasrec", "gca"])
@pytest.mark.parametrize("column", [3, 5, 6])
def test_changing_a_future_item_changes_no_earlier_state(kind: str, column: int) -> None:
    """Replace the item at one column by another of the same or the other domain: every state at an earlier column
    (all target domains) is unchanged, and the state at that column does change."""
    items, domains = batch()
    torch.manual_seed(3)
    if kind == "sasrec":
        model: SASRecModule | GCAModule = SASRecModule(
            N_ITEMS, SASRecConfig(dim=8, heads=2, max_len=10, dropout=0.0), 2
        ).eval()
    else:
        model = gca(positions=[0, 1, 2], gate_form="ffn")
    with torch.no_grad():
        before = model.states(items, domains)
        for new_item in (11, 24):  # an A item and a B item
            changed = items.clone()
            changed[:, column] = new_item + 1
            new_domains = torch.where(changed > 0, ITEM_DOMAINS[(changed - 1).clamp(min=0)], -1)
            after = model.states(changed, new_domains)
            assert torch.equal(after[:, :column], before[:, :column]), (kind, column, new_item)
            assert not torch.allclose(after[:, column], before[:, column])


def test_training_path_trimmed_views_give_the_eval_states_and_stay_causal() -> None:
    """Training builds each domain's view trimmed to the batch's longest view (``domain_view(trim=True)``), eval keeps
    the mixed width: at dropout 0 both give the same states, a row's states do not depend on the rows batched with
    it, and a future item (either domain) changes no earlier state in training mode either."""
    items, domains = batch()
    model = gca(positions=[0, 1, 2], gate_form="ffn")
    with torch.no_grad():
        evaluated = model.states(items, domains)
        model.train()
        trained = model.states(items, domains)
        torch.testing.assert_close(trained, evaluated, rtol=0, atol=1e-6)
        # row 2 alone has views of width 1 (A) / 3 (B), 4 / 4 in the batch
        torch.testing.assert_close(model.states(items[2:], domains[2:]), trained[2:], rtol=0, atol=1e-6)
        for new_item in (11, 24):
            changed = items.clone()
            changed[:, 5] = new_item + 1
            new_domains = torch.where(changed > 0, ITEM_DOMAINS[(changed - 1).clamp(min=0)], -1)
            after = model.states(changed, new_domains)
            torch.testing.assert_close(after[:, :5], trained[:, :5], rtol=0, atol=1e-6)
            assert not torch.allclose(after[:, 5], trained[:, 5])


def test_gca_cross_attention_reads_the_other_domain_past() -> None:
    """Changing an earlier B item changes a later A position's A-domain state (the cross-attention is live)."""
    items, domains = batch()
    model = gca(positions=[1])
    with torch.no_grad():
        before = model.states(items, domains)
        changed = items.clone()
        changed[0, 3] = 25 + 1  # row 0, column 3: a B item (19 -> 25)
        after = model.states(changed, domains)
    # row 0's next A item is column 4: its A state (index 0) moved; the A state at column 2 did not
    assert not torch.allclose(after[0, 4, 0], before[0, 4, 0])
    assert torch.equal(after[0, 2], before[0, 2])
