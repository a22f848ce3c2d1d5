"""Hardening, the reader rows: every path that reads a user's file fails the same clear way.

One byte layer (``attnrec.data.readers.files``) and one row layer (``read_table``) serve ``data info``,
``data split``, ``train --train``, ``evaluate --test`` and ``recommend --users-file``. A bad file gives the same
one-line error on each, naming the file and the 1-based physical line (the header is line 1). Ids are normalised
(trimmed; integral float ids as integers). Decompression and size limits stop a gzip bomb with an error naming the
variable to raise; an edited cached dataset is caught by its checksum; skipped rows are reported.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from attnrec.data import registry
from attnrec.data.readers.ctr import read_criteo, read_ctr_table
from attnrec.data.readers.files import (
    MAX_BYTES_ENV,
    MAX_RATIO_ENV,
    RATIO_FLOOR,
    check_parquet_size,
    read_bytes,
    read_id_list,
)
from attnrec.data.readers.tabular import RowChecker, read_interactions, read_table
from attnrec.data.registry import fetch, load_dataset
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.data.splits import load_presplit
from attnrec.errors import ConfigError, DataError

from .conftest import Probe, assert_clean_error, assert_nothing_partial, assert_ok

HEADER = "user_id,item_id,rating\n"
# 5 users x 6 items, every rating 1-5: tiny, and every user and item is in train
ROWS = [f"{u},{i},{(u * 7 + i) % 5 + 1}\n" for u in range(1, 6) for i in range(10, 16)]
GOOD = HEADER + "".join(ROWS)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pop bundle trained on GOOD (through the library: fast, and independent of the CLI under test)."""
    from attnrec.experiments.config import RunConfig
    from attnrec.experiments.run import run_experiment

    root = tmp_path_factory.mktemp("bundle")
    (root / "good.csv").write_text(GOOD)
    cfg = RunConfig.parse(
        {"model": "pop", "train": root / "good.csv", "test": root / "good.csv", "out": root / "run"}
    )
    run_experiment(cfg, progress=False)
    return root / "run" / "model"


# -------------------------------------------------------------------------- one machinery, one error, every path
# name -> (file bytes, fragments the error must name besides the file name)
BAD_FILES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "empty.csv": (b"", ("empty file",)),
    "blank_lines.csv": (b"\n\n  \n", ("empty file",)),
    "latin1.csv": ((HEADER + "1,10,4\n").encode() + b"2,caf\xe9,5\n", (":3", "not utf-8")),
    "nul.csv": ((HEADER + "1,10,4\n2,1\x000,5\n").encode(), (":3", "NUL byte")),
    "utf16.csv": ((HEADER + "1,10,4\n").encode("utf-16"), (":1", "NUL byte")),
    "truncated.csv.gz": (gzip.compress(GOOD.encode())[:40], ("corrupt gzip",)),
    "not_gzip.csv.gz": (b"\x1f\x8b" + b"garbage" * 10, ("corrupt gzip",)),
    "ragged.csv": ((HEADER + "1,10,4\n2,20\n3,30,3\n").encode(), (":3", "wrong number of fields", "found 2")),
    "too_many.csv": ((HEADER + "1,10,4\n2,20,5,9\n").encode(), (":3", "found 4")),
    "bad_rating.csv": ((HEADER + "1,10,4\n2,11,5\n3,12,five\n").encode(), (":4", "rating", "five")),
    "blank_id.csv": ((HEADER + "1,10,4\n ,11,5\n").encode(), (":3", "user_id", "empty id")),
    "blank_line_then_bad.csv": ((HEADER + "1,10,4\n\n\n2,x,nan\n").encode(), (":5", "rating")),
    "crlf_bad.csv": ((HEADER + "1,10,4\r\n2,11,oops\r\n").replace("\n", "\r\n").encode(), (":3", "oops")),
    "quoted_bad.csv": ((HEADER + '1,"10",4\n\n2,"a, b",x\n').encode(), (":4", "rating", "'x'")),
    "zipped.csv": (b"PK\x03\x04" + bytes(40), ("a zip file", "unpack")),
    "bzipped.csv": (bz2.compress(GOOD.encode()), ("a bzip2 file",)),
    "dup_header.csv": (b"user_id,user_id,rating\n1,2,3\n", (":1", "appears twice", "user_id")),
    "no_user_column.csv": (b"user,item_id,rating\n1,2,3\n", ("user_id",)),
}


ALL_PATHS = {"latin1.csv", "truncated.csv.gz", "ragged.csv", "bad_rating.csv"}


def _write(tmp_path: Path, name: str) -> tuple[Path, tuple[str, ...]]:
    data, fragments = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    return path, fragments


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_fails_the_same_way_on_every_path(
    name: str, cli: Callable[..., Probe], bundle: Path, tmp_path: Path
) -> None:
    path, fragments = _write(tmp_path, name)
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    out = tmp_path / "run"
    probes = {
        "data info": cli(["data", "info", path]),
        "data split": cli(["data", "split", path, "--out", tmp_path / "split"]),
        "train --train": cli(["train", "--model", "pop", "--train", path, "--test", good, "--out", out]),
        "evaluate --test": cli(["evaluate", "--model-dir", bundle, "--test", path]),
    }
    if name in ALL_PATHS:  # the other places a pre-split file is read, on a few kinds (the suite stays fast)
        probes["train --test"] = cli(
            ["train", "--model", "pop", "--train", good, "--test", path, "--out", out]
        )
        probes["evaluate --exclude"] = cli(
            ["evaluate", "--model-dir", bundle, "--test", good, "--exclude", path]
        )
    messages = {where: assert_clean_error(p, name, *fragments) for where, p in probes.items()}
    # the same machinery: the very same message, whichever command read the file
    assert len(set(messages.values())) == 1, messages
    assert not (out / "metrics.json").exists() and not (tmp_path / "split" / "split.json").exists()
    assert_nothing_partial(tmp_path)


@pytest.mark.parametrize("name", ["latin1.csv", "ragged.csv", "bad_rating.csv", "nul.csv"])
def test_library_readers_raise_data_error_with_file_line_field(name: str, tmp_path: Path) -> None:
    path, fragments = _write(tmp_path, name)
    line = int(next(f for f in fragments if f.startswith(":"))[1:])
    for read in (lambda p: read_table(p), read_interactions, lambda p: load_presplit(p, None, p)):
        with pytest.raises(DataError) as err:
            read(path)
        assert err.value.file == str(path) and err.value.line == line, str(err.value)
    if name == "bad_rating.csv":
        assert err.value.field == "rating" and err.value.value == "five"


def test_line_numbers_are_physical_lines_also_after_skips(tmp_path: Path) -> None:
    # blank lines, a CRLF line and a quoted field: every reported line is the line an editor shows
    text = HEADER + "1,10,4\n\n" + '2,"11",5\r\n' + "x\n" + "\n3,12\n" + "4,13,2\n"
    path = tmp_path / "mixed.csv"
    path.write_text(text)
    ds = read_table(path, on_bad_lines="skip")
    assert ds.notes["skipped_rows"] == 2 and ds.notes["skipped_lines"] == [5, 7]
    assert ds.interactions["user_id"].to_list() == ["1", "2", "4"]


# -------------------------------------------------------------------------- fuzz: inputs that must read correctly
def _ids(path: Path) -> list[tuple[str, str]]:
    return read_table(path).interactions.select("user_id", "item_id").rows()


def test_bom_crlf_spaces_and_tabs_read_as_the_plain_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text(GOOD)
    variants = {
        "bom.csv": b"\xef\xbb\xbf" + GOOD.encode(),
        "crlf.csv": GOOD.replace("\n", "\r\n").encode(),
        "cr_only.csv": GOOD.replace("\n", "\r").encode(),
        "spaces.csv": GOOD.replace(",", ", ").encode(),
        "padded.csv": "".join(" " + ln.replace(",", " ,\t") for ln in GOOD.splitlines(True)).encode(),
        "gz_no_suffix.csv": gzip.compress(GOOD.encode()),
    }
    want = _ids(plain)
    assert want[0] == ("1", "10")
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        assert _ids(tmp_path / name) == want, name
        assert read_interactions(tmp_path / name).equals(read_interactions(plain)), name


def test_wrong_separator_is_named(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    p = tmp_path / "tabs.csv"
    p.write_text(GOOD.replace(",", "\t"))
    assert_clean_error(cli(["data", "info", p]), "tabs.csv", "missing column 'user_id'", "separated by tab")


def test_spaces_after_commas_evaluate_like_the_clean_file(cli: Callable[..., Probe], tmp_path: Path) -> None:
    from attnrec.experiments.config import RunConfig
    from attnrec.experiments.run import run_experiment

    # held out: one pair per user and per item, so that none of them is a masked training pair
    held = [r for r in ROWS if sum(map(int, r.split(",")[:2])) % 6 == 0]
    (tmp_path / "train.csv").write_text(HEADER + "".join(r for r in ROWS if r not in held))
    cfg = {
        "model": "pop",
        "train": tmp_path / "train.csv",
        "test": tmp_path / "train.csv",
        "out": tmp_path / "r",
    }
    run_experiment(RunConfig.parse(cfg), progress=False)
    bundle = tmp_path / "r" / "model"
    (tmp_path / "clean.csv").write_text(HEADER + "".join(held))
    (tmp_path / "spaces.csv").write_text((HEADER + "".join(held)).replace(",", ", "))
    clean = cli(["evaluate", "--model-dir", bundle, "--test", tmp_path / "clean.csv"])
    spaced = cli(["evaluate", "--model-dir", bundle, "--test", tmp_path / "spaces.csv"])
    assert_ok(clean)
    assert_ok(spaced)
    assert "skipped" not in spaced.out  # no row lost to an unknown " 10"
    numbers = re.findall(r"\d+\.\d{4}", clean.out)
    assert len(numbers) >= 4 and re.findall(r"\d+\.\d{4}", spaced.out) == numbers


def test_parquet_ids_are_normalised(tmp_path: Path) -> None:
    p = tmp_path / "float.parquet"
    pl.DataFrame(
        {"user_id": [1.0, 2.0, 30.0], "item_id": [10, 20, 30], "rating": [4.0, 5.0, 3.0]}
    ).write_parquet(p)
    assert _ids(p) == [("1", "10"), ("2", "20"), ("30", "30")]
    s = tmp_path / "strings.parquet"
    pl.DataFrame({"user_id": [" a", "b "], "item_id": ["007", "8"]}).write_parquet(s)
    assert _ids(s) == [("a", "007"), ("b", "8")]


@pytest.mark.parametrize(
    ("column", "fragments"),
    [
        (pl.Series("user_id", [1.0, 2.5, 3.0]), ("user_id", "ids.parquet:2", "2.5", "whole number")),
        (pl.Series("user_id", [[1], [2], [3]]), ("user_id", "list")),
        (pl.Series("user_id", [{"a": 1}, {"a": 2}, {"a": 3}]), ("user_id", "struct")),
        (pl.Series("user_id", [b"a", b"b", b"c"]), ("user_id", "binary")),
        (pl.Series("user_id", [True, False, True]), ("user_id", "boolean")),
        (pl.Series("user_id", [1e20, 2.0, 3.0]), ("user_id", "whole number")),
    ],
)
def test_bad_parquet_id_columns_are_clear_errors(
    column: pl.Series, fragments: tuple[str, ...], tmp_path: Path, cli: Callable[..., Probe], bundle: Path
) -> None:
    p = tmp_path / "ids.parquet"
    pl.DataFrame([column, pl.Series("item_id", [10, 11, 12])]).write_parquet(p)
    with pytest.raises(DataError) as err:
        read_table(p)
    assert err.value.file == str(p) and err.value.field == "user_id"
    for frag in fragments:
        assert frag.lower() in str(err.value).lower()
    assert_clean_error(cli(["data", "info", p]), "ids.parquet", *fragments)
    assert_clean_error(cli(["evaluate", "--model-dir", bundle, "--test", p]), "ids.parquet", *fragments)


def test_list_rating_column_is_a_clear_error(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    p = tmp_path / "lists.parquet"
    pl.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "rating": [[1], [2]]}).write_parquet(p)
    assert_clean_error(cli(["data", "info", p]), "lists.parquet", "rating", "list")


@pytest.mark.parametrize(
    ("line", "field"),
    [('{"reviewerID": "u", "asin": ["B1"], "overall": 4, "unixReviewTime": 9}', "item_id"),
     ('{"reviewerID": {"id": 1}, "asin": "B1", "overall": 4, "unixReviewTime": 9}', "user_id")],
)  # fmt: skip
def test_json_ids_that_are_arrays_or_objects_are_bad_rows(line: str, field: str, tmp_path: Path) -> None:
    good = '{"reviewerID": "u", "asin": "B0", "overall": 5, "unixReviewTime": 8}'
    p = tmp_path / "reviews.json"
    p.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError) as err:
        load_dataset(p)
    assert err.value.line == 2 and err.value.field == field and "JSON array or object" in str(err.value)
    ds = load_dataset(p, on_bad_lines="skip")
    assert ds.interactions["item_id"].to_list() == ["B0"] and ds.notes["skipped_lines"] == [2]


def test_header_only_file(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    p = tmp_path / "header.csv"
    p.write_text(HEADER)
    assert_clean_error(cli(["data", "info", p]), "header.csv", "no data lines")
    # as a part of a split it is an empty part (export_split writes an empty valid part this way)
    assert read_interactions(p).height == 0
    (tmp_path / "train.csv").write_text(GOOD)
    r = load_presplit(tmp_path / "train.csv", p, tmp_path / "train.csv")
    assert r.valid.height == 0 and r.train.height == len(ROWS)


def test_huge_single_line_is_a_short_error(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    p = tmp_path / "huge.csv"
    p.write_text(HEADER + "1," + "x" * 3_000_000 + ",4,5\n")
    message = assert_clean_error(cli(["data", "info", p]), "huge.csv:2", "found 4")
    assert len(message) < 600
    q = tmp_path / "huge_nonl.csv"
    q.write_text(HEADER + "1," + "9" * 3_000_000 + ",4")  # no final newline, a 3 MB item id
    assert read_table(q).interactions["item_id"].str.len_chars().to_list() == [3_000_000]


# -------------------------------------------------------------------------- limits: gzip bombs and big files
def _zeros_gzip(path: Path, n_bytes: int) -> Path:
    """A gzip of ``n_bytes`` zeros, made cheaply: one compressed MiB repeated as gzip members (a valid stream)."""
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    path.write_bytes(member * (n_bytes >> 20))
    return path


def test_gzip_bomb_stops_at_the_ratio_limit(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    bomb = _zeros_gzip(tmp_path / "bomb.csv.gz", RATIO_FLOOR + (8 << 20))
    assert bomb.stat().st_size < 1 << 20  # about 1000:1
    with pytest.raises(DataError) as err:
        read_bytes(bomb)
    assert MAX_RATIO_ENV in str(err.value) and err.value.file == str(bomb)
    assert_clean_error(cli(["data", "info", bomb]), "bomb.csv.gz", MAX_RATIO_ENV, "decompression bomb")
    # the streaming CTR reader is guarded by the same limit
    with pytest.raises(DataError, match=MAX_RATIO_ENV):
        read_criteo(bomb)


def test_size_limits_from_the_environment(
    tmp_path: Path, cli: Callable[..., Probe], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "big.csv"
    plain.write_text(GOOD)
    packed = tmp_path / "big.csv.gz"
    packed.write_bytes(gzip.compress(GOOD.encode()))
    monkeypatch.setenv(MAX_BYTES_ENV, "100")
    for p in (plain, packed):
        assert_clean_error(cli(["data", "info", p]), p.name, MAX_BYTES_ENV, "100")
        with pytest.raises(DataError, match=MAX_BYTES_ENV):
            read_interactions(p)
    monkeypatch.setenv(MAX_BYTES_ENV, str(len(GOOD)))  # raising it reads the file
    assert read_interactions(packed).height == len(ROWS)
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    assert_clean_error(cli(["data", "info", plain]), MAX_BYTES_ENV, "lots")
    monkeypatch.setenv(MAX_BYTES_ENV, "")
    monkeypatch.setenv(MAX_RATIO_ENV, "0")
    with pytest.raises(ConfigError, match=MAX_RATIO_ENV):
        read_bytes(packed)


def test_parquet_that_decodes_past_the_limit_is_refused_before_decoding(
    tmp_path: Path, cli: Callable[..., Probe], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "repeated.parquet"
    pl.DataFrame({"user_id": [1] * 50_000, "item_id": [2] * 50_000}).write_parquet(p)
    assert p.stat().st_size < 20_000  # small on disk, 800 kB decoded
    monkeypatch.setenv(MAX_BYTES_ENV, "100000")
    assert_clean_error(cli(["data", "info", p]), "repeated.parquet", "50000 rows", MAX_BYTES_ENV)
    with pytest.raises(DataError, match=MAX_BYTES_ENV):
        read_interactions(p)
    monkeypatch.setenv(MAX_BYTES_ENV, "1000000")
    assert read_interactions(p).height == 50_000


def test_parquet_list_cells_count_their_values_towards_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 1_000_000  # one row whose list cell holds a million int64: 8 MB decoded from a file of about 1 kB
    cell = pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), pa.array(np.zeros(n, np.int64)))
    p = tmp_path / "one_row.parquet"
    pq.write_table(pa.table({"user_id": [1], "item_id": [2], "history": cell}), p)
    assert p.stat().st_size < 20_000
    monkeypatch.setenv(MAX_BYTES_ENV, "1000000")
    with pytest.raises(DataError, match=r"1 rows x 3 columns, 1000002 values") as err:
        check_parquet_size(p)
    assert MAX_BYTES_ENV in str(err.value) and "one_row.parquet" in str(err.value)
    with pytest.raises(DataError, match=MAX_BYTES_ENV):
        read_interactions(p)
    monkeypatch.setenv(MAX_BYTES_ENV, "9000000")
    check_parquet_size(p)  # 8,000,016 bytes fit


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_and_folder_are_refused_without_blocking(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert_clean_error(cli(["data", "info", fifo], timeout=20), "pipe.csv", "not a regular file")
    with pytest.raises(DataError, match="not a regular file"):
        read_id_list(tmp_path)


# -------------------------------------------------------------------------- cached datasets re-verified on use
def _publisher_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", "196\t242\t3\t881250949\n22\t377\t1\t878887116\n")
        z.writestr("ml-100k/u.user", "196|49|M|writer|55105\n")
    return buf.getvalue()


@pytest.fixture
def cached_ml100k(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ml-100k fetched (offline: the publisher's download replaced) into a fixture ATTNREC_HOME."""
    payload = _publisher_zip()

    def serve(url: str, dest: Path, **kw: object) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(payload)

    monkeypatch.setattr(registry, "download", serve)
    spec = dataclasses.replace(registry.REGISTRY["ml-100k"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(registry.REGISTRY, "ml-100k", spec)
    home = tmp_path / "home"
    monkeypatch.setenv("ATTNREC_HOME", str(home))
    res = fetch("ml-100k")
    assert not res.cached
    return res.path


def test_edited_cached_dataset_is_refused(cached_ml100k: Path, cli: Callable[..., Probe]) -> None:
    assert len(load_dataset("ml-100k")) == 2
    data = cached_ml100k / "u.data"
    data.write_text("196\t242\t5\t881250949\n22\t377\t1\t878887116\n")  # same size, one rating changed
    with pytest.raises(DataError) as err:
        load_dataset("ml-100k")
    assert err.value.file == str(data) and "changed since it was fetched" in str(err.value)
    assert "attnrec data fetch ml-100k" in str(err.value)
    assert_clean_error(
        cli(["data", "info", "ml-100k"]), "u.data", "changed since it was fetched", "data fetch"
    )
    assert_clean_error(cli(["data", "fetch", "ml-100k"]), "u.data", "changed since it was fetched")


def test_touched_but_unchanged_cache_is_used_and_rerecorded(cached_ml100k: Path) -> None:
    data = cached_ml100k / "u.data"
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert len(load_dataset("ml-100k")) == 2
    marker = json.loads((cached_ml100k.parent / registry._MARKER).read_text())
    assert marker["files"]["ml-100k/u.data"]["mtime_ns"] == st.st_mtime_ns + 10**9


def test_missing_cached_file_is_refused(cached_ml100k: Path) -> None:
    (cached_ml100k / "u.user").unlink()
    with pytest.raises(DataError, match="missing"):
        load_dataset("ml-100k")


def test_old_marker_gets_records_then_is_checked(cached_ml100k: Path) -> None:
    marker_path = cached_ml100k.parent / registry._MARKER
    marker = json.loads(marker_path.read_text())
    del marker["files"]
    marker_path.write_text(json.dumps(marker))
    assert len(load_dataset("ml-100k")) == 2
    assert "ml-100k/u.data" in json.loads(marker_path.read_text())["files"]
    (cached_ml100k / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(DataError, match="changed since it was fetched"):
        load_dataset("ml-100k")


# -------------------------------------------------------------------------- --on-bad-lines
def test_split_skip_reports_skipped_rows(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    lines = [HEADER] + [f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(8) for i in range(8)]
    lines[5], lines[20] = "3,4\n", "x\n"  # physical lines 6 and 21
    src = tmp_path / "some_bad.csv"
    src.write_text("".join(lines))
    out = tmp_path / "split"
    probe = cli(["data", "split", src, "--out", out, "--on-bad-lines", "skip"])
    assert_ok(probe)
    assert "skipped 2 malformed row(s)" in probe.out and "6, 21" in probe.out
    report = json.loads((out / "split.json").read_text())
    assert report["skipped_bad_lines"] == {"count": 2, "file": str(src), "first_lines": [6, 21]}
    sizes = report["sizes"]
    assert sizes["train"] + sizes["valid"] + sizes["test"] == 62
    # nothing skipped: no entry
    clean = tmp_path / "clean.csv"
    clean.write_text("".join(ln for k, ln in enumerate(lines) if k not in (5, 20)))
    assert_ok(cli(["data", "split", clean, "--out", tmp_path / "split2", "--on-bad-lines", "skip"]))
    assert "skipped_bad_lines" not in json.loads((tmp_path / "split2" / "split.json").read_text())


def test_on_bad_lines_invalid_choice_is_a_usage_error(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    src = tmp_path / "good.csv"
    src.write_text(GOOD)
    for args in (["data", "split", src, "--out", tmp_path / "s"], ["data", "info", src]):
        assert_clean_error(cli([*args, "--on-bad-lines", "ignore"]), "--on-bad-lines", "ignore")
    assert not (tmp_path / "s").exists()
    with pytest.raises(ConfigError, match="ignore"):
        RowChecker(src, "ignore")  # type: ignore[arg-type]


# -------------------------------------------------------------------------- recommend --users-file
@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (None, ("no such file",)),
        (b"1\n\xff2\n", (":2", "not utf-8")),
        (b"1\n2\x00\n", (":2", "NUL byte")),
        (b"", ("empty file",)),
        (b"1\n2,3\n", (":2", "one user id per line")),
        (gzip.compress(b"1\n2\n")[:15], ("corrupt gzip",)),
    ],
)
def test_users_file_errors(
    data: bytes | None, fragments: tuple[str, ...], tmp_path: Path, cli: Callable[..., Probe], bundle: Path
) -> None:
    users = tmp_path / "users.txt"
    if data is not None:
        users.write_bytes(data)
    probe = cli(["recommend", "--model-dir", bundle, "--users-file", users, "--k", "2"])
    assert_clean_error(probe, "users.txt", *fragments)


def test_users_file_bom_crlf_gzip_read_the_same(
    tmp_path: Path, cli: Callable[..., Probe], bundle: Path
) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("1\n\n 2 \n")
    assert read_id_list(plain) == ["1", "2"]
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf1\r\n2\r\n")
    packed = tmp_path / "packed.txt"
    packed.write_bytes(gzip.compress(b"1\n2\n"))
    outs = []
    for p in (plain, bom, packed):
        assert read_id_list(p) == ["1", "2"]
        out = tmp_path / "r.csv"
        probe = cli(
            [
                "recommend",
                "--model-dir",
                bundle,
                "--users-file",
                p,
                "--k",
                "2",
                "--include-seen",
                "--out",
                out,
            ]
        )
        assert_ok(probe)
        outs.append(pl.read_csv(out)["user_id"].cast(pl.String).to_list())
    assert outs[0] == ["1", "1", "2", "2"] and outs[0] == outs[1] == outs[2]


# -------------------------------------------------------------------------- CTR rows: the same byte layer
CTR_SCHEMA = FeatureSchema(fields=[FieldSpec(name="city"), FieldSpec(name="price", kind="numeric")])


@pytest.mark.parametrize(
    ("data", "line", "fragment"),
    [
        (b"label,city,price\n1,paris,2\n0,p\xe9ris,3\n", 3, "not utf-8"),
        (b"label,city,price\n1,paris,2\n\n0,ro\x00me,3\n", 4, "NUL byte"),
        (b"label,city,price\n1,paris,2\n0,rome\n", 3, "wrong number of fields"),
        (b'label,city,price\n1,"paris",2\n\n0,"rome, it",x\n', 4, "price"),  # quoted: Polars' reader
    ],
)
def test_ctr_rows_errors_name_the_line(data: bytes, line: int, fragment: str, tmp_path: Path) -> None:
    p = tmp_path / "rows.csv"
    p.write_bytes(data)
    with pytest.raises(DataError) as err:
        read_ctr_table(p, CTR_SCHEMA)
    assert err.value.file == str(p) and err.value.line == line and fragment.lower() in str(err.value).lower()


def test_ctr_rows_with_bom_and_crlf_read_as_plain(tmp_path: Path) -> None:
    plain = b"label,city,price\n1,paris,2\n0,rome,3\n"
    (tmp_path / "plain.csv").write_bytes(plain)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n"))
    want = read_ctr_table(tmp_path / "plain.csv", CTR_SCHEMA).frame
    assert want.height == 2
    assert read_ctr_table(tmp_path / "bom.csv", CTR_SCHEMA).frame.equals(want)
