"""Regression tests for the REVIEW2 findings on the run/tune/evaluation side (sequential protocol, ranks)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from attnrec.evaluation.sequential import SequentialRanking, _score_rows
from attnrec.experiments.config import RunConfig
from attnrec.experiments.ranks import rank_view


@pytest.mark.parametrize("ties", ["optimistic", "pessimistic"])
def test_full_ranking_does_not_count_the_target_against_itself(ties: str) -> None:
    # REVIEW2 F3: item 0 is the target and the best item; under ">=" it used to beat itself (full rank 2)
    scores = torch.tensor([[5.0, 1.0, 2.0, 3.0], [1.0, 1.0, 3.0, 0.0]])
    protocol = SequentialRanking(item_domains=np.zeros(4, np.int64), domain_names=("a",), ties=ties, ks=(1,))
    out = _score_rows(
        scores,
        np.array([0, 0]),
        np.array([[1, 2, 3], [1, 2, 3]]),
        sp.csr_matrix((2, 4)),
        np.arange(4),
        protocol,
    )
    # row 0: rank 1 either way; row 1 (target 1.0 ties item 1, item 2 above): rank 2 optimistic, 3 pessimistic
    tie_rank = 2 if ties == "optimistic" else 3
    assert out["full/hit@1"] == pytest.approx(1.0)  # sums over the batch's rows
    assert out["full/mrr"] == pytest.approx(1.0 + 1.0 / tie_rank)
    assert out["mrr"] == pytest.approx(
        out["full/mrr"]
    )  # the sampled negatives are the whole pool minus the target


@pytest.mark.parametrize("model", ["freedom", "vbpr", "lattice", "bm3", "mrcsaf", "sasrec"])
def test_rank_view_keeps_the_items_of_models_reading_item_features(model: str) -> None:
    # REVIEW2 F5: ranks > 0 build the text/meta modalities from --items too
    cfg = RunConfig(model=model, data="ml-100k", items="/nonexistent/meta.csv")
    assert rank_view(cfg).items == cfg.items
    assert rank_view(cfg).out is None


def test_rank_view_drops_the_items_of_models_reading_neither() -> None:
    cfg = RunConfig(model="bpr", data="ml-100k", items="/nonexistent/meta.csv")
    assert rank_view(cfg).items is None
