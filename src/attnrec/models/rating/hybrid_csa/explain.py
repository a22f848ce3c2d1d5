"""hybrid_csa's explanations: attention shares per prediction, and shares and RMSE by the user's history."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from attnrec.data.table import Interactions
from attnrec.errors import DataError
from attnrec.models.capabilities import Explainer, ExplainKind
from attnrec.models.rating.hybrid_csa.core import HybridCSACore

#: user-history buckets of :meth:`HybridCSA.attention_report`: (label, lowest, highest) training ratings
HISTORY_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("<=5", 0, 5),
    ("6-20", 6, 20),
    ("21-50", 21, 50),
    (">50", 51, math.inf),
)


class Explanations(HybridCSACore, Explainer):
    """explain / attention_report for :class:`~attnrec.models.rating.hybrid_csa.HybridCSA`."""

    @property
    def explain_kind(self) -> ExplainKind:
        """``"tokens"``: :meth:`explain` gives the shares of the user, item and text tokens."""
        return "tokens"

    def explain(
        self,
        user_ids: Sequence[object],
        item_ids: Sequence[object],
        *,
        texts: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Attention shares per prediction: ``user_id, item_id, predicted_rating, share_user, share_item,
        share_text`` (+ ``share_user_text``). ``texts`` (one per pair) replaces the items' own text as the text
        token (required in leaky mode). share_t = mean over heads and query tokens of the attention paid to t."""
        uv, iv = self._vocabs()
        users, items = uv.lookup(list(user_ids)), iv.lookup(list(item_ids))
        if len(users) != len(items):
            raise DataError(
                "user_ids and item_ids differ in length",
                field="item_ids",
                value=len(items),
                expected=f"{len(users)} ids",
            )
        text = None
        if texts is not None:
            text = torch.from_numpy(self._encode(list(texts), allow_empty=False))
        elif self.leaky:
            self._no_leaky("explain without texts")
        pred, att = self._forward_rows(users, items, text, weights=True)
        df = pl.DataFrame(
            {
                "user_id": pl.Series(uv.ids[users], dtype=pl.String),
                "item_id": pl.Series(iv.ids[items], dtype=pl.String),
                "predicted_rating": pred,
                **self._share_columns(att, len(pred)),
            }
        )
        return self._flag(df)

    def attention_report(self, data: Interactions, train: Interactions) -> pl.DataFrame:
        """Mean attention shares and RMSE of ``data``'s rows grouped by the user's number of TRAINING ratings
        (buckets <=5, 6-20, 21-50, >50). Columns ``bucket, n, share_*, rmse``; one row per non-empty bucket."""
        if len(data.user_vocab) != self.n_users or len(train.user_vocab) != self.n_users:
            raise DataError(
                "attention_report needs splits encoded with this model's user vocabulary",
                field="data",
                value=len(data.user_vocab),
                expected=f"{self.n_users} users",
            )
        text = torch.from_numpy(self._row_reviews(data)) if self.leaky else None
        pred, att = self._forward_rows(data.users, data.items, text, weights=True)
        history = np.bincount(train.users, minlength=self.n_users)[data.users]
        edges = np.array([hi for _, _, hi in HISTORY_BUCKETS[:-1]])
        bucket = np.searchsorted(edges, history, side="left")
        labels = [b[0] for b in HISTORY_BUCKETS]
        frame = pl.DataFrame(
            {
                "_b": bucket.astype(np.int32),
                "_se": (pred.astype(np.float64) - data.ratings) ** 2,
                **self._share_columns(att, len(pred)),
            }
        )
        share_cols = [c for c in frame.columns if c.startswith("share_")]
        out = (
            frame.group_by("_b")
            .agg(
                pl.len().alias("n"),
                *[pl.col(c).mean() for c in share_cols],
                pl.col("_se").mean().sqrt().alias("rmse"),
            )
            .sort("_b")
            .with_columns(
                pl.col("_b").replace_strict(dict(enumerate(labels)), return_dtype=pl.String).alias("bucket")
            )
            .select("bucket", "n", *share_cols, "rmse")
        )
        return self._flag(out)
