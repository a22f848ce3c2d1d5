"""Filters on the raw interaction table (external ids): k-core, deduplication, binarisation.

Each takes a Polars DataFrame with ``user_id``/``item_id`` (and ``rating``/``timestamp`` where needed) and
returns ``(filtered frame, FilterReport)``; the report says how many rows went, so nothing is dropped
silently. All work is Polars group-bys and joins over whole columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from attnrec.errors import ConfigError, DataError

DedupPolicy = Literal["last", "first", "mean"]


@dataclass
class FilterReport:
    """What a filter did: rows in and out, and filter-specific details (rounds of k-core, policy, ...)."""

    name: str
    rows_before: int
    rows_after: int
    details: dict[str, object] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return self.rows_before - self.rows_after

    def as_dict(self) -> dict[str, object]:
        return {
            "filter": self.name,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "removed": self.removed,
            **self.details,
        }


def _need(df: pl.DataFrame, cols: tuple[str, ...], what: str) -> None:
    for col in cols:
        if col not in df.columns:
            raise DataError(f"missing column for {what}", field=col, expected=f"columns {list(cols)}")


def kcore(
    df: pl.DataFrame, user_k: int, item_k: int, *, max_rounds: int = 10_000, allow_empty: bool = False
) -> tuple[pl.DataFrame, FilterReport]:
    """Keep the largest sub-table where every user has >= ``user_k`` rows and every item >= ``item_k`` rows.

    Rows are counted (a repeated user-item pair counts twice; deduplicate first if that is not wanted).
    Removing users can push items under their threshold and back, so the pass is repeated until nothing
    changes (a fixed point, which is unique). Row order is kept. The report holds ``rounds`` and users/items
    before and after. Thresholds that leave no row at all are a :class:`DataError` naming them and the counts
    (an empty table would fail later with a less useful message), unless ``allow_empty``.
    """
    _need(df, ("user_id", "item_id"), "k-core")
    if user_k < 0 or item_k < 0:
        raise ConfigError(f"k-core thresholds must be >= 0, got user_k={user_k}, item_k={item_k}")
    before = df.height
    users_before, items_before = df["user_id"].n_unique(), df["item_id"].n_unique()
    out = df
    rounds = 0
    while rounds < max_rounds:
        keep = (pl.len().over("user_id") >= user_k) & (pl.len().over("item_id") >= item_k)
        nxt = out.filter(keep)
        rounds += 1
        if nxt.height == out.height:
            break
        out = nxt
    if out.height == 0 and before > 0 and not allow_empty:
        raise DataError(
            f"the k-core filter (user_k={user_k}, item_k={item_k}) removes every one of the {before} rows "
            f"({users_before} users, {items_before} items) after {rounds} round(s)",
            field="user_k/item_k",
            value={"user_k": user_k, "item_k": item_k},
            expected="thresholds the data can meet (lower --user-k / --item-k)",
        )
    report = FilterReport(
        "kcore",
        before,
        out.height,
        {
            "user_k": user_k,
            "item_k": item_k,
            "rounds": rounds,
            "users_before": users_before,
            "users_after": out["user_id"].n_unique(),
            "items_before": items_before,
            "items_after": out["item_id"].n_unique(),
        },
    )
    return out, report


def kcore_lazy(
    table: pl.LazyFrame, user_k: int, item_k: int, *, max_rounds: int = 10_000
) -> tuple[pl.DataFrame, pl.DataFrame, FilterReport]:
    """:func:`kcore` of a table too large for memory (``pl.scan_parquet(...)``), out of core: each round is one
    streaming scan of ``user_id``/``item_id`` with two lazy group-bys, restricted by semi-joins to the ids kept so
    far; only the kept ids and their row counts are ever in memory. Same fixed point and report as :func:`kcore`.

    Returns ``(users, items, report)``: frames ``user_id, count`` and ``item_id, count`` of the ids kept, with their
    rows in the k-core (semi-join the table on both to get its rows). ``user_k = item_k = 0`` gives one round: the
    counts of every id."""
    if user_k < 0 or item_k < 0:
        raise ConfigError(f"k-core thresholds must be >= 0, got user_k={user_k}, item_k={item_k}")
    pairs = table.select("user_id", "item_id")
    kept: tuple[pl.DataFrame, pl.DataFrame] | None = None
    first: tuple[int, int, int] | None = None
    rounds = 0
    while rounds < max_rounds:
        rows = pairs
        if kept is not None:
            rows = rows.join(kept[0].lazy().select("user_id"), on="user_id", how="semi")
            rows = rows.join(kept[1].lazy().select("item_id"), on="item_id", how="semi")
        users, items = pl.collect_all(
            [rows.group_by(key).agg(pl.len().alias("count")) for key in ("user_id", "item_id")],
            engine="streaming",
        )
        rounds += 1
        if first is None:
            first = (int(users["count"].sum()), users.height, items.height)
        ok_users, ok_items = users.filter(pl.col("count") >= user_k), items.filter(pl.col("count") >= item_k)
        kept = (users, items)
        if ok_users.height == users.height and ok_items.height == items.height:
            break
        kept = (ok_users, ok_items)
    assert kept is not None and first is not None
    users, items = kept
    before, users_before, items_before = first
    after = int(users["count"].sum()) if users.height else 0
    if after == 0 and before > 0:
        raise DataError(
            f"the k-core filter (user_k={user_k}, item_k={item_k}) removes every one of the {before} rows "
            f"({users_before} users, {items_before} items) after {rounds} round(s)",
            field="user_k/item_k",
            value={"user_k": user_k, "item_k": item_k},
            expected="thresholds the data can meet (lower --user-k / --item-k)",
        )
    details: dict[str, object] = {
        "user_k": user_k,
        "item_k": item_k,
        "rounds": rounds,
        "users_before": users_before,
        "users_after": users.height,
        "items_before": items_before,
        "items_after": items.height,
    }
    return users, items, FilterReport("kcore", before, after, details)


def deduplicate(df: pl.DataFrame, policy: DedupPolicy = "last") -> tuple[pl.DataFrame, FilterReport]:
    """One row per (user_id, item_id).

    ``"last"``/``"first"``: keep the latest/earliest row by ``timestamp`` when the table has one (ties broken
    by row order), else by row order. ``"mean"``: keep the ``"last"`` row with ``rating`` replaced by the
    pair's mean. The kept rows stay in their original order.
    """
    _need(df, ("user_id", "item_id"), "deduplication")
    if policy not in ("last", "first", "mean"):
        raise ConfigError(f"deduplicate policy must be 'last', 'first' or 'mean', not {policy!r}")
    if policy == "mean":
        _need(df, ("rating",), "deduplicate(policy='mean')")
    keys = ["user_id", "item_id"]
    indexed = df.with_row_index("_row")
    order = ["timestamp", "_row"] if "timestamp" in df.columns else ["_row"]
    ranked = indexed.sort(order, nulls_last=False)
    kept = ranked.unique(subset=keys, keep="first" if policy == "first" else "last")
    if policy == "mean":
        means = indexed.group_by(keys).agg(pl.col("rating").mean().alias("_mean"))
        kept = (
            kept.join(means, on=keys, how="left")
            .with_columns(pl.col("_mean").cast(df.schema["rating"]).alias("rating"))
            .drop("_mean")
        )
    out = kept.sort("_row").drop("_row").select(df.columns)
    return out, FilterReport("deduplicate", df.height, out.height, {"policy": policy})


def binarize(df: pl.DataFrame, threshold: float) -> tuple[pl.DataFrame, FilterReport]:
    """Implicit feedback: keep the rows with ``rating >= threshold`` (rating column kept as it is); a threshold
    above every rating is a :class:`DataError`."""
    _need(df, ("rating",), "binarize")
    out = df.filter(pl.col("rating") >= threshold)
    if out.height == 0 and df.height > 0:
        raise DataError(
            f"no rating reaches the threshold {threshold:g}: binarising removes all {df.height} rows "
            f"(the highest rating is {df['rating'].max()!r})",
            field="rating",
            value=threshold,
            expected="a threshold at or below the highest rating (min_rating)",
        )
    return out, FilterReport("binarize", df.height, out.height, {"threshold": threshold})
