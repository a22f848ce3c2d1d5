"""benchmarks/cdsr_peer_recbole.py's attnrec side (RecBole is not installed here): the exported candidate lists
are exactly the ones attnrec's test evaluation ranks, and the peer's rank metrics are attnrec's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from attnrec.evaluation.sequential import evaluate_sequential
from attnrec.experiments.config import RunConfig, SplitSpec
from attnrec.experiments.seq_run import prepare_sequences, sequential_protocols
from attnrec.testing import planted_sequences
from attnrec.testing.scripts import load_script

peer = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "cdsr_peer_recbole.py")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("peer")
    csv = root / "all.csv"
    df = pl.concat([p.decode() for p in planted_sequences(n_users=80, n_items=48, length=14)])
    # users of different lengths: rows differ in how many negatives they could draw, so the capped count is
    # smaller than most rows' room and the seeded draw decides which items they get
    df = df.sort("user_id", "timestamp").filter(
        pl.int_range(pl.len()).over("user_id") >= pl.col("user_id").rank("dense").mod(6)
    )
    df.write_csv(csv)
    counts = peer.export(str(csv), root / "rb")
    return csv, root / "rb", counts


def _read(path: Path) -> list[tuple[str, str, list[str]]]:
    return [(u, t, n.split()) for u, t, n in (ln.split("\t") for ln in path.read_text().splitlines())]


def test_candidates_are_attnrecs_valid_and_test_lists(exported: tuple[Path, Path, dict[str, Any]]) -> None:
    """Ranking the exported lists with fixed scores gives attnrec's own validation and test metrics with those
    scores, per domain; every list is the target plus distinct negatives of its domain outside the user's
    history (train for validation, train + valid for test)."""
    csv, out, counts = exported
    prep = prepare_sequences(
        RunConfig(model="sasrec", data=str(csv), split=SplitSpec(method="leave_last_out"))
    )
    train, valid, test = prep["train"], prep["valid"], prep["test"]
    valid_protocol, test_protocol = sequential_protocols(train, valid, prep["items"])
    for part, rows, protocol, seen in (
        ("valid", valid, valid_protocol, train.csr()),
        ("test", test, test_protocol, (train.csr() + valid.csr()).tocsr()),
    ):
        _check_lists(out, part, rows, protocol, seen, counts["candidates"][part])


def _check_lists(out: Path, part: str, rows: Any, protocol: Any, seen: Any, counts: dict[str, int]) -> None:
    table = np.random.default_rng(3).standard_normal((rows.n_users, rows.n_items)).astype(np.float32)

    class Fixed:
        n_items = rows.n_items

        def score(self, query: Any) -> torch.Tensor:
            return torch.from_numpy(table[query.users])

    ref = evaluate_sequential(Fixed(), rows, protocol, exclude=seen)  # type: ignore[arg-type]
    uidx = {u: i for i, u in enumerate(rows.user_vocab.ids)}
    iidx = {t: i for i, t in enumerate(rows.item_vocab.ids)}
    doms = np.asarray(protocol.item_domains)
    for d, name in enumerate(protocol.domain_names):
        lines = _read(out / name / f"{name}.{part}.cands")
        assert len(lines) == counts[name] == ref[f"{name}/n_rows"] > 0
        ranks = []
        for u, t, negs in lines:
            ui, ti, ni = uidx[u], iidx[t], np.array([iidx[x] for x in negs])
            assert len(ni) == ref[f"{name}/n_negatives"] == len(set(ni.tolist()))
            assert (doms[ni] == d).all() and doms[ti] == d and ti not in ni
            assert not seen[ui, ni].toarray().any()  # never an item of the user's history
            ranks.append(1 + int((table[ui, ni] > table[ui, ti]).sum()))
        got = peer.rank_metrics(ranks)
        for key in ("ndcg@10", "hit@10", "mrr", "ndcg@1"):
            assert math.isclose(got[key.replace("hit@", "hr@")], ref[f"{name}/{key}"], rel_tol=1e-9)


def test_export_files_are_the_single_domain_views(exported: tuple[Path, Path, dict[str, Any]]) -> None:
    """A test row's input is the domain's items of train + valid (the last 50), oldest first."""
    csv, out, counts = exported
    df = pl.read_csv(csv).with_row_index("_row").sort(["user_id", "timestamp", "_row"])
    for name in ("A", "B"):
        lines = (out / name / f"{name}.test.inter").read_text().splitlines()[1:]
        assert len(lines) == counts[name]["test"] > 0
        for ln in lines[:10]:
            u, seq, target = ln.split("\t")
            rows = df.filter(pl.col("user_id") == u)
            items = [str(x) for x in rows["item_id"].to_list()]
            dom = rows["domain"].to_list()
            assert items[-1] == target and dom[-1] == name  # the user's last interaction, in this domain
            assert seq.split() == [i for i, d in zip(items[:-1], dom[:-1], strict=True) if d == name][-50:]


def test_rank_metrics_by_hand() -> None:
    m = peer.rank_metrics([1, 2, 11])
    assert m["hr@1"] == pytest.approx(1 / 3) and m["hr@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 11) / 3)


def test_a_fit_budget_of_zero_minutes_is_refused_naming_the_option(tmp_path: Path) -> None:
    """No epoch could run under it, so there would be no checkpoint to test: refused before RecBole is imported."""
    with pytest.raises(SystemExit) as e:
        peer.main(
            ["run", "--dir", str(tmp_path), "--out", str(tmp_path / "o.jsonl"), "--max-fit-minutes", "0"]
        )
    assert e.value.code == 2
