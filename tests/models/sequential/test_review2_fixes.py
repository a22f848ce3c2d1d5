"""Regression tests for the REVIEW2 findings in the sequential models (F7 |cos| meters, F8 training negatives)."""

from __future__ import annotations

import torch

from attnrec.models.sequential.gca import GCAConfig, GCAModule

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
