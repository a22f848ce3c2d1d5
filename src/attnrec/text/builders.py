"""Build one text per item or user from metadata or reviews, as Polars frames ready for :class:`SentenceEncoder`.

Every builder returns a frame ``(key, text)`` with one row per key, computed with Polars expressions (group_by +
``str.join``), never a Python loop over rows. Texts are stripped; a key with nothing to say gets ``""`` and is
*reported* (logged at WARNING with the count and the first ids), or dropped / raised on with ``on_empty``.
Decoding bytes (non-UTF-8 files) is the readers' job: these functions receive ``pl.String`` columns.

Use :func:`texts_for_vocab` to line the texts up with a vocabulary (row ``i`` = index ``i``) before encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal

import polars as pl

from attnrec.data.vocab import Vocabulary
from attnrec.errors import DataError

log = logging.getLogger(__name__)

OnEmpty = Literal["keep", "drop", "error"]

#: metadata fields used by :func:`item_text_from_meta` by default, in this order
DEFAULT_META_FIELDS = ("title", "description", "categories", "brand")
#: prefixes that make a field readable inside the sentence; fields not listed are used bare
DEFAULT_LABELS: Mapping[str, str] = {"categories": "Categories", "brand": "Brand", "genres": "Genres"}


def item_text_from_meta(
    items_df: pl.DataFrame,
    fields: Sequence[str] | None = None,
    *,
    key: str = "item_id",
    labels: Mapping[str, str] | None = None,
    sep: str = ". ",
    max_chars: int | None = None,
    on_empty: OnEmpty = "keep",
    report: bool = True,
) -> pl.DataFrame:
    """One text per item from metadata columns: ``"title. description. Categories: a, b. Brand: x"``.

    ``fields`` defaults to :data:`DEFAULT_META_FIELDS`, of which the columns the frame lacks are skipped (so
    the same call works on Amazon 2014/2018/2023 metadata); fields named explicitly must exist. String
    columns are stripped, list columns (e.g. ``categories`` as ``List[str]``, nested lists too) are joined
    with ``", "``, other types are cast to text; null or empty parts are left out. ``labels`` maps a field to
    the prefix written before it (default :data:`DEFAULT_LABELS`). Duplicate keys keep their first row (the
    count is logged). ``max_chars`` cuts each text to that many characters. ``report=False`` leaves the log line
    about empty texts to the caller (which knows what it falls back to; the duplicate-key line stays).

    Returns ``(key, text)``, one row per distinct key, in first-appearance order.
    """
    _need(items_df, [key], "items table")
    if fields is None:
        fields = [f for f in DEFAULT_META_FIELDS if f in items_df.columns]
        if not fields:
            raise DataError(
                "no text fields in the items table",
                field="fields",
                value=items_df.columns,
                expected=f"at least one of {list(DEFAULT_META_FIELDS)}",
            )
    else:
        _need(items_df, list(fields), "items table")
    labels = DEFAULT_LABELS if labels is None else labels
    parts = []
    for name in fields:
        part = _nonempty(_as_text(pl.col(name), items_df.schema[name]).str.strip_chars_end(" ."))
        label = labels.get(name)
        parts.append(pl.concat_str(pl.lit(f"{label}: "), part) if label else part)
    text = pl.concat_str(parts, separator=sep, ignore_nulls=True).fill_null("")
    out = items_df.select(pl.col(key), text.alias("text"))
    dups = out.height - out[key].n_unique()
    if dups:
        log.warning("item_text_from_meta: %d duplicate %s rows; the first row of each is used", dups, key)
        out = out.unique(subset=key, keep="first", maintain_order=True)
    return _finish(out, key, max_chars, on_empty, "item_text_from_meta", report)


def item_text_from_reviews(
    train_df: pl.DataFrame,
    *,
    key: str = "item_id",
    review_col: str = "review",
    max_chars: int = 2000,
    order_by: str | None = "timestamp",
    sep: str = "\n",
    on_empty: OnEmpty = "keep",
    report: bool = True,
) -> pl.DataFrame:
    """One text per item: its reviews from the TRAINING split, oldest first, joined and cut at ``max_chars``.

    Pass the training split only. A review is written by the user *about an interaction*; validation and test
    reviews describe exactly the interactions the model will be asked to predict (and their text often states
    the rating: "five stars, love it"), so letting them into item or user text leaks the answer and inflates
    every metric. Items seen only in validation/test get no row here: give them metadata text, or ``""``
    via :func:`texts_for_vocab`.

    ``key`` is ``"item_id"`` for a raw table or ``"item"`` for an encoded ``Interactions.frame``. Reviews are
    ordered by ``order_by`` (stable; file order when that column is absent or None). Whole reviews past
    ``max_chars`` are skipped before joining, so popular items cost no more than ``max_chars`` each; the joined
    text is then cut to exactly ``max_chars`` characters (the encoder truncates tokens later anyway).
    ``report=False``: no log line about empty texts (the caller reports what it does with them).

    Returns ``(key, text)``, one row per key present in ``train_df``.
    """
    return _reviews_text(
        train_df, key, review_col, max_chars, order_by, sep, on_empty, "item_text_from_reviews", report
    )


def user_text_from_reviews(
    train_df: pl.DataFrame,
    *,
    key: str = "user_id",
    review_col: str = "review",
    max_chars: int = 2000,
    order_by: str | None = "timestamp",
    sep: str = "\n",
    on_empty: OnEmpty = "keep",
) -> pl.DataFrame:
    """One text per user: the reviews they wrote in the TRAINING split (see :func:`item_text_from_reviews`
    for why only training reviews, and for the parameters). ``key`` is ``"user_id"`` or ``"user"``."""
    return _reviews_text(
        train_df, key, review_col, max_chars, order_by, sep, on_empty, "user_text_from_reviews"
    )


def movielens_item_text(
    items_df: pl.DataFrame, *, key: str = "item_id", on_empty: OnEmpty = "keep", report: bool = True
) -> pl.DataFrame:
    """``"Title (year). Genres: a, b"`` per movie from a MovieLens items table (``title``, ``year``, ``genres``).

    ``year`` may be missing or null (``"Title. Genres: ..."``); ``genres`` may be ``List[str]`` (as the readers
    give it) or a ``"a|b"`` string; no genres gives just ``"Title (year)"``. ``report``: as in
    :func:`item_text_from_meta`.
    """
    _need(items_df, [key, "title"], "MovieLens items table")
    title = pl.col("title").cast(pl.String).str.strip_chars()
    if "year" in items_df.columns:
        year = pl.col("year").cast(pl.String)
        title = (
            pl.when(year.is_not_null())
            .then(pl.concat_str(title, pl.lit(" ("), year, pl.lit(")")))
            .otherwise(title)
        )
    parts = [_nonempty(title)]
    if "genres" in items_df.columns:
        dtype = items_df.schema["genres"]
        genres = pl.col("genres")
        if dtype == pl.String:
            genres = genres.str.split("|")
            dtype = pl.List(pl.String)
        joined = _nonempty(_as_text(genres, dtype))
        parts.append(pl.concat_str(pl.lit("Genres: "), joined))
    text = pl.concat_str(parts, separator=". ", ignore_nulls=True).fill_null("")
    return _finish(
        items_df.select(pl.col(key), text.alias("text")), key, None, on_empty, "movielens_item_text", report
    )


def texts_for_vocab(
    texts: pl.DataFrame, vocab: Vocabulary, *, key: str = "item_id", fill: str = "", report: bool = True
) -> pl.Series:
    """Texts aligned with a vocabulary: element ``i`` is the text of ``vocab.ids[i]`` (``fill`` when absent).

    Ids absent from ``texts`` are counted in a log line (``report=False``: not here, for a caller that fills
    them from another source and reports the outcome itself); ids in ``texts`` unknown to the vocabulary are
    ignored (e.g. metadata of items filtered out by a k-core). Encode the result with
    ``encoder.encode(series, allow_empty=True)`` to get an ``(len(vocab), dim)`` matrix.
    """
    _need(texts, [key, "text"], "text table")
    ids = pl.DataFrame({key: pl.Series(vocab.ids, dtype=pl.String)})
    joined = ids.join(
        texts.select(pl.col(key).cast(pl.String), "text").unique(
            subset=key, keep="first", maintain_order=True
        ),
        on=key,
        how="left",
        maintain_order="left",
    )
    missing = joined["text"].null_count()
    if missing and report:
        log.warning(
            "texts_for_vocab: %d of %d %s ids have no text; using %r", missing, len(vocab), vocab.kind, fill
        )
    return joined["text"].fill_null(fill)


# -- helpers ------------------------------------------------------------------------------------------------


def _need(df: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    for col in columns:
        if col not in df.columns:
            raise DataError(
                f"missing column in the {what}", field=col, expected=f"columns {df.columns} to include it"
            )


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Render a column of any type as text; lists (nested too) become ``"a, b"`` with nulls and blanks left out."""
    if isinstance(dtype, pl.List | pl.Array):
        inner = _nonempty(_as_text(pl.element(), dtype.inner))  # type: ignore[arg-type]
        return expr.list.eval(inner.drop_nulls()).list.join(", ")
    if dtype == pl.String:
        return expr.str.strip_chars()
    return expr.cast(pl.String)


def _nonempty(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.len_bytes() > 0).then(expr)


def _reviews_text(
    df: pl.DataFrame,
    key: str,
    review_col: str,
    max_chars: int,
    order_by: str | None,
    sep: str,
    on_empty: OnEmpty,
    who: str,
    report: bool = True,
) -> pl.DataFrame:
    _need(df, [key, review_col], "training table")
    if max_chars < 1:
        raise DataError("max_chars must be positive", field="max_chars", value=max_chars, expected=">= 1")
    d = df.select(
        pl.col(key),
        pl.col(review_col).cast(pl.String).str.strip_chars().alias("_r"),
        *([pl.col(order_by)] if order_by is not None and order_by in df.columns else []),
    )
    keys = d.select(key).unique(maintain_order=True)
    if order_by is not None and order_by in df.columns:
        d = d.sort(order_by, maintain_order=True, nulls_last=True)
    d = d.filter(pl.col("_r").str.len_bytes() > 0)
    # where each review would start in the joined text; reviews starting past max_chars are not needed
    step = pl.col("_r").str.len_chars() + len(sep)
    d = d.filter((step.cum_sum().over(key) - step) < max_chars)
    joined = d.group_by(key, maintain_order=True).agg(
        pl.col("_r").str.join(sep).str.slice(0, max_chars).alias("text")
    )
    out = keys.join(joined, on=key, how="left", maintain_order="left").with_columns(
        pl.col("text").fill_null("")
    )
    return _finish(out, key, None, on_empty, who, report)


def _finish(
    out: pl.DataFrame, key: str, max_chars: int | None, on_empty: OnEmpty, who: str, report: bool = True
) -> pl.DataFrame:
    if on_empty not in ("keep", "drop", "error"):
        raise DataError(
            "bad on_empty", field="on_empty", value=on_empty, expected="'keep', 'drop' or 'error'"
        )
    if max_chars is not None:
        out = out.with_columns(pl.col("text").str.slice(0, max_chars))
    empty = out["text"].str.len_bytes() == 0
    n_empty = int(empty.sum())
    if n_empty:
        first = out.filter(empty)[key].head(5).to_list()
        if on_empty == "error":
            raise DataError(
                f"{who}: {n_empty} of {out.height} have no text",
                field=key,
                value=first[0],
                expected="some text",
            )
        action = "dropped" if on_empty == "drop" else "kept with text ''"
        if report or on_empty == "drop":
            log.warning("%s: %d of %d %s have no text (%s), %s", who, n_empty, out.height, key, first, action)
        if on_empty == "drop":
            out = out.filter(~empty)
    return out
