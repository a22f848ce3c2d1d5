"""Splits: hand-checked cases, leakage validation, errors, file round-trips and hypothesis properties."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from attnrec.data.splits import (
    SplitResult,
    export_split,
    leave_last_out,
    load_presplit,
    random_split,
    read_split,
    split,
    temporal_split,
)
from attnrec.data.table import Dataset
from attnrec.errors import ConfigError, DataError

PROPS = settings(max_examples=30, deadline=None, derandomize=True)


def _rows(result: SplitResult) -> dict[str, list[int]]:
    return {name: part["row"].to_list() for name, part in result.parts().items()}


def _table(
    n: int = 120, n_users: int = 10, n_items: int = 12, seed: int = 0, ts: bool = True
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {
        "user_id": [f"u{x}" for x in rng.integers(0, n_users, n)],
        "item_id": [f"i{x}" for x in rng.integers(0, n_items, n)],
        "rating": rng.integers(1, 6, n).astype(np.float32),
    }
    if ts:
        data["timestamp"] = rng.integers(0, 40, n)
    data["row"] = np.arange(n)
    return pl.DataFrame(data)


# ------------------------------------------------------------------------------------------- hand-checked


def test_leave_last_out_hand_case() -> None:
    df = pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "b", "c"],
            "item_id": ["x", "y", "z", "w", "x", "y", "z", "z"],
            "timestamp": [40, 10, 30, 20, 5, 7, 6, 1],
        }
    )
    r = leave_last_out(df)
    # a by time: y(10) w(20) z(30) x(40); b: x(5) z(6) y(7); c has one row -> train only
    assert r.test.sort("user_id").select("user_id", "item_id").rows() == [("a", "x"), ("b", "y")]
    assert r.valid.sort("user_id").select("user_id", "item_id").rows() == [("a", "z"), ("b", "z")]
    assert r.train.select("user_id", "item_id").rows() == [("a", "y"), ("a", "w"), ("b", "x"), ("c", "z")]
    assert r.report["train_only_users"] == 1 and r.report["train_only_rows"] == 1
    assert r.report["sizes"] == {"train": 4, "valid": 2, "test": 2}
    assert r.report["dropped"]["total"] == 0
    assert r.report["order"] == "timestamp"


def test_leave_last_out_row_order_without_timestamp_and_ties() -> None:
    df = pl.DataFrame({"user_id": ["a"] * 4, "item_id": ["p", "q", "r", "s"]})
    r = leave_last_out(df, n_valid=0, n_test=2, protocol="cold_start")
    assert r.test["item_id"].to_list() == ["r", "s"]
    assert r.valid.height == 0
    assert r.report["order"] == "row"
    tied = df.with_columns(pl.lit(7).alias("timestamp"))
    r2 = leave_last_out(tied, n_valid=1, protocol="cold_start")
    # equal timestamps: later input row counts as later
    assert r2.test["item_id"].to_list() == ["s"] and r2.valid["item_id"].to_list() == ["r"]


def test_global_temporal_hand_case() -> None:
    df = pl.DataFrame(
        {
            "user_id": ["a", "b", "c", "d", "e"] * 2,
            "item_id": ["x"] * 5 + ["y"] * 5,
            "timestamp": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        }
    )
    r = temporal_split(df, ratios=(0.6, 0.2, 0.2))
    assert sorted(r.train["timestamp"].to_list()) == [0, 1, 2, 3, 4, 5]
    assert sorted(r.valid["timestamp"].to_list()) == [6, 7]
    assert sorted(r.test["timestamp"].to_list()) == [8, 9]
    # parts keep input row order
    assert r.test["timestamp"].to_list() == [9, 8]


def test_random_split_sizes_and_seed() -> None:
    df = _table(n=140, n_users=30, n_items=40).unique(["user_id", "item_id"], maintain_order=True).head(100)
    a = random_split(df, seed=3)
    b = random_split(df, seed=3)
    c = random_split(df, seed=4)
    assert a.report["assigned"] == {"train": 80, "valid": 10, "test": 10}
    assert _rows(a) == _rows(b)
    assert _rows(a) != _rows(c)
    assert a.report["seed"] == 3 and a.report["method"] == "random"


def test_per_user_random_cut_per_user() -> None:
    df = pl.DataFrame({"user_id": ["a"] * 10 + ["b"] * 5, "item_id": [f"i{k}" for k in range(15)]})
    r = random_split(df, seed=1, per_user=True, protocol="cold_start")
    per_part = {
        name: dict(part.group_by("user_id").len().rows()) for name, part in r.parts().items() if part.height
    }
    # a: 10 rows -> 8/1/1; b: 5 rows -> round(4.0)=4 train, round(4.5)=5 -> 1 valid, 0 test
    assert per_part["train"] == {"a": 8, "b": 4}
    assert per_part["valid"] == {"a": 1, "b": 1}
    assert per_part["test"] == {"a": 1}


def test_dispatcher_and_dataset_input() -> None:
    df = _table()
    ds = Dataset("toy", df)
    assert _rows(split(ds, "random", seed=2)) == _rows(random_split(df, seed=2))
    assert _rows(split(df, "temporal_per_user")) == _rows(temporal_split(df, per_user=True))
    assert split(df, "random_per_user").report["method"] == "random_per_user"
    assert _rows(split(df, "leave_last_out", n_valid=2)) == _rows(leave_last_out(df, n_valid=2))
    with pytest.raises(ConfigError, match="unknown split method 'nope'"):
        split(df, "nope")


# ------------------------------------------------------------------------------------------ validation


def _cold_case() -> pl.DataFrame:
    # time order puts a new user (z) and a new item (new) only in the last rows
    return pl.DataFrame(
        {
            "user_id": ["a", "b", "a", "b", "c", "c", "a", "z", "a", "z"],
            "item_id": ["x", "y", "y", "x", "x", "w", "new", "x", "w", "y"],
            "timestamp": list(range(10)),
        }
    )


def test_warm_protocol_drops_and_reports_unseen_rows() -> None:
    r = temporal_split(_cold_case(), ratios=(0.6, 0.2, 0.2))
    # valid: (a,new,6) unknown item, (z,x,7) unknown user; test: (a,w,8) kept, (z,y,9) unknown user
    assert r.report["dropped"]["valid"] == {"rows": 2, "unknown_user": 1, "unknown_item": 1}
    assert r.report["dropped"]["test"] == {"rows": 1, "unknown_user": 1, "unknown_item": 0}
    assert r.report["dropped"]["total"] == 3
    assert r.valid.height == 0
    assert r.test.rows() == [("a", "w", 8)]
    assert r.report["assigned"] == {"train": 6, "valid": 2, "test": 2}
    assert r.report["sizes"] == {"train": 6, "valid": 0, "test": 1}
    assert r.report["seen_pairs"]["test"] == 0  # no held-out pair is also in train
    assert set(r.test["user_id"]) <= set(r.train["user_id"])


def test_cold_start_protocol_keeps_unseen_rows() -> None:
    r = temporal_split(_cold_case(), ratios=(0.6, 0.2, 0.2), protocol="cold_start")
    assert r.protocol == "cold_start"
    assert r.valid.height == 2 and r.test.height == 2
    assert r.report["dropped"]["total"] == 0
    assert r.report["unseen"]["test"] == {"rows": 1, "unknown_user": 1, "unknown_item": 0}


def test_empty_test_after_validation_is_an_error() -> None:
    df = pl.DataFrame(
        {"user_id": ["a", "a", "a", "b"], "item_id": ["x", "y", "x", "z"], "timestamp": [1, 2, 3, 4]}
    )
    with pytest.raises(DataError, match="test part is empty after removing 1 row") as exc:
        temporal_split(df, ratios=(0.75, 0.0, 0.25))
    assert "cold_start" in str(exc.value)
    assert temporal_split(df, ratios=(0.75, 0.0, 0.25), protocol="cold_start").test.height == 1


def test_empty_parts_and_bad_inputs() -> None:
    one_each = pl.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="the test part is empty") as exc:
        leave_last_out(one_each)  # every user is too short -> all train
    assert "at least one test row" in str(exc.value)
    with pytest.raises(DataError, match="the train part is empty") as exc1:
        random_split(pl.DataFrame({"user_id": ["a"], "item_id": ["x"]}), ratios=(0.4, 0.0, 0.6))
    assert exc1.value.value == {"train": 0, "valid": 0, "test": 1}
    with pytest.raises(DataError, match="timestamp") as exc2:
        temporal_split(pl.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}))
    assert exc2.value.field == "timestamp"
    with pytest.raises(DataError) as exc3:
        temporal_split(pl.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, None]}))
    assert exc3.value.field == "timestamp" and exc3.value.line == 2
    with pytest.raises(DataError, match="no rows"):
        random_split(
            pl.DataFrame({"user_id": [], "item_id": []}, schema={"user_id": pl.String, "item_id": pl.String})
        )
    with pytest.raises(ConfigError, match="sum to"):
        random_split(_table(), ratios=(0.5, 0.1, 0.1))
    with pytest.raises(ConfigError, match="positive test ratio"):
        random_split(_table(), ratios=(0.9, 0.1, 0.0))
    with pytest.raises(ConfigError, match="protocol"):
        random_split(_table(), protocol="lukewarm")


def test_leave_last_out_all_users_too_short() -> None:
    # n_test=1 and n_valid=0 still need 2 rows per user -> every user train-only -> empty test
    df = pl.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"]})
    with pytest.raises(DataError, match="test part is empty"):
        leave_last_out(df, n_valid=0)


# --------------------------------------------------------------------------------------------- files


def test_export_then_read_round_trip(tmp_path: Path) -> None:
    df = _table(n=80).drop("row").with_columns(pl.col("user_id").str.replace("u", "00"))  # leading zeros
    result = split(df, "random_per_user", seed=5)
    out = export_split(result, tmp_path / "s")
    header = (out / "train.csv").read_text().splitlines()[0]
    assert header == "user_id,item_id,rating,timestamp"
    assert json.loads((out / "split.json").read_text()) == result.report
    back = read_split(out)
    for name in ("train", "valid", "test"):
        assert back.parts()[name].equals(result.parts()[name]), name
    assert back.report == result.report
    assert back.protocol == result.protocol
    assert back.train["user_id"].dtype == pl.String and back.train["user_id"][0].startswith("00")


def test_export_without_optional_columns(tmp_path: Path) -> None:
    df = pl.DataFrame({"user_id": ["a", "a", "a", "b", "b", "b"], "item_id": ["x", "y", "z", "z", "y", "x"]})
    result = leave_last_out(df, n_valid=0)
    export_split(result, tmp_path)
    assert (tmp_path / "test.csv").read_text() == "user_id,item_id\na,z\nb,x\n"
    back = read_split([tmp_path / "train.csv", tmp_path / "valid.csv", tmp_path / "test.csv"])
    assert back.test.equals(result.test) and back.report["method"] == "presplit"


def test_load_presplit_csv_and_parquet_with_validation(tmp_path: Path) -> None:
    train = tmp_path / "train.parquet"
    pl.DataFrame({"user_id": [1, 1, 2], "item_id": ["x", "y", "x"], "rating": [5.0, 3.0, 4.0]}).write_parquet(
        train
    )
    (tmp_path / "valid.csv").write_text("user_id,item_id,rating\n1,x,2\n")
    (tmp_path / "test.csv").write_text("user_id,item_id,rating\n2,y,1\n3,x,5\n1,q,4\n")
    r = load_presplit(train, tmp_path / "valid.csv", tmp_path / "test.csv")
    assert r.report["method"] == "presplit"
    assert r.train["user_id"].to_list() == ["1", "1", "2"]
    assert r.test.rows() == [("2", "y", 1.0)]
    assert r.report["dropped"]["test"] == {"rows": 2, "unknown_user": 1, "unknown_item": 1}
    assert r.report["seen_pairs"]["valid"] == 1
    assert r.report["files"]["test"] == str(tmp_path / "test.csv")
    cold = load_presplit(train, None, tmp_path / "test.csv", protocol="cold_start")
    assert cold.test.height == 3 and cold.valid.height == 0


def test_load_presplit_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("user_id,item_id,rating\na,x,5\n")
    (tmp_path / "test.csv").write_text("user_id,item_id\na,x\n")
    with pytest.raises(DataError, match="columns differ") as exc:
        load_presplit(tmp_path / "train.csv", None, tmp_path / "test.csv")
    assert exc.value.file == str(tmp_path / "test.csv")
    (tmp_path / "test.csv").write_text("user_id,item_id,rating\na,x,five\n")
    with pytest.raises(DataError) as exc2:
        load_presplit(tmp_path / "train.csv", None, tmp_path / "test.csv")
    assert (
        exc2.value.file == str(tmp_path / "test.csv")
        and exc2.value.field == "rating"
        and exc2.value.line == 2  # the file's physical line: the header is line 1
    )
    (tmp_path / "test.csv").write_text("user_id,item_id,rating\nb,z,1\n")
    with pytest.raises(DataError, match="test part is empty after removing 1") as exc3:
        load_presplit(tmp_path / "train.csv", None, tmp_path / "test.csv")
    assert exc3.value.file == str(tmp_path / "test.csv")
    (tmp_path / "test.csv").unlink()
    with pytest.raises(DataError, match="no test file"):
        read_split(tmp_path)


# --------------------------------------------------------------------------------------------- properties


@st.composite
def tables(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(10, 60))
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 10))
    users = draw(st.lists(st.integers(0, n_users - 1), min_size=n, max_size=n))
    items = draw(st.lists(st.integers(0, n_items - 1), min_size=n, max_size=n))
    times = draw(st.lists(st.integers(0, 15), min_size=n, max_size=n))  # small range: many ties
    return pl.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "timestamp": times,
            "row": list(range(n)),
        }
    )


def _run(df: pl.DataFrame, method: str, **kw: object) -> SplitResult:
    try:
        return split(df, method, **kw)
    except DataError as exc:  # tiny random tables can leave no test row; anything else is a failure
        assert "part is empty" in str(exc)
        assume(False)
        raise


def _check_partition(df: pl.DataFrame, r: SplitResult) -> None:
    rows = _rows(r)
    seen = rows["train"] + rows["valid"] + rows["test"]
    assert len(seen) == len(set(seen)), "a row is in two parts"
    missing = set(df["row"].to_list()) - set(seen)
    assert len(seen) + r.report["dropped"]["total"] == df.height
    assert len(missing) == r.report["dropped"]["total"]
    # every dropped row really has a user or item that train lacks
    gone = df.filter(pl.col("row").is_in(sorted(missing)))
    train_users, train_items = set(r.train["user_id"]), set(r.train["item_id"])
    assert all(
        u not in train_users or i not in train_items for u, i in gone.select("user_id", "item_id").rows()
    )
    if r.protocol == "warm":
        held = pl.concat([r.valid, r.test])
        assert set(held["user_id"]) <= train_users and set(held["item_id"]) <= train_items
    # a (user, item) pair is never in two parts
    pairs = [set(part.select("user_id", "item_id").rows()) for part in r.parts().values()]
    assert not (pairs[0] & pairs[1]) and not (pairs[0] & pairs[2]) and not (pairs[1] & pairs[2])
    assert r.report["seen_pairs"] == {"valid": 0, "test": 0}
    assert sum(r.report["duplicates"]["shared_pairs"].values()) == 0
    n_pairs = df.select("user_id", "item_id").n_unique()
    assert r.report["duplicates"]["rows"] == df.height - n_pairs
    # rows are unchanged, not just their ids
    for part in r.parts().values():
        assert part.equals(df.filter(pl.col("row").is_in(part["row"].implode())))


def _expected(n: int, ratios: tuple[float, float, float]) -> dict[str, int]:
    b1 = math.floor(n * ratios[0] + 0.5 + 1e-9)
    b2 = math.floor(n * (ratios[0] + ratios[1]) + 0.5 + 1e-9)
    return {"train": b1, "valid": b2 - b1, "test": n - b2}


RATIOS = st.sampled_from([(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.7, 0.0, 0.3), (0.5, 0.25, 0.25)])
PROTOCOL = st.sampled_from(["warm", "cold_start"])


@PROPS
@given(df=tables(), seed=st.integers(0, 2**31), ratios=RATIOS, protocol=PROTOCOL)
def test_random_split_properties(df: pl.DataFrame, seed: int, ratios, protocol: str) -> None:  # type: ignore[no-untyped-def]
    r = _run(df, "random", seed=seed, ratios=ratios, protocol=protocol)
    _check_partition(df, r)
    # ratios are shares of distinct pairs; every copy of a pair follows it
    assert r.report["assigned_pairs"] == _expected(df.select("user_id", "item_id").n_unique(), ratios)
    assert r.train.height == r.report["assigned"]["train"]  # train is never trimmed
    again = split(df, "random", seed=seed, ratios=ratios, protocol=protocol)
    assert _rows(again) == _rows(r)


@PROPS
@given(df=tables(), seed=st.integers(0, 2**31), ratios=RATIOS, protocol=PROTOCOL)
def test_random_per_user_properties(df: pl.DataFrame, seed: int, ratios, protocol: str) -> None:  # type: ignore[no-untyped-def]
    r = _run(df, "random_per_user", seed=seed, ratios=ratios, protocol=protocol)
    _check_partition(df, r)
    counts = dict(df.group_by("user_id").agg(pl.col("item_id").n_unique()).rows())
    train_counts = dict(r.train.group_by("user_id").agg(pl.col("item_id").n_unique()).rows())
    for user, cnt in counts.items():
        assert train_counts.get(user, 0) == _expected(cnt, ratios)["train"]
    assert _rows(split(df, "random_per_user", seed=seed, ratios=ratios, protocol=protocol)) == _rows(r)


@PROPS
@given(df=tables(), ratios=RATIOS, protocol=PROTOCOL)
def test_temporal_global_properties(df: pl.DataFrame, ratios, protocol: str) -> None:  # type: ignore[no-untyped-def]
    r = _run(df, "temporal", ratios=ratios, protocol=protocol)
    _check_partition(df, r)
    assert r.report["assigned_pairs"] == _expected(df.select("user_id", "item_id").n_unique(), ratios)
    # a pair is ordered by its latest row: no train row is later than any held-out pair's latest row
    latest = {
        name: part.group_by("user_id", "item_id").agg(pl.col("timestamp").max())["timestamp"]
        for name, part in r.parts().items()
    }
    assert r.train["timestamp"].max() <= latest["test"].min()
    if r.valid.height:
        assert r.train["timestamp"].max() <= latest["valid"].min()
        assert latest["valid"].max() <= latest["test"].min()
    assert _rows(split(df, "temporal", ratios=ratios, protocol=protocol)) == _rows(r)


@PROPS
@given(df=tables(), ratios=RATIOS, protocol=PROTOCOL)
def test_temporal_per_user_properties(df: pl.DataFrame, ratios, protocol: str) -> None:  # type: ignore[no-untyped-def]
    r = _run(df, "temporal_per_user", ratios=ratios, protocol=protocol)
    _check_partition(df, r)
    last_train = dict(r.train.group_by("user_id").agg(pl.col("timestamp").max()).rows())
    test_latest = r.test.group_by("user_id", "item_id").agg(pl.col("timestamp").max())
    first_test = dict(test_latest.group_by("user_id").agg(pl.col("timestamp").min()).rows())
    for user, t in first_test.items():
        assert last_train.get(user, -1) <= t
    counts = dict(df.group_by("user_id").agg(pl.col("item_id").n_unique()).rows())
    train_counts = dict(r.train.group_by("user_id").agg(pl.col("item_id").n_unique()).rows())
    assert all(train_counts.get(u, 0) == _expected(c, ratios)["train"] for u, c in counts.items())


@PROPS
@given(df=tables(), n_valid=st.integers(0, 2), protocol=PROTOCOL)
def test_leave_last_out_properties(df: pl.DataFrame, n_valid: int, protocol: str) -> None:
    r = _run(df, "leave_last_out", n_valid=n_valid, protocol=protocol)
    _check_partition(df, r)
    # the pair of each user's latest row (ties: the later input row) is that user's test pair, every copy of it
    latest = df.sort(["timestamp", "row"]).group_by("user_id", maintain_order=True).last()
    counts = dict(df.group_by("user_id").agg(pl.col("item_id").n_unique()).rows())
    eligible = {u for u, c in counts.items() if c >= n_valid + 2}
    test_pairs = latest.filter(pl.col("user_id").is_in(sorted(eligible))).select("user_id", "item_id")
    expect = sorted(df.join(test_pairs, on=["user_id", "item_id"])["row"].to_list())
    test_rows = sorted(r.test["row"].to_list())
    if protocol == "cold_start":
        assert test_rows == expect
    else:
        assert set(test_rows) <= set(expect)
        assert len(expect) - len(test_rows) == r.report["dropped"]["test"]["rows"]
    assert r.report["train_only_users"] == len(counts) - len(eligible)
    valid_pairs = r.valid.select("user_id", "item_id").n_unique()
    assert r.report["assigned_pairs"]["valid"] == n_valid * len(eligible) >= valid_pairs
