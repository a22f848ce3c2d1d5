"""What a run reads besides its config: the interactions (a dataset, filtered and split, or pre-split files, with
the file's columns renamed by ``columns``) and the item metadata of ``items``.

Every input is read and checked here, before any model is built or fitted, so a bad file or a missing column
fails in seconds with the file and field named.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from attnrec.data.readers.files import check_parquet_size, open_input, read_text
from attnrec.data.readers.tabular import (
    RowChecker,
    delimited_parse_error,
    normalise_ids,
    reject_reserved_columns,
)
from attnrec.data.splits import SplitResult, load_presplit, split, with_rating_range
from attnrec.data.table import CANONICAL, Dataset, check_rating_range
from attnrec.errors import ConfigError, DataError
from attnrec.experiments.config import RunConfig

log = logging.getLogger(__name__)

#: file suffixes read as one interactions table, where ``columns`` applies
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def check_columns(columns: dict[str, str]) -> dict[str, str]:
    """``columns`` (the file's name -> a canonical name) after checking every target is canonical and used once."""
    bad = {src: dst for src, dst in columns.items() if dst not in CANONICAL}
    if bad:
        src, dst = next(iter(bad.items()))
        raise ConfigError(
            f"columns: {src}={dst}: {dst!r} is not a canonical column; expected one of {', '.join(CANONICAL)}"
        )
    targets = list(columns.values())
    dup = sorted({t for t in targets if targets.count(t) > 1})
    if dup:
        raise ConfigError(f"columns: more than one file column is mapped to {dup[0]!r}")
    return columns


def load_split(
    cfg: RunConfig,
    *,
    progress: bool = True,
    rating_scale: bool = False,
    checked: Callable[[Dataset], Dataset] | None = None,
    split_options: Mapping[str, Any] | None = None,
) -> tuple[Dataset | None, SplitResult, dict[str, Any]]:
    """The run's interactions, split: ``(dataset or None for pre-split files, split, notes)``.

    ``cfg.data``: a registered dataset or a path, deduplicated / binarised / k-cored by ``cfg.filters`` and split
    by ``cfg.split``; else the pre-split ``cfg.train``/``valid``/``test`` files. ``cfg.columns`` renames a table
    file's columns (``{"userId": "user_id"}``). Ratings are checked against ``cfg.rating_range`` when declared;
    otherwise, with ``rating_scale`` (a model that predicts ratings), the scale is inferred from the training
    split; ``notes["rating_range"]`` says which (None: neither). ``checked`` is applied to the loaded dataset
    before anything else (a sequential run's sequence checks: ``readers/cdsr.py``'s ``as_sequences``);
    ``split_options`` go to the split function (a sequential run's ``units="position"``)."""
    from attnrec.data import filters
    from attnrec.data.registry import load_dataset

    columns = check_columns(dict(cfg.columns))
    notes: dict[str, Any] = {}
    if cfg.train is not None:
        assert cfg.test is not None
        result = load_presplit(
            cfg.train,
            cfg.valid,
            cfg.test,
            protocol=cfg.split.protocol,
            columns=columns,
            rating_range=cfg.rating_range,
            on_bad_lines=cfg.on_bad_lines,
            infer_rating_range=rating_scale,
        )
        notes["rating_range"] = result.report["rating_range"]
        return None, result, notes
    assert cfg.data is not None
    kw: dict[str, Any] = {"progress": progress}
    if columns:
        p = Path(cfg.data).expanduser()
        name = p.name.lower().removesuffix(".gz")
        if not (p.is_file() and name.endswith(TABLE_SUFFIXES)):
            raise ConfigError(
                f"--columns renames the columns of a CSV/TSV/Parquet file; {cfg.data!r} is not one "
                "(registered datasets and MovieLens folders have known columns)"
            )
        kw["columns"] = {dst: src for src, dst in columns.items()}
    dataset = load_dataset(cfg.data, on_bad_lines=cfg.on_bad_lines, **kw)
    dataset = checked(dataset) if checked is not None else dataset
    df = dataset.interactions
    source = dataset.source or dataset.name
    skipped = None
    if cfg.rating_range is not None:  # before any filter, while rows still match the file's lines
        df, skipped = check_rating_range(
            df, cfg.rating_range, source=source, on_bad_lines=cfg.on_bad_lines, lines=dataset.lines
        )
    f = cfg.filters
    if f.dedup != "none":
        df, notes["dedup"] = filters.deduplicate(df, policy=f.dedup)
    if f.min_rating is not None:
        df, notes["binarize"] = filters.binarize(df, f.min_rating)
    if f.user_k or f.item_k:
        df, notes["kcore"] = filters.kcore(df, f.user_k, f.item_k)
    s = cfg.split
    split_kw: dict[str, Any] = {"protocol": s.protocol}
    if s.method != "leave_last_out":
        split_kw["ratios"] = s.ratios
    if s.method.startswith("random"):
        split_kw["seed"] = s.seed
    split_kw.update(split_options or {})
    result = with_rating_range(
        split(Dataset(dataset.name, df, source=source), s.method, **split_kw),
        cfg.rating_range,
        source=source,
        on_bad_lines=cfg.on_bad_lines,
        infer=rating_scale,
    )
    if skipped is not None and result.report["rating_range"] is not None:
        result.report["rating_range"]["skipped"] = {"input": skipped}
    notes["rating_range"] = result.report["rating_range"]
    return dataset, result, notes


def read_items(path: Path, columns: dict[str, str] | None = None) -> pl.DataFrame:
    """An item metadata table (CSV with a header, or Parquet): ``item_id`` and text fields such as ``title``,
    ``description``, ``genres`` (``a|b``), ``categories``; every value read as text. ``columns`` renames the
    file's columns where it has them (the same mapping as the interactions, e.g. ``movieId=item_id``)."""
    frame = _read_item_table(path)
    reject_reserved_columns(
        frame.columns, path, header_line=None if path.suffix.lower() in (".parquet", ".pq") else 1
    )
    rename = {src: dst for src, dst in (columns or {}).items() if src in frame.columns}
    frame = frame.rename(rename)
    if "item_id" not in frame.columns:
        raise DataError(
            "no item_id column",
            file=path,
            value=frame.columns,
            expected="an item_id column (or --columns mapping the file's id column to item_id)",
        )
    if frame.height == 0:
        raise DataError("no rows", file=path, expected="one row per item")
    checker = RowChecker(path)
    frame = frame.with_row_index("line", offset=2).with_columns(pl.col("line").cast(pl.Int64))
    frame = normalise_ids(frame, ["item_id"], checker)
    repeated = frame.filter(pl.col("item_id").is_duplicated())
    if repeated.height:  # the bundle keeps the first row of an id: say which rows lose, and where
        first = repeated.filter(pl.col("item_id") == repeated["item_id"][0])
        log.warning(
            "%s: %d item id(s) appear on more than one row (e.g. %r on lines %s); the first row of each is used",
            path,
            repeated["item_id"].n_unique(),
            first["item_id"][0],
            ", ".join(str(n) for n in first["line"].head(5).to_list()),
        )
    return _plain_text(frame.drop("line"), path)


def _plain_text(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Every text column but ``item_id`` as plain text (HTML tags stripped, entities decoded, whitespace runs made
    one space; a value left empty is null), as Amazon metadata is read; how many values changed is logged."""
    from attnrec.data.readers.markup import markup_changes, strip_markup

    columns = [c for c, t in frame.schema.items() if c != "item_id" and t == pl.String]
    cleaned = {c: strip_markup(frame[c]) for c in columns}
    changed = sum(markup_changes(frame[c], cleaned[c])[0] for c in columns)
    if changed:
        log.info("%s: %d text value(s) held HTML markup or entities; read as plain text", path, changed)
    return frame.with_columns(cleaned.values()) if cleaned else frame


def _read_item_table(path: Path) -> pl.DataFrame:
    """The raw table, read through the readers' byte layer (size limits, gzip, decoding errors with their line)."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            check_parquet_size(path)
            with open_input(path) as fh:
                return pl.read_parquet(fh)
        sep = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
        text = read_text(path)
        try:
            return pl.read_csv(io.StringIO(text), infer_schema=False, separator=sep)
        except pl.exceptions.PolarsError as exc:
            header = text.split("\n", 1)[0]
            raise delimited_parse_error(exc, text, path, sep, len(header.split(sep))) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(
            f"cannot read: {exc}", file=path, expected="an item metadata CSV or Parquet file"
        ) from None


def check_item_text(
    items: pl.DataFrame | None, train_item_ids: list[str], *, source: str, has_reviews: bool
) -> float:
    """The share of training items that ``items`` gives a text (title, description, genres...), checked before
    anything is fitted for a model that reads item metadata.

    No training item with text and no training reviews to fall back on is a :class:`DataError` naming ``source``,
    the coverage and a sample of unmatched ids (the model would train on empty texts); partial coverage is logged
    as a warning with its share. ``items`` None with reviews is coverage 0 (the model reads the reviews)."""
    from attnrec.text.builders import item_text_from_meta

    n = len(train_item_ids)
    if items is None or n == 0:
        return 0.0
    texts = item_text_from_meta(items, on_empty="keep")
    with_text = set(texts.filter(pl.col("text").str.len_chars() > 0)["item_id"].to_list())
    missing = [i for i in train_item_ids if i not in with_text]
    share = 1.0 - len(missing) / n
    if missing and len(missing) == n and not has_reviews:
        file_ids = items["item_id"].head(5).to_list()
        raise DataError(
            f"no training item has a text: 0 of {n} training items match a row with text "
            f"(unmatched training ids, e.g. {missing[:5]}; the file's ids, e.g. {file_ids}), and the training data "
            "has no 'review' column to fall back on",
            file=source,
            field="item_id",
            expected="item ids that match the interactions' item_id (use --columns to map the file's id column)",
        )
    if missing:
        log.warning(
            "%s: %d of %d training items (%.1f%%) have metadata text; the other %d (e.g. %s) %s",
            source,
            n - len(missing),
            n,
            100 * share,
            len(missing),
            missing[:3],
            "fall back on their training reviews" if has_reviews else "get an empty text",
        )
    return share
