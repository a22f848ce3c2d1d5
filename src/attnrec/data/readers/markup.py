"""Plain text out of scraped metadata: HTML tags stripped, entities unescaped, whitespace collapsed.

Amazon's metadata dumps (2018 above all) were scraped from product pages, and their string fields carry page
markup: titles that are only the opening of a tag (``<span class="a-size-medium a-color-secondary"``), features
wrapped in ``<span>``, descriptions in ``<div class="aplus">`` with links and images, a category
``</span></span></span>``, a main category that is an ``<img>`` tag, and entities everywhere (``Maggiano&#39;s``,
``&gt;&gt;&gt;``, ``&amp;``). :func:`strip_markup` turns such a column into the text a reader of the page saw.

Tags are removed by regular expressions run by Polars (Rust's regex engine: linear time, no backtracking, so no
input can make it slow); only ``<`` followed by a letter, ``/``, ``!`` or ``?`` opens a tag, so text such as
``size < 5`` or ``<3`` is kept. An opening tag cut off at the end of a value (no ``>``) is removed too. Entities
are decoded by the standard library's :func:`html.unescape`, applied once per distinct value that contains ``&``;
a value whose decoding reveals more markup (``&lt;br&gt;``, ``&amp;amp;``) goes round again (at most
:data:`MAX_ROUNDS` times). A value left empty becomes null (missing), so callers can count and fall back.
"""

from __future__ import annotations

import html

import polars as pl

#: decode / strip rounds for doubly escaped values (``&amp;lt;b&amp;gt;``); real data needs at most two
MAX_ROUNDS = 3

# script / style bodies are code, not text; comments may be unterminated at the end of a cut-off value
_CODE = r"(?is)<(?:script|style)\b.*?(?:</(?:script|style)\s*>|$)"
_COMMENT = r"(?s)<!--.*?(?:-->|$)"
_TAG = r"</?[A-Za-z][^<>]*>|<[!?][^<>]*>"
_OPEN_AT_END = r"</?[A-Za-z][^<>]*$"
_IMG_ALT = r"(?i)<img\b[^<>]*?\balt\s*=\s*\"([^\"<>]*)\"[^<>]*>"
_ENTITY = r"&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);?"


def _strip_tags(expr: pl.Expr, *, keep_alt: bool) -> pl.Expr:
    expr = expr.str.replace_all(_CODE, " ").str.replace_all(_COMMENT, " ")
    if keep_alt:  # an image's alternative text is what the page says in its place
        expr = expr.str.replace_all(_IMG_ALT, " ${1} ")
    return (
        expr.str.replace_all(_TAG, " ")
        .str.replace_all(_OPEN_AT_END, "")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def strip_markup(values: pl.Series, *, keep_alt: bool = False) -> pl.Series:
    """``values`` (String) as plain text: tags removed, entities decoded, runs of whitespace (newlines and
    non-breaking spaces included) made one space, stripped; a value with no text left (markup only, blank) is
    null. ``keep_alt`` puts an ``<img>``'s ``alt`` text in its place (a main category given as an image). Nulls
    stay null; the length and order are kept."""
    out = pl.select(_strip_tags(pl.lit(values), keep_alt=keep_alt)).to_series()
    for _ in range(MAX_ROUNDS):
        escaped = out.str.contains(_ENTITY).fill_null(False)
        if not escaped.any():
            break
        distinct = out.filter(escaped).unique()
        decoded = pl.Series([html.unescape(v) for v in distinct.to_list()], dtype=pl.String)
        if (decoded == distinct).all():  # "AT&T": looks like an entity, is none
            break
        table = pl.DataFrame({"_raw": distinct, "_dec": decoded})
        frame = pl.DataFrame({"_raw": out}).join(table, on="_raw", how="left", maintain_order="left")
        out = frame.select(pl.coalesce("_dec", "_raw")).to_series()
        out = pl.select(_strip_tags(pl.lit(out), keep_alt=keep_alt)).to_series()
    return out.replace("", None).alias(values.name)


def strip_markup_list(values: pl.Series) -> pl.Series:
    """:func:`strip_markup` on every element of a ``List[String]`` column: elements left empty are dropped,
    repeats made by the cleaning dropped (first kept); a null list stays null, a list whose elements were all
    markup becomes empty."""
    frame = pl.DataFrame({"v": values}).with_row_index("_i")
    flat = frame.explode("v")
    cleaned = flat.with_columns(strip_markup(flat["v"]).alias("v"))
    regrouped = cleaned.group_by("_i", maintain_order=True).agg(
        pl.col("v").drop_nulls().unique(maintain_order=True)
    )
    joined = frame.select("_i", pl.col("v").is_null().alias("_null")).join(
        regrouped, on="_i", how="left", maintain_order="left"
    )
    # an empty list has no exploded row: it comes back as no group
    empty = pl.lit([], dtype=pl.List(pl.String))
    out = joined.select(pl.when(~pl.col("_null")).then(pl.col("v").fill_null(empty))).to_series()
    return out.cast(pl.List(pl.String)).alias(values.name)


def markup_changes(before: pl.Series, after: pl.Series) -> tuple[int, int]:
    """``(cleaned, emptied)`` for a String column and its :func:`strip_markup`: how many values held markup or
    entities, and how many were left missing (markup only)."""
    present = before.is_not_null()
    marked = before.str.contains(f"{_TAG}|{_OPEN_AT_END}|{_ENTITY}|<!--").fill_null(False)
    emptied = present & after.is_null() & (before.str.strip_chars() != "")
    return int((present & marked).sum()), int(emptied.sum())
