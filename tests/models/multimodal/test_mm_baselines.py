"""VBPR, LATTICE and BM3: the conformance suite, and their equations checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from attnrec.data.batches import PairwiseBatch
from attnrec.data.side import ItemFeatures, SideInputs
from attnrec.models.multimodal.bm3 import BM3, BM3Config, BM3Module
from attnrec.models.multimodal.lattice import (
    Lattice,
    LatticeModule,
    coo_mm,
    symmetric_values,
    weighted_knn,
)
from attnrec.models.multimodal.vbpr import VBPR, VBPRModule
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import ConformanceTests, checkerboard, planted_item_features
from attnrec.training.trainer import TrainerConfig


def side_for(train) -> SideInputs:  # type: ignore[no-untyped-def]
    return SideInputs(
        item_features=ItemFeatures(train.item_vocab, planted_item_features(len(train.item_vocab)))
    )


class _ItemFeaturesHook:
    """The conformance hooks of the three models: tiny trainer settings and planted item features."""

    trainer = {"epochs": 30, "lr": 0.02, "batch_size": 128}

    @classmethod
    def side_inputs(cls) -> SideInputs:
        return side_for(checkerboard(implicit=True)[0])


class TestVBPRConformance(_ItemFeaturesHook, ConformanceTests):
    model_class = VBPR
    config = {"dim": 8, "feat_dim": 8}


class TestLatticeConformance(_ItemFeaturesHook, ConformanceTests):
    model_class = Lattice
    config = {"dim": 8, "feat_dim": 8, "knn_k": 4}


class TestBM3Conformance(_ItemFeaturesHook, ConformanceTests):
    model_class = BM3
    config = {"dim": 8, "feat_dim": 8}
    # bootstrapping without negatives separates the groups more slowly than BPR
    trainer = {"epochs": 60, "lr": 0.05, "batch_size": 128}


def _fit(cls, **config):  # type: ignore[no-untyped-def]
    train, valid, _ = checkerboard(implicit=True)
    model = cls(**{"dim": 4, "feat_dim": 4, **config})
    trainer = TrainerConfig(epochs=2, batch_size=256, progress=False, device="cpu")
    model.fit(train, valid, side=side_for(train), trainer=trainer)
    return model, train


def _batch() -> PairwiseBatch:
    return PairwiseBatch(
        users=torch.tensor([0, 1, 2]), pos=torch.tensor([0, 3, 5]), neg=torch.tensor([1, 2, 4])
    )


# ------------------------------------------------------------------------------------------------ VBPR


def test_vbpr_score_is_eq_2_of_the_paper():
    model, train = _fit(VBPR, reg=0.0)
    m = model.module
    assert isinstance(m, VBPRModule)
    with torch.no_grad():  # give the biases values (they start at zero)
        m.item_bias.normal_()
        for lin in m.feat_bias.values():
            lin.weight.normal_()
    feats = planted_item_features(len(train.item_vocab))
    u, i = 3, 7
    gamma = m.user.weight[u] @ m.item.weight[i]
    content = sum(
        m.proj[k].weight.detach() @ torch.from_numpy(feats[k][i]) + m.proj[k].bias.detach()
        for k in ("meta", "text")
    )
    visual_bias = sum(
        m.feat_bias[k].weight.detach()[0] @ torch.from_numpy(feats[k][i]) for k in ("meta", "text")
    )
    want = gamma + m.theta.weight[u] @ content + m.item_bias[i] + visual_bias
    m.eval()
    got = model.score_users(np.array([u]))[0, i]
    assert got.item() == pytest.approx(want.item(), abs=1e-5)


def test_vbpr_without_biases_has_no_bias_column_and_its_loss_is_bpr_plus_l2():
    model, _ = _fit(VBPR, biases=False, reg=0.5)
    m = model.module
    assert isinstance(m, VBPRModule)
    with torch.no_grad():
        m.item_bias.fill_(3.0)  # ignored when biases are off
        eu, ei = m.compute_embeddings()
        assert torch.all(ei[:, -1] == 0) and torch.all(eu[:, -1] == 1)
        b = _batch()
        u, p, n = eu[b.users], ei[b.pos], ei[b.neg]
        pos, neg = (u * p).sum(1), (u * n).sum(1)
        bpr = -F.logsigmoid(pos - neg).mean()
        l2 = (u[:, :-1].square().sum() + p[:, :-1].square().sum() + n[:, :-1].square().sum()) / 3
        assert m.loss(b).item() == pytest.approx((bpr + 0.5 * l2).item(), rel=1e-5)


# ------------------------------------------------------------------------------------------------ LATTICE


def test_lattice_frozen_graph_is_the_normalised_weighted_knn_graph():
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.1]])
    g = weighted_knn(x, 2)
    dense = g.dense()
    # each row keeps itself (cos 1) and its most similar other item, valued by the cosine (negatives clipped)
    c32 = 0.1 / float(np.hypot(1.0, 0.1))
    want = torch.tensor([[1.0, 0.8, 0, 0], [0.8, 1.0, 0, 0], [0, 0.6, 1.0, 0], [0, 0, c32, 1.0]])
    assert torch.allclose(dense, want, atol=1e-6)
    # D^-1/2 S D^-1/2 with D the row sums
    d = want.sum(1)
    norm = want / torch.sqrt(d[:, None] * d[None, :])
    got = torch.zeros(4, 4)
    got[g.indices[0], g.indices[1]] = symmetric_values(g.indices, g.values, 4)
    assert torch.allclose(got, norm, atol=1e-6)
    v = torch.randn(4, 3)
    assert torch.allclose(coo_mm(g.indices, g.values, v), want @ v, atol=1e-6)


def test_lattice_item_graph_mixes_frozen_and_learned_with_softmax_weights():
    model, _ = _fit(Lattice, knn_k=3, n_layers=0, lambda_coeff=1.0)
    m = model.module
    assert isinstance(m, LatticeModule)
    with torch.no_grad():
        m.modal_logits.copy_(torch.tensor([0.3, -0.2]))
    alpha = m.modality_weights()
    assert alpha.sum().item() == pytest.approx(1.0)
    x = torch.randn(m.n_items, 4)
    nb = m.select_neighbours()
    frozen = sum(alpha[k] * (m.item_graph(k)[0].to_dense() @ x) for k in range(2))
    assert torch.allclose(m.item_conv(x, nb), frozen, atol=1e-5)  # λ = 1: only the initial graphs
    m.config.lambda_coeff = 0.0
    learned = sum(alpha[k] * coo_mm(nb[k], m.learned_graph(k, nb[k]), x) for k in range(2))
    assert torch.allclose(m.item_conv(x, nb), learned, atol=1e-5)
    # with no user-item layer: users are the ID table, items the ID table plus the L2-normalised item-graph term
    m.config.lambda_coeff = 0.5
    m.eval()
    with torch.no_grad():
        eu, ei = m.compute_embeddings()
        h = m.item_conv(m.item.weight, m.select_neighbours())
    assert torch.allclose(eu, m.user.weight)
    assert torch.allclose(ei, m.item.weight + F.normalize(h, dim=1), atol=1e-5)


def test_lattice_learned_graph_trains_the_projections_and_modality_weights():
    model, _ = _fit(Lattice, knn_k=3, lambda_coeff=0.5)
    m = model.module
    assert isinstance(m, LatticeModule)
    m.train()
    m.refresh()
    m.zero_grad()
    m.loss(_batch()).backward()
    assert m.modal_logits.grad is not None and m.modal_logits.grad.abs().sum() > 0
    for lin in m.proj.values():
        assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    # a row of every learned graph holds k neighbours, itself included
    nb = m.select_neighbours()[0]
    assert nb.shape[1] == 3 * m.n_items and bool((nb[0] == nb[1]).sum() == m.n_items)


def test_lattice_bundle_scores_the_same(tmp_path):  # type: ignore[no-untyped-def]
    model, _ = _fit(Lattice, knn_k=3)
    save_bundle(model, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    users = np.arange(4)
    assert torch.allclose(loaded.score_users(users), model.score_users(users))


# ------------------------------------------------------------------------------------------------ BM3


def test_bm3_scores_go_through_the_predictor():
    model, _ = _fit(BM3, n_layers=0)
    m = model.module
    assert isinstance(m, BM3Module)
    m.eval()
    with torch.no_grad():
        hu, hi = m.user.weight, 2 * m.item.weight  # layer mean of layer 0 alone, plus the ID residual
        want = m.predictor(hu[:3]) @ m.predictor(hi).T
    assert torch.allclose(model.score_users(np.arange(3)), want, atol=1e-5)


def test_bm3_loss_is_bootstrap_plus_alignment_plus_masked_feature_terms():
    model, _ = _fit(BM3, n_layers=1, dropout=0.0, reg=0.05, cl_weight=2.0)
    m = model.module
    assert isinstance(m, BM3Module)
    m.train()
    b = _batch()

    def c(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(a, t, dim=-1).mean()

    with torch.no_grad():
        hu, hi = m.encode()
        g = m.predictor
        u, i = hu[b.users], hi[b.pos]
        want = c(g(u), i) + c(g(i), u)
        for k in m.modalities:
            f = m.projected(k, b.pos)
            want = want + 2.0 * (c(g(f), i) + c(g(f), f))
        want = want + 0.05 * (hu.norm() + hi.norm()) / m.n_items
        assert m.loss(b).item() == pytest.approx(want.item(), rel=1e-5)
    # the target branch carries no gradient: only online paths reach the ID tables
    m.zero_grad()
    m.loss(b).backward()
    assert m.predictor.weight.grad is not None and m.user.weight.grad is not None


def test_bm3_needs_feat_dim_equal_to_dim():
    with pytest.raises(ValueError, match="feat_dim"):
        BM3Config(dim=8, feat_dim=4)
