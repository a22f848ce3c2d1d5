"""CDSR readers (ABXI, C2DSR, LLMCDSR, generic table) on tiny fixtures in the real formats, the bad-input rules of
issue 16, the local dataset registry, and the shared copies when present."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from attnrec.data import registry
from attnrec.data.readers.cdsr import (
    DATA_ENV,
    LOCAL_DATASETS,
    read_abxi,
    read_c2dsr,
    read_llmcdsr,
    read_sequence_table,
)
from attnrec.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _abxi(tmp: Path, lines: list[str], mapping: dict[str, list[int]] | None = None) -> Path:
    d = tmp / "abxi"
    d.mkdir()
    (d / "x_50_preprocessed.txt").write_text("\n".join(lines) + "\n")
    m = mapping or {"a1": [1, 0], "a2": [2, 0], "b1": [3, 1], "b2": [4, 1]}
    (d / "map_item_50.txt").write_text(json.dumps(m))
    return d


def test_abxi_reads_order_domains_and_catalogue(tmp_path: Path) -> None:
    d = _abxi(tmp_path, ["0 1|10 3|10 2|20 4|30", "1 3|5 1|6 2|7", "2 1|1 2|2"])
    ds = read_abxi(d)
    df = ds.interactions
    assert df["user_id"].to_list() == ["0"] * 4 + ["1"] * 3  # user 2 (2 items) dropped
    assert df["item_id"].to_list() == ["a1", "b1", "a2", "b2", "b1", "a1", "a2"]
    assert df["domain"].to_list() == ["A", "B", "A", "B", "B", "A", "A"]
    assert ds.notes["short_sequences"] == {"min_len": 3, "users": 1, "rows": 2}
    assert ds.lines is not None and ds.lines.to_list() == [1, 1, 1, 1, 2, 2, 2]
    assert ds.items is not None and ds.items["item_id"].to_list() == ["a1", "a2", "b1", "b2"]
    info = ds.info()
    assert info["domains"] == {
        "A": {"interactions": 4, "users": 2, "items": 2},
        "B": {"interactions": 3, "users": 2, "items": 2},
    }
    assert info["catalogue_items"] == {"A": 2, "B": 2}
    assert info["sequence_length"] == [3, 3.5, 4]


def test_abxi_out_of_order_sorted_stably_and_counted(tmp_path: Path) -> None:
    d = _abxi(tmp_path, ["0 1|30 3|10 2|10 4|40", "1 1|1 2|2 3|3"])
    ds = read_abxi(d)
    u0 = ds.interactions.filter(pl.col("user_id") == "0")
    assert u0["item_id"].to_list() == ["b1", "a2", "a1", "b2"]  # 10, 10 (file order), 30, 40
    assert ds.notes["out_of_order_sorted"] == {"users": 1}


def test_out_of_order_sort_keeps_file_order_within_equal_timestamps_on_a_long_line(tmp_path: Path) -> None:
    """120 tokens of one user over three timestamps, out of order: sorted by time, equal times in file order (an
    unstable sort reorders ties at this size; the 4-token case above cannot tell)."""
    n = 120
    mapping = {f"i{k}": [k + 1, k % 2] for k in range(n)}
    times = [(7 * k) % 3 for k in range(n)]
    d = _abxi(
        tmp_path, [" ".join(["0", *(f"{k + 1}|{t}" for k, t in enumerate(times))]), "1 1|1 2|2 3|3"], mapping
    )
    ds = read_abxi(d)
    got = ds.interactions.filter(pl.col("user_id") == "0")["item_id"].to_list()
    want = [f"i{k}" for t in range(3) for k in range(n) if times[k] == t]
    assert got == want
    assert ds.notes["out_of_order_sorted"] == {"users": 1}


def test_abxi_bad_inputs_name_file_line_value(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"item 9 is not in the item map") as e:
        read_abxi(_abxi(tmp_path, ["0 1|1 2|2 3|3", "1 1|1 9|2 3|3"]))
    assert "x_50_preprocessed.txt:2" in str(e.value)
    d2 = tmp_path / "b"
    d2.mkdir()
    with pytest.raises(DataError, match=r"domain outside the declared domains \(item map\)") as e2:
        read_abxi(_abxi(d2, ["0 1|1 2|2 3|3"], {"a1": [1, 0], "a2": [2, 0], "b1": [3, 2]}))
    assert "map_item_50.txt" in str(e2.value) and "'b1'" in str(e2.value)
    d3 = tmp_path / "c"
    d3.mkdir()
    with pytest.raises(DataError, match="not an integer timestamp"):
        read_abxi(_abxi(d3, ["0 1|x 2|2 3|3"]))
    d4 = tmp_path / "d"
    d4.mkdir()
    with pytest.raises(DataError, match="more than one line") as e4:
        read_abxi(_abxi(d4, ["0 1|1 2|2 3|3", "0 1|1 2|2 3|3"]))
    assert "preprocessed.txt:2" in str(e4.value)


def _gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt") as f:
        f.write(text)


def test_c2dsr_global_ids_sorting_and_gzip(tmp_path: Path) -> None:
    d = tmp_path / "FK"
    d.mkdir()
    _gz(d / "items_a.txt.gz", "11\tA0\t0\n12\tA1\t1\n")
    (d / "items_b.txt").write_text("21\tB0\t0\n22\tB1\t1\n")
    _gz(d / "val_new.txt.gz", "7\t3\t2|300|d|\t0|100|d|\t1|200|d|\n")
    _gz(d / "test_new.txt.gz", "8\t4\t3|5|d|\t1|6|d|\t2|7|d|\t0|8|d|\n")
    ds = read_c2dsr(d)
    df = ds.interactions
    assert df["item_id"].to_list() == ["A0", "A1", "B0", "B1", "A1", "B0", "A0"]
    assert df["domain"].to_list() == ["A", "A", "B", "B", "A", "B", "A"]
    assert df["timestamp"].to_list()[:3] == [100, 200, 300]
    assert ds.notes["out_of_order_sorted"] == {"users": 1}
    _gz(d / "test_new.txt.gz", "7\t4\t3|5|d|\t1|6|d|\t2|7|d|\n")
    with pytest.raises(DataError, match="in two sequence files"):
        read_c2dsr(d)
    _gz(d / "test_new.txt.gz", "8\t4\t3|5|d|\t4|6|d|\t2|7|d|\n")
    with pytest.raises(DataError, match="item 4 is not in items_a/items_b") as e:
        read_c2dsr(d)
    assert "test_new.txt.gz:1" in str(e.value)


def test_llmcdsr_prefixes_users_and_keeps_titles(tmp_path: Path) -> None:
    d = tmp_path / "fk"
    d.mkdir()
    (d / "num.txt").write_text("2\n2\n")
    (d / "item_set_A.json").write_text(json.dumps({"a0": 0, "a1": 1}))
    (d / "item_set_B.json").write_text(json.dumps({"b0": 0, "b1": 1}))
    (d / "text_A.json").write_text(json.dumps({"a0": "tea", "a1": "rice"}))
    (d / "train_overlap.txt").write_text("1\t0,2,1,3\n")
    (d / "train_A.txt").write_text("1\t0,1,0\n")
    (d / "train_B.txt").write_text("1\t2,3\n")
    (d / "valid.txt").write_text("1\t3,2,1\n")
    (d / "test.txt").write_text("1\t1,0,3\n")
    ds = read_llmcdsr(d)
    df = ds.interactions
    assert "timestamp" not in df.columns
    assert df.filter(pl.col("user_id") == "overlap:1")["item_id"].to_list() == ["a0", "b0", "a1", "b1"]
    assert set(df["user_id"].unique()) == {"overlap:1", "A:1", "valid:1", "test:1"}
    assert ds.notes["short_sequences"]["users"] == 1  # B:1 has two items
    assert ds.items is not None and ds.items.filter(pl.col("item_id") == "a1")["title"][0] == "rice"
    (d / "test.txt").write_text("1\t1,0,7\n")
    with pytest.raises(DataError, match="item 7 is not in"):
        read_llmcdsr(d)


def test_generic_table_checks(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("user_id,item_id,domain,timestamp\nu,i1,A,3\nu,i2,B,1\nu,i3,A,2\nv,i1,A,1\n")
    ds = read_sequence_table(f)
    assert ds.interactions["item_id"].to_list() == ["i2", "i3", "i1"]
    assert ds.notes["out_of_order_sorted"] == {"users": 1}
    assert ds.notes["short_sequences"] == {"min_len": 3, "users": 1, "rows": 1}
    with pytest.raises(DataError, match="domain outside the declared domains") as e:
        read_sequence_table(f, domains=["A"])
    assert "t.csv:3" in str(e.value) and "'B'" in str(e.value)
    f.write_text("user_id,item_id,domain,timestamp\nu,i1,A,3\nu,i1,B,4\nu,i3,A,5\n")
    with pytest.raises(DataError, match="item in two domains"):
        read_sequence_table(f)


def test_local_registry_names_and_missing_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"abxi-food-kitchen", "llmcdsr-food-kitchen", "c2dsr-food-kitchen", "c2dsr-movie-book"} <= set(
        registry.available()
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="cdsr-abxi-food-kitchen' not found"):
        registry.load_dataset("abxi-food-kitchen")
    root = tmp_path / "data"
    root.mkdir()
    d = _abxi(root, ["0 1|1 3|2 2|3"])
    d.rename(root / LOCAL_DATASETS["abxi-food-kitchen"].folder)
    monkeypatch.setenv(DATA_ENV, str(root))
    ds = registry.load_dataset("abxi-food-kitchen")
    assert ds.name == "abxi-food-kitchen" and len(ds) == 3


@pytest.mark.shared_data
@pytest.mark.skipif(
    not (SHARED / "cdsr-abxi-food-kitchen").is_dir(), reason="shared data absent (../shared/data)"
)
def test_shared_abxi_counts_match_source_md(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(SHARED))
    ds = registry.load_dataset("abxi-food-kitchen")
    info = ds.info()
    assert info["users"] == 7144
    assert info["domains"]["A"]["interactions"] == 83663  # type: ignore[index]
    assert info["domains"]["B"]["interactions"] == 89885  # type: ignore[index]
    assert info["catalogue_items"] == {"A": 11837, "B": 16258}
    assert info["sequence_length"] == [10, 24.29, 50]  # SOURCE.md: 10..50, mean 24.3
    assert ds.notes["out_of_order_sorted"] == {"users": 0}


@pytest.mark.shared_data
@pytest.mark.skipif(
    not (SHARED / "cdsr-c2dsr-partial").is_dir(), reason="shared data absent (../shared/data)"
)
def test_shared_c2dsr_and_llmcdsr_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(SHARED))
    fk = registry.load_dataset("c2dsr-food-kitchen").info()
    assert fk["users"] == 16579 and fk["interactions"] == 80447 + 82787
    assert fk["catalogue_items"] == {"A": 29207, "B": 34886}
    ov = registry.load_dataset("llmcdsr-food-kitchen-overlap").info()
    assert ov["users"] == 7501 and ov["domains"]["A"]["interactions"] == 45849  # type: ignore[index]
    ll = registry.load_dataset("llmcdsr-food-kitchen").info()
    assert ll["interactions"] == 37281 + 265817 + 99170 + 18133 + 15726
    assert ll["catalogue_items"] == {"A": 8661, "B": 27637}


@pytest.mark.shared_data
@pytest.mark.skipif(
    not (SHARED / "cdsr-c2dsr-partial" / "Movie-Book").is_dir(), reason="shared data absent (../shared/data)"
)
def test_shared_c2dsr_movie_book_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # SOURCE.md's counts: val_new 73,476 + test_new 74,729 interactions over 7,644 + 7,708 disjoint users
    monkeypatch.setenv(DATA_ENV, str(SHARED))
    ds = registry.load_dataset("c2dsr-movie-book")
    info = ds.info()
    assert info["users"] == 7644 + 7708 and info["interactions"] == 73476 + 74729
    assert info["catalogue_items"] == {"A": 36845, "B": 63937}
    assert info["domains"]["A"]["interactions"] == 36558 + 37018  # type: ignore[index]
    assert info["sequence_length"][0] == 6 and info["sequence_length"][2] == 15
    assert ds.notes["out_of_order_sorted"] == {"users": 6298}
    assert ds.notes["short_sequences"]["users"] == 0
