"""mrcsaf's fast training step against the all-items computation it replaces: the kNN attention kernel, the
propagation at the batch's nodes only, the folded fusion product, and the whole loss with every parameter's
gradient, for each variant, attention form and reading of e^m (forward values and gradients equal up to float
rounding)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from attnrec.data.batches import PairwiseBatch
from attnrec.models.layers.graph import normalized_adjacency, propagate_mean
from attnrec.models.layers.item_graph import modality_graph, prune_edges, union_values
from attnrec.models.multimodal.mrcsaf_module import (
    CrossSelfAttentionFusion,
    MRCSAFConfig,
    MRCSAFModule,
    Neighbours,
    attend_full,
    attend_knn,
    neighbour_lists,
    weighted_graph_conv,
)
from attnrec.models.multimodal.mrcsaf_ops import (
    knn_attention,
    local_propagate_mean,
    plan_local_propagation,
    to_scipy,
)

N_USERS, N_ITEMS = 13, 17


def random_module(**config: Any) -> MRCSAFModule:
    """A module over random features of 17 items (a 6-d and a 3-d modality, one featureless item in the first)
    and a random 13 × 17 user-item graph with one user and one item without edges."""
    rng = np.random.default_rng(3)
    feats = {
        "a": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
        "b": rng.random((N_ITEMS, 3)).astype(np.float32),
    }
    feats["a"][5] = 0.0
    dense = (rng.random((N_USERS, N_ITEMS)) < 0.3).astype(np.float32)
    dense[4] = 0.0  # a user without interactions
    dense[:, 9] = 0.0  # an item nobody interacted with
    cfg = MRCSAFConfig(**{"dim": 4, "feat_dim": 4, "knn_k": 4, "reg_weight": 0.3, **config})
    module = MRCSAFModule(
        N_USERS,
        N_ITEMS,
        cfg,
        {m: x.shape[1] for m, x in feats.items()},
        normalized_adjacency(sp.csr_matrix(dense)),
        features=feats,
        graph=union_values([modality_graph(x, cfg.knn_k) for x in feats.values()]),
        fixed_weights=[0.3, 0.7],
    )
    with torch.no_grad():  # non-zero biases and a live fusion, so every term of the equations is exercised
        for p in module.parameters():
            if p.dim() == 1:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    module.train()
    module.set_train_adj(prune_edges(sp.csr_matrix(dense), 0.4, torch.Generator().manual_seed(0)))
    return module


def explicit_fusion(
    f: CrossSelfAttentionFusion, e: list[torch.Tensor], nb: list[Neighbours] | None
) -> list[torch.Tensor]:
    """Eqs. 8-18 as printed: Q, K, V per modality, c_m, ẽ_m, then W [c_m ; ẽ_m] + b."""
    q = [f.query[m](x) for m, x in enumerate(e)]
    k = [f.key[m](x) for m, x in enumerate(e)]
    v = [f.value[m](x) for m, x in enumerate(e)]

    def att(m: int, o: int) -> torch.Tensor:
        return attend_full(q[m], k[o], v[o]) if nb is None else attend_knn(q[m], k[o], v[o], *nb[o])

    out = []
    for m, x in enumerate(e):
        others = [o for o in range(len(e)) if o != m]
        cross = sum((att(m, o) for o in others), torch.zeros_like(x)) / max(len(others), 1)
        out.append(f.fuse(torch.cat([x + cross, x + att(m, m)], dim=1)))
    return out


def reference_loss(
    m: MRCSAFModule, batch: PairwiseBatch, history: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 29 computed over every user and item, the way the step was computed before the fast path; with
    ``history`` (I, M·d), ė outside the batch's items is read from it (``fusion_scope`` "batch")."""
    c, n_mod = m.config, m.n_modalities
    # e^m (modal_embedding): the ID blocks, the projections f^m = W_m x^m + b_m of eq. 27, or their sum
    f_all = [m.proj[name](m.feature(name)) for name in m.modalities]
    if c.modal_embedding == "features":
        e = f_all
    else:
        e = m.modality_tables(m.item.weight)
        if c.modal_embedding == "id+features":
            e = [x + f for x, f in zip(e, f_all, strict=True)]
    nb = m.neighbours() if c.attention == "knn" else None
    fused = e if m.fusion is None else explicit_fusion(m.fusion, e, nb)
    if c.fused_norm is not None:  # the opt-in departure: every fused row rescaled to length fused_norm
        fused = [c.fused_norm * f / torch.linalg.vector_norm(f, dim=1, keepdim=True) for f in fused]
    if history is not None:
        inside = torch.zeros(N_ITEMS, 1, dtype=torch.bool)
        inside[torch.cat([batch.pos, batch.neg.reshape(-1)])] = True
        fused = [torch.where(inside, f, h) for f, h in zip(fused, m.modality_tables(history), strict=True)]
    blocks = [
        propagate_mean(m.ui_graph(), torch.cat([u, f]), c.n_layers)
        for u, f in zip(m.modality_tables(m.user.weight), fused, strict=True)
    ]
    out = torch.cat(blocks, dim=1)
    users, p_dot = out[:N_USERS], out[N_USERS:]
    items = p_dot + weighted_graph_conv(
        m.graph_indices, m.graph_values, m.modality_weights(), torch.cat(e, 1)
    )
    u = users[batch.users].reshape(-1, n_mod, c.dim)
    neg = batch.neg.reshape(len(batch.pos), -1)  # (B, n_neg): the mean runs over all B · n_neg pairs
    p, n = items[batch.pos].reshape(-1, 1, n_mod, c.dim), items[neg].reshape(*neg.shape, n_mod, c.dim)
    loss = sum(F.softplus(-(u[:, None, k] * (p[:, :, k] - n[:, :, k])).sum(-1)).mean() for k in range(n_mod))
    for k, name in enumerate(m.modalities):
        f = m.proj[name](m.feature(name))
        diff = f[batch.pos].unsqueeze(1) - f[neg]
        loss = loss + c.reg_weight * F.softplus(-(u[:, None, k] * diff).sum(-1)).mean()
    return loss  # type: ignore[return-value]


def grads(m: MRCSAFModule, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    m.zero_grad()
    loss.backward()
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in m.named_parameters()}


BATCH = PairwiseBatch(
    torch.tensor([0, 1, 2, 2, 7, 12, 4]),
    torch.tensor([3, 9, 5, 0, 16, 3, 1]),
    torch.tensor([9, 2, 5, 11, 4, 8, 0]),
)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"attention": "full"},
        {"variant": "selector_only"},
        {"variant": "csa_only"},
        {"n_layers": 1},
        {"n_layers": 3, "reg_weight": 0.0},
        {"n_layers": 0},
        {"fused_norm": 0.7},
        {"fused_norm": 2.0, "attention": "full", "fusion_bias_init": "zero"},
        {"fused_norm": 0.7, "variant": "csa_only", "n_layers": 1},
        {"modal_embedding": "features"},
        {"modal_embedding": "features", "attention": "full", "reg_weight": 0.0},
        {"modal_embedding": "features", "variant": "selector_only"},
        {"modal_embedding": "features", "variant": "csa_only", "n_layers": 3},
        {"modal_embedding": "id+features"},
    ],
)
def test_fast_loss_and_gradients_equal_the_all_items_computation(config: dict[str, Any]) -> None:
    m = random_module(**config)
    fast, slow = m.loss(BATCH), reference_loss(m, BATCH)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    g_fast, g_slow = grads(m, m.loss(BATCH)), grads(m, reference_loss(m, BATCH))
    assert any(float(g.abs().sum()) > 0 for g in g_slow.values())
    for name in g_slow:
        torch.testing.assert_close(g_fast[name], g_slow[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("modal_embedding", ["id", "features"])
def test_fast_loss_on_the_full_graph_and_with_several_negatives(modal_embedding: str) -> None:
    m = random_module(modal_embedding=modal_embedding)
    m.set_train_adj(None)  # dropout 0: the full user-item graph
    batch = PairwiseBatch(BATCH.users, BATCH.pos, torch.stack([BATCH.neg, BATCH.neg.flip(0)], dim=1))
    torch.testing.assert_close(m.loss(batch), reference_loss(m, batch), rtol=1e-5, atol=1e-6)


def test_knn_attention_kernel_matches_autograd_attention_forward_and_backward() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(11, 6, generator=g, requires_grad=True)
    q = torch.randn(8, 3, 6, generator=g, requires_grad=True)
    idx = torch.randint(0, 11, (8, 4), generator=g)
    mask = torch.rand(8, 4, generator=g) > 0.4
    mask[:, 1] = True
    out = knn_attention(q, x, idx, mask)
    want = torch.stack([attend_knn(q[:, m], x, x, idx, mask) for m in range(3)], dim=1)
    torch.testing.assert_close(out, want)
    w = torch.randn(out.shape, generator=g)
    dq, dx = torch.autograd.grad((out * w).sum(), [q, x])
    dq_want, dx_want = torch.autograd.grad((want * w).sum(), [q, x])
    torch.testing.assert_close(dq, dq_want)
    torch.testing.assert_close(dx, dx_want)
    assert float(dx.abs().sum()) > 0


@pytest.mark.parametrize("n_layers", [0, 1, 2, 3])
def test_local_propagation_equals_the_rows_of_the_full_propagation(n_layers: int) -> None:
    rng = np.random.default_rng(n_layers)
    r = sp.csr_matrix((rng.random((9, 12)) < 0.25).astype(np.float32))
    adj = normalized_adjacency(r)
    e0 = torch.randn(21, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    targets = np.array([0, 3, 8, 9 + 2, 9 + 7, 9 + 11])
    plan = plan_local_propagation(to_scipy(adj), targets, n_layers, 9, torch.device("cpu"))
    out = local_propagate_mean(plan, lambda nodes: e0[nodes])
    want = propagate_mean(adj, e0, n_layers)[torch.from_numpy(targets)]
    torch.testing.assert_close(out, want)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    (g_out,) = torch.autograd.grad((out * w).sum(), [e0])
    (g_want,) = torch.autograd.grad((want * w).sum(), [e0])
    torch.testing.assert_close(g_out, g_want)
    # the items whose input rows it reads are within n_layers hops of the targets
    assert set(plan.items.tolist()) >= {2, 7, 11}


@pytest.mark.parametrize("attention", ["knn", "full"])
@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_folded_fusion_equals_the_printed_equations_at_all_items_and_at_rows(
    attention: str, n_mod: int
) -> None:
    g = torch.Generator().manual_seed(n_mod)
    f = CrossSelfAttentionFusion(4, n_mod, attention)  # type: ignore[arg-type]
    with torch.no_grad():
        f.fuse.bias.normal_(generator=g)
    e = [torch.randn(9, 4, generator=g, requires_grad=True) for _ in range(n_mod)]
    nb = None
    if attention == "knn":
        nb = []
        for _ in range(n_mod):
            vals = (torch.rand(9 * 9, generator=g) < 0.4).float()
            vals[::10] = 1.0  # every item its own neighbour
            idx = torch.stack(torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")).reshape(2, -1)
            nb.append(neighbour_lists(idx, vals, 9))
    want = explicit_fusion(f, e, nb)
    fused, _ = f(e, nb)
    for a, b in zip(fused, want, strict=True):
        torch.testing.assert_close(a, b)
    rows = torch.tensor([1, 4, 8])
    fused_rows, _ = f(e, nb, rows, cross=False)
    for a, b in zip(fused_rows, want, strict=True):
        torch.testing.assert_close(a, b[rows])
    w = [torch.randn(3, 4, generator=g) for _ in range(n_mod)]
    got = torch.autograd.grad(
        sum((a * b).sum() for a, b in zip(fused_rows, w, strict=True)),
        [*e, *f.parameters()],
        allow_unused=True,
    )
    ref = torch.autograd.grad(
        sum((a[rows] * b).sum() for a, b in zip(want, w, strict=True)),
        [*e, *f.parameters()],
        allow_unused=True,
    )
    for a, b in zip(got, ref, strict=True):
        if b is None:
            assert a is None or float(a.abs().sum()) == 0
        else:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("modal_embedding", ["id", "features"])
def test_batch_fusion_scope_fuses_the_batch_items_and_reads_the_epochs_history_elsewhere(
    modal_embedding: str,
) -> None:
    m = random_module(fusion_scope="batch", modal_embedding=modal_embedding)
    # at the epoch's first step the history is current: the same loss as the exact step, but the gradient only
    # reaches the attention through the batch's own items
    e = (
        m.modality_tables(m.item.weight)
        if modal_embedding == "id"
        else [m.proj[name](m.feature(name)) for name in m.modalities]
    )
    history = torch.cat(explicit_fusion(m.fusion, e, m.neighbours()), 1).detach()  # type: ignore[arg-type]
    torch.testing.assert_close(m.loss(BATCH), reference_loss(m, BATCH), rtol=1e-5, atol=1e-6)
    g_fast, g_want = grads(m, m.loss(BATCH)), grads(m, reference_loss(m, BATCH, history))
    g_exact = grads(m, reference_loss(m, BATCH))
    for name in g_want:
        torch.testing.assert_close(g_fast[name], g_want[name], rtol=1e-4, atol=1e-6, msg=name)
    assert not torch.allclose(g_fast["fusion.fuse.weight"], g_exact["fusion.fuse.weight"])
    # later steps of the epoch read the history made at its first step
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    torch.testing.assert_close(m.loss(BATCH), reference_loss(m, BATCH, history), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(m.loss(BATCH), reference_loss(m, BATCH))
    # a new epoch's graph retires it
    m.set_train_adj(m.train_adj)
    torch.testing.assert_close(m.loss(BATCH), reference_loss(m, BATCH), rtol=1e-5, atol=1e-6)


def test_knn_attention_under_mixed_precision_matches_float32() -> None:
    # the trainer's amp runs steps under bf16 autocast: the hand-written backward then receives a bf16 gradient
    # against float32 saved tensors (it failed with "expected scalar type Float but found BFloat16")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(11, 6, generator=g)
    w0 = torch.randn(6, 6, generator=g)
    idx = torch.randint(0, 11, (8, 4), generator=g)
    grads = []
    for amp in (False, True):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = knn_attention((x[:8] @ w).unsqueeze(1), x, idx)
        assert out.dtype == torch.float32
        out.sum().backward()
        assert x.grad is not None and w.grad is not None
        assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
        grads.append((x.grad, w.grad))
    for exact, mixed in zip(grads[0], grads[1], strict=True):  # bf16 products: ~3 significant digits
        torch.testing.assert_close(mixed, exact, rtol=0.05, atol=0.05)
