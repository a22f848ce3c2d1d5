"""The backbone's defaults are pinned to values recorded at bbe6e9b, before the BERT-style options (issue 16,
session 23) came: the state-dict names (no new parameter), the next draw of the global generator after building
(nothing new drawn at init), the sum of every initial weight, and one training-mode loss with dropout, for sasrec and
gca, pre- and post-norm, each loss. An option that changed the default path in any of these ways fails here (the
spread checks of test_backbone_options.py would not see an extra draw or a moved constant)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from attnrec.models.sequential.base import SequenceBatch
from attnrec.models.sequential.gca import GCAConfig, GCAModule
from attnrec.models.sequential.sasrec import SASRecConfig, SASRecModule

DOM = torch.arange(40) % 2
ITEMS = torch.tensor([[0, 1, 3, 5, 3, 9, 4, 20], [2, 5, 8, 11, 12, 7, 10, 33]])
DOMAINS = torch.where(ITEMS > 0, DOM[(ITEMS - 1).clamp(min=0)], torch.tensor(-1))

#: (model, norm, loss) -> (sha256[:16] of the sorted state-dict names, sum of every initial weight, the first of
#: torch.rand(3) after building, the loss) — recorded at bbe6e9b with this file's construction
GOLDEN = {
    ("sasrec", "pre", "sampled_softmax"): (
        "0c2b743feb899b0b",
        49.13726991188014,
        0.9155170321464539,
        1.6540659666061401,
    ),
    ("sasrec", "post", "bce"): (
        "32797957008f2a3b",
        33.13726991188014,
        0.9155170321464539,
        1.1598753929138184,
    ),
    ("gca", "pre", "softmax"): (
        "ab741296beecb367",
        364.2151736379383,
        0.11749529838562012,
        4.557971000671387,
    ),
    ("gca", "post", "sampled_softmax"): (
        "7e8e0f4cdd890aaa",
        316.2151736379383,
        0.11749529838562012,
        1.7034461498260498,
    ),
}


def _module(model: str, norm: str, loss: str) -> torch.nn.Module:
    if model == "sasrec":
        return SASRecModule(
            40, SASRecConfig(dim=16, heads=2, n_blocks=2, dropout=0.3, loss=loss, norm=norm), 2
        )
    config = GCAConfig(
        dim=16, heads=2, n_blocks=2, dropout=0.3, loss=loss, positions=[0, 1], gate_form="ffn", norm=norm
    )
    return GCAModule(40, config, ("A", "B"))


def _batch(loss: str) -> SequenceBatch:
    if loss == "bce":
        return SequenceBatch(ITEMS, DOMAINS, torch.randint(0, 40, (2, 7)), True)
    if loss == "softmax":
        return SequenceBatch(ITEMS, DOMAINS, torch.zeros(2, 0, dtype=torch.long), False, item_domains=DOM)
    return SequenceBatch(ITEMS, DOMAINS, torch.tensor([[0, 2, 4, 8, 10], [1, 3, 5, 7, 9]]), False)


@pytest.mark.parametrize(("model", "norm", "loss"), list(GOLDEN))
def test_default_backbone_is_bit_for_bit_the_recorded_one(model: str, norm: str, loss: str) -> None:
    names_hash, weight_sum, next_draw, loss_value = GOLDEN[(model, norm, loss)]
    torch.manual_seed(0)
    m = _module(model, norm, loss).train()
    sd = m.state_dict()
    got_hash = hashlib.sha256("\n".join(sorted(sd)).encode()).hexdigest()[:16]
    assert got_hash == names_hash, f"state-dict names changed: {sorted(sd)}"
    assert sum(float(v.double().sum()) for _, v in sorted(sd.items())) == pytest.approx(weight_sum, rel=1e-9)
    # nothing more (and nothing less) is drawn at init
    assert torch.rand(3)[0].item() == pytest.approx(next_draw, abs=0.0)
    batch = _batch(loss)
    torch.manual_seed(1)
    assert m.loss(batch).item() == pytest.approx(loss_value, rel=1e-5)
