"""The sequential run's data path (leave-one-out over the whole catalogue, item domains, protocols) and the
planted two-domain sequences the conformance suite fits sequential models on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.data.sequences import Sequences, item_domains_of
from attnrec.errors import ConfigError
from attnrec.experiments.config import RunConfig
from attnrec.experiments.seq_run import prepare_sequences, sequential_protocols
from attnrec.testing import planted_sequence_items, planted_sequences
from attnrec.testing.cli import run_cli


def _abxi_folder(root: Path) -> Path:
    d = root / "abxi"
    d.mkdir()
    # item 5 (B) occurs only as a test target; item 6 (A) is in the catalogue only
    (d / "x_50_preprocessed.txt").write_text("0 1|1 3|2 2|3 4|4\n1 3|1 1|2 4|3 5|4\n2 2|1 4|2 1|3\n")
    m = {"a1": [1, 0], "a2": [2, 0], "b3": [3, 1], "b4": [4, 1], "b5": [5, 1], "a6": [6, 0]}
    (d / "map_item_50.txt").write_text(json.dumps(m))
    return d


def test_prepare_sequences_loo_catalogue_and_context(tmp_path: Path) -> None:
    d = _abxi_folder(tmp_path)
    cfg = RunConfig(model="pop", data=str(d))
    data = prepare_sequences(cfg, progress=False)
    train, valid, test = data["train"], data["valid"], data["test"]
    assert train.n_items == 6  # the whole catalogue, a6 and b5 included
    assert len(valid) == 3 and len(test) == 3
    dec = test.decode().sort("user_id")
    assert dec["item_id"].to_list() == ["b4", "b5", "a1"]  # the last item of each line
    assert valid.decode().sort("user_id")["item_id"].to_list() == ["a2", "b4", "b4"]
    doms, names = item_domains_of(train, data["items"])
    assert names == ("A", "B")
    assert dict(zip(train.item_vocab.ids.tolist(), doms.tolist(), strict=True)) == {
        "a1": 0,
        "a2": 0,
        "a6": 0,
        "b3": 1,
        "b4": 1,
        "b5": 1,
    }
    v, t = sequential_protocols(train, valid, data["items"])
    assert v.context is None and t.context is not None and v.on_short == "cap"
    u0 = train.user_vocab.index("0")
    ids = train.item_vocab.ids
    assert [ids[i] for i in t.context.row(u0)] == [
        "a1",
        "b3",
        "a2",
    ]  # train + the validation item, no test item


def test_prepare_sequences_refuses_another_split_method(tmp_path: Path) -> None:
    cfg = RunConfig(model="pop", data=str(_abxi_folder(tmp_path)), split={"method": "random"})
    with pytest.raises(ConfigError, match="leave-one-out"):
        prepare_sequences(cfg, progress=False)


def test_presplit_files_catalogue_never_reads_test_items(tmp_path: Path) -> None:
    parts = {
        "train": [("u", "a", "A", 1), ("u", "b", "B", 2)],
        "valid": [("u", "c", "A", 3)],
        "test": [("u", "z", "B", 4)],
    }
    paths = {}
    for name, rows in parts.items():
        paths[name] = tmp_path / f"{name}.csv"
        pl.DataFrame(rows, schema=["user_id", "item_id", "domain", "timestamp"], orient="row").write_csv(
            paths[name]
        )
    cfg = RunConfig(model="pop", train=paths["train"], valid=paths["valid"], test=paths["test"])
    with pytest.raises(ConfigError, match="test split is empty"):
        prepare_sequences(cfg, progress=False)  # z is unknown: dropped, nothing left to test
    pl.DataFrame(
        [("u", "b", "B", 4)], schema=["user_id", "item_id", "domain", "timestamp"], orient="row"
    ).write_csv(paths["test"])
    data = prepare_sequences(cfg, progress=False)
    assert sorted(data["train"].item_vocab.ids.tolist()) == ["a", "b", "c"]


def test_planted_sequences_pattern() -> None:
    train, valid, test = planted_sequences()
    assert len(valid) == len(test) == train.n_users == 60
    doms, names = item_domains_of(train, planted_sequence_items())
    seq = Sequences.from_interactions(train.with_frame(train.frame), doms, names, max_len=10)
    items = seq.items - 1
    users = np.arange(60)
    real = seq.mask
    # every item of a user has the user's parity (the checkerboard groups)
    assert np.all((items % 2 == (users % 2)[:, None])[real])
    # domains alternate, and the item after a lead item is its twin in the other domain (+/- 20)
    assert np.all(seq.domains[:, 1:] != seq.domains[:, :-1])
    lead_first = items[:, 0::2], items[:, 1::2]
    assert np.all(np.abs(lead_first[0] - lead_first[1]) == 20)
    # held-out targets fall in both domains
    assert set(valid.frame["domain"]) == {"A", "B"} and set(test.frame["domain"]) == {"A", "B"}
    with pytest.raises(ConfigError, match="multiple of 4"):
        planted_sequences(n_items=10)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("sasrec", []),
        ("gca", ["--set", "positions=[0]", "--set", "gate_act=tanh", "--set", "gate_form=vector"]),
    ],
)
def test_cli_train_evaluate_recommend_sequential(
    model: str,
    extra: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """train -> metrics per target domain (gca: |cos(X, X')| per module logged each epoch and kept with the best
    epoch's metrics); evaluate the bundle with --exclude valid.csv -> the run's test numbers; recommend for a known
    user and for a history, per target domain."""
    monkeypatch.setenv("COLUMNS", "200")
    paths = {}
    for name, part in zip(("train", "valid", "test"), planted_sequences(), strict=True):
        paths[name] = tmp_path / f"{name}.csv"
        part.decode().write_csv(paths[name])
    out = tmp_path / "run"
    args = ["train", "--model", model, "--train", str(paths["train"]), "--valid", str(paths["valid"])]
    args += [
        "--test",
        str(paths["test"]),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--no-progress",
        "--threads",
        "1",
    ]
    code, text, _ = run_cli([*args, "--set", "dim=8", "--set", "n_blocks=1", *extra], monkeypatch, capsys)
    assert code == 0, text
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert test["A/n_rows"] + test["B/n_rows"] == 60 and test["n_rows"] == 60
    if model == "gca":
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        epochs = [row for row in log if "epoch" in row]
        modules = ("abs_cos[A<-B@0]", "abs_cos[B<-A@0]")
        assert len(epochs) == 2 and all(0 <= row[f"valid_{m}"] <= 1 for row in epochs for m in modules)
        best = metrics["fit"]["best_epoch"]
        assert all(metrics["fit"]["best_valid"][m] == epochs[best - 1][f"valid_{m}"] for m in modules)
    args = ["evaluate", "--model-dir", str(out / "model"), "--test", str(paths["test"])]
    code, text, _ = run_cli([*args, "--exclude", str(paths["valid"])], monkeypatch, capsys)
    assert code == 0, text
    row = next(line for line in text.splitlines() if "A/mrr " in line)
    assert float(row.split("│")[2]) == pytest.approx(test["A/mrr"], abs=1e-4)
    code, text, _ = run_cli(
        ["recommend", "--model-dir", str(out / "model"), "--users", "u0", "--k", "3"], monkeypatch, capsys
    )
    assert code == 0 and text.count(" u0 ") == 3, text
    code, text, _ = run_cli(
        ["recommend", "--model-dir", str(out / "model"), "--history", "i0,i20,i2", "--k", "3"],
        monkeypatch,
        capsys,
    )
    rows = text.split("─")[-1]
    assert code == 0 and rows.count(" 0 ") == 3 and not any(f" {i} " in rows for i in ("i0", "i20", "i2")), (
        text
    )
    # --domain: only the target domain's items, for a known user and for a history
    frame = pl.concat([pl.read_csv(paths[n]) for n in ("train", "valid", "test")])
    domain_of = dict(zip(frame["item_id"].cast(str), frame["domain"], strict=True))
    for who in (["--users", "u0,u1"], ["--history", "i0,i20,i2"]):
        for dom in ("A", "B"):
            recs_file = tmp_path / f"recs_{who[0][2:]}_{dom}.csv"
            code, text, _ = run_cli(
                ["recommend", "--model-dir", str(out / "model"), *who, "--k", "4", "--domain", dom]
                + ["--out", str(recs_file)],
                monkeypatch,
                capsys,
            )
            assert code == 0, text
            recs = pl.read_csv(recs_file)
            assert recs.height >= 4 and {domain_of[str(i)] for i in recs["item_id"]} == {dom}
    code, text, _ = run_cli(
        ["recommend", "--model-dir", str(out / "model"), "--users", "u0", "--domain", "C"],
        monkeypatch,
        capsys,
    )
    assert code == 2, text  # 'query domain 'C' is not one of this model's domains' on stderr


def test_generic_table_is_checked_as_sequences(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    rows = "user_id,item_id,domain,timestamp\nu,i1,A,3\nu,i2,B,1\nu,i3,A,2\nu,i4,B,4\nv,i1,A,1\nw,i2,B,1\nw,i3,A,2\nw,i4,B,3\n"
    f.write_text(rows)
    data = prepare_sequences(RunConfig(model="pop", data=str(f)), progress=False)
    assert data["notes"]["sequences"] == {
        "short_sequences": {"min_len": 3, "users": 1, "rows": 1},
        "out_of_order_sorted": {"users": 1},
    }
    train, test = data["train"], data["test"]
    assert sorted(train.user_vocab.ids.tolist()) == ["u", "w"]  # v (one item) dropped
    assert sorted(test.decode()["item_id"].to_list()) == ["i4", "i4"]  # u's last by time is i4
    assert data["valid"].decode().sort("user_id")["item_id"].to_list() == ["i1", "i3"]


def test_an_items_catalogue_declares_a_generic_tables_domains(tmp_path: Path) -> None:
    """With an ``--items`` table that has a ``domain`` column, a row whose domain is outside the catalogue's domains,
    or differs from its item's domain there, is a DataError naming the file, line and value (before, the catalogue's
    domain silently won); a table that agrees with it is read as before."""
    from attnrec.errors import DataError

    items = tmp_path / "items.csv"
    items.write_text("item_id,domain\ni1,A\ni2,B\ni3,A\ni4,B\n")
    f = tmp_path / "t.csv"
    good = "user_id,item_id,domain,timestamp\nu,i1,A,1\nu,i2,B,2\nu,i3,A,3\nu,i4,B,4\nw,i2,B,1\nw,i3,A,2\nw,i4,B,3\n"
    f.write_text(good)
    data = prepare_sequences(RunConfig(model="pop", data=str(f), items=items), progress=False)
    assert data["notes"]["domains"] == {"A": 2, "B": 2}
    f.write_text(good.replace("i3,A", "i3,C"))  # both of i3's rows, lines 4 and 7
    with pytest.raises(DataError, match="domain outside the declared domains") as e:
        prepare_sequences(RunConfig(model="pop", data=str(f), items=items), progress=False)
    assert "t.csv:4" in str(e.value) and "'C'" in str(e.value) and "['A', 'B']" in str(e.value)
    f.write_text(good.replace("i3,A", "i3,B"))
    with pytest.raises(DataError, match="differs from the item's domain in the --items catalogue") as e:
        prepare_sequences(RunConfig(model="pop", data=str(f), items=items), progress=False)
    assert "t.csv:4" in str(e.value) and "item 'i3': 'B'" in str(e.value) and "'A'" in str(e.value)
    # without the catalogue, the table's own values are the domains (a third one is a domain like the others)
    data = prepare_sequences(RunConfig(model="pop", data=str(f)), progress=False)
    assert data["notes"]["domains"] == {"A": 1, "B": 3}
    f.write_text(good.replace("i3,A", "i3,C"))
    data = prepare_sequences(RunConfig(model="pop", data=str(f)), progress=False)
    assert data["notes"]["domains"] == {"A": 1, "B": 2, "C": 1}
    # a table without a domain column takes its items' domains from the catalogue (the plain "interactions +
    # item catalogue" layout), not refused as rows of a domain "all"
    f.write_text(
        "".join(
            ",".join(x for j, x in enumerate(row.split(",")) if j != 2) + "\n" for row in good.splitlines()
        )
    )
    data = prepare_sequences(RunConfig(model="pop", data=str(f), items=items), progress=False)
    assert data["notes"]["domains"] == {"A": 2, "B": 2}


def test_an_item_without_a_catalogue_domain_names_the_files_line_and_item(tmp_path: Path) -> None:
    """An item of the interactions that the ``--items`` catalogue lacks, or lists with an empty domain, is a
    DataError naming the interactions file and the item's first line, the catalogue file and the items (count and
    first few); before, it named neither file nor line and said the data had no row for the item."""
    from attnrec.errors import DataError

    items = tmp_path / "items.csv"
    f = tmp_path / "t.csv"
    good = "user_id,item_id,domain,timestamp\nu,i1,A,1\nu,i2,B,2\nu,i3,A,3\nu,i4,B,4\nw,i2,B,1\nw,i3,A,2\nw,i4,B,3\n"
    no_domain = "".join(
        ",".join(x for j, x in enumerate(row.split(",")) if j != 2) + "\n" for row in good.splitlines()
    )
    for table in (good, no_domain):
        f.write_text(table)
        for cat, why in (
            ("i1,A\ni2,B\ni4,B\n", "is not in"),
            ("i1,A\ni2,B\ni3,\ni4,B\n", "has an empty domain in"),
        ):
            items.write_text("item_id,domain\n" + cat)
            with pytest.raises(DataError, match=f"item 'i3' {why} the --items catalogue") as e:
                prepare_sequences(RunConfig(model="pop", data=str(f), items=items), progress=False)
            text = str(e.value)
            assert f"{f}:4" in text and str(items) in text and "1 item(s) in all: ['i3']" in text, text
    f.write_text(good)
    items.write_text("item_id,domain\ni1,A\ni2,B\n")
    with pytest.raises(DataError, match=r"2 item\(s\) in all: \['i3', 'i4'\]") as e:
        prepare_sequences(RunConfig(model="pop", data=str(f), items=items), progress=False)
    assert f"{f}:4" in str(e.value)
    # rows re-sorted by time within a user: still the item's first line in the file (line 3, not u's line 4)
    f.write_text(
        "user_id,item_id,domain,timestamp\nu,i1,A,5\nw,i3,A,1\nu,i3,A,1\nu,i2,B,6\nw,i2,B,2\nw,i4,B,3\n"
    )
    items.write_text("item_id,domain\ni1,A\ni2,B\ni4,B\n")
    with pytest.raises(DataError, match="item 'i3' is not in") as e:
        prepare_sequences(RunConfig(model="pop", data=str(f), items=items), progress=False)
    assert f"{f}:3" in str(e.value), str(e.value)
    # pre-split files keep no line numbers: the file, the field and the item
    parts = {
        "train": good,
        "valid": "user_id,item_id,domain,timestamp\nu,i2,B,5\n",
        "test": "user_id,item_id,domain,timestamp\nu,i1,A,6\n",
    }
    paths = {k: tmp_path / f"{k}.csv" for k in parts}
    for k, text in parts.items():
        paths[k].write_text(text)
    items.write_text("item_id,domain\ni1,A\ni2,B\ni4,B\n")
    cfg = RunConfig(model="pop", train=paths["train"], valid=paths["valid"], test=paths["test"], items=items)
    with pytest.raises(DataError, match="item 'i3' is not in the --items catalogue") as e:
        prepare_sequences(cfg, progress=False)
    assert f"{paths['train']}, field 'item_id', value 'i3'" in str(e.value) and str(items) in str(e.value)


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.shared_data
@pytest.mark.skipif(
    not (SHARED / "cdsr-abxi-food-kitchen").is_dir(), reason="shared data absent (../shared/data)"
)
def test_abxi_split_matches_abxi_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """ABXI's own loader (file order, last item test, the one before valid) gives these target counts per domain
    (computed from ABXI's dataloader by the peer runner; /work/notes/SEQ_ABXI.md)."""
    monkeypatch.setenv("ATTNREC_DATA", str(SHARED))
    data = prepare_sequences(RunConfig(model="pop", data="abxi-food-kitchen"), progress=False)
    train, valid, test = data["train"], data["valid"], data["test"]
    assert train.n_items == 28095 and train.n_users == 7144
    assert valid.frame["domain"].value_counts().sort("domain")["count"].to_list() == [2837, 4307]
    assert test.frame["domain"].value_counts().sort("domain")["count"].to_list() == [2419, 4725]
    assert len(train) == 173548 - 2 * 7144
    doms, names = item_domains_of(train, data["items"])
    assert names == ("A", "B") and int((doms == 0).sum()) == 11837
