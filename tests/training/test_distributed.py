"""Data-parallel training on 2 gloo processes on 127.0.0.1 against one process (issue 19).

Stated tolerance: with the same global batch and seed, a 2-rank fit's per-epoch losses are within
:data:`LOSS_RTOL` (relative) of one process's (float32 sums in another order: two half-batch means weighted,
against one batch mean), and its final validation metrics within :data:`METRIC_ATOL` (absolute); the ranks agree
with each other exactly. Each spawn of two processes costs a few seconds, so one spawn fits several models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch.multiprocessing import ProcessRaisedException

from attnrec.data.batches import PairwiseBatch
from attnrec.errors import ConfigError
from attnrec.evaluation.sharded import merge_ranking
from attnrec.experiments.launch import describe_failure, launch
from attnrec.testing.ddp import fit_and_score, fit_on_ranks, rank_fails
from attnrec.training.distributed import DistributedError, shard_batch, shard_bounds

pytestmark = pytest.mark.distributed

LOSS_RTOL = 1e-5
METRIC_ATOL = 1e-6


def _close(single: dict, ranks: list[dict], name: str) -> None:
    """Every rank equals rank 0, and rank 0 matches the single process within the stated tolerances."""
    for r in ranks[1:]:
        assert r["loss"] == ranks[0]["loss"], f"{name}: ranks disagree on the losses"
        assert r["valid"] == ranks[0]["valid"], f"{name}: ranks disagree on the metrics"
        assert r["params"] == ranks[0]["params"], f"{name}: ranks ended with other parameters"
    got = ranks[0]
    assert got["epochs_run"] == single["epochs_run"] and got["best_epoch"] == single["best_epoch"], name
    for a, b in zip(single["loss"], got["loss"], strict=True):
        if a is not None:
            assert math.isclose(a, b, rel_tol=LOSS_RTOL), f"{name}: loss {a} (1 process) vs {b} (2 ranks)"
    assert single["valid"].keys() == got["valid"].keys(), name
    for k, v in single["valid"].items():
        assert abs(v - got["valid"][k]) <= METRIC_ATOL, (
            f"{name}: valid {k} {v} (1 process) vs {got['valid'][k]}"
        )


# one process group, several families: top-K with a replicated graph, rating by ALS (replicated solver) and SGD
TOPK_RATING = [
    {"model": "lightgcn", "config": {"dim": 8}, "trainer": {"epochs": 3, "batch_size": 97, "lr": 0.01}},
    {"model": "bpr", "config": {"dim": 8}, "trainer": {"epochs": 2, "batch_size": 64, "lr": 0.01}},
    {"model": "svd", "config": {"factors": 4, "iterations": 3}, "trainer": {"device": "cpu"}},
    {
        "model": "svd",
        "config": {"factors": 4, "solver": "sgd"},
        "trainer": {"epochs": 2, "batch_size": 100, "lr": 0.01},
    },
]
# review-text rating models (reviews of the training split as side inputs); dropout 0 (masks differ per rank)
_REVIEW = {"dropout": 0.0, "word_dim": 8, "review_count": 3, "review_length": 6, "max_words": 100}
REVIEW_SPECS = [
    {"model": m, "config": _REVIEW, "trainer": {"epochs": 2, "lr": 0.01, "batch_size": 64}}
    for m in ("deepconn", "safmr")
]
# the sequential family (checkerboard rows as time-ordered sequences): loss a mean over target positions
SEQ_SPECS = [
    {
        "model": "sasrec",
        "config": {"dim": 8, "heads": 1, "n_blocks": 1, "dropout": 0.0, "max_len": 10, "n_negatives": 8},
        "trainer": {"epochs": 2, "lr": 0.01, "batch_size": 16},
    }
]
# the multimodal family (planted item features as side inputs); freedom's dropout 0
MM_SPECS = [
    {
        "model": "vbpr",
        "config": {"dim": 8, "feat_dim": 8},
        "trainer": {"epochs": 2, "lr": 0.02, "batch_size": 97},
    },
    {
        "model": "freedom",
        "config": {"dim": 8, "feat_dim": 8, "knn_k": 5, "dropout": 0.0},
        "trainer": {"epochs": 2, "lr": 0.02, "batch_size": 97},
    },
]
CTR_SPECS = [
    {
        "model": "deepfm",
        "config": {"embedding_dim": 4, "dropout": 0.0},
        "trainer": {"epochs": 2, "batch_size": 250, "lr": 0.01},
    },
    {"model": "fm", "config": {"embedding_dim": 4}, "trainer": {"epochs": 2, "batch_size": 333, "lr": 0.01}},
]


@pytest.mark.parametrize("family", ["topk", "rating", "review", "sequential", "multimodal"])
def test_topk_and_rating_families_match_one_process(family: str) -> None:
    specs = {
        "topk": TOPK_RATING[:2],
        "rating": TOPK_RATING[2:],
        "review": REVIEW_SPECS,
        "sequential": SEQ_SPECS,
        "multimodal": MM_SPECS,
    }[family]
    ranks = fit_on_ranks(specs)
    for i, spec in enumerate(specs):
        _close(fit_and_score(spec), [r[i] for r in ranks], f"{spec['model']} {spec['config']}")


def test_ctr_family_matches_one_process() -> None:
    ranks = fit_on_ranks(CTR_SPECS)
    for i, spec in enumerate(CTR_SPECS):
        single = fit_and_score(spec)
        _close(single, [r[i] for r in ranks], spec["model"])
        assert single["valid"]["auc"] > 0.6  # it learned something, so agreeing is not trivial


def test_attention_orthogonality_is_merged_across_ranks() -> None:
    """secn's per-epoch ``valid_abs_cos[attention]`` (issue 16): each rank measures its shard of the validation
    rows, the sums are merged, so every rank logs the same number, within the metric tolerance of one process's."""
    spec = {
        "model": "secn",
        "config": {"embedding_dim": 4, "cross_layers": 1, "dropout": 0.0},
        "trainer": {"epochs": 2, "batch_size": 250, "lr": 0.01},
    }
    ranks = fit_on_ranks([spec])
    single = fit_and_score(spec)
    _close(single, [r[0] for r in ranks], "secn")
    key = "valid_abs_cos[attention]"
    want = [row[key] for row in single["history"]]
    for r in ranks:
        got = [row[key] for row in r[0]["history"]]
        assert got == [row[key] for row in ranks[0][0]["history"]]  # the ranks agree exactly
        assert got == pytest.approx(want, abs=METRIC_ATOL)


def test_resume_continues_on_every_rank(tmp_path) -> None:
    trainer = {"epochs": 4, "batch_size": 97, "lr": 0.01, "checkpoint_dir": str(tmp_path / "ck")}
    spec = {"model": "bpr", "config": {"dim": 8}, "trainer": trainer}
    straight = fit_and_score({**spec, "trainer": {k: v for k, v in trainer.items() if k != "checkpoint_dir"}})
    ranks = fit_on_ranks([{**spec, "kill_at_epoch": 3}, spec])
    assert [r[0] for r in ranks] == [{"killed": 3}, {"killed": 3}]
    assert (tmp_path / "ck" / "checkpoint.pt").is_file()  # rank 0 wrote it
    resumed = [r[1] for r in ranks]
    assert [row["epoch"] for row in resumed[0]["history"]] == [1, 2, 3, 4]  # epochs 1-2 from the checkpoint
    _close(straight, resumed, "bpr resumed at epoch 3")


def test_a_killed_rank_fails_the_job_naming_it() -> None:
    # whichever the launcher sees first: rank 1 killed, or rank 0 losing its peer mid-collective
    with pytest.raises(DistributedError) as info:
        launch(rank_fails, ("kill", 20.0), 2, start_method="fork")
    text = str(info.value)
    assert text.startswith("distributed run on 2 processes failed: rank "), text
    assert "rank 1 (killed by SIGKILL" in text or (
        "rank 0 (exit code 1: DistributedError: rank 0 of 2: waiting for the other ranks failed, most likely "
        "because another rank died or stopped responding (timeout 20 s, ATTNREC_DIST_TIMEOUT): " in text
    ), text  # then gloo's own words, which vary: "Connection closed by peer", "Read error ... reset by peer"


def test_a_rank_that_stops_responding_times_out_with_a_clear_error() -> None:
    with pytest.raises(
        DistributedError, match=r"rank 0 .*DistributedError: rank 0 of 2: waiting for the other"
    ):
        launch(rank_fails, ("hang", 3.0), 2, start_method="fork")


def test_a_dead_rank_fails_the_others_collectives() -> None:
    # rank 1 exits at once; rank 0's first collective fails with the error that names it (or the spawner stops it)
    with pytest.raises((ProcessRaisedException, torch.multiprocessing.ProcessExitedException)) as info:
        fit_on_ranks([{**TOPK_RATING[1], "die_ranks": [1], "timeout": 5}])
    assert "DistributedError: rank 0 of 2" in str(info.value) or "exit code 17" in str(info.value)


def test_ranks_fitting_different_runs_are_refused() -> None:
    spec = {**TOPK_RATING[1], "rank_config": {"1": {"dim": 4}}}
    with pytest.raises(
        ProcessRaisedException, match=r"not fitting the same run \(rank 1: model config differ"
    ):
        fit_on_ranks([spec])


# ------------------------------------------------------------------ the parts, without processes
def test_shard_batch_splits_rows_and_weights_to_the_global_mean() -> None:
    b = PairwiseBatch(torch.arange(5), torch.arange(5) + 10, torch.arange(10).reshape(5, 2))
    parts = [shard_batch(b, r, 2) for r in range(2)]
    assert [len(p) for p, _ in parts] == [2, 3]
    assert torch.equal(torch.cat([p.pos for p, _ in parts]), b.pos)
    assert torch.equal(parts[1][0].neg, b.neg[2:])
    # DDP averages the weighted local losses: sum_r w_r * mean_r / world == the global mean
    vals = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    got = sum(w * float(vals[p.users].mean()) for p, w in parts) / 2
    assert got == pytest.approx(float(vals.mean()))


def test_a_rank_without_rows_joins_with_weight_zero() -> None:
    b = PairwiseBatch(torch.tensor([3]), torch.tensor([4]), torch.tensor([5]))
    (p0, w0), (p1, w1) = shard_batch(b, 0, 2), shard_batch(b, 1, 2)
    assert (w0, w1) == (0.0, 2.0) and len(p0) == 1 and len(p1) == 1
    assert shard_bounds(7, 0, 3) == (0, 2) and shard_bounds(7, 2, 3) == (4, 7)


@dataclass
class _SharedNegatives(PairwiseBatch):
    shared_fields: ClassVar[frozenset[str]] = frozenset({"neg"})


def test_a_batch_declares_fields_shared_by_all_rows() -> None:
    b = _SharedNegatives(torch.arange(4), torch.arange(4), torch.arange(8).reshape(4, 2))  # neg (D=4, n=2)
    part, w = shard_batch(b, 1, 2)
    assert torch.equal(part.users, torch.tensor([2, 3])) and torch.equal(part.neg, b.neg) and w == 1.0


def test_a_batch_that_is_not_a_dataclass_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="dict batch must be a dataclass of tensors"):
        shard_batch({"users": torch.arange(3)}, 0, 2)


def test_merge_ranking_weights_each_part_by_its_users() -> None:
    parts = [
        {"ndcg@10": 0.5, "n_users": 2.0},
        {"ndcg@10": 0.2, "n_users": 3.0},
        {"ndcg@10": math.nan, "n_users": 0.0},
    ]
    assert merge_ranking(parts, "n_users") == {"ndcg@10": pytest.approx((1.0 + 0.6) / 5), "n_users": 5.0}


@dataclass
class _Failure:
    exitcode: int
    message: object
    name: str = ""

    def signal_name(self) -> str:
        return "SIGKILL"


def test_describe_failure_names_each_rank_and_its_error() -> None:
    class Exc:
        failures = {
            1: _Failure(-9, ""),
            0: _Failure(
                1, {"message": "Traceback...\nattnrec.training.distributed.DistributedError: rank 0 of 2: x"}
            ),
        }

    text = describe_failure(Exc(), 2)
    assert text == (
        "distributed run on 2 processes failed: rank 0 (exit code 1: attnrec.training.distributed.DistributedError: "
        "rank 0 of 2: x); rank 1 (killed by SIGKILL)"
    )


@pytest.mark.parametrize("loss", ["sampled_softmax", "bce"])
def test_sequence_batches_split_by_target_positions(loss: str) -> None:
    # the sequential loss is a mean over target positions and sampled-softmax negatives (D, n) are every row's:
    # two ranks' weighted losses average to the whole batch's, also when the batch has D rows (REVIEW2 F1)
    from attnrec.models.sequential.base import SequenceBatch
    from attnrec.models.sequential.sasrec import SASRecConfig, SASRecModule

    torch.manual_seed(0)
    cfg = SASRecConfig(dim=8, heads=1, n_blocks=1, dropout=0.0, max_len=5, loss=loss, n_negatives=5)
    module = SASRecModule(20, cfg, 2).eval()
    items = torch.tensor([[0, 3, 4, 5, 6], [0, 0, 0, 7, 8], [1, 2, 3, 4, 9]])
    domains = torch.tensor([[-1, 0, 1, 0, 1], [-1, -1, -1, 1, 0], [0, 0, 1, 1, 0]])
    neg = torch.randint(0, 19, (2, 5)) if loss == "sampled_softmax" else torch.randint(0, 19, (3, 4))
    with torch.no_grad():
        for rows in (slice(0, 2), slice(0, 3)):
            b = SequenceBatch(items[rows], domains[rows], neg if loss == "sampled_softmax" else neg[rows])
            parts = [shard_batch(b, r, 2) for r in range(2)]
            ddp = sum(w * float(module.loss(p)) for p, w in parts) / 2
            assert ddp == pytest.approx(float(module.loss(b)), rel=1e-6)
            if loss == "sampled_softmax":
                assert all(torch.equal(p.negatives, neg) for p, _ in parts)
