"""Streaming ingest (attnrec data ingest): every format parsed block by block exactly as the whole-file reader
parses it, the out-of-core k-core equal to the in-memory one, vocabularies, errors with the right line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from attnrec.cli import app
from attnrec.data.filters import kcore, kcore_lazy
from attnrec.data.ingest import ingest_amazon
from attnrec.data.readers.amazon import read_amazon
from attnrec.errors import DataError

COMPARED = ["user_id", "item_id", "rating", "timestamp", "review", "summary", "vote"]


def _reviews(n: int, version: str, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` reviews of 30 users and 20 items with skewed activity, in the keys of ``version``."""
    rng = np.random.default_rng(seed)
    users = (rng.zipf(1.6, n) - 1) % 30
    items = (rng.zipf(1.4, n) - 1) % 20
    rows = []
    for k, (u, i) in enumerate(zip(users, items, strict=True)):
        text = "word " * int(rng.integers(1, 40)) + f"é {k}"
        rating, ts = float(rng.integers(1, 6)), 1_400_000_000 + k
        if version == "2023":
            rows.append(
                {"rating": rating, "title": f"t{k}", "text": text, "asin": f"V{i}", "parent_asin": f"P{i}",
                 "user_id": f"U{u}", "timestamp": ts * 1000 + 7, "helpful_vote": k % 3, "verified_purchase": True}
            )  # fmt: skip
        else:
            rows.append(
                {"reviewerID": f"U{u}", "asin": f"P{i}", "reviewText": text, "overall": rating, "summary": f"s{k}",
                 "unixReviewTime": ts, **({"vote": f"{k % 3}"} if version == "2018" else {"helpful": [k % 3, 4]})}
            )  # fmt: skip
    return rows


def _write(path: Path, rows: list[dict[str, Any]], *, python_literal: bool = False) -> Path:
    text = "".join((repr(r) if python_literal else json.dumps(r)) + "\n" for r in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("version", "python_literal", "name"),
    [
        ("2014", True, "reviews_Music_5.json.gz"),
        ("2014", False, "reviews_Music_5.json"),
        ("2018", False, "Music_5.json.gz"),
        ("2023", False, "Music.jsonl.gz"),
    ],
)
def test_blocks_parse_as_the_whole_file_reader_does(
    tmp_path: Path, version: str, python_literal: bool, name: str
):
    path = _write(tmp_path / name, _reviews(300, version), python_literal=python_literal)
    # 2 KiB blocks: ~40 blocks, lines cut at every boundary
    report = ingest_amazon([path], tmp_path / "out", block_bytes=2048)
    assert report.sources[0].blocks > 20
    got = pl.read_parquet(tmp_path / "out" / "reviews.parquet")
    want = read_amazon(path).interactions
    assert got.select(COMPARED).equals(want.select(COMPARED).with_columns(pl.col("vote").cast(pl.Int64)))
    assert report.rows_read == 300 and report.sources[0].version == (
        "2023" if version == "2023" else "2014/2018"
    )
    if version == "2023":
        assert got["timestamp_ms"].to_list() == want["timestamp_ms"].to_list()
    # no k-core asked: every row kept, with its ids' vocabulary indices
    table = pl.read_parquet(tmp_path / "out" / "interactions.parquet")
    assert table.height == 300
    users = pl.read_parquet(tmp_path / "out" / "users.parquet")
    assert users["user_id"].to_list() == sorted(users["user_id"].to_list())
    assert users["index"].to_list() == list(range(users.height))
    lookup = dict(zip(users["user_id"], users["index"], strict=True))
    assert [lookup[u] for u in table["user_id"]] == table["user_index"].to_list()


def test_out_of_core_kcore_equals_the_in_memory_kcore(tmp_path: Path) -> None:
    path = _write(tmp_path / "Tools_5.json.gz", _reviews(600, "2018", seed=3))
    report = ingest_amazon([path], tmp_path / "out", user_k=4, item_k=6, block_bytes=4096)
    want, want_report = kcore(read_amazon(path).interactions, 4, 6)
    got = pl.read_parquet(tmp_path / "out" / "interactions.parquet")
    assert 0 < got.height < 600 and report.rows_kept == got.height
    assert got.select(COMPARED).equals(want.select(COMPARED).with_columns(pl.col("vote").cast(pl.Int64)))
    assert report.kcore["rounds"] == want_report.details["rounds"]
    assert report.users == want["user_id"].n_unique() and report.items == want["item_id"].n_unique()
    counts = pl.read_parquet(tmp_path / "out" / "items.parquet")
    expected = want.group_by("item_id").len().sort("item_id")
    assert counts["count"].to_list() == expected["len"].to_list()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows_kept"] == got.height and manifest["kcore"]["user_k"] == 4


def test_kcore_lazy_refuses_thresholds_nothing_meets() -> None:
    frame = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
    with pytest.raises(DataError, match="removes every one of the 3 rows"):
        kcore_lazy(frame.lazy(), 5, 1)


def test_a_bad_line_is_named_with_its_line_across_blocks(tmp_path: Path) -> None:
    rows = [json.dumps(r) for r in _reviews(120, "2018")]
    rows[86] = rows[86].replace('"overall": ', '"overall": "five", "x": ')
    path = tmp_path / "Bad_5.json"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        ingest_amazon([path], tmp_path / "out", block_bytes=2048)
    assert err.value.line == 87 and err.value.field == "rating" and str(path) in str(err.value)
    assert not (tmp_path / "out" / "reviews.parquet").exists()  # nothing half-written is left
    report = ingest_amazon([path], tmp_path / "out", block_bytes=2048, on_bad_lines="skip")
    assert report.sources[0].skipped_rows == 1 and report.sources[0].skipped_lines == [87]
    assert report.rows_read == 119


def test_several_files_get_a_domain_and_text_can_be_left_out(tmp_path: Path) -> None:
    a = _write(tmp_path / "reviews_Books_5.json.gz", _reviews(50, "2014"))
    b = _write(tmp_path / "Games.jsonl", _reviews(40, "2023"))
    report = ingest_amazon([a, b], tmp_path / "out", text=False)
    got = pl.read_parquet(tmp_path / "out" / "reviews.parquet")
    assert got["domain"].value_counts(sort=True).rows() == [("Books_5", 50), ("Games", 40)]
    assert "review" not in got.columns and "summary" not in got.columns
    assert {"style", "asin", "timestamp_ms"} <= set(got.columns)  # both formats' own columns
    assert [s.version for s in report.sources] == ["2014/2018", "2023"]


def test_cli_ingest_then_the_table_trains(tmp_path: Path) -> None:
    path = _write(tmp_path / "Music_5.json.gz", _reviews(400, "2018", seed=1))
    out = tmp_path / "ingested"
    result = CliRunner().invoke(
        app, ["data", "ingest", str(path), "--out", str(out), "--user-k", "3", "--item-k", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "k-core (users >= 3, items >= 3): 400 ->" in result.output
    run = CliRunner().invoke(
        app,
        ["train", "--model", "svd", "--data", str(out / "interactions.parquet"), "--no-progress",
         "--set", "factors=4", "--set", "iterations=2"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "rmse" in run.output
