"""CTR readers: Criteo (both forms), Avazu, MovieLens-as-CTR, generic tables, bad input with line numbers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.data.ctr import FeatureEncoder
from attnrec.data.readers.ctr import (
    AVAZU_COLUMNS,
    CRITEO_COLUMNS,
    iter_ctr_chunks,
    movielens_ctr,
    read_avazu,
    read_criteo,
    read_ctr_table,
)
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.data.table import Dataset
from attnrec.errors import DataError

SHARED = Path("/work/shared/data")


def criteo_line(label: object, ints: list[str], cats: list[str]) -> str:
    return "\t".join([str(label), *ints, *cats])


def ints13(first: str = "1") -> list[str]:
    return [first, "0", "5", "", "1382", "4", "15", "2", "181", "1", "2", "", "2"]


def cats26(first: str = "68fd1e64") -> list[str]:
    return [
        first,
        "80e26c9b",
        "fb936136",
        *["7b4723c4"] * 17,
        "",
        "3a171ecb",
        "c5c50484",
        "e8b83407",
        "",
        "9727dd16",
    ]


def write_criteo(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_criteo_tab_form(tmp_path: Path) -> None:
    p = write_criteo(
        tmp_path / "train.txt",
        [criteo_line(0, ints13("1"), cats26("aa")), criteo_line(1, ints13(""), cats26("bb"))],
    )
    df, schema = read_criteo(p)
    assert df.columns == CRITEO_COLUMNS
    assert df["label"].to_list() == [0, 1]
    assert df["I1"].to_list() == [1.0, None]
    assert df["I4"].to_list() == [None, None]
    assert df["C1"].to_list() == ["aa", "bb"]
    assert df["C21"].to_list() == [None, None]
    assert [f.name for f in schema.categorical][:2] == ["I1", "I2"]  # bucketised ints count as categorical
    assert schema.n_categorical == 39 and schema.n_numeric == 0


def test_read_criteo_deepctr_header_form(tmp_path: Path) -> None:
    header = ",".join(CRITEO_COLUMNS)
    row = "0,,3,260.0,,17668.0,,,33.0,,,,0.0,," + ",".join(["05db9164"] * 24 + ["", ""])
    p = tmp_path / "criteo_sample.txt"
    p.write_text(header + "\n" + row + "\n")
    df, _ = read_criteo(p)
    assert df.height == 1
    assert df["I3"][0] == 260.0 and df["I1"][0] is None and df["I2"][0] == 3.0
    assert df["C26"][0] is None


def test_criteo_gzip_and_crlf(tmp_path: Path) -> None:
    text = "\r\n".join([criteo_line(1, ints13("7"), cats26("cc"))] * 3) + "\r\n"
    p = tmp_path / "train.txt.gz"
    p.write_bytes(gzip.compress(text.encode()))
    df, _ = read_criteo(p)
    assert df.height == 3 and df["I1"].to_list() == [7.0] * 3 and df["C26"].to_list() == ["9727dd16"] * 3


def test_wrong_field_count_names_line(tmp_path: Path) -> None:
    lines = [criteo_line(0, ints13(), cats26())] * 3
    lines.insert(2, criteo_line(0, ints13(), cats26()[:-1]))  # line 3 has 39 fields
    p = write_criteo(tmp_path / "bad.txt", lines)
    with pytest.raises(DataError) as err:
        read_criteo(p)
    assert err.value.line == 3 and err.value.file == str(p) and err.value.value == 39
    assert "bad.txt:3" in str(err.value) and "40 fields" in str(err.value)


def test_skip_bad_lines_counts_them(tmp_path: Path) -> None:
    good = criteo_line(0, ints13(), cats26())
    lines = [good, "garbage", good, "", good, criteo_line(1, ints13(), cats26()).rsplit("\t", 1)[0]]
    p = write_criteo(tmp_path / "bad.txt", lines)
    table = read_criteo(p, on_bad_lines="skip")
    assert table.frame.height == 3  # blank line 4 is ignored, not counted
    assert table.notes["skipped_rows"] == 2 and table.notes["skipped_lines"] == [2, 6]


def test_bad_lines_across_blocks_keep_exact_numbers(tmp_path: Path) -> None:
    good = criteo_line(0, ints13(), cats26())
    lines = [good] * 50
    lines[36] = "0\t1"  # line 37
    p = write_criteo(tmp_path / "x.txt", lines)
    stats: dict[str, object] = {}
    frames = list(iter_ctr_chunks(p, "criteo", on_bad_lines="skip", block_bytes=512, stats=stats))
    assert len(frames) > 5
    got = pl.concat(frames)["line"].to_list()
    assert got == [i for i in range(1, 51) if i != 37]
    assert stats["skipped_lines"] == [37]
    with pytest.raises(DataError) as err:
        list(iter_ctr_chunks(p, "criteo", block_bytes=512))
    assert err.value.line == 37


def test_non_numeric_value_names_line_field_value(tmp_path: Path) -> None:
    ints = ints13()
    ints[4] = "12x"
    p = write_criteo(tmp_path / "t.txt", [criteo_line(0, ints13(), cats26()), criteo_line(0, ints, cats26())])
    with pytest.raises(DataError) as err:
        read_criteo(p)
    assert (err.value.line, err.value.field, err.value.value) == (2, "I5", "12x")


def test_label_outside_01(tmp_path: Path) -> None:
    p = write_criteo(
        tmp_path / "t.txt", [criteo_line(1, ints13(), cats26()), criteo_line(2, ints13(), cats26())]
    )
    with pytest.raises(DataError) as err:
        read_criteo(p)
    assert (err.value.line, err.value.field, err.value.value) == (2, "label", "2")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.txt"
    p.write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_criteo(p)
    p.write_text("\n\n")
    with pytest.raises(DataError, match="empty file"):
        read_avazu(p)
    with pytest.raises(DataError, match="no such file"):
        read_criteo(tmp_path / "missing.txt")


AVAZU_ROW = "10000169349117863715,{click},{hour},1005,0,1fbe01fe,f3845767,28905ebd,ecad2386,7801e8d9,07d7df22,a99f214a,96809ac8,711ee120,1,0,15704,320,50,1722,0,35,100084,79"  # noqa: E501


def test_read_avazu_with_and_without_header(tmp_path: Path) -> None:
    rows = [AVAZU_ROW.format(click=1, hour=14102100), AVAZU_ROW.format(click=0, hour=14102517)]
    with_header = tmp_path / "train.csv"
    with_header.write_text(",".join(AVAZU_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    no_header = tmp_path / "dev.csv"
    no_header.write_text("\n".join(rows) + "\n")
    a, schema = read_avazu(with_header)
    b, _ = read_avazu(no_header)
    assert a.equals(b)
    assert a["label"].to_list() == [1, 0]
    # 2014-10-21 was a Tuesday (2), 2014-10-25 a Saturday (6)
    assert a["hour_of_day"].to_list() == [0, 17] and a["weekday"].to_list() == [2, 6]
    assert "id" not in a.columns and "hour" not in a.columns
    assert schema.names == ["hour_of_day", "weekday", *AVAZU_COLUMNS[3:]]
    assert all(f.kind == "categorical" for f in schema.fields)


def test_avazu_bad_hour(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text(
        AVAZU_ROW.format(click=0, hour=14102100) + "\n" + AVAZU_ROW.format(click=0, hour=1410) + "\n"
    )
    with pytest.raises(DataError) as err:
        read_avazu(p)
    assert (err.value.line, err.value.field, err.value.value) == (2, "hour", "1410")


def test_read_ctr_table_csv_and_parquet(tmp_path: Path) -> None:
    schema = FeatureSchema(
        fields=[
            FieldSpec(name="city"),
            FieldSpec(name="price", kind="numeric"),
            FieldSpec(name="tags", kind="multi", sep="|"),
        ],
        label="click",
    )
    p = tmp_path / "t.csv"
    p.write_text("click,city,price,tags,extra\n1,paris,3.5,a|b,x\n0,,,c,y\n")
    df, got = read_ctr_table(p, schema)
    assert got == schema
    assert df.columns == ["click", "city", "price", "tags"]
    assert df["price"].to_list() == [3.5, None] and df["city"].to_list() == ["paris", None]
    pq_path = tmp_path / "t.parquet"
    pl.DataFrame(
        {"click": [1, 0], "city": ["paris", None], "price": [3.5, None], "tags": ["a|b", "c"]}
    ).write_parquet(pq_path)
    df2, _ = read_ctr_table(pq_path, schema)
    assert df2["price"].to_list() == [3.5, None] and df2["click"].to_list() == [1, 0]
    # quoted CSV goes through Polars' CSV reader
    q = tmp_path / "q.csv"
    q.write_text('click,city,price,tags\n1,"paris, fr",2,a\n0,rome,oops,b\n')
    with pytest.raises(DataError) as err:
        read_ctr_table(q, schema)
    assert (err.value.line, err.value.field, err.value.value) == (3, "price", "oops")
    missing = tmp_path / "m.csv"
    missing.write_text("click,city\n1,paris\n")
    with pytest.raises(DataError, match="missing column"):
        read_ctr_table(missing, schema)


def _tiny_movielens() -> Dataset:
    inter = pl.DataFrame(
        {
            "user_id": ["1", "1", "2", "3"],
            "item_id": ["10", "20", "10", "30"],
            "rating": [5.0, 3.0, 4.0, 1.0],
            "timestamp": [1, 2, 3, 4],
        }
    )
    users = pl.DataFrame(
        {
            "user_id": ["1", "2", "3"],
            "age": [24, 53, 24],
            "gender": ["M", "F", "M"],
            "occupation": ["technician", "other", "writer"],
            "zip": ["85711", "94043", "32067"],
        }
    )
    items = pl.DataFrame(
        {
            "item_id": ["10", "20", "30"],
            "title": ["A", "B", "C"],
            "year": [1995, 1994, None],
            "genres": [["Comedy", "Drama"], ["Action"], []],
        },
        schema_overrides={"year": pl.Int32},
    )
    return Dataset("ml-tiny", inter, items=items, users=users)


def test_movielens_ctr() -> None:
    table = movielens_ctr(_tiny_movielens())
    df, schema = table
    assert df["label"].to_list() == [1, 0, 1, 0]  # rating >= 4
    assert df["zip"].to_list() == ["857", "857", "940", "320"]
    assert df["year"].to_list() == ["1995", "1994", "1995", None]
    assert schema.names == ["user", "item", "age", "gender", "occupation", "zip", "genres", "year"]
    assert schema.field("genres").kind == "multi"
    data = FeatureEncoder().fit(df, schema).transform(df)
    # genres vocabulary sorted: Action=1, Comedy=2, Drama=3; longest list 2
    assert data.multi.shape == (4, 1, 2)
    assert data.multi[:, 0, :].tolist() == [[2, 3], [1, 0], [2, 3], [0, 0]]


@pytest.mark.skipif(not (SHARED / "ctr-criteo-avazu-8k").is_dir(), reason="shared data absent")
def test_real_8k_files_row_counts() -> None:
    base = SHARED / "ctr-criteo-avazu-8k"
    want = {
        "criteo": {"train": (7200, 0.2151), "dev": (409, 0.2274), "test": (391, 0.2199)},
        "avazu": {"train": (8087, 0.1727), "dev": (480, 0.1792), "test": (432, 0.1852)},
    }
    for name, reader in (("criteo", read_criteo), ("avazu", read_avazu)):
        for split, (rows, rate) in want[name].items():
            df, schema = reader(base / name / f"{split}.csv")
            assert df.height == rows, (name, split)
            assert abs(float(df["label"].mean()) - rate) < 5e-4, (name, split)  # type: ignore[arg-type]
            assert df.columns == [schema.label, *schema.names]
    first, _ = read_criteo(base / "criteo" / "train.csv")
    assert first.row(0)[:4] == (0, 1.0, 1.0, 5.0) and first["C1"][0] == "68fd1e64"


@pytest.mark.skipif(not (SHARED / "ctr-deepctr-samples").is_dir(), reason="shared data absent")
def test_real_deepctr_samples() -> None:
    base = SHARED / "ctr-deepctr-samples"
    crit, _ = read_criteo(base / "criteo_sample.txt")
    ava, _ = read_avazu(base / "avazu_sample.txt")
    assert (crit.height, ava.height) == (200, 100)
    assert crit["I3"][0] == 260.0 and crit["I2"][1] == -1.0
    schema = FeatureSchema(
        fields=[FieldSpec(name=n) for n in ("user_id", "movie_id", "gender", "age", "occupation")]
        + [FieldSpec(name="genres", kind="multi", sep="|")],
        label="label",
    )
    ml = pl.read_csv(base / "movielens_sample.txt").with_columns(
        (pl.col("rating") >= 4).cast(pl.Int8).alias("label")
    )
    assert ml.height == 200
    data = FeatureEncoder().fit(ml, schema).transform(ml)
    assert np.all(data.multi[:, 0, 0] > 0)  # every movie has at least one genre
