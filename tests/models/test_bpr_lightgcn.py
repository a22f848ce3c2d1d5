"""bpr and lightgcn: conformance, and checks of the graph normalisation, propagation and loss formulas."""

import math

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.data.batches import PairwiseBatch
from attnrec.models.layers.graph import normalized_adjacency, propagate_mean
from attnrec.models.topk.bpr import BPR, MFModule, bpr_loss, embedding_reg
from attnrec.models.topk.lightgcn import LightGCN
from attnrec.testing import ConformanceTests, checkerboard


class TestBPRConformance(ConformanceTests):
    model_class = BPR
    config = {"dim": 16}
    trainer = {"epochs": 30, "lr": 0.02, "batch_size": 128}


class TestLightGCNConformance(ConformanceTests):
    model_class = LightGCN
    config = {"dim": 16, "n_layers": 2}
    trainer = {"epochs": 30, "lr": 0.02, "batch_size": 128}


def test_normalized_adjacency_hand_case():
    # users u0: {i0, i1}, u1: {i1, i2}; node order u0 u1 i0 i1 i2; degrees 2 2 1 2 1
    r = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
    a = normalized_adjacency(r).to_dense().numpy()
    deg = np.array([2, 2, 1, 2, 1], dtype=np.float64)
    expect = np.zeros((5, 5))
    for u, i in [(0, 0), (0, 1), (1, 1), (1, 2)]:
        expect[u, 2 + i] = expect[2 + i, u] = 1 / math.sqrt(deg[u] * deg[2 + i])
    np.testing.assert_allclose(a, expect, rtol=1e-6)


def test_isolated_nodes_have_zero_rows():
    r = sp.csr_matrix(np.array([[1, 0], [0, 0]], dtype=np.float32))
    a = normalized_adjacency(r).to_dense().numpy()
    assert np.isfinite(a).all() and a[1].sum() == 0 and a[:, 3].sum() == 0


def test_propagation_is_layer_mean():
    r = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
    adj = normalized_adjacency(r)
    e0 = torch.randn(5, 4)
    dense = adj.to_dense()
    torch.testing.assert_close(propagate_mean(adj, e0, 1), (e0 + dense @ e0) / 2)
    torch.testing.assert_close(propagate_mean(adj, e0, 2), (e0 + dense @ e0 + dense @ dense @ e0) / 3)
    torch.testing.assert_close(propagate_mean(adj, e0, 0), e0)


def test_bpr_loss_formula():
    pos = torch.tensor([2.0, -1.0])
    neg = torch.tensor([0.5, 0.0])
    expect = -(math.log(1 / (1 + math.exp(-1.5))) + math.log(1 / (1 + math.exp(1.0)))) / 2
    assert abs(bpr_loss(pos, neg).item() - expect) < 1e-6
    # several negatives per positive broadcast against the positive
    multi = bpr_loss(pos, torch.stack([neg, neg], dim=1))
    assert abs(multi.item() - expect) < 1e-6


def test_regulariser_and_its_gradient():
    m = MFModule(3, 4, dim=2, reg=0.5, init_std=0.1)
    batch = PairwiseBatch(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([3, 0]))
    u, p, n = m.user(batch.users), m.item(batch.pos), m.item(batch.neg)
    expect_reg = (u.square().sum() + p.square().sum() + n.square().sum()) / 4
    torch.testing.assert_close(embedding_reg(u, p, n), expect_reg)
    m.zero_grad()
    (embedding_reg(m.user(batch.users))).backward()
    # d/du of ½‖u‖²/B is u/B for the rows in the batch, zero elsewhere
    expect_grad = torch.zeros(3, 2)
    expect_grad[[0, 1]] = m.user.weight.detach()[[0, 1]] / 2
    torch.testing.assert_close(m.user.weight.grad, expect_grad)


def test_lightgcn_cache_invalidated_by_training():
    from attnrec.training.trainer import TrainerConfig

    train, valid, _ = checkerboard(implicit=True)
    model = LightGCN(dim=8, n_layers=2)
    model.fit(train, None, trainer=TrainerConfig(epochs=1, progress=False, device="cpu"))
    before = model.score_users(np.arange(3)).clone()
    assert model.module._cache is not None
    model.module.train()
    assert model.module._cache is None
    with torch.no_grad():
        model.module.embedding.weight.add_(1.0)
    model.module.eval()
    assert not torch.allclose(model.score_users(np.arange(3)), before)


def test_bpr_scores_are_dot_products():
    train, _, _ = checkerboard(implicit=True)
    from attnrec.training.trainer import TrainerConfig

    m = BPR(dim=4)
    m.fit(train, None, trainer=TrainerConfig(epochs=1, progress=False, device="cpu"))
    w_u, w_i = m.module.user.weight.detach(), m.module.item.weight.detach()
    torch.testing.assert_close(m.score_users(np.array([2, 5])), w_u[[2, 5]] @ w_i.T)
