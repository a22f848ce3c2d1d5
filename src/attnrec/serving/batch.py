"""Offline batch scoring: the top-k for every known user, streamed to one Parquet (or CSV) file
(:func:`recommend_all_users`); and a rating model's predictions for a table of (user, item) pairs
(:func:`predict_ratings`, ``attnrec predict`` on a rating bundle).

Users are scored ``batch_size`` at a time through the model's own ``top_k`` (the same scores, exclusions and ties as
``attnrec recommend --users``), and each batch is appended to the output as it is produced, so memory holds one
batch's ``batch_size × n_items`` scores and its rows, never the whole result. The file is written through
:func:`attnrec.paths.atomic_write`: readers see the previous file or the complete new one, never a partial one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from attnrec.errors import ConfigError
from attnrec.evaluation.protocols import Rating
from attnrec.models.base import RatingPredictor, Recommender
from attnrec.models.query import Query
from attnrec.paths import atomic_write, prepare_output_dir
from attnrec.serving.schemas import cold_start_flag

#: users scored per block (memory: this many × n_items float32 scores)
BATCH_USERS = 1024


@dataclass(frozen=True)
class BatchReport:
    """What :func:`recommend_all_users` wrote: users scored, rows written, users that got fewer than k items."""

    path: Path
    users: int
    rows: int
    short_users: int


def _batch_frame(
    model: Recommender[Any],
    users: np.ndarray,
    k: int,
    exclude_seen: bool,
    titles: dict[str, str | None] | None,
) -> tuple[pl.DataFrame, int]:
    """One block's rows, and how many of its users got fewer than ``k`` items (or the catalogue's size)."""
    uv, iv = model._vocabs()
    vals, idx = model.top_k(Query(users=users, exclude="seen" if exclude_seen else "none"), k)
    kk = vals.shape[1]
    keep = np.isfinite(vals).ravel()
    item_ids = iv.ids[idx.ravel()[keep]]
    cols: dict[str, Any] = {
        "user_id": pl.Series(np.repeat(uv.ids[users], kk)[keep].astype(str), dtype=pl.String),
        "rank": pl.Series(np.tile(np.arange(1, kk + 1, dtype=np.int32), len(users))[keep], dtype=pl.Int32),
        "item_id": pl.Series(item_ids.astype(str), dtype=pl.String),
        "score": pl.Series(vals.ravel()[keep], dtype=pl.Float32),
    }
    # a rating model's rating, clipped to the scale, beside its unclipped ranking score
    if isinstance(model, RatingPredictor):
        cols["predicted_rating"] = pl.Series(model.ratings_from_scores(vals.ravel()[keep]), dtype=pl.Float32)
    if titles is not None:
        cols["title"] = pl.Series([titles.get(i) for i in cols["item_id"].to_list()], dtype=pl.String)
    short = int((np.isfinite(vals).sum(axis=1) < min(k, model.n_items)).sum())
    return pl.DataFrame(cols), short


PREDICT_ROWS = Rating.batch_size  # pairs per model.predict call, as evaluate predicts ratings


def predict_ratings(model: Recommender[Any], pairs: pl.DataFrame) -> pl.DataFrame:
    """The predicted rating of every row of ``pairs`` (``user_id``, ``item_id``; other columns ignored), in its order.

    Columns: ``user_id``, ``item_id``, ``predicted_rating`` (Float32, as ``model.predict`` gives it: clipped to the
    rating scale; null where the user or item is unknown), ``cold_start`` (null, or ``unknown_user`` /
    ``unknown_item`` / ``unknown_user_and_item``, as ``POST /predict``) and, for the review models (DeepCoNN,
    TransNet, safmr), ``has_text``: False where the user's or the item's training documents hold no word, so the
    rating came from the documented all-padding fallback (null for unknown pairs)."""
    from attnrec.models.review.base import ReviewRatingModel

    if not isinstance(model, RatingPredictor):
        raise ConfigError(f"model {model.name!r} does not predict ratings: no predicted rating for a pair")
    missing = [c for c in ("user_id", "item_id") if c not in pairs.columns]
    if missing:
        raise ConfigError(f"the pairs need columns user_id and item_id; missing {', '.join(missing)}")
    uv, iv = model._vocabs()
    u = uv.lookup(pairs["user_id"], missing="minus_one").astype(np.int64)
    i = iv.lookup(pairs["item_id"], missing="minus_one").astype(np.int64)
    ok = (u >= 0) & (i >= 0)
    rating = np.full(len(u), np.nan, dtype=np.float32)
    text = np.zeros(len(u), dtype=bool)
    rows = np.flatnonzero(ok)
    # in blocks, as evaluate predicts, so a large file fits in memory
    for s in range(0, len(rows), PREDICT_ROWS):
        r = rows[s : s + PREDICT_ROWS]
        rating[r] = model.predict(u[r], i[r])
        if isinstance(model, ReviewRatingModel):
            text[r] = model.has_text(u[r], i[r])
    # the flag of each (known user, known item) case, as POST /predict gives it, indexed by 2 * known_u + known_i
    flags = np.array([cold_start_flag(ku, ki) for ku in (False, True) for ki in (False, True)], dtype=object)
    out = pl.DataFrame(
        {
            "user_id": pairs["user_id"].cast(pl.String),
            "item_id": pairs["item_id"].cast(pl.String),
            "predicted_rating": pl.Series(rating, dtype=pl.Float32, nan_to_null=True),
            "cold_start": pl.Series(flags[2 * (u >= 0) + (i >= 0)].tolist(), dtype=pl.String),
            "has_text": pl.Series(text).set(pl.Series(~ok), None),
        }
    )
    keep = ["user_id", "item_id", "predicted_rating", "cold_start"]
    return out.select(keep + ["has_text"] if isinstance(model, ReviewRatingModel) else keep)


def recommend_all_users(
    model: Recommender[Any],
    out: str | Path,
    *,
    k: int = 10,
    exclude_seen: bool = True,
    items: pl.DataFrame | None = None,
    batch_size: int = BATCH_USERS,
    on_batch: Callable[[int, int], object] | None = None,
) -> BatchReport:
    """Write the top-``k`` of every known user of ``model`` to ``out`` (Parquet for ``.parquet``, else CSV).

    Columns ``user_id``, ``rank`` (1-based), ``item_id``, ``score`` (float32) and ``title`` when ``items`` (the
    bundle's item metadata: ``item_id``, ``title``) is given; users in vocabulary order, ranks ascending. A user with
    fewer than ``k`` eligible items (small catalogue, seen items excluded) gets fewer rows, counted in the report.
    ``on_batch(done_users, total_users)`` is called after each block (progress).
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out)
    n = model.n_users
    titles = None
    if items is not None and "title" in items.columns:
        titles = dict(zip(items["item_id"].to_list(), items["title"].to_list(), strict=True))
    rows = short = 0

    def blocks() -> Any:
        nonlocal rows, short
        for start in range(0, n, batch_size):
            users = np.arange(start, min(start + batch_size, n), dtype=np.int64)
            frame, few = _batch_frame(model, users, k, exclude_seen, titles)
            rows, short = rows + frame.height, short + few
            if on_batch is not None:
                on_batch(int(users[-1]) + 1, n)
            yield frame

    def write_parquet(tmp: Path) -> None:
        import pyarrow.parquet as pq

        writer: Any = None
        try:
            for frame in blocks():
                table = frame.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            if writer is None:  # no user at all: an empty file with the columns
                _batch_frame(model, np.zeros(0, np.int64), k, exclude_seen, titles)[0].write_parquet(tmp)
        finally:
            if writer is not None:
                writer.close()

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            header = True
            for frame in blocks():
                frame.write_csv(f, include_header=header)
                header = False
            if header:
                _batch_frame(model, np.zeros(0, np.int64), k, exclude_seen, titles)[0].write_csv(f)

    prepare_output_dir(out.parent)
    atomic_write(
        out, write_parquet if out.suffix.lower() == ".parquet" else write_csv, what="recommendations"
    )
    return BatchReport(out, n, rows, short)
