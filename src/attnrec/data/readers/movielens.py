"""MovieLens readers: 100k (``u.data``/``u.item``/``u.user``), 1M (``*.dat``), latest/20M/25M (``*.csv``).

All give the same shape of :class:`Dataset`: interactions ``user_id, item_id, rating (stars), timestamp (Unix
seconds)``; items ``item_id, title (without the trailing year), year (Int32), genres (List[str])``; users
(100k and 1M) ``user_id, age (Int32), gender, occupation, zip``. Files may be gzipped. The old GroupLens files
are latin-1.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from attnrec.data.readers.tabular import (
    OnBadLines,
    RowChecker,
    decode_text,
    merge_notes,
    parse_float,
    parse_int,
    read_bytes,
    read_recbole_atomic,
    require_nonempty,
    split_fields,
    text_lines,
)
from attnrec.data.table import Dataset
from attnrec.errors import DataError

#: the 19 genre flags of ``u.item``, in file order (ml-100k README)
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: occupation codes of ml-1m ``users.dat`` (ml-1m README)
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

_YEAR_IN_TITLE = r"\((\d{4})\)\s*$"


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _lines(path: Path, encoding: str, *, skip_first: int = 0) -> pl.DataFrame:
    return text_lines(decode_text(read_bytes(path), path, encoding=encoding), path, skip_first=skip_first)


def _ratings(path: Path, sep: str, checker: RowChecker, *, encoding: str, header: bool) -> pl.DataFrame:
    lines = _lines(path, encoding, skip_first=1 if header else 0)
    df = split_fields(lines, sep, ["user_id", "item_id", "rating", "timestamp"], checker)
    df = require_nonempty(df, ["user_id", "item_id"], checker)
    df = parse_float(df, "rating", checker)
    df = parse_int(df, "timestamp", checker)
    return df.drop("line")


def _title_year(title: pl.Expr) -> list[pl.Expr]:
    return [
        title.str.replace(r"\s*\(\d{4}\)\s*$", "").str.strip_chars().alias("title"),
        title.str.extract(_YEAR_IN_TITLE, 1).cast(pl.Int32, strict=False).alias("year"),
    ]


def read_movielens_100k(directory: str | Path, *, on_bad_lines: OnBadLines = "error") -> Dataset:
    """ml-100k: ``u.data`` (tab: user item rating timestamp), ``u.item`` and ``u.user`` (``|``, latin-1)."""
    d = Path(directory)
    data = _find(d, "u.data")
    if data is None:
        raise DataError(
            "no u.data in MovieLens 100k folder", file=d, expected="u.data (user item rating timestamp)"
        )
    checker = RowChecker(data, on_bad_lines)
    inter = _ratings(data, "\t", checker, encoding="utf-8", header=False)
    checkers = [checker]
    items = users = None
    item_path = _find(d, "u.item")
    if item_path is not None:
        c = RowChecker(item_path, on_bad_lines)
        names = ["item_id", "raw_title", "release_date", "video_date", "url", *GENRES_100K]
        df = split_fields(_lines(item_path, "latin-1"), "|", names, c)
        genre_exprs = [pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in GENRES_100K]
        items = df.select(
            "item_id",
            pl.col("raw_title").str.replace(r"\s*\(\d{4}\)\s*$", "").str.strip_chars().alias("title"),
            pl.col("release_date").str.slice(-4).cast(pl.Int32, strict=False).alias("year"),
            pl.concat_list(genre_exprs).list.drop_nulls().alias("genres"),
            pl.col("release_date").replace("", None),
            pl.col("url").replace("", None),
        )
        checkers.append(c)
    user_path = _find(d, "u.user")
    if user_path is not None:
        c = RowChecker(user_path, on_bad_lines)
        df = split_fields(
            _lines(user_path, "latin-1"), "|", ["user_id", "age", "gender", "occupation", "zip"], c
        )
        df = parse_int(df, "age", c)
        users = df.select("user_id", pl.col("age").cast(pl.Int32), "gender", "occupation", "zip")
        checkers.append(c)
    return Dataset("ml-100k", inter, items=items, users=users, source=str(d), notes=merge_notes(*checkers))


def read_movielens_1m(directory: str | Path, *, on_bad_lines: OnBadLines = "error") -> Dataset:
    """ml-1m (and ml-10m): ``ratings.dat``, ``movies.dat``, ``users.dat``, fields separated by ``::``,
    latin-1.

    ``age`` is the README's age-group code (1, 18, 25, ...); ``occupation`` is mapped from its code to the
    name.
    """
    d = Path(directory)
    data = _find(d, "ratings.dat")
    if data is None:
        raise DataError("no ratings.dat in MovieLens 1M folder", file=d, expected="ratings.dat (u::i::r::t)")
    checker = RowChecker(data, on_bad_lines)
    inter = _ratings(data, "::", checker, encoding="latin-1", header=False)
    checkers = [checker]
    items = users = None
    movie_path = _find(d, "movies.dat")
    if movie_path is not None:
        c = RowChecker(movie_path, on_bad_lines)
        df = split_fields(_lines(movie_path, "latin-1"), "::", ["item_id", "raw_title", "genres"], c)
        items = df.select("item_id", *_title_year(pl.col("raw_title")), _genre_list(pl.col("genres")))
        checkers.append(c)
    user_path = _find(d, "users.dat")
    if user_path is not None:
        c = RowChecker(user_path, on_bad_lines)
        df = split_fields(
            _lines(user_path, "latin-1"), "::", ["user_id", "gender", "age", "occupation", "zip"], c
        )
        df = parse_int(df, "age", c)
        df = parse_int(df, "occupation", c)
        codes = dict(enumerate(OCCUPATIONS_1M))
        users = df.select(
            "user_id",
            pl.col("age").cast(pl.Int32),
            "gender",
            pl.col("occupation").replace_strict(codes, default=None, return_dtype=pl.String),
            "zip",
        )
        checkers.append(c)
    return Dataset("ml-1m", inter, items=items, users=users, source=str(d), notes=merge_notes(*checkers))


def _genre_list(col: pl.Expr) -> pl.Expr:
    return (
        pl.when(col == "(no genres listed)")
        .then(pl.lit(None))
        .otherwise(col)
        .str.split("|")
        .fill_null(pl.lit([], dtype=pl.List(pl.String)))
        .alias("genres")
    )


def read_movielens_csv(
    directory: str | Path, *, on_bad_lines: OnBadLines = "error", name: str | None = None
) -> Dataset:
    """ml-latest(-small), ml-20m, ml-25m, ml-32m: ``ratings.csv`` (header userId,movieId,rating,timestamp) and
    ``movies.csv`` (movieId,title,genres with quoted titles)."""
    d = Path(directory)
    data = _find(d, "ratings.csv")
    if data is None:
        raise DataError("no ratings.csv in MovieLens folder", file=d, expected="ratings.csv")
    header = str(_lines(data, "utf-8")["text"][0]).strip()
    if header.replace(" ", "") != "userId,movieId,rating,timestamp":
        raise DataError(
            "unexpected header", file=data, line=1, value=header, expected="userId,movieId,rating,timestamp"
        )
    checker = RowChecker(data, on_bad_lines)
    inter = _ratings(data, ",", checker, encoding="utf-8", header=True)
    items = None
    movie_path = _find(d, "movies.csv")
    if movie_path is not None:
        text = decode_text(read_bytes(movie_path), movie_path)
        try:
            df = pl.read_csv(text.encode(), infer_schema=False)
        except pl.exceptions.PolarsError as exc:
            raise DataError(
                f"cannot parse CSV: {exc}", file=movie_path, expected="movieId,title,genres"
            ) from exc
        for col in ("movieId", "title", "genres"):
            if col not in df.columns:
                raise DataError(
                    f"missing column {col!r}", file=movie_path, field=col, expected="movieId,title,genres"
                )
        items = df.select(
            pl.col("movieId").alias("item_id"), *_title_year(pl.col("title")), _genre_list(pl.col("genres"))
        )
    label = name or d.name or "movielens"
    return Dataset(label, inter, items=items, source=str(d), notes=merge_notes(checker))


def read_movielens_recbole(
    directory: str | Path, name: str = "ml-100k", *, on_bad_lines: OnBadLines = "error"
) -> Dataset:
    """MovieLens as RecBole ships it (``ml-100k.inter/.item/.user``), shaped like :func:`read_movielens_100k`.

    Ratings and timestamps are the same as GroupLens' ``u.data``; RecBole's own preprocessing decided the
    titles and years (a few differ from ``u.item``, e.g. item 267 whose title is unknown).
    """
    ds = read_recbole_atomic(directory, name, on_bad_lines=on_bad_lines)
    items = users = None
    if ds.items is not None:
        it = ds.items
        items = it.select(
            "item_id",
            pl.col("movie_title").cast(pl.List(pl.String)).list.join(" ").alias("title")
            if it.schema.get("movie_title") == pl.List(pl.String)
            else pl.col("movie_title").alias("title"),
            pl.col("release_year").cast(pl.Int32, strict=False).alias("year"),
            pl.col("class").alias("genres"),
        )
    if ds.users is not None:
        users = ds.users.select(
            "user_id",
            pl.col("age").cast(pl.Int32, strict=False),
            "gender",
            "occupation",
            pl.col("zip_code").alias("zip"),
        )
    return Dataset(name, ds.interactions, items=items, users=users, source=ds.source, notes=ds.notes)


def detect_movielens(path: str | Path) -> tuple[str, Path]:
    """``("100k" | "1m" | "csv" | "recbole", folder)`` for a MovieLens folder or one of its files.

    A folder holding a single sub-folder (as archives extract) is looked into.
    """
    p = Path(path)
    d = p.parent if p.is_file() else p
    for _ in range(2):
        if _find(d, "u.data"):
            return "100k", d
        if _find(d, "ratings.dat"):
            return "1m", d
        if _find(d, "ratings.csv"):
            return "csv", d
        if any(d.glob("*.inter")):
            return "recbole", d
        subdirs = [c for c in d.iterdir() if c.is_dir()] if d.is_dir() else []
        if len(subdirs) != 1:
            break
        d = subdirs[0]
    raise DataError(
        "not a MovieLens folder",
        file=p,
        expected="u.data (100k), ratings.dat (1M) or ratings.csv (latest/20M/25M)",
    )


def read_movielens(path: str | Path, *, on_bad_lines: OnBadLines = "error") -> Dataset:
    """Read any MovieLens variant from its folder (or one of its files), detecting which one it is."""
    kind, d = detect_movielens(path)
    if kind == "100k":
        return read_movielens_100k(d, on_bad_lines=on_bad_lines)
    if kind == "1m":
        return read_movielens_1m(d, on_bad_lines=on_bad_lines)
    if kind == "csv":
        return read_movielens_csv(d, on_bad_lines=on_bad_lines)
    name = next(d.glob("*.inter")).name.removesuffix(".inter")
    return read_movielens_recbole(d, name, on_bad_lines=on_bad_lines)
