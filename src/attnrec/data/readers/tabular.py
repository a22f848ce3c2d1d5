"""Shared reading machinery and the generic readers: delimited text, Parquet and RecBole atomic files.

Every text reader here works on a table of ``(line, text)`` rows built by Polars from the whole file (gzip or
plain, read through :mod:`attnrec.data.readers.files` with its size limits), so that each value keeps the 1-based
physical line number it came from (the header is line 1): a malformed row raises
:class:`~attnrec.errors.DataError` naming file, line, field and value, or, with ``on_bad_lines="skip"``, is
dropped and counted (:class:`RowChecker`). Splitting, casting and checking are Polars expressions over whole
columns; there is no Python loop over rows.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import polars as pl

from attnrec.data.readers.files import check_parquet_size, open_input
from attnrec.data.readers.files import decode_text as decode_text
from attnrec.data.readers.files import read_bytes as read_bytes
from attnrec.data.readers.files import text_lines as text_lines
from attnrec.data.table import Dataset
from attnrec.errors import ConfigError, DataError

OnBadLines = Literal["error", "skip"]

#: how many skipped line numbers a dataset's notes keep (the count is always exact)
MAX_NOTED_LINES = 10


class RowChecker:
    """Rejects bad rows of one file: raises on the first (``"error"``) or drops and counts them (``"skip"``).

    Frames passed in must carry the ``line`` column from :func:`text_lines`.
    """

    def __init__(self, path: str | Path, on_bad_lines: OnBadLines = "error") -> None:
        if on_bad_lines not in ("error", "skip"):
            raise ConfigError(f"on_bad_lines must be 'error' or 'skip', not {on_bad_lines!r}")
        self.path = str(path)
        self.on_bad_lines = on_bad_lines
        self.skipped = 0
        self.lines: list[int] = []

    def reject(
        self,
        df: pl.DataFrame,
        bad: pl.Series,
        *,
        message: str,
        field: str | None = None,
        values: pl.Series | None = None,
        expected: str | None = None,
    ) -> pl.DataFrame:
        """Drop (or raise on) the rows where ``bad`` is true; ``values`` gives what to show for the bad
        value."""
        bad = bad.fill_null(False)
        if not bad.any():
            return df
        if self.on_bad_lines == "error":
            row = int(bad.arg_true()[0])
            value = values[row] if values is not None else None
            raise DataError(
                message.replace("{}", str(value)),
                file=self.path,
                line=int(df["line"][row]),
                field=field,
                value=value,
                expected=expected,
            )
        bad_lines = df["line"].filter(bad)
        self.skipped += bad_lines.len()
        if len(self.lines) < MAX_NOTED_LINES:
            self.lines = sorted(self.lines + bad_lines.head(MAX_NOTED_LINES).to_list())[:MAX_NOTED_LINES]
        return df.filter(~bad)

    def notes(self) -> dict[str, object]:
        """``skipped_rows`` (count), ``skipped_lines`` (the first few line numbers) and ``skipped_file`` (the file
        they are lines of) when rows were skipped."""
        if not self.skipped:
            return {}
        return {"skipped_rows": self.skipped, "skipped_lines": list(self.lines), "skipped_file": self.path}


def merge_notes(*checkers: RowChecker) -> dict[str, object]:
    """Notes of a dataset read from several files: total skipped rows, lines of the first file that skipped
    any."""
    total = sum(c.skipped for c in checkers)
    if not total:
        return {}
    notes: dict[str, object] = {"skipped_rows": total}
    first = next(c for c in checkers if c.skipped)
    notes["skipped_lines"] = list(first.lines)
    notes["skipped_file"] = first.path
    notes["skipped_by_file"] = {Path(c.path).name: c.skipped for c in checkers if c.skipped}
    return notes


def skipped_summary(notes: Mapping[str, object]) -> dict[str, Any] | None:
    """What a reader skipped with ``on_bad_lines="skip"``, from a dataset's notes, for reports such as
    ``split.json``: ``{"count", "file", "first_lines", "by_file"?}`` (``first_lines`` are lines of ``file``);
    None when nothing was skipped."""
    count = notes.get("skipped_rows")
    if not count:
        return None
    out: dict[str, Any] = {
        "count": count,
        "file": notes.get("skipped_file"),
        "first_lines": notes.get("skipped_lines", []),
    }
    if "skipped_by_file" in notes:
        out["by_file"] = notes["skipped_by_file"]
    return out


#: the column every reader keeps each row's line number in; a file may not use the name for a column of its own
LINE_COLUMN = "line"


def reject_reserved_columns(columns: list[str], path: str | Path, *, header_line: int | None = 1) -> None:
    """A file column named like the readers' line-number column would collide with it: a DataError naming it
    (and the header's line; None for Parquet, which has none)."""
    if LINE_COLUMN in columns:
        raise DataError(
            f"a column is named {LINE_COLUMN!r}, a name attnrec keeps for line numbers",
            file=path,
            line=header_line,
            field=LINE_COLUMN,
            expected="another name for that column (rename it in the file)",
        )


def delimited_parse_error(
    exc: Exception, text: str, path: str | Path, sep: str, n_fields: int | None
) -> DataError:
    """Polars' CSV reader failed on ``text`` (file ``path``): a one-line DataError naming the physical line.

    Polars' message spans lines, gives a byte offset and advises reader options that do not apply; the line is
    found again with Python's strict CSV parser (only on this error path), which reports the first malformed
    quoting or a record with a number of fields other than ``n_fields``."""
    line: int | None = None
    reason: str | None = None
    reader = csv.reader(io.StringIO(text), delimiter=sep, strict=True)
    try:
        for row in reader:
            if n_fields is not None and any(c.strip() for c in row) and len(row) != n_fields:
                line, reason = reader.line_num, f"wrong number of fields: found {len(row)}"
                break
    except csv.Error as err:
        line, reason = reader.line_num, f"malformed quoting ({err})"
    if reason is None:
        message = str(exc)
        core = re.search(r"Original error: ```(.*?)```", message, re.S)
        reason = " ".join((core.group(1) if core else message.split("\n\n")[0]).split())
    expected = f"fields separated by {sep!r}, a field with the separator or a quote inside double quotes"
    if n_fields is not None:
        expected += f" ({n_fields} fields a line)"
    return DataError(f"cannot parse as delimited text: {reason}", file=path, line=line, expected=expected)


def split_fields(
    lines: pl.DataFrame, sep: str, names: list[str], checker: RowChecker, *, min_fields: int | None = None
) -> pl.DataFrame:
    """Split each line on the literal ``sep`` into String columns ``names`` (plus ``line``).

    A line with a different number of fields (fewer than ``min_fields`` when given; extra fields are then
    ignored) is a bad row.
    """
    parts = lines.select("line", pl.col("text").str.split(sep).alias("_parts"))
    n = parts["_parts"].list.len()
    want = len(names)
    bad = n < min_fields if min_fields is not None else n != want
    expected = f"at least {min_fields}" if min_fields is not None else f"{want}"
    parts = checker.reject(
        parts,
        bad,
        message=f"wrong number of fields: found {{}} separated by {sep!r}",
        values=n,
        expected=f"{expected} fields ({', '.join(names)})",
    )
    return parts.select(
        "line", *[pl.col("_parts").list.get(i, null_on_oob=True).alias(name) for i, name in enumerate(names)]
    )


def parse_float(
    df: pl.DataFrame,
    col: str,
    checker: RowChecker,
    *,
    required: bool = True,
    dtype: pl.DataType = pl.Float32(),
) -> pl.DataFrame:
    """Cast a String column to a finite number; non-numeric (and, when ``required``, missing) values are bad
    rows."""
    raw = df[col]
    parsed = raw.str.strip_chars().cast(pl.Float64, strict=False)
    bad = (
        parsed.is_null() & (raw.is_not_null() & (raw.str.strip_chars() != "") | required)
    ) | ~parsed.is_finite()
    df = checker.reject(
        df.with_columns(parsed.alias("_parsed")),
        bad,
        message="not a number",
        field=col,
        values=raw,
        expected="a finite number",
    )
    return df.with_columns(pl.col("_parsed").cast(dtype).alias(col)).drop("_parsed")


def parse_int(
    df: pl.DataFrame, col: str, checker: RowChecker, *, required: bool = True, scale: int = 1
) -> pl.DataFrame:
    """Cast a String column to Int64 (integral floats such as ``881250949.0`` accepted), divided by
    ``scale``."""
    raw = df[col]
    stripped = raw.str.strip_chars()
    as_int = stripped.cast(pl.Int64, strict=False)
    as_float = stripped.cast(pl.Float64, strict=False)
    integral = as_float.is_finite() & (as_float == as_float.floor())
    parsed = pl.select(
        pl.when(as_int.is_not_null()).then(as_int).when(integral).then(as_float.cast(pl.Int64, strict=False))
    ).to_series()
    missing = raw.is_null() | (stripped == "")
    bad = parsed.is_null() & (~missing | required)
    df = checker.reject(
        df.with_columns(parsed.alias("_parsed")),
        bad,
        message="not an integer",
        field=col,
        values=raw,
        expected="an integer",
    )
    out = pl.col("_parsed") // scale if scale != 1 else pl.col("_parsed")
    return df.with_columns(out.alias(col)).drop("_parsed")


def require_nonempty(df: pl.DataFrame, cols: list[str], checker: RowChecker) -> pl.DataFrame:
    """Ids (String columns) trimmed of surrounding whitespace; they must be present and non-blank: a missing one
    is a bad row."""
    for col in cols:
        raw = df[col]
        df = df.with_columns(raw.str.strip_chars().alias(col))
        bad = raw.is_null() | (df[col] == "")
        df = checker.reject(
            df, bad, message="missing or empty id", field=col, values=raw, expected="a non-empty id"
        )
    return df


def reject_structured_ids(df: pl.DataFrame, cols: list[str], checker: RowChecker) -> pl.DataFrame:
    """JSON readers: an id that is a JSON array or object (JSON path lookups return those as JSON text, e.g.
    ``["B0001"]``) is a bad row, not an id."""
    for col in cols:
        raw = df[col]
        bad = raw.str.contains(r"^\s*\[.*\]\s*$") | raw.str.contains(r"^\s*\{.*\}\s*$")
        df = checker.reject(
            df,
            bad,
            message="an id that is a JSON array or object",
            field=col,
            values=raw,
            expected="a string or number id",
        )
    return df


def normalise_ids(df: pl.DataFrame, cols: list[str], checker: RowChecker) -> pl.DataFrame:
    """Id columns as trimmed, non-empty strings, the same whatever the file's column type.

    The rule: text ids are kept as written, less surrounding whitespace (``" 1"`` is ``"1"``; ``"007"`` stays
    ``"007"``); integer ids are written in decimal; float ids (Parquet, or pandas' output where a column had a
    missing value) must be integral and are written as integers (``1.0`` is ``"1"``), a fractional one is a bad
    row; a list, struct, boolean or binary id column is a DataError naming the column and the file.
    """
    for col in cols:
        dtype = df.schema[col]
        if dtype.is_nested() or dtype in (pl.Binary, pl.Boolean, pl.Object, pl.Null):
            raise DataError(
                f"an id column of type {dtype}",
                file=checker.path,
                field=col,
                expected="one text or integer id per row",
            )
        if dtype.is_float() or dtype == pl.Decimal:
            raw = df[col].cast(pl.Float64)
            integral = raw.is_finite() & (raw == raw.floor()) & (raw.abs() < 2.0**63)
            df = checker.reject(
                df.with_columns(raw.alias(col)),
                raw.is_not_null() & ~integral,
                message="a float id that is not a whole number below 2**63",
                field=col,
                values=raw,
                expected="an integer id (a float id must be a whole number)",
            )
            df = df.with_columns(pl.col(col).cast(pl.Int64))
        if df.schema[col] != pl.String:
            df = df.with_columns(pl.col(col).cast(pl.String))
    return require_nonempty(df, cols, checker)


# ----------------------------------------------------------------------------------------------------
# generic CSV / TSV / Parquet

_CANONICAL_DEFAULT = ("user_id", "item_id", "rating", "timestamp")


def read_table(
    path: str | Path,
    columns: Mapping[str, str | int] | None = None,
    *,
    sep: str = ",",
    has_header: bool = True,
    on_bad_lines: OnBadLines = "error",
    timestamp_format: str | None = None,
    encoding: str = "utf-8",
    name: str | None = None,
    allow_empty: bool = False,
) -> Dataset:
    """Read a CSV/TSV (gzip or plain) or Parquet file of interactions into a :class:`Dataset`.

    ``columns`` maps canonical names (``user_id``, ``item_id``, ``rating``, ``timestamp``, ``domain``,
    ``review``) to the file's column names, or to 0-based positions when the file has no header. Without it
    the file must already use canonical names (with a header) or hold user, item[, rating[, timestamp]] in
    that order. Other columns are kept under their own names. ``timestamp`` must be an integer (seconds, as in
    the file) unless ``timestamp_format`` (a strftime pattern) is given, then strings are parsed to Unix
    seconds (UTC). A file with a header and no rows is an error unless ``allow_empty`` (an empty part of a split).

    Ids are normalised by :func:`normalise_ids` (trimmed text; integral float ids as integers). Line numbers in
    errors are 1-based physical lines (the header is line 1); for CSV with quoted fields spanning lines (read by
    Polars' CSV reader) they count one line per record; for Parquet they are 1-based row numbers.
    """
    p = Path(path)
    label = name or _stem(p)
    if not sep:
        raise ConfigError(f"{p}: the separator is empty; expected a character such as ',' or '\\t'")
    if _is_parquet(p):
        frame = _read_parquet(p, allow_empty=allow_empty)
        reject_reserved_columns(frame.columns, p, header_line=None)
        frame = frame.with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))
        checker = RowChecker(p, on_bad_lines)
    else:
        text = decode_text(read_bytes(p), p, encoding=encoding)
        frame, checker = read_delimited(
            text, p, sep=sep, has_header=has_header, on_bad_lines=on_bad_lines, allow_empty=allow_empty
        )
    mapping = _resolve_columns(frame, columns, p, has_header=has_header or _is_parquet(p))
    frame = frame.rename({src: dst for dst, src in mapping.items() if src != dst and src in frame.columns})
    frame = _cast_canonical(frame, checker, timestamp_format=timestamp_format)
    return Dataset(label, frame.drop("line"), source=str(p), notes=checker.notes(), lines=frame["line"])


def read_interactions(path: str | Path, rename: Mapping[str, str] | None = None) -> pl.DataFrame:
    """One interactions file a user hands us (``train --train/--valid/--test``, ``evaluate --test/--exclude``):
    CSV with a header (``.tsv``: tab-separated; gzip or plain) or Parquet, read by :func:`read_table` with its
    checks and line numbers. ``rename`` maps the file's column names to canonical ones (``{"userId": "user_id"}``).
    Returns the canonical frame (ids as strings); a header without rows is an empty frame (an empty split part)."""
    return read_interactions_dataset(path, rename).interactions


def read_interactions_dataset(path: str | Path, rename: Mapping[str, str] | None = None) -> Dataset:
    """:func:`read_interactions` as a :class:`Dataset`, whose ``lines`` give each row's line in the file (for
    errors about a value found later, such as a rating outside the run's scale)."""
    p = Path(path)
    columns = {dst: src for src, dst in (rename or {}).items()}
    sep = "\t" if p.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    return read_table(p, columns or None, sep=sep, allow_empty=True)


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".gz", ".parquet", ".pq", ".csv", ".tsv", ".txt", ".dat", ".json", ".jsonl"):
        name = name.removesuffix(suffix)
    return name


def _is_parquet(p: Path) -> bool:
    return p.suffix.lower() in (".parquet", ".pq")


def _read_parquet(p: Path, *, allow_empty: bool = False) -> pl.DataFrame:
    check_parquet_size(p)
    try:
        with open_input(p) as fh:
            frame = pl.read_parquet(fh)
    except DataError:
        raise
    except Exception as exc:  # polars raises several kinds for a broken file
        raise DataError(f"cannot read Parquet: {exc}", file=p, expected="a Parquet file") from exc
    if frame.height == 0 and not allow_empty:
        raise DataError("empty file: no rows", file=p, expected="at least one row")
    return frame


def read_delimited(
    text: str, p: Path, *, sep: str, has_header: bool, on_bad_lines: OnBadLines, allow_empty: bool = False
) -> tuple[pl.DataFrame, RowChecker]:
    """Delimited ``text`` of file ``p`` as String columns (named by the header, else ``"0"``, ``"1"``...) plus
    ``line`` (1-based physical line), and the file's row checker. Unquoted text is split by Polars expressions;
    text with quotes goes to Polars' CSV reader (a wrong field count there is a DataError without a line)."""
    checker = RowChecker(p, on_bad_lines)
    all_lines = text_lines(text, p)
    if has_header:
        header_line = int(all_lines["line"][0])
        names = [h.strip().strip('"') for h in str(all_lines["text"][0]).split(sep)]
        reject_reserved_columns(names, p, header_line=header_line)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DataError(
                "a column name appears twice in the header",
                file=p,
                line=header_line,
                field=dup[0],
                expected="distinct column names",
            )
        body = all_lines.slice(1)
        if body.height == 0 and not allow_empty:
            raise DataError(
                "empty file: a header and no data lines", file=p, expected="at least one data line"
            )
    else:
        header_line = 0
        body = all_lines
        first = str(all_lines["text"][0])
        names = [str(i) for i in range(len(first.split(sep)))]
    if '"' not in text or body.height == 0:
        return split_fields(body, sep, names, checker), checker
    # quoted CSV: Polars' CSV reader handles the quoting; with one record per line its rows map back to their line
    # numbers. It reads a blank line as a row of nulls, so it is given only text without blank lines: its UTF-8
    # bytes (the frame of lines let go first: joining the lines held more copies of a large file at once; see
    # text_lines). Text with blank lines goes to Python's CSV parser, which keeps those inside quoted fields
    line_numbers = body["line"]
    physical = text.count("\n") + (0 if text.endswith("\n") else 1)
    if all_lines.height == physical:  # no blank line: the text itself (Polars reads CRLF, kept inside quotes)
        del all_lines, body
        source = text.encode()
    elif len(sep) == 1:  # blank lines, which may sit inside a quoted field (or lone carriage returns)
        del all_lines, body
        return _read_quoted_rows(text, p, sep, names, skip_header=has_header), checker
    else:
        source = ("\n".join(all_lines["text"].to_list()) + "\n").encode()
        del all_lines, body
    try:
        frame = pl.read_csv(
            source,
            separator=sep,
            has_header=has_header,
            infer_schema=False,
            new_columns=None if has_header else names,
        )
    except pl.exceptions.PolarsError as exc:
        raise delimited_parse_error(exc, text, p, sep, len(names)) from None
    if frame.height == line_numbers.len():  # one record per non-blank line: the exact line numbers are known
        return frame.with_columns(line_numbers), checker
    frame = frame.with_row_index("line", offset=header_line + 1).with_columns(pl.col("line").cast(pl.Int64))
    return frame, checker


def _read_quoted_rows(text: str, p: Path, sep: str, names: list[str], *, skip_header: bool) -> pl.DataFrame:
    """Quoted CSV ``text`` with blank lines or carriage returns, by Python's CSV parser: a blank line between records
    is skipped, blank lines and ``\\r\\n`` inside a quoted field are kept (Polars' reader, given the non-blank lines
    only, lost them); each record carries the physical line it starts on. As with Polars' reader, a short record's
    missing fields and empty fields are null (the row checker judges them) and a long record is a DataError."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    expected = f"fields separated by {sep!r}, a field with the separator or a quote inside double quotes"
    rows: list[list[str]] = []
    starts: list[int] = []
    end = 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if any(c.strip() for c in row):
                rows.append(row)
                starts.append(start)
    except csv.Error as err:
        why = f"cannot parse as delimited text: malformed quoting ({err})"
        raise DataError(why, file=p, line=reader.line_num, expected=expected) from None
    rows, starts = (rows[1:], starts[1:]) if skip_header else (rows, starts)
    for row, line in zip(rows, starts, strict=True):
        if len(row) > len(names):
            raise DataError(
                f"cannot parse as delimited text: wrong number of fields: found {len(row)}",
                file=p,
                line=line,
                expected=f"{expected} ({len(names)} fields a line)",
            )
    cells = {n: [row[j] or None if j < len(row) else None for row in rows] for j, n in enumerate(names)}
    frame = pl.DataFrame({n: pl.Series(n, v, dtype=pl.String) for n, v in cells.items()})
    return frame.with_columns(pl.Series("line", starts, dtype=pl.Int64))


def _separator_hint(present: list[str]) -> str:
    """A hint when the header split into one column holding another likely separator."""
    if len(present) == 1:
        for name, sep in (("tab", "\t"), ("';'", ";"), ("'|'", "|"), ("'::'", "::")):
            if sep in present[0]:
                return f"; the header is one column: are its fields separated by {name}?"
    return ""


def _resolve_columns(
    frame: pl.DataFrame, columns: Mapping[str, str | int] | None, p: Path, *, has_header: bool
) -> dict[str, str]:
    present = [c for c in frame.columns if c != "line"]
    if columns is None:
        if not has_header:
            return {canon: str(i) for i, canon in enumerate(_CANONICAL_DEFAULT[: len(present)])}
        for canon in ("user_id", "item_id"):
            if canon not in present:
                raise DataError(
                    f"missing column {canon!r}{_separator_hint(present)}",
                    file=p,
                    field=canon,
                    expected=f"a {canon!r} column, or columns= mapping it (file has {present})",
                )
        return {c: c for c in _CANONICAL_DEFAULT if c in present}
    out: dict[str, str] = {}
    for canon, src in columns.items():
        key = str(src)
        if isinstance(src, int) and has_header:
            if not 0 <= src < len(present):
                raise DataError(
                    "column position out of range",
                    file=p,
                    field=canon,
                    value=src,
                    expected=f"0..{len(present) - 1}",
                )
            key = present[src]
        if key not in present:
            raise DataError(
                f"missing column {key!r} (mapped to {canon!r})",
                file=p,
                field=key,
                expected=f"one of the file's columns {present}",
            )
        out[canon] = key
    for canon in ("user_id", "item_id"):
        if canon not in out and canon not in present:
            raise DataError(
                f"missing column {canon!r}",
                file=p,
                field=canon,
                expected=f"a mapping for {canon!r} in columns= (file has {present})",
            )
        out.setdefault(canon, canon)
    renamed = {src for canon, src in out.items() if src != canon}
    for canon, src in out.items():
        if src != canon and canon in present and canon not in renamed:  # two columns would have one name
            raise DataError(
                f"column {src!r} is mapped to {canon!r}, but the file has a {canon!r} column of its own",
                file=p,
                field=canon,
                expected="a mapping onto a name the file does not use (or map its own column to another name)",
            )
    return out


def _cast_canonical(
    frame: pl.DataFrame, checker: RowChecker, *, timestamp_format: str | None
) -> pl.DataFrame:
    frame = normalise_ids(frame, ["user_id", "item_id"], checker)
    for col in ("rating", "timestamp"):
        if col in frame.columns and (frame.schema[col].is_nested() or frame.schema[col] == pl.Binary):
            raise DataError(
                f"a {col} column of type {frame.schema[col]}",
                file=checker.path,
                field=col,
                expected="one number per row",
            )
    if "rating" in frame.columns:
        if frame.schema["rating"] != pl.String:
            frame = frame.with_columns(pl.col("rating").cast(pl.String))
        frame = parse_float(frame, "rating", checker)
    if "timestamp" in frame.columns:
        if timestamp_format is not None:
            raw = frame["timestamp"].cast(pl.String)
            parsed = raw.str.strptime(pl.Datetime("us", "UTC"), timestamp_format, strict=False).dt.epoch("s")
            frame = checker.reject(
                frame.with_columns(parsed.alias("_ts")),
                parsed.is_null(),
                message="not a date",
                field="timestamp",
                values=raw,
                expected=f"a date like {timestamp_format!r}",
            )
            frame = frame.with_columns(pl.col("_ts").alias("timestamp")).drop("_ts")
        else:
            if frame.schema["timestamp"] != pl.String:
                frame = frame.with_columns(pl.col("timestamp").cast(pl.String))
            frame = parse_int(frame, "timestamp", checker)
    return frame


# ----------------------------------------------------------------------------------------------------
# RecBole atomic files

_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def read_recbole_file(
    path: str | Path, *, on_bad_lines: OnBadLines = "error"
) -> tuple[pl.DataFrame, RowChecker]:
    """One RecBole atomic file (``.inter``/``.item``/``.user``): tab-separated, header ``name:type`` per
    column.

    ``token`` columns stay String, ``float`` become Float64, ``token_seq`` become List(String) (split on
    spaces), ``float_seq`` List(Float64). Returns the frame (column names without the type) and its row
    checker.
    """
    p = Path(path)
    lines = text_lines(decode_text(read_bytes(p), p), p)
    header = str(lines["text"][0]).split("\t")
    names: list[str] = []
    types: list[str] = []
    for h in header:
        fname, _, ftype = h.partition(":")
        if ftype not in _RECBOLE_TYPES:
            raise DataError(
                "bad RecBole header field",
                file=p,
                line=int(lines["line"][0]),
                field=fname,
                value=h,
                expected=f"name:type with type in {list(_RECBOLE_TYPES)}",
            )
        names.append(fname)
        types.append(ftype)
    checker = RowChecker(p, on_bad_lines)
    body = lines.slice(1)
    if body.height == 0:
        raise DataError("empty file: a header and no data lines", file=p, expected="at least one data line")
    frame = split_fields(body, "\t", names, checker)
    for fname, ftype in zip(names, types, strict=True):
        if ftype == "float":
            frame = parse_float(frame, fname, checker, required=False, dtype=pl.Float64())
        elif ftype == "token_seq":
            frame = frame.with_columns(
                pl.col(fname).str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
            )
        elif ftype == "float_seq":
            frame = frame.with_columns(
                pl.col(fname).str.split(" ").list.eval(pl.element().cast(pl.Float64, strict=False))
            )
    return frame, checker


def read_recbole_atomic(directory: str | Path, name: str, *, on_bad_lines: OnBadLines = "error") -> Dataset:
    """A RecBole dataset folder: ``{name}.inter`` and, when present, ``{name}.item`` / ``{name}.user``.

    Interaction fields ``user_id``/``item_id``/``rating``/``timestamp`` map to the canonical columns
    (timestamps become Int64 seconds); item/user tables keep RecBole's field names, keyed by
    ``item_id``/``user_id``. MovieLens-specific renames (title, year, genres) live in
    :func:`attnrec.data.readers.movielens.read_movielens_recbole`.
    """
    d = Path(directory)
    inter_path = d / f"{name}.inter"
    frame, checker = read_recbole_file(inter_path, on_bad_lines=on_bad_lines)
    for col in ("user_id", "item_id"):
        if col not in frame.columns:
            raise DataError(
                f"missing column {col!r}", file=inter_path, field=col, expected=f"a {col}:token column"
            )
    frame = require_nonempty(frame, ["user_id", "item_id"], checker)
    if "timestamp" in frame.columns:
        frame = frame.with_columns(pl.col("timestamp").cast(pl.String))
        frame = parse_int(frame, "timestamp", checker)
    if "rating" in frame.columns:
        frame = frame.with_columns(pl.col("rating").cast(pl.Float32))
    checkers = [checker]
    tables: dict[str, pl.DataFrame | None] = {"item": None, "user": None}
    for kind in tables:
        fp = d / f"{name}.{kind}"
        if fp.is_file():
            table, c = read_recbole_file(fp, on_bad_lines=on_bad_lines)
            key = f"{kind}_id"
            if key not in table.columns:
                raise DataError(
                    f"missing column {key!r}", file=fp, field=key, expected=f"a {key}:token column"
                )
            tables[kind] = table.drop("line")
            checkers.append(c)
    return Dataset(
        name,
        frame.drop("line"),
        items=tables["item"],
        users=tables["user"],
        source=str(inter_path),
        notes=merge_notes(*checkers),
        lines=frame["line"],
    )
