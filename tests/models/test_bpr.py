"""bpr: the conformance suite, and the BPR loss and regulariser against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from attnrec.data.batches import PairwiseBatch
from attnrec.errors import ConfigError
from attnrec.models.topk.bpr import BPR, MFModule, bpr_loss, l2_reg
from attnrec.testing import ConformanceTests, checkerboard
from attnrec.training.trainer import TrainerConfig


class TestBPRConformance(ConformanceTests):
    model_class = BPR
    config = {"dim": 16}
    trainer = {"epochs": 30, "lr": 0.02, "batch_size": 128}


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_bpr_loss_hand_case():
    pos = torch.tensor([2.0, -1.0, 30.0])
    neg = torch.tensor([0.5, 0.0, -30.0])
    expect = -(_log_sigmoid(1.5) + _log_sigmoid(-1.0) + _log_sigmoid(60.0)) / 3
    assert bpr_loss(pos, neg).item() == pytest.approx(expect, rel=1e-6)
    # a huge negative margin must neither overflow nor lose the linear tail: -log σ(-200) = 200
    assert bpr_loss(torch.tensor([-100.0]), torch.tensor([100.0])).item() == pytest.approx(200.0)
    # several negatives per positive: the mean over every (positive, negative) pair
    neg2 = torch.tensor([[0.5, 3.0], [0.0, -1.0], [-30.0, 29.0]])
    expect2 = (
        -(
            _log_sigmoid(1.5)
            + _log_sigmoid(-1.0)
            + _log_sigmoid(-1.0)
            + _log_sigmoid(0.0)
            + _log_sigmoid(60.0)
            + _log_sigmoid(1.0)
        )
        / 6
    )
    assert bpr_loss(pos, neg2).item() == pytest.approx(expect2, rel=1e-6)


def _hand_module() -> tuple[MFModule, PairwiseBatch]:
    m = MFModule(3, 4, dim=2, reg=0.5)
    with torch.no_grad():
        m.user.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        m.item.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0], [0.5, 0.5]]))
    return m, PairwiseBatch(torch.tensor([0, 1]), torch.tensor([1, 3]), torch.tensor([2, 0]))


def test_mf_loss_hand_case():
    m, batch = _hand_module()
    # user 0: pos item 1 -> 2, neg item 2 -> 0 ; user 1: pos item 3 -> 1, neg item 0 -> 2
    bpr = -(_log_sigmoid(2.0 - 0.0) + _log_sigmoid(1.0 - 2.0)) / 2
    # ‖e_u‖²: 1 + 4 ; ‖e_p‖²: 4 + 0.5 ; ‖e_n‖²: 1 + 2 ; over B = 2, times λ = 0.5 (no ½ factor)
    reg = 0.5 * (5.0 + 4.5 + 3.0) / 2
    assert m.loss(batch).item() == pytest.approx(bpr + reg, rel=1e-6)


def test_regulariser_value_and_gradient():
    m, batch = _hand_module()
    u, p, n = m.user(batch.users), m.item(batch.pos), m.item(batch.neg)
    assert l2_reg(u, p, n, batch_size=2).item() == pytest.approx(12.5 / 2)
    m.zero_grad()
    l2_reg(u, p, n, batch_size=2).backward()
    # d/dE of Σ‖e‖²/B is 2e/B per occurrence in the batch; rows not in the batch get nothing
    w_u, w_i = m.user.weight.detach(), m.item.weight.detach()
    expect_u = torch.zeros(3, 2)
    expect_u[[0, 1]] = 2 * w_u[[0, 1]] / 2
    expect_i = torch.zeros(4, 2)
    expect_i[[1, 3, 2, 0]] = 2 * w_i[[1, 3, 2, 0]] / 2
    torch.testing.assert_close(m.user.weight.grad, expect_u)
    torch.testing.assert_close(m.item.weight.grad, expect_i)


def test_loss_gradient_of_a_user_row():
    m, batch = _hand_module()
    m.zero_grad()
    m.loss(batch).backward()
    # user 0: d/du [softplus(u·n − u·p)]/B + λ·2u/B with u=(1,0), p=(2,0), n=(0,-1): margin 2
    u, p, n = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]), torch.tensor([0.0, -1.0])
    expect = torch.sigmoid(torch.tensor(-2.0)) * (n - p) / 2 + 0.5 * 2 * u / 2
    torch.testing.assert_close(m.user.weight.grad[0], expect)
    assert torch.all(m.user.weight.grad[2] == 0)  # user 2 is not in the batch


def test_scores_are_dot_products_and_negatives_are_not_positives():
    train, valid, _ = checkerboard(implicit=True)
    m = BPR(dim=4, n_negatives=3, negative_sampling="popularity")
    m.fit(train, None, trainer=TrainerConfig(epochs=1, progress=False, device="cpu"))
    w_u, w_i = m.module.user.weight.detach(), m.module.item.weight.detach()
    torch.testing.assert_close(m.score_users(np.array([2, 5])), w_u[[2, 5]] @ w_i.T)
    batch = next(iter(m.train_batches(train, 1, torch.Generator().manual_seed(0), 64)))
    assert tuple(batch.neg.shape) == (64, 3)
    seen = train.csr().toarray() > 0
    assert not seen[batch.users.numpy()[:, None], batch.neg.numpy()].any()
    assert seen[batch.users.numpy(), batch.pos.numpy()].all()


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="negative_sampling"):
        BPR(negative_sampling="zipf")
    with pytest.raises(ConfigError, match="dim"):
        BPR(dim=0)
    with pytest.raises(ConfigError, match="not fitted"):
        BPR().score_users(np.array([0]))
