"""Readers of click-through-rate tables: Criteo, Avazu, MovieLens as CTR, and generic CSV/Parquet.

Each reader returns a :class:`CTRTable`: a Polars frame with a 0/1 ``label`` column and the raw feature columns,
plus a default :class:`~attnrec.data.schema.FeatureSchema` (``frame, schema = read_criteo(path)`` unpacks it).

Text files are read in blocks of bytes (:func:`iter_ctr_chunks`), so the same code serves in-memory reading and
the streaming passes of :func:`attnrec.data.ctr_shards.preprocess_to_shards`. Each block is checked with NumPy (fields
per line, from separator counts) before Polars parses it, so every error names the exact 1-based line: a wrong
field count, a non-numeric value in a numeric field, a label that is not 0/1 raise
:class:`~attnrec.errors.DataError`, or, with ``on_bad_lines="skip"``, the row is dropped and counted in
``notes["skipped_rows"]``. Blank lines are ignored. Gzipped files are read transparently.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from attnrec.data.readers.files import BOM, decode_text, open_input, read_text
from attnrec.data.readers.files import iter_blocks as _blocks
from attnrec.data.readers.tabular import (
    OnBadLines,
    RowChecker,
    parse_float,
    read_delimited,
    reject_reserved_columns,
)
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.data.table import Dataset
from attnrec.errors import DataError

CRITEO_INT = [f"I{i}" for i in range(1, 14)]
CRITEO_CAT = [f"C{i}" for i in range(1, 27)]
CRITEO_COLUMNS = ["label", *CRITEO_INT, *CRITEO_CAT]

AVAZU_COLUMNS = [
    "id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
    "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
    "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
]  # fmt: skip
#: Avazu feature fields: ``hour`` (YYMMDDHH) becomes hour of day (0-23) and weekday (1 = Monday .. 7 = Sunday)
AVAZU_FIELDS = ["hour_of_day", "weekday", *AVAZU_COLUMNS[3:]]

DEFAULT_BLOCK_BYTES = 32 << 20


@dataclass
class CTRTable:
    """A raw CTR table: ``frame`` (``label`` + raw feature columns), its default ``schema``, and ``notes``
    (``skipped_rows``/``skipped_lines`` when rows were skipped). Unpacks as ``frame, schema``."""

    frame: pl.DataFrame
    schema: FeatureSchema
    notes: dict[str, object] = field(default_factory=dict)

    def __iter__(self) -> Iterator[object]:
        yield self.frame
        yield self.schema


class CTRReaderSpec(BaseModel):
    """How to read a CTR source file, for streaming preprocessing.

    ``format``: ``"criteo"`` (TAB separated, no header, or the DeepCTR sample's comma-separated header form),
    ``"avazu"`` (CSV with or without the header row) or ``"table"`` (CSV with a header, or Parquet, holding
    ``feature_schema``'s label and fields). ``sep``: the separator of a ``"table"`` CSV. ``min_count`` and
    ``bucketize`` (Criteo's integer fields) shape the default schema.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["criteo", "avazu", "table"]
    feature_schema: FeatureSchema | None = None
    sep: str = Field(default=",", min_length=1, max_length=1)
    min_count: int = Field(default=1, ge=1)
    bucketize: Literal["log2", "none"] = "log2"

    def default_schema(self) -> FeatureSchema:
        """The schema this source is encoded with: ``feature_schema`` when given, else the format's default."""
        if self.feature_schema is not None:
            return self.feature_schema
        if self.format == "criteo":
            return criteo_schema(min_count=self.min_count, bucketize=self.bucketize)
        if self.format == "avazu":
            return avazu_schema(min_count=self.min_count)
        raise DataError(
            "a 'table' reader needs feature_schema", field="feature_schema", expected="a FeatureSchema"
        )


def criteo_schema(*, min_count: int = 1, bucketize: Literal["log2", "none"] = "log2") -> FeatureSchema:
    """I1-I13 numeric (log2-bucketised into categorical fields by default), C1-C26 categorical."""
    ints = [
        FieldSpec(
            name=n,
            kind="numeric",
            bucketize=bucketize,
            min_count=min_count,
            transform="none" if bucketize == "log2" else "log1p",
        )
        for n in CRITEO_INT
    ]
    cats = [FieldSpec(name=n, min_count=min_count) for n in CRITEO_CAT]
    return FeatureSchema(fields=ints + cats, label="label")


def avazu_schema(*, min_count: int = 1) -> FeatureSchema:
    """Every Avazu field categorical, ``hour`` expanded into ``hour_of_day`` and ``weekday``."""
    return FeatureSchema(fields=[FieldSpec(name=n, min_count=min_count) for n in AVAZU_FIELDS], label="label")


# ---------------------------------------------------------------------------------------------------------------
# byte blocks -> checked String frames with line numbers


def _open(path: Path) -> IO[bytes]:
    # the shared byte layer: gzip or plain, regular files only, the gzip-bomb limit (blocks bound the memory)
    return open_input(path, streaming=True)


def _first_line(path: Path) -> tuple[str, int]:
    """The first non-blank line (without its end) and its 1-based number."""
    with _open(path) as fh:
        for number, raw in enumerate(fh, start=1):
            text = raw.removeprefix(BOM).decode("utf-8", errors="replace").rstrip("\r\n")
            if text.strip():
                return text, number
    raise DataError("empty file: no data lines", file=path, expected="at least one data line")


def _parse_block(
    chunk: bytes, first_line: int, *, sep: str, names: list[str], header_line: int, checker: RowChecker
) -> pl.DataFrame | None:
    """Check fields per line and parse a block into String columns ``names`` plus ``line`` (Int64)."""
    arr = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    content = lengths - ((lengths > 0) & (arr[np.maximum(ends - 1, 0)] == 13))  # without a trailing \r
    n_fields = np.add.reduceat(arr == ord(sep), starts, dtype=np.int64) + 1
    numbers = first_line + np.arange(len(starts), dtype=np.int64)
    data_row = (content > 0) & (numbers != header_line)
    bad = data_row & (n_fields != len(names))
    if bad.any():
        where = np.flatnonzero(bad)
        frame = pl.DataFrame({"line": numbers[where], "n": n_fields[where]})
        checker.reject(
            frame,
            pl.Series(np.ones(len(where), dtype=bool)),
            message="wrong number of fields",
            values=frame["n"],
            expected=f"{len(names)} fields separated by {sep!r}",
        )
    keep = data_row & ~bad
    if not keep.any():
        return None
    # bytes that are not UTF-8, or a NUL byte: an error naming its line (Polars would name neither)
    decode_text(chunk, checker.path, first_line=first_line)
    if not keep.all():
        chunk = arr[np.repeat(keep, lengths + 1)].tobytes()
    try:
        df = pl.read_csv(
            chunk,
            separator=sep,
            has_header=False,
            quote_char=None,
            infer_schema=False,
            new_columns=names,
            schema_overrides=dict.fromkeys(names, pl.String),
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(
            f"cannot parse block: {exc}",
            file=checker.path,
            line=int(numbers[keep][0]),
            expected=f"UTF-8 text with {len(names)} fields separated by {sep!r}",
        ) from exc
    if df.height != int(keep.sum()):  # pragma: no cover - guards the line bookkeeping
        raise DataError("parsed row count differs from line count", file=checker.path, line=int(first_line))
    return df.with_columns(pl.Series("line", numbers[keep]))


def _labels(df: pl.DataFrame, col: str, checker: RowChecker) -> pl.DataFrame:
    raw = df[col]
    v = raw.str.strip_chars().cast(pl.Float64, strict=False)
    bad = v.is_null() | ~v.is_in([0.0, 1.0])
    df = checker.reject(
        df.with_columns(v.alias("_v")),
        bad,
        message="label is not 0 or 1",
        field=col,
        values=raw,
        expected="0 or 1",
    )
    return df.with_columns(pl.col("_v").cast(pl.Int8).alias(col)).drop("_v")


def _numbers(df: pl.DataFrame, cols: list[str], checker: RowChecker) -> pl.DataFrame:
    for c in cols:
        df = parse_float(df, c, checker, required=False, dtype=pl.Float64())
    return df


def _normalise_criteo(df: pl.DataFrame, checker: RowChecker) -> pl.DataFrame:
    df = _labels(df, "label", checker)
    return _numbers(df, CRITEO_INT, checker)


def _normalise_avazu(df: pl.DataFrame, checker: RowChecker) -> pl.DataFrame:
    df = _labels(df, "click", checker)
    raw = df["hour"]
    # chrono wants minutes whenever an hour is parsed
    t = (raw + "00").str.strptime(pl.Datetime("us"), "%y%m%d%H%M", strict=False)
    t = pl.select(pl.when(raw.str.len_chars() == 8).then(t)).to_series()
    df = checker.reject(
        df.with_columns(t.alias("_t")),
        t.is_null(),
        message="not an hour",
        field="hour",
        values=raw,
        expected="YYMMDDHH",
    )
    return df.select(
        "line",
        pl.col("click").alias("label"),
        pl.col("_t").dt.hour().cast(pl.Int8).alias("hour_of_day"),
        pl.col("_t").dt.weekday().cast(pl.Int8).alias("weekday"),
        *AVAZU_COLUMNS[3:],
    )


def _normalise_table(
    df: pl.DataFrame, schema: FeatureSchema, checker: RowChecker, path: Path
) -> pl.DataFrame:
    for col in [schema.label, *schema.names]:
        if col not in df.columns:
            raise DataError(
                "missing column", file=path, field=col, expected=f"columns {[schema.label, *schema.names]}"
            )
    if df.schema[schema.label] != pl.String:
        df = df.with_columns(pl.col(schema.label).cast(pl.String))
    df = _labels(df, schema.label, checker)
    for f in schema.fields:
        if f.kind == "numeric" and df.schema[f.name] == pl.String:
            df = _numbers(df, [f.name], checker)
        elif f.kind == "numeric" and not df.schema[f.name].is_numeric():
            raise DataError(
                f"numeric field has type {df.schema[f.name]}", file=path, field=f.name, expected="numbers"
            )
    return df.select("line", schema.label, *schema.names)


def _layout(path: Path, spec: CTRReaderSpec) -> tuple[str, list[str], int]:
    """``(separator, column names, header line number or 0)`` of a text source."""
    first, number = _first_line(path)
    if spec.format == "criteo":
        sep = "\t" if "\t" in first else ","
        head = first.split(sep)
        if head[0].strip() == "label":
            if [h.strip() for h in head] != CRITEO_COLUMNS:
                raise DataError(
                    "unexpected Criteo header",
                    file=path,
                    line=number,
                    value=first[:120],
                    expected="label,I1..I13,C1..C26",
                )
            return sep, CRITEO_COLUMNS, number
        return sep, CRITEO_COLUMNS, 0
    if spec.format == "avazu":
        head = first.split(",")
        if head[0].strip() == "id":
            if [h.strip() for h in head] != AVAZU_COLUMNS:
                raise DataError(
                    "unexpected Avazu header",
                    file=path,
                    line=number,
                    value=first[:120],
                    expected=",".join(AVAZU_COLUMNS),
                )
            return ",", AVAZU_COLUMNS, number
        return ",", AVAZU_COLUMNS, 0
    names = [h.strip().strip('"') for h in first.split(spec.sep)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # Polars would report the next line as having too many fields
        raise DataError(
            "a column name appears twice in the header",
            file=path,
            line=number,
            field=dup[0],
            expected="distinct names",
        )
    reject_reserved_columns(names, path, header_line=number)
    return spec.sep, names, number


def iter_ctr_chunks(
    path: str | Path,
    spec: CTRReaderSpec | str,
    *,
    on_bad_lines: OnBadLines = "error",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    stats: dict[str, object] | None = None,
) -> Iterator[pl.DataFrame]:
    """Stream a CTR source as checked frames of ``label`` (Int8), feature columns and ``line`` (1-based).

    Reads ``block_bytes`` of text at a time (Parquet: row groups of about 256k rows), so memory is bounded by a
    block. ``stats`` (a dict, updated as blocks go by) receives ``skipped_rows``/``skipped_lines``.
    """
    p = Path(path)
    sp = spec if isinstance(spec, CTRReaderSpec) else CTRReaderSpec(format=spec)  # type: ignore[arg-type]
    checker = RowChecker(p, on_bad_lines)
    stats = stats if stats is not None else {}
    if sp.format == "table" and p.suffix.lower() in (".parquet", ".pq"):
        yield from _iter_parquet(p, sp.default_schema(), checker, stats)
        return
    sep, names, header_line = _layout(p, sp)
    schema = sp.default_schema() if sp.format == "table" else None
    rows = 0
    for chunk, first in _blocks(p, block_bytes):
        df = _parse_block(chunk, first, sep=sep, names=names, header_line=header_line, checker=checker)
        if df is not None:
            if sp.format == "criteo":
                df = _normalise_criteo(df, checker)
            elif sp.format == "avazu":
                df = _normalise_avazu(df, checker)
            else:
                assert schema is not None
                df = _normalise_table(df, schema, checker, p)
        stats.update({"skipped_rows": checker.skipped, "skipped_lines": list(checker.lines)})
        if df is not None and df.height:
            rows += df.height
            yield df
    if rows == 0 and checker.skipped == 0:
        raise DataError("empty file: no data lines", file=p, expected="at least one data line")


def _iter_parquet(
    p: Path, schema: FeatureSchema, checker: RowChecker, stats: dict[str, object]
) -> Iterator[pl.DataFrame]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except Exception as exc:  # pyarrow raises several kinds for a broken file
        raise DataError(f"cannot read Parquet: {exc}", file=p, expected="a Parquet file") from exc
    if pf.metadata.num_rows == 0:
        raise DataError("empty file: no rows", file=p, expected="at least one row")
    # a column of that name would be overwritten by the row numbers below, silently
    reject_reserved_columns(pf.schema_arrow.names, p, header_line=None)
    start = 1
    for batch in pf.iter_batches(batch_size=262_144):
        df = pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        n = df.height
        df = df.with_columns(pl.Series("line", np.arange(start, start + n, dtype=np.int64)))
        start += n
        df = _normalise_table(df, schema, checker, p)
        stats.update({"skipped_rows": checker.skipped, "skipped_lines": list(checker.lines)})
        if df.height:
            yield df


def _read_all(
    path: Path, spec: CTRReaderSpec, on_bad_lines: OnBadLines
) -> tuple[pl.DataFrame, dict[str, object]]:
    stats: dict[str, object] = {}
    parts = list(iter_ctr_chunks(path, spec, on_bad_lines=on_bad_lines, stats=stats))
    if not parts:
        raise DataError("no valid data lines", file=path, expected="at least one valid data line")
    notes = {k: v for k, v in stats.items() if stats.get("skipped_rows")}
    return pl.concat(parts).drop("line"), notes


# ---------------------------------------------------------------------------------------------------------------
# public readers


def read_criteo(
    path: str | Path,
    *,
    on_bad_lines: OnBadLines = "error",
    min_count: int = 1,
    bucketize: Literal["log2", "none"] = "log2",
) -> CTRTable:
    """Criteo display-ads data: ``label, I1..I13, C1..C26``.

    Accepts the Kaggle/Criteo form (TAB separated, no header, empty field = missing) and the DeepCTR sample form
    (comma separated with a header, integers written as ``260.0``). Returns ``label`` (Int8), ``I*`` (Float64,
    null = missing) and ``C*`` (String, null = missing) with :func:`criteo_schema`.
    """
    spec = CTRReaderSpec(format="criteo", min_count=min_count, bucketize=bucketize)
    frame, notes = _read_all(Path(path), spec, on_bad_lines)
    return CTRTable(frame, spec.default_schema(), notes)


def read_avazu(path: str | Path, *, on_bad_lines: OnBadLines = "error", min_count: int = 1) -> CTRTable:
    """Avazu CTR data: comma separated, 24 columns ``id, click, hour, C1, ..., C21`` with or without a header.

    ``click`` becomes ``label``; ``hour`` (YYMMDDHH) becomes ``hour_of_day`` (0-23) and ``weekday``
    (1 = Monday .. 7 = Sunday); ``id`` is dropped; every other column stays a String field.
    """
    spec = CTRReaderSpec(format="avazu", min_count=min_count)
    frame, notes = _read_all(Path(path), spec, on_bad_lines)
    return CTRTable(frame, spec.default_schema(), notes)


def read_ctr_table(
    path: str | Path, schema: FeatureSchema, *, sep: str = ",", on_bad_lines: OnBadLines = "error"
) -> CTRTable:
    """A generic CTR table: CSV/TSV with a header (gzip or plain) or Parquet, holding ``schema.label`` and fields.

    Numeric fields are parsed to Float64 (empty = missing); multi-valued fields stay strings (split on the
    field's ``sep`` at encoding) or lists. Quoted CSV is read whole by
    :func:`~attnrec.data.readers.tabular.read_delimited` (Polars' CSV reader; line numbers exact unless a quoted
    field spans lines).
    """
    p = Path(path)
    spec = CTRReaderSpec(format="table", feature_schema=schema, sep=sep)
    if p.suffix.lower() in (".parquet", ".pq") or b'"' not in _head_bytes(p):
        frame, notes = _read_all(p, spec, on_bad_lines)
        return CTRTable(frame, schema, notes)
    df, checker = read_delimited(read_text(p), p, sep=sep, has_header=True, on_bad_lines=on_bad_lines)
    df = _normalise_table(df, schema, checker, p)
    return CTRTable(df.drop("line"), schema, checker.notes())


def _head_bytes(p: Path, n: int = 1 << 20) -> bytes:
    with _open(p) as fh:
        return fh.read(n)


def movielens_ctr(dataset: Dataset, *, threshold: float = 4.0, min_count: int = 1) -> CTRTable:
    """MovieLens ratings as CTR: ``label = rating >= threshold`` (1) else 0.

    Fields: ``user``, ``item``; from the users table (when the dataset has one) ``age``, ``gender``,
    ``occupation``, ``zip`` (first 3 characters); from the items table (when present) ``genres`` (multi-valued,
    mean pooling) and ``year`` (release year). ``timestamp`` rides along (not a field) for time-based splits.
    """
    inter = dataset.interactions
    if "rating" not in inter.columns:
        raise DataError(
            "MovieLens CTR needs ratings",
            file=dataset.source or dataset.name,
            field="rating",
            expected="a rating column",
        )
    cols = [
        (pl.col("rating") >= threshold).cast(pl.Int8).alias("label"),
        pl.col("user_id").alias("user"),
        pl.col("item_id").alias("item"),
    ]
    if "timestamp" in inter.columns:
        cols.append(pl.col("timestamp"))
    frame = inter.select(cols)
    fields = [FieldSpec(name="user", min_count=min_count), FieldSpec(name="item", min_count=min_count)]
    users = dataset.users
    if users is not None:
        u = users.select(
            pl.col("user_id").cast(pl.String).alias("user"),
            *[
                pl.col(c).cast(pl.String) if c in users.columns else pl.lit(None, pl.String).alias(c)
                for c in ("age", "gender", "occupation")
            ],
            (
                pl.col("zip").cast(pl.String).str.slice(0, 3)
                if "zip" in users.columns
                else pl.lit(None, pl.String)
            ).alias("zip"),
        ).unique("user", keep="first", maintain_order=True)
        frame = frame.join(u, on="user", how="left", maintain_order="left")
        fields += [FieldSpec(name=c, min_count=min_count) for c in ("age", "gender", "occupation", "zip")]
    items = dataset.items
    if items is not None:
        genres = (
            pl.col("genres").cast(pl.List(pl.String))
            if "genres" in items.columns and isinstance(items.schema["genres"], pl.List)
            else pl.col("genres").cast(pl.String).str.split("|")
            if "genres" in items.columns
            else pl.lit(None, pl.List(pl.String))
        ).alias("genres")
        year = (pl.col("year").cast(pl.String) if "year" in items.columns else pl.lit(None, pl.String)).alias(
            "year"
        )
        it = items.select(pl.col("item_id").cast(pl.String).alias("item"), genres, year).unique(
            "item", keep="first", maintain_order=True
        )
        frame = frame.join(it, on="item", how="left", maintain_order="left")
        fields += [
            FieldSpec(name="genres", kind="multi", pooling="mean", sep="|", min_count=min_count),
            FieldSpec(name="year", min_count=min_count),
        ]
    return CTRTable(frame, FeatureSchema(fields=fields, label="label"), dict(dataset.notes))
