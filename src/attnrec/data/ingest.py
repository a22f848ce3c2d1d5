"""Streaming ingest of Amazon review dumps (2014 / 2018 / 2023 JSON lines, gzip or plain) of any size into Parquet.

Memory is bounded by a block of the input and by the id sets, never by the file:

1. **One streaming pass** over each file in blocks of ``block_bytes`` (:func:`~attnrec.data.readers.files.iter_blocks`,
   the CTR block reader's byte layer), each block parsed by the Amazon reader's own per-block functions
   (:func:`~attnrec.data.readers.amazon.json_objects`, :func:`~attnrec.data.readers.amazon.review_fields`: the same
   fields, checks and line-numbered errors as :func:`~attnrec.data.readers.amazon.read_amazon`) and appended to
   ``reviews.parquet`` as one row group.
2. **k-core out of core** (:func:`~attnrec.data.filters.kcore_lazy`): lazy streaming group-bys over the Parquet's
   two id columns, round after round, holding only the kept ids.
3. **Vocabularies and the filtered table**: ``users.parquet`` / ``items.parquet`` (``index``, id, ``count``: ids
   sorted, as :meth:`~attnrec.data.vocab.Vocabulary.from_ids` orders them) and ``interactions.parquet`` (the
   k-core's rows with ``user_index`` / ``item_index``), written one row group of ``reviews.parquet`` at a time.

``manifest.json`` records the sources, formats, rows read / skipped / kept, the k-core report and each stage's
seconds. ``interactions.parquet`` is a table ``attnrec train --data`` reads as it is.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from attnrec.data.filters import kcore_lazy
from attnrec.data.readers.amazon import (
    AmazonVersion,
    JsonStyle,
    dataset_name,
    detect_json_style,
    json_objects,
    review_fields,
)
from attnrec.data.readers.files import decode_text, iter_blocks, text_lines
from attnrec.data.readers.tabular import OnBadLines, RowChecker
from attnrec.errors import ConfigError, DataError
from attnrec.paths import atomic_write_text

#: bytes of (inflated) text parsed at a time: peak memory is a small multiple of it
DEFAULT_BLOCK_BYTES = 32 << 20

#: the columns of reviews.parquet / interactions.parquet, every file aligned to them (missing ones null)
REVIEW_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "rating": pl.Float32(),
    "timestamp": pl.Int64(),
    "review": pl.String(),
    "summary": pl.String(),
    "vote": pl.Int64(),
    "verified": pl.Boolean(),
}
#: columns only one format has: added to the schema when a source of that format is ingested
VERSION_COLUMNS: dict[str, dict[str, pl.DataType]] = {
    "2014/2018": {"style": pl.String()},
    "2023": {"asin": pl.String(), "timestamp_ms": pl.Int64()},
}
TEXT_COLUMNS = ("review", "summary")


@dataclass
class SourceReport:
    """One input file: its format, lines and rows."""

    path: str
    bytes: int
    version: str
    encoding: str
    blocks: int = 0
    rows: int = 0
    skipped_rows: int = 0
    skipped_lines: list[int] = field(default_factory=list)


@dataclass
class IngestReport:
    """What :func:`ingest_amazon` wrote and measured (also ``manifest.json``)."""

    out: str
    sources: list[SourceReport]
    rows_read: int
    rows_kept: int
    users: int
    items: int
    kcore: dict[str, object]
    seconds: dict[str, float]
    files: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest_amazon(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    user_k: int = 0,
    item_k: int = 0,
    text: bool = True,
    on_bad_lines: OnBadLines = "error",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> IngestReport:
    """Ingest Amazon review files into ``out`` (see the module docstring). With several files, a ``domain`` column
    names each row's file (``reviews_Books_5.json.gz`` -> ``Books_5``). ``text=False`` leaves out the review text
    and summary (an id-and-rating table). ``on_bad_lines="skip"`` drops and counts malformed lines, else the first
    stops the ingest with its file, line and field."""
    sources = [Path(p) for p in paths]
    if not sources:
        raise ConfigError("data ingest: give at least one review file")
    if block_bytes < 1024:
        raise ConfigError(f"block_bytes {block_bytes}: expected at least 1024")
    if user_k < 0 or item_k < 0:
        raise ConfigError(f"k-core thresholds must be >= 0, got user_k={user_k}, item_k={item_k}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    peeks = [_peek(p, block_bytes) for p in sources]
    columns = _columns(peeks, text=text, domains=len(sources) > 1)
    raw = out / "reviews.parquet"
    reports = _stream(peeks, raw, columns, on_bad_lines=on_bad_lines, block_bytes=block_bytes)
    seconds["parse"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    users, items, kreport = kcore_lazy(pl.scan_parquet(raw), user_k, item_k)
    seconds["kcore"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    users = users.sort("user_id").with_row_index("index").select("index", "user_id", "count")
    items = items.sort("item_id").with_row_index("index").select("index", "item_id", "count")
    files = {"reviews": raw, "users": out / "users.parquet", "items": out / "items.parquet"}
    files["interactions"] = out / "interactions.parquet"
    users.write_parquet(files["users"])
    items.write_parquet(files["items"])
    _write_kept(raw, files["interactions"], users, items)
    seconds["write"] = time.perf_counter() - t0

    report = IngestReport(
        out=str(out),
        sources=reports,
        rows_read=sum(r.rows for r in reports),
        rows_kept=kreport.rows_after,
        users=users.height,
        items=items.height,
        kcore=kreport.as_dict(),
        seconds=seconds,
        files={k: str(v) for k, v in {**files, "manifest": out / "manifest.json"}.items()},
    )
    atomic_write_text(out / "manifest.json", json.dumps(report.as_dict(), indent=2), what="ingest manifest")
    return report


def _write_kept(raw: Path, dest: Path, users: pl.DataFrame, items: pl.DataFrame) -> None:
    """Pass 3: ``raw``'s rows whose user and item were kept, in file order, with ``user_index`` / ``item_index``,
    one row group at a time (memory: a row group and the two id tables; a streaming join-and-sink of the whole
    scan held a third more at Electronics' size), atomically."""
    import pyarrow.parquet as pq

    user_index = users.select("user_id", pl.col("index").alias("user_index"))
    item_index = items.select("item_id", pl.col("index").alias("item_index"))
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    source = pq.ParquetFile(raw)
    try:
        writer = None
        for group in range(source.num_row_groups):
            block = pl.from_arrow(source.read_row_group(group))
            assert isinstance(block, pl.DataFrame)
            kept = block.join(user_index, on="user_id", how="inner", maintain_order="left").join(
                item_index, on="item_id", how="inner", maintain_order="left"
            )
            table = kept.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
        if writer is None:  # no row group at all: an empty table with the columns
            pl.DataFrame(
                schema={**pl.read_parquet_schema(raw), "user_index": pl.UInt32, "item_index": pl.UInt32}
            ).write_parquet(tmp)
        else:
            writer.close()
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _peek(path: Path, block_bytes: int) -> tuple[Path, AmazonVersion, JsonStyle]:
    """The format of ``path`` from its first block (a tiny file is read whole)."""
    for chunk, first in iter_blocks(path, min(block_bytes, 1 << 20)):
        if chunk.strip():
            lines = text_lines(decode_text(chunk, path, first_line=first), path)
            style = detect_json_style(str(lines["text"][0]))
            objs = json_objects(lines.head(100), style, RowChecker(path, "skip"))
            if objs.height:
                _, version = review_fields(objs, path, RowChecker(path, "skip"))
                return path, version, style
    raise DataError("empty file: no data lines", file=path, expected="one review (a JSON object) per line")


def _columns(
    peeks: list[tuple[Path, AmazonVersion, JsonStyle]], *, text: bool, domains: bool
) -> dict[str, pl.DataType]:
    """The output columns: :data:`REVIEW_SCHEMA` (less the text without ``text``), the formats' own columns, and
    ``domain`` for several files."""
    columns = {k: v for k, v in REVIEW_SCHEMA.items() if text or k not in TEXT_COLUMNS}
    for version in dict.fromkeys(v for _, v, _ in peeks):
        columns.update(VERSION_COLUMNS[version])
    if domains:
        columns["domain"] = pl.String()
    return columns


def _stream(
    peeks: list[tuple[Path, AmazonVersion, JsonStyle]],
    raw: Path,
    columns: dict[str, pl.DataType],
    *,
    on_bad_lines: OnBadLines,
    block_bytes: int,
) -> list[SourceReport]:
    """Pass 1: every block of every file parsed and appended to ``raw`` as a row group (atomically: a temporary
    sibling renamed at the end)."""
    import pyarrow.parquet as pq

    arrow_schema = pl.DataFrame(schema=columns).to_arrow().schema
    tmp = raw.with_name(f".{raw.name}.{os.getpid()}.tmp")
    reports: list[SourceReport] = []
    try:
        with pq.ParquetWriter(tmp, arrow_schema, compression="zstd") as writer:
            for path, version, style in peeks:
                rep = SourceReport(str(path), path.stat().st_size, version, style)
                checker = RowChecker(path, on_bad_lines)
                for chunk, first in iter_blocks(path, block_bytes):
                    if not chunk.strip():
                        continue
                    lines = text_lines(decode_text(chunk, path, first_line=first), path)
                    lines = lines.with_columns(pl.col("line") + (first - 1))
                    fields, _ = review_fields(
                        json_objects(lines, style, checker), path, checker, version=version
                    )
                    if "domain" in columns:
                        fields = fields.with_columns(pl.lit(dataset_name(path)).alias("domain"))
                    block = fields.select(
                        pl.col(c).cast(t) if c in fields.columns else pl.lit(None, dtype=t).alias(c)
                        for c, t in columns.items()
                    )
                    writer.write_table(block.to_arrow().cast(arrow_schema))
                    rep.blocks += 1
                    rep.rows += block.height
                rep.skipped_rows, rep.skipped_lines = checker.skipped, list(checker.lines)
                reports.append(rep)
        os.replace(tmp, raw)
    finally:
        tmp.unlink(missing_ok=True)
    return reports
