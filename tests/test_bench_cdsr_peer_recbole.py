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


def test_the_peer_is_averaged_over_every_list_a_missing_row_ranked_last(tmp_path: Path) -> None:
    """A candidate list whose user has no RecBole row counts, with its target ranked last (as attnrec averages over
    every list); the lists RecBole scored are reported apart (``peer_rows_only``)."""
    tokens = {"[PAD]": 0, "i1": 1, "i2": 2, "i3": 3, "i4": 4, "i5": 5}
    users = np.array(["[PAD]", "uA", "uB"])  # RecBole's rows: uA and uB; uC has none

    class Batch:
        def __init__(self, rows: torch.Tensor) -> None:
            self.rows = rows

        def to(self, device: Any) -> Batch:
            return self

    class Inter:
        def __getitem__(self, key: Any) -> Any:
            return torch.tensor([1, 2]) if key == "user_id" else Batch(key)

    class Dataset:
        field2token_id = {"item_id": tokens}
        inter_feat = Inter()

        def id2token(self, field: str, ids: np.ndarray) -> np.ndarray:
            return users[ids]

    scores = torch.tensor(
        [
            [0.0, 3.0, 2.0, 1.0, 0.0, 0.0],  # uA: target i1 above i2, i3 -> rank 1
            [0.0, 3.0, 2.0, 1.0, 0.0, 0.0],  # uB: target i2 below i1 -> rank 2
        ]
    )

    class Model:
        def eval(self) -> None:
            pass

        def full_sort_predict(self, batch: Batch) -> torch.Tensor:
            return scores[batch.rows]

    cands = tmp_path / "A.test.cands"
    cands.write_text("uA\ti1\ti2 i3\nuB\ti2\ti1 i3\nuC\ti3\ti4 i5\n")
    got = peer.score_candidates(Model(), Dataset(), cands, "cpu")
    assert got["n_candidates"] == 3 and got["rows_without_a_peer_row"] == 1 and got["n_rows"] == 3
    for key, value in peer.rank_metrics([1, 2, 3]).items():  # uC's target ranked last, at 3
        assert got[key] == pytest.approx(value), key
    only = got["peer_rows_only"]
    assert only["n_rows"] == 2
    for key, value in peer.rank_metrics([1, 2]).items():
        assert only[key] == pytest.approx(value), key
    assert got["ndcg@1"] == pytest.approx(1 / 3) and only["ndcg@1"] == pytest.approx(1 / 2)


def test_recboles_files_are_attnrecs_prepared_split(tmp_path: Path) -> None:
    """RecBole's files come from the split attnrec's run path prepares (the candidate lists' own): positions, not
    (user, item) pairs — an item a user consumes again keeps its earlier place in train — and the sequence checks
    (a user with under 3 rows is dropped). Every row's input is attnrec's single-domain view of the user's
    sequence (train; at test, train + the validation item), its target the held-out item of the candidate list."""
    from attnrec.data.sequences import Sequences, item_domains_of

    df = pl.concat([p.decode() for p in planted_sequences(n_users=60, n_items=48, length=10)])
    df = df.sort("user_id", "timestamp")
    added = []
    for k, ((user,), rows) in enumerate(df.group_by("user_id", maintain_order=True)):
        if k % 3 == 0:  # consumes again, as its last (test) interaction, its first item of its last domain
            dom = rows["domain"][-1]
            first = rows.filter(pl.col("domain") == dom)["item_id"][0]
            added.append(
                {"user_id": user, "item_id": first, "timestamp": rows["timestamp"].max() + 1, "domain": dom}
            )
    added += [{**r, "user_id": "short"} for r in df.head(2).to_dicts()]  # a sequence under 3 rows
    df = pl.concat([df, pl.DataFrame(added, schema=df.schema)])
    csv = tmp_path / "d.csv"
    df.write_csv(csv)
    counts = peer.export(str(csv), tmp_path / "rb")
    short = peer.export(str(csv), tmp_path / "rb_short", max_len=3)  # a cut that bites on these sequences

    prep = peer.prepared_split(str(csv))
    train, valid = prep["train"], prep["valid"]
    doms, names = item_domains_of(train, prep["items"])
    n = int(np.bincount(train.users).max()) + 2
    seqs = Sequences.from_interactions(train, doms, names, max_len=n)
    uidx = {u: i for i, u in enumerate(train.user_vocab.ids)}
    iids = train.item_vocab.ids
    assert "short" not in uidx
    reconsumed = 0
    for name in names:
        for part, s in (("valid", seqs.view(name)), ("test", seqs.append(valid).view(name))):
            lines = [
                ln.split("\t")
                for ln in (tmp_path / "rb" / name / f"{name}.{part}.inter").read_text().splitlines()[1:]
            ]
            cands = {u: t for u, t, _ in _read(tmp_path / "rb" / name / f"{name}.{part}.cands")}
            assert len(lines) == counts[name][part] > 0
            for u, seq, target in lines:
                row = s.items[uidx[u], n - s.lengths[uidx[u]] :] - 1
                assert seq.split() == iids[row][-peer.MAX_LEN :].tolist(), (part, u)
                assert cands[u] == target
                reconsumed += part == "test" and target in seq.split()
            # a list without a RecBole row is one whose user has no input in the domain
            for u in set(cands) - {u for u, _, _ in lines}:
                assert s.lengths[uidx[u]] == 0
        # train: one row per prefix of the user's training view, its input the prefix's last max_len items and its
        # target the next item
        view = seqs.view(name)
        for folder, cut, count in (("rb", peer.MAX_LEN, counts), ("rb_short", 3, short)):
            got: dict[str, list[tuple[list[str], str]]] = {}
            for ln in (tmp_path / folder / name / f"{name}.train.inter").read_text().splitlines()[1:]:
                u, seq, target = ln.split("\t")
                got.setdefault(u, []).append((seq.split(), target))
            want: dict[str, list[tuple[list[str], str]]] = {}
            for u, i in uidx.items():
                items = iids[view.items[i, n - view.lengths[i] :] - 1].tolist()
                if len(items) > 1:
                    want[u] = [(items[:t][-cut:], items[t]) for t in range(1, len(items))]
            assert got == want, (folder, name)
            assert sum(map(len, got.values())) == count[name]["train"] > 0
            longest = int(view.lengths.max()) - 1  # the longest prefix: above 3, so the short cut bites
            assert longest > 3 and max(len(q) for rows in got.values() for q, _ in rows) == min(cut, longest)
    assert reconsumed >= 10  # the re-consumed test items sit in their users' inputs
