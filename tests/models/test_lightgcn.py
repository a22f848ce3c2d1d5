"""lightgcn: the conformance suite, the propagation and loss against hand-computed values, the eval cache, and the
graph being rebuilt (not stored) on load."""

import math
import tempfile

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from attnrec.data.batches import PairwiseBatch
from attnrec.errors import ConfigError
from attnrec.models.layers.graph import normalized_adjacency
from attnrec.models.topk.lightgcn import LightGCN, LightGCNModule
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import ConformanceTests, checkerboard
from attnrec.training.trainer import Trainer, TrainerConfig


class TestLightGCNConformance(ConformanceTests):
    model_class = LightGCN
    config = {"dim": 16, "n_layers": 2}
    trainer = {"epochs": 30, "lr": 0.02, "batch_size": 128}


# users u0: {i0, i1}, u1: {i1, i2}; Â entries 1/sqrt(d_u d_i): (u0,i0) 1/√2, (u0,i1) ½, (u1,i1) ½, (u1,i2) 1/√2
R = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
s2, h = 1 / math.sqrt(2), 0.5
E0_USERS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
E0_ITEMS = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])


def _hand_module(n_layers: int = 1, reg: float = 0.0) -> LightGCNModule:
    m = LightGCNModule(normalized_adjacency(R), 2, 3, dim=2, n_layers=n_layers, reg=reg)
    with torch.no_grad():
        m.user.weight.copy_(E0_USERS)
        m.item.weight.copy_(E0_ITEMS)
    return m


def test_propagation_k1_equals_hand_mean_of_e0_and_ae0():
    m = _hand_module(n_layers=1)
    # Â E0 by hand: u0 = s2*i0 + h*i1, u1 = h*i1 + s2*i2, i0 = s2*u0, i1 = h*(u0 + u1), i2 = s2*u1
    ae0_users = torch.tensor([[2 * s2, 2 * h], [s2, 2 * h + s2]])
    ae0_items = torch.tensor([[s2, 0.0], [h, h], [0.0, s2]])
    eu, ei = m.user_item_embeddings()
    torch.testing.assert_close(eu, (E0_USERS + ae0_users) / 2)
    torch.testing.assert_close(ei, (E0_ITEMS + ae0_items) / 2)


def test_loss_hand_case_regularises_layer0():
    m = _hand_module(n_layers=1, reg=0.25)
    batch = PairwiseBatch(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([2, 0]))
    eu, ei = (t.detach() for t in m.user_item_embeddings())
    s = [float(eu[u] @ ei[i]) for u, i in [(0, 1), (0, 2), (1, 2), (1, 0)]]
    bpr = (math.log1p(math.exp(s[1] - s[0])) + math.log1p(math.exp(s[3] - s[2]))) / 2
    # λ Σ ‖layer-0 rows‖² / B: users 0, 1 (1 + 1), positives i1, i2 (4 + 2), negatives i2, i0 (2 + 4)
    reg = 0.25 * (2.0 + 6.0 + 6.0) / 2
    assert m.loss(batch).item() == pytest.approx(bpr + reg, rel=1e-5)


def test_reg_gradient_is_2_lambda_e0_over_b():
    # the BPR part of the gradient is the same for both λ (same weights), so the difference is the regulariser's
    batch = PairwiseBatch(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([2, 0]))
    grads = []
    for reg in (0.0, 0.3):
        m = _hand_module(n_layers=2, reg=reg)
        m.zero_grad()
        m.loss(batch).backward()
        grads.append((m.user.weight.grad.clone(), m.item.weight.grad.clone()))
    d_user = grads[1][0] - grads[0][0]
    d_item = grads[1][1] - grads[0][1]
    # d/dE0 of λ Σ‖e⁰‖²/B = 2 λ e⁰ / B per occurrence: users 0 and 1 once; items 1 and 0 once, item 2 twice
    torch.testing.assert_close(d_user, 2 * 0.3 * E0_USERS / 2)
    torch.testing.assert_close(d_item, 2 * 0.3 * E0_ITEMS * torch.tensor([[1.0], [1.0], [2.0]]) / 2)


def test_eval_cache_is_used_and_invalidated_after_training_more():
    train, valid, _ = checkerboard(implicit=True)
    model = LightGCN(dim=8, n_layers=2)
    model.fit(train, None, trainer=TrainerConfig(epochs=1, progress=False, device="cpu"))
    m = model.module
    assert isinstance(m, LightGCNModule) and not m.training
    before = model.score_users(np.arange(4)).clone()
    cached = m._cache
    assert cached is not None
    model.score_users(np.arange(4))
    assert m._cache is cached  # reused, not recomputed
    # train more with the one Trainer on the same module: the weights change, the cache must not survive
    more = Trainer(TrainerConfig(epochs=2, lr=0.05, progress=False, device="cpu"))
    more.fit(m, lambda epoch, gen: model.train_batches(train, epoch, gen, 64), seed=1)
    after = model.score_users(np.arange(4))
    assert not torch.allclose(after, before)
    with torch.no_grad():
        fresh = LightGCNModule(m.adj, m.n_users, m.n_items, 8, 2, 0.0)
        fresh.load_state_dict(m.state_dict())
        fresh.eval()
        eu, ei = fresh.user_item_embeddings()
    torch.testing.assert_close(after, eu[:4] @ ei.T)
    # an in-place weight change in eval mode (no train() call) also invalidates it; propagation is linear, so
    # doubling every layer-0 embedding doubles both factors of each score
    with torch.no_grad():
        m.user.weight.mul_(2.0)
        m.item.weight.mul_(2.0)
    torch.testing.assert_close(model.score_users(np.arange(4)), 4 * after)


def test_graph_is_rebuilt_from_seen_not_stored():
    train, valid, _ = checkerboard(implicit=True)
    model = LightGCN(dim=8, n_layers=3)
    model.fit(train, None, trainer=TrainerConfig(epochs=2, progress=False, device="cpu"))
    assert set(model.state_tensors()) == {"user.weight", "item.weight"}
    with tempfile.TemporaryDirectory() as tmp:
        save_bundle(model, tmp)
        loaded = load_bundle(tmp)
    a, b = loaded.module.adj.to_dense(), model.module.adj.to_dense()
    assert torch.equal(a, b)
    loaded.seen = None
    with pytest.raises(ConfigError, match="training matrix"):
        loaded.load_state_tensors(model.state_tensors())


def test_zero_layers_is_matrix_factorisation():
    m = _hand_module(n_layers=0)
    eu, ei = m.user_item_embeddings()
    torch.testing.assert_close(eu, E0_USERS)
    torch.testing.assert_close(ei, E0_ITEMS)


def test_adjacency_shape_mismatch_is_an_error():
    with pytest.raises(ConfigError, match="3 users"):
        LightGCNModule(normalized_adjacency(R), 3, 3, dim=2, n_layers=1, reg=0.0)
