"""Regression tests for the REVIEW2 findings in the sequential models (F7 |cos| meters, F8 training negatives)."""

from __future__ import annotations

import pytest
import torch

from attnrec.models.sequential.base import SequenceBatch, in_rows
from attnrec.models.sequential.gca import GCAConfig, GCAModule
from attnrec.models.sequential.sasrec import SASRecConfig, SASRecModule

DOM_OF = torch.tensor([0] * 10 + [1] * 10)


def _row() -> tuple[torch.Tensor, torch.Tensor]:
    items = torch.tensor([[0, 0, 3, 12, 5, 14, 7]])
    return items, torch.where(items > 0, DOM_OF[(items - 1).clamp(min=0)], torch.tensor(-1))


def test_a_row_scored_alone_adds_its_positions_to_the_cos_meters_once() -> None:
    # REVIEW2 F7: a one-row batch is scored as two identical rows; the meters must still count it once
    torch.manual_seed(0)
    module = GCAModule(
        20, GCAConfig(dim=8, heads=2, n_blocks=2, positions=[0, 1], dropout=0.0, max_len=10), ("A", "B")
    )
    module.eval()
    items, domains = _row()
    with torch.no_grad():
        module.meters = {}
        module.last_states(items, domains)
        once = {k: (m.count, m.total) for k, m in module.meters.items()}
        module.meters = {}
        scores = module.item_scores(items, domains, DOM_OF)
        scored = {k: (m.count, m.total) for k, m in module.meters.items()}
        module.meters = None
        two = module.item_scores(torch.cat([items, items]), torch.cat([domains, domains]), DOM_OF)
    assert once and all(c > 0 for c, _ in once.values())
    assert scored.keys() == once.keys()
    for k, (count, total) in once.items():
        assert scored[k][0] == count and abs(scored[k][1] - total) < 1e-9, k
    assert module.meters is None
    assert torch.equal(scores[0], two[0])  # the scores are still the duplicated pass's


def test_in_rows_finds_each_rows_own_items() -> None:
    items = torch.tensor([[0, 0, 5, 2, 5], [1, 2, 3, 4, 6]])
    cand = torch.tensor([[5, 2, 1, 6], [6, 5, 1, 7]])
    assert in_rows(items, cand).tolist() == [[True, True, False, False], [True, False, True, False]]


@pytest.mark.parametrize("loss", ["sampled_softmax", "bce"])
def test_training_negatives_exclude_the_rows_own_items(loss: str) -> None:
    # REVIEW2 F8: as SASRec's random_neq / ABXI's get_neg, a row's own items are never its negatives
    torch.manual_seed(0)
    module = SASRecModule(20, SASRecConfig(dim=8, heads=2, n_blocks=1, dropout=0.0, max_len=6, loss=loss), 1)
    items = torch.tensor([[0, 1, 2, 3, 4]])  # item indices 0..3, + 1
    domains = torch.tensor([[-1, 0, 0, 0, 0]])

    def value(neg: list[list[int]]) -> float:
        with torch.no_grad():
            return float(module.loss(SequenceBatch(items, domains, torch.tensor(neg))))

    if loss == "sampled_softmax":
        # items 0 and 1 are the row's own: only 10 and 11 are negatives at every position
        assert value([[0, 1, 10, 11]]) == pytest.approx(value([[10, 11]]), abs=1e-6)
        assert value([[9, 1, 10, 11]]) != pytest.approx(value([[10, 11]]), abs=1e-6)
    else:
        # the last position's draw (item 0 or 2: the row's own) adds no term; a foreign draw (14) does
        assert value([[0, 10, 0, 0]]) == pytest.approx(value([[0, 10, 0, 2]]), abs=1e-6)
        assert value([[0, 10, 0, 14]]) > value([[0, 10, 0, 0]])


def test_sampled_softmax_negatives_stay_whole_when_their_shape_looks_per_row() -> None:
    # REVIEW2 F1 (edge): D == B rows and n == W - 1 negatives: (D, n) has bce's (B, W - 1) shape
    from attnrec.training.distributed import shard_batch

    torch.manual_seed(0)
    module = SASRecModule(
        20, SASRecConfig(dim=8, heads=2, n_blocks=1, dropout=0.0, max_len=6, n_negatives=4), 2
    )
    items = torch.tensor([[1, 2, 11, 3, 12], [0, 4, 13, 5, 14]])
    domains = torch.where(items > 0, DOM_OF[(items - 1).clamp(min=0)], torch.tensor(-1))
    neg = torch.tensor([[6, 7, 8, 9], [15, 16, 17, 18]])
    batch = SequenceBatch(items, domains, neg, per_row_negatives=False)
    parts = [shard_batch(batch, r, 2) for r in range(2)]
    assert all(torch.equal(p.negatives, neg) for p, _ in parts)
    with torch.no_grad():
        ddp = sum(w * float(module.loss(p)) for p, w in parts) / 2
        assert ddp == pytest.approx(float(module.loss(batch)), rel=1e-6)
