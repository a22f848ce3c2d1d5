"""The canonical interaction table, datasets, and index-encoded interactions.

Three layers, each a thin wrapper over a Polars DataFrame (columnar, never lists of dicts):

* :class:`Dataset` — what a reader returns: the raw interaction table with *external* ids (strings) in the
  canonical columns, plus optional user/item metadata tables keyed by the same external ids.
* :class:`Vocabulary` (``vocab.py``) — external id <-> contiguous index.
* :class:`Interactions` — a split encoded with vocabularies: ``user``/``item`` are int64 indices, other canonical
  columns ride along (rating, timestamp, domain, review), so later blocks (review models, CTR fields, domains)
  find their columns without a new container.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from attnrec.data.vocab import Vocabulary
from attnrec.errors import DataError

#: canonical columns of the raw table and their Polars types; only user_id and item_id are required.
CANONICAL: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "rating": pl.Float32(),
    "timestamp": pl.Int64(),
    "domain": pl.String(),
    "review": pl.String(),
}
REQUIRED = ("user_id", "item_id")


def canonicalize(df: pl.DataFrame, *, source: str = "<table>") -> pl.DataFrame:
    """Check and cast a raw table to the canonical schema (extra columns are kept as they are).

    Raises :class:`DataError` naming ``source`` and the column when a required column is missing, an id is null,
    or a rating is not a finite number.
    """
    for col in REQUIRED:
        if col not in df.columns:
            raise DataError("missing column", file=source, field=col, expected=f"columns {list(REQUIRED)}")
    casts = []
    for col, dtype in CANONICAL.items():
        if col in df.columns and df.schema[col] != dtype:
            casts.append(pl.col(col).cast(dtype, strict=False).alias(col))
    out = df.with_columns(casts) if casts else df
    for col in REQUIRED:
        nulls = out[col].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            raise DataError("empty id", file=source, line=row + 1, field=col, expected="a non-empty id")
    for col in ("rating", "timestamp"):
        if col in out.columns:
            bad = out[col].is_null() & df[col].is_not_null()
            if col == "rating":
                bad = bad | ~out[col].is_finite().fill_null(True)
            if bad.any():
                row = int(bad.arg_true()[0])
                raise DataError(
                    "not a number",
                    file=source,
                    line=row + 1,
                    field=col,
                    value=df[col][row],
                    expected="a finite number",
                )
    return out


@dataclass
class Dataset:
    """A loaded dataset: canonical interactions with external ids plus optional metadata tables.

    ``items``/``users`` are metadata keyed by ``item_id``/``user_id`` (e.g. ``title``, ``genres``, ``age``).
    """

    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    source: str = ""
    notes: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.interactions = canonicalize(self.interactions, source=self.source or self.name)

    def __len__(self) -> int:
        return self.interactions.height

    @property
    def has_ratings(self) -> bool:
        return "rating" in self.interactions.columns

    def info(self) -> dict[str, object]:
        """Counts and density, for ``attnrec data info``."""
        df = self.interactions
        n_u, n_i = df["user_id"].n_unique(), df["item_id"].n_unique()
        out: dict[str, object] = {
            "name": self.name,
            "interactions": df.height,
            "users": n_u,
            "items": n_i,
            "density": df.height / max(1, n_u * n_i),
            "columns": df.columns,
        }
        if self.has_ratings:
            out["rating_mean"] = float(df["rating"].mean())  # type: ignore[arg-type]
            out["rating_values"] = sorted(df["rating"].unique().drop_nulls().to_list())[:20]
        if "timestamp" in df.columns:
            out["time_range"] = [df["timestamp"].min(), df["timestamp"].max()]
        return out

    def fingerprint(self) -> str:
        """SHA-256 over the interaction columns (stable across runs), recorded in every results record."""
        return frame_fingerprint(self.interactions)


def frame_fingerprint(df: pl.DataFrame) -> str:
    h = hashlib.sha256()
    for col in sorted(c for c in df.columns if c in CANONICAL):
        h.update(col.encode())
        h.update(df[col].hash(seed=0).to_numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Interactions:
    """Interactions encoded with vocabularies.

    ``frame`` has int64 columns ``user`` and ``item`` (indices into ``user_vocab``/``item_vocab``) and whichever
    canonical columns the source had. ``n_users``/``n_items`` are the vocabulary sizes (the model's dimensions).
    """

    frame: pl.DataFrame
    user_vocab: Vocabulary
    item_vocab: Vocabulary

    @classmethod
    def encode(
        cls, df: pl.DataFrame, user_vocab: Vocabulary, item_vocab: Vocabulary, *, unknown: str = "error"
    ) -> tuple[Interactions, int]:
        """Encode a table with external ids. ``unknown="drop"`` drops rows with unknown ids and returns the count."""
        u = user_vocab.lookup(df["user_id"], missing="minus_one")
        i = item_vocab.lookup(df["item_id"], missing="minus_one")
        keep = (u >= 0) & (i >= 0)
        dropped = int((~keep).sum())
        if dropped and unknown == "error":
            user_vocab.lookup(df["user_id"])  # raises with the unknown user ids
            item_vocab.lookup(df["item_id"])
        rest = [c for c in df.columns if c not in ("user_id", "item_id")]
        frame = pl.DataFrame({"user": u, "item": i}).hstack(df.select(rest)).filter(pl.Series(keep))
        return cls(frame, user_vocab, item_vocab), dropped

    def __len__(self) -> int:
        return self.frame.height

    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    @property
    def users(self) -> np.ndarray:
        return self.frame["user"].to_numpy()

    @property
    def items(self) -> np.ndarray:
        return self.frame["item"].to_numpy()

    @property
    def ratings(self) -> np.ndarray:
        if "rating" not in self.frame.columns:
            raise DataError(
                "this data has no ratings", field="rating", expected="a rating column for a rating task"
            )
        return self.frame["rating"].to_numpy().astype(np.float32)

    @property
    def has_ratings(self) -> bool:
        return "rating" in self.frame.columns

    def column(self, name: str) -> np.ndarray:
        if name not in self.frame.columns:
            raise DataError("missing column", field=name, expected=f"one of {self.frame.columns}")
        return self.frame[name].to_numpy()

    def csr(self, *, values: str | None = None) -> sp.csr_matrix:
        """users x items sparse matrix (ones, or a column's values); duplicates are summed."""
        data = (
            np.ones(len(self), dtype=np.float32) if values is None else self.column(values).astype(np.float32)
        )
        m = sp.csr_matrix((data, (self.users, self.items)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        return m

    def with_frame(self, frame: pl.DataFrame) -> Interactions:
        """The same vocabularies over another encoded frame (e.g. with a column dropped)."""
        return Interactions(frame, self.user_vocab, self.item_vocab)

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) over every column of the encoded frame and the vocabulary sizes."""
        h = hashlib.sha256(f"{self.n_users}x{self.n_items}".encode())
        for col in sorted(self.frame.columns):
            h.update(col.encode())
            h.update(self.frame[col].hash(seed=0).to_numpy().tobytes())
        return h.hexdigest()[:16]

    def decode(self) -> pl.DataFrame:
        """Back to external ids: ``user_id``, ``item_id`` and the other columns."""
        rest = [c for c in self.frame.columns if c not in ("user", "item")]
        ids = pl.DataFrame(
            {
                "user_id": self.user_vocab.ids[self.users] if len(self) else np.array([], dtype=str),
                "item_id": self.item_vocab.ids[self.items] if len(self) else np.array([], dtype=str),
            },
            schema={"user_id": pl.String, "item_id": pl.String},
        )
        return ids.hstack(self.frame.select(rest))
