"""Regression tests for the REVIEW2 findings on the run/tune/evaluation side (sequential protocol, ranks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from attnrec.data.modalities import multihot_modality
from attnrec.data.splits import leave_last_out
from attnrec.data.vocab import Vocabulary
from attnrec.errors import DataError
from attnrec.evaluation.sequential import SequentialRanking, _score_rows
from attnrec.experiments.config import RunConfig
from attnrec.experiments.modalities_run import build_item_features, default_builders
from attnrec.experiments.ranks import rank_view
from attnrec.experiments.seq_run import prepare_sequences


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


def _write(path: Path, rows: list[tuple[str, str, str, int]]) -> Path:
    path.write_text(
        "user_id,item_id,domain,timestamp\n" + "".join(f"{u},{i},{d},{t}\n" for u, i, d, t in rows)
    )
    return path


def test_sequential_leave_one_out_splits_positions_not_pairs(tmp_path: Path) -> None:
    # REVIEW2 F4: u = a@1 b@2 a@3 c@4 b@5: ABXI's split is train [a, b, a], valid c, test b (b@2 stays in train)
    rows = [("u", i, "A", t) for t, i in enumerate(["a", "b", "a", "c", "b"], start=1)]
    rows += [("v", i, "A", t) for t, i in enumerate(["x", "y", "z", "a"], start=1)]
    data = prepare_sequences(
        RunConfig(model="sasrec", data=str(_write(tmp_path / "t.csv", rows))), progress=False
    )
    parts = {k: data["split"].parts()[k].sort("timestamp") for k in ("train", "valid", "test")}

    def of(part: str, user: str) -> list[tuple[str, int]]:
        return parts[part].filter(pl.col("user_id") == user).select("item_id", "timestamp").rows()

    assert of("train", "u") == [("a", 1), ("b", 2), ("a", 3)]
    assert of("valid", "u") == [("c", 4)]
    assert of("test", "u") == [("b", 5)]
    assert of("train", "v") == [("x", 1), ("y", 2)]
    assert len(data["test"]) == 2  # one test row per user
    assert data["split"].report["units"] == "position"


def test_leave_last_out_keeps_pair_units_by_default() -> None:
    df = pl.DataFrame({"user_id": ["u"] * 5, "item_id": list("abacb"), "timestamp": [1, 2, 3, 4, 5]})
    r = leave_last_out(df, protocol="cold_start")
    assert r.test["timestamp"].to_list() == [2, 5]  # both copies of (u, b) go with the pair's latest row
    assert leave_last_out(df, protocol="cold_start", units="position").test["timestamp"].to_list() == [5]


def test_default_meta_modality_leaves_out_copurchase_lists() -> None:
    # REVIEW2 F6: also_buy/also_view are Amazon's purchase-log data, not item content: opt-in only, flagged leaky
    items = pl.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "brand": ["x", "x", "y"],
            "also_buy": [["b", "c"], ["a", "c"], ["a", "b"]],
        }
    )
    vocab = Vocabulary.from_ids(items["item_id"], kind="item")
    _, cols = multihot_modality(items, vocab, min_count=1)
    assert cols == ["brand:x", "brand:y"]
    with pytest.raises(DataError, match="no text or structured column"):
        default_builders(items.drop("brand"))  # also_buy alone no longer turns `meta` on
    feats, report = build_item_features(["copurchase"], items, vocab, progress=False)
    assert report["copurchase"]["leaky"] is True
    assert feats.matrices["copurchase"].sum() == 6  # each item co-bought with the other two
    _, report = build_item_features(["meta"], items, vocab, progress=False)
    assert "leaky" not in report["meta"]
