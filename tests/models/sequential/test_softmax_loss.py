"""The full-softmax loss (``loss="softmax"``): cross-entropy of each target against every item of its domain,
the row's own other items masked (issue 16)."""

from __future__ import annotations

import math

import pytest
import torch

from attnrec.errors import DataError
from attnrec.models.sequential.base import SequenceBatch, SequentialModule, full_softmax_loss
from attnrec.models.sequential.gca import GCAConfig, GCAModule
from attnrec.models.sequential.sasrec import SASRecConfig, SASRecModule
from attnrec.training.distributed import shard_batch

#: domains interleaved in the item index (A = 0, 2, 4, ...; B = 1, 3, ...): a loss that took a domain as a
#: contiguous block of the table would score the wrong items
DOM_OF = torch.arange(12) % 2


def test_equals_a_hand_computed_cross_entropy() -> None:
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0], [-1.0, 2.0]])
    item_domains = torch.tensor([0, 1, 0, 1, 0])  # A: items 0, 2, 4; B: items 1, 3
    h = torch.tensor([[0.5, -1.0], [1.0, 2.0]])
    targets = torch.tensor([2, 3])
    target_domains = torch.tensor([0, 1])
    # position 0's row holds items 0 and 2 (index + 1: 1, 3): item 0 is masked, item 2 is the target;
    # position 1's row holds items 4 (domain A: no effect on B's softmax) and 3 (the target), and padding
    own = torch.tensor([[1, 3, 0], [5, 4, 0]])
    got = full_softmax_loss(h, table, targets, target_domains, own, item_domains, 2)
    # position 0: A's candidates {2, 4}: scores -0.5, -2.5, target 2; position 1: B's {1, 3}: 2, 0, target 3
    ce0 = 0.5 + math.log(math.exp(-0.5) + math.exp(-2.5))
    ce1 = 0.0 + math.log(math.exp(2.0) + math.exp(0.0))
    assert float(got) == pytest.approx((ce0 + ce1) / 2, rel=1e-6)


def test_gradient_reaches_every_item_of_the_target_domain_and_none_of_the_other() -> None:
    torch.manual_seed(0)
    table = torch.randn(12, 4, requires_grad=True)
    h = torch.randn(3, 4)
    targets = torch.tensor([0, 4, 6])  # all in domain A
    own = torch.tensor([[1, 0], [5, 9], [7, 2]])  # index + 1: items 0; 4, 8; 6, 1 — item 8 (A) is masked
    full_softmax_loss(h, table, targets, torch.zeros(3, dtype=torch.long), own, DOM_OF, 2).backward()
    assert table.grad is not None
    norm = table.grad.norm(dim=1)
    a_items = [i for i in range(12) if i % 2 == 0]
    # item 8 is a negative at positions 0 and 2 (masked only at position 1, whose row holds it)
    assert (norm[a_items] > 0).all()
    assert (norm[1::2] == 0).all()
    # with item 8 in every row, it is masked everywhere and gets no gradient
    table.grad = None
    own8 = torch.cat([own, torch.full((3, 1), 9)], dim=1)
    full_softmax_loss(h, table, targets, torch.zeros(3, dtype=torch.long), own8, DOM_OF, 2).backward()
    assert table.grad is not None
    norm = table.grad.norm(dim=1)
    assert norm[8] == 0 and (norm[[0, 2, 4, 6, 10]] > 0).all() and (norm[1::2] == 0).all()


def _batch() -> SequenceBatch:
    items = torch.tensor([[0, 0, 1, 4, 3, 6, 9], [2, 5, 8, 11, 12, 7, 10]])  # index + 1
    domains = torch.where(items > 0, DOM_OF[(items - 1).clamp(min=0)], torch.tensor(-1))
    return SequenceBatch(items, domains, torch.zeros(2, 0, dtype=torch.long), False, item_domains=DOM_OF)


def _dense_reference(module: SequentialModule, batch: SequenceBatch) -> torch.Tensor:
    """The loss from the (B, W, n_items) scores of every item, the candidates picked position by position."""
    s = module.states(batch.items, batch.domains)[:, :-1]
    table = module.item.weight[1:]
    terms = []
    for b in range(len(batch.items)):
        row = set((batch.items[b][batch.items[b] > 0] - 1).tolist())
        for t in range(batch.items.shape[1] - 1):
            if batch.items[b, t] == 0 or batch.items[b, t + 1] == 0:
                continue
            target = int(batch.items[b, t + 1]) - 1
            d = int(DOM_OF[target])
            state = s[b, t, d] if s.shape[2] > 1 else s[b, t, 0]
            cand = [i for i in range(len(DOM_OF)) if int(DOM_OF[i]) == d and (i == target or i not in row)]
            scores = table[cand] @ state
            terms.append(torch.logsumexp(scores, 0) - scores[cand.index(target)])
    return torch.stack(terms).mean()


@pytest.mark.parametrize("kind", ["sasrec", "gca"])
def test_module_loss_matches_the_dense_reference(kind: str) -> None:
    torch.manual_seed(0)
    module: SequentialModule
    if kind == "sasrec":
        module = SASRecModule(12, SASRecConfig(dim=8, heads=2, n_blocks=1, dropout=0.0, loss="softmax"), 2)
    else:
        cfg = GCAConfig(dim=8, heads=2, n_blocks=2, positions=[0], dropout=0.0, loss="softmax")
        module = GCAModule(12, cfg, ("A", "B"))
    batch = _batch()
    got = module.loss(batch)
    want = _dense_reference(module, batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_data_parallel_shards_keep_the_catalogue_whole() -> None:
    # 4 rows and 4 items: item_domains has the batch's length, and must still not be split across ranks
    torch.manual_seed(0)
    dom = torch.tensor([0, 1, 0, 1])
    module = SASRecModule(4, SASRecConfig(dim=8, heads=2, n_blocks=1, dropout=0.0, loss="softmax"), 2)
    items = torch.tensor([[1, 2, 3], [0, 2, 4], [4, 1, 3], [0, 3, 1]])
    domains = torch.where(items > 0, dom[(items - 1).clamp(min=0)], torch.tensor(-1))
    batch = SequenceBatch(items, domains, torch.zeros(2, 0, dtype=torch.long), False, item_domains=dom)
    parts = [shard_batch(batch, r, 2) for r in range(2)]
    assert all(p.item_domains is not None and torch.equal(p.item_domains, dom) for p, _ in parts)
    with torch.no_grad():
        ddp = sum(w * float(module.loss(p)) for p, w in parts) / 2
        assert ddp == pytest.approx(float(module.loss(batch)), rel=1e-6)


def test_a_batch_without_item_domains_is_a_data_error_naming_the_field() -> None:
    module = SASRecModule(12, SASRecConfig(dim=8, heads=2, n_blocks=1, dropout=0.0, loss="softmax"), 2)
    b = _batch()
    bare = SequenceBatch(b.items, b.domains, b.negatives, False)
    with pytest.raises(DataError, match="item_domains") as err:
        module.loss(bare)
    assert err.value.field == "item_domains"
