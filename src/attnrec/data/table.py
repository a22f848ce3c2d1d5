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
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError

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

log = logging.getLogger(__name__)

#: how many line numbers of dropped out-of-range rows a report keeps (the count is always exact)
MAX_NOTED_LINES = 20


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
    #: the 1-based line of the source file each interaction row came from (Int64, aligned with the rows), when the
    #: reader knows it; errors about a row's value name this line
    lines: pl.Series | None = None

    def __post_init__(self) -> None:
        self.interactions = canonicalize(self.interactions, source=self.source or self.name)
        if self.lines is not None and len(self.lines) != self.interactions.height:
            raise ValueError(
                f"Dataset.lines has {len(self.lines)} entries for {self.interactions.height} rows"
            )

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
        if "domain" in df.columns:  # cross-domain data: counts per domain
            per = df.group_by("domain").agg(
                pl.len().alias("interactions"),
                pl.col("user_id").n_unique().alias("users"),
                pl.col("item_id").n_unique().alias("items"),
            )
            out["domains"] = {
                str(r["domain"]): {k: r[k] for k in ("interactions", "users", "items")}
                for r in per.sort("domain").iter_rows(named=True)
            }
            lengths = df.group_by("user_id").len()["len"]
            out["sequence_length"] = [int(lengths.min()), round(float(lengths.mean()), 2), int(lengths.max())]  # type: ignore[arg-type]
            if self.items is not None and "domain" in self.items.columns:
                cat = self.items.group_by("domain").len().sort("domain")
                out["catalogue_items"] = dict(zip(cat["domain"].cast(str), cat["len"], strict=True))
        return out

    def fingerprint(self) -> str:
        """SHA-256 over the interaction columns (stable across runs), recorded in every results record."""
        return frame_fingerprint(self.interactions)


def parse_rating_range(
    text: str | tuple[float, float] | list[float], *, flag: str = "--rating-range"
) -> tuple[float, float]:
    """``"1,5"`` (or a pair) -> ``(1.0, 5.0)``: two finite numbers, low < high; else a :class:`ConfigError`
    naming ``flag`` and the value."""
    parts = [x.strip() for x in text.split(",")] if isinstance(text, str) else list(text)
    try:
        lo, hi = (float(x) for x in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} {text!r}: expected two numbers LOW,HIGH, e.g. 1,5") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"{flag} {text!r}: expected two finite numbers with LOW < HIGH, e.g. 1,5")
    return lo, hi


def check_rating_range(
    df: pl.DataFrame,
    rating_range: tuple[float, float],
    *,
    source: str,
    on_bad_lines: str = "error",
    lines: pl.Series | None = None,
    why: str = "declared",
    skip_hint: bool = True,
) -> tuple[pl.DataFrame, dict[str, object] | None]:
    """Refuse (``on_bad_lines="error"``) or drop and count (``"skip"``) the rows whose rating lies outside the
    closed interval ``rating_range`` (a table without a ``rating`` column passes unchanged: implicit feedback).

    The error names ``source``, the line of the first such row (``lines[row]`` when the reader gave line numbers,
    else its 1-based data row), the value, and how many rows are out of range; ``why`` says where the range came
    from (``declared``, ``inferred from ...``); ``skip_hint`` adds that ``--on-bad-lines skip`` drops them. Returns ``(kept rows, report or None)``; the report holds ``rows``
    (dropped) and ``first_lines``. NaN and infinite ratings never get here: :func:`canonicalize` refuses them.
    """
    if "rating" not in df.columns:
        return df, None
    lo, hi = rating_range
    out = ~df["rating"].cast(pl.Float64).is_between(lo, hi).fill_null(True)
    n_bad = int(out.sum())
    if n_bad == 0:
        return df, None
    rows = out.arg_true()
    where = lines.gather(rows) if lines is not None else rows + 1
    if on_bad_lines != "skip":
        first = int(rows[0])
        at = (
            f"line {int(where[0])}"
            if lines is not None
            else f"data row {int(where[0])}: user {df['user_id'][first]!r}, item {df['item_id'][first]!r}"
        )
        raise DataError(
            f"rating out of the {why} range [{lo:g}, {hi:g}] ({n_bad} row(s) in all; the first at {at}"
            + ("; --on-bad-lines skip drops and counts them)" if skip_hint else ")"),
            file=source,
            line=int(where[0]) if lines is not None else None,
            field="rating",
            value=df["rating"][first],
            expected=f"a rating in [{lo:g}, {hi:g}] (--rating-range LOW,HIGH declares the range)",
        )
    first_key = "first_lines" if lines is not None else "first_data_rows"
    report: dict[str, object] = {
        "rows": n_bad,
        "range": [lo, hi],
        "file": source,
        first_key: where.head(MAX_NOTED_LINES).to_list(),
    }
    log.warning(
        "%s: %d row(s) with a rating outside [%g, %g] skipped (%s %s)",
        source,
        n_bad,
        lo,
        hi,
        first_key.replace("_", " "),
        ", ".join(str(x) for x in where.head(5).to_list()) + (", ..." if n_bad > 5 else ""),
    )
    return df.filter(~out), report


def enforce_rating_range(
    parts: dict[str, pl.DataFrame],
    declared: tuple[float, float] | None,
    *,
    sources: dict[str, str],
    on_bad_lines: str = "error",
    lines: dict[str, pl.Series] | None = None,
    infer: bool = True,
) -> tuple[dict[str, pl.DataFrame], dict[str, object] | None]:
    """The rating scale of a split's ``parts`` (``train``/``valid``/``test`` tables), checked on every row.

    ``declared`` (low, high): every part is checked against it; a rating outside it is a :class:`DataError`
    naming the part's source (``sources[name]``), line (``lines[name]`` when known) and value, or with
    ``on_bad_lines="skip"`` the row is dropped and counted. None: the scale is inferred from the train part's min
    and max and said in a logged warning (with the distinct values, so a stray 500 shows); held-out ratings
    outside it are counted (``outside_inferred``) and warned about, not refused. Returns the parts (rows dropped
    where skipped) and ``{"range", "source": "declared"|"inferred", "skipped": {part: report}}`` (None for
    implicit data: no ``rating`` column; and with ``infer`` False when nothing is declared, for a run whose model
    predicts no ratings).
    """
    train = parts["train"]
    if "rating" not in train.columns or (declared is None and not infer):
        return parts, None
    if declared is not None:
        scale, why, check = (float(declared[0]), float(declared[1])), "declared", list(parts)
    else:
        r = train["rating"]
        scale, check = (float(r.min()), float(r.max())), [n for n in parts if n != "train"]  # type: ignore[arg-type]
        why = f"inferred ({sources.get('train', 'train')})"
        values = r.unique().sort()
        shown = ", ".join(f"{v:g}" for v in values.head(12).to_list()) + (", ..." if len(values) > 12 else "")
        log.warning(
            "rating range not declared: inferred [%g, %g] from the training ratings (%d distinct value(s): %s); "
            "predictions are clipped to it; declare the scale with --rating-range LOW,HIGH (run file: "
            "rating_range = [LOW, HIGH]) to refuse ratings outside it",
            scale[0],
            scale[1],
            len(values),
            shown,
        )
    out, skipped, outside = dict(parts), {}, {}
    if declared is None:
        # a guessed scale: a held-out rating beyond the training min/max may be real (a 1 that train lacks), so
        # it is counted and said, not refused; a declared scale is what makes it an error
        for name in check:
            n = _warn_outside(parts[name], scale, sources.get(name, name), (lines or {}).get(name))
            if n:
                outside[name] = n
        check = []
    for name in check:
        out[name], rep = check_rating_range(
            parts[name],
            scale,
            source=sources.get(name, name),
            on_bad_lines=on_bad_lines,
            lines=(lines or {}).get(name),
            why=why,
        )
        if rep is not None:
            skipped[name] = rep
    return out, {
        "range": list(scale),
        "source": "declared" if declared is not None else "inferred",
        "skipped": skipped,
        **({"outside_inferred": outside} if outside else {}),
    }


def _warn_outside(
    df: pl.DataFrame, scale: tuple[float, float], source: str, lines: pl.Series | None = None
) -> int:
    """Count (and log as a warning) the ratings of ``df`` outside an *inferred* ``scale``; returns the count."""
    if "rating" not in df.columns:
        return 0
    bad = ~df["rating"].cast(pl.Float64).is_between(*scale).fill_null(True)
    n = int(bad.sum())
    if n:
        first = int(bad.arg_true()[0])
        log.warning(
            "%s: %d rating(s) outside the training range [%g, %g] (the first: %g, %s %d); they are evaluated "
            "as given, against predictions clipped to the range; --rating-range declares the scale and refuses them",
            source,
            n,
            *scale,
            float(df["rating"][first]),
            "line" if lines is not None else "data row",
            int(lines[first]) if lines is not None else first + 1,
        )
    return n


def check_heldout_scale(
    df: pl.DataFrame, scale: object, *, source: str, lines: pl.Series | None = None
) -> pl.DataFrame:
    """Held-out rows (``attnrec evaluate --test``) against the rating scale a run stored in its bundle (``scale``:
    ``{"range": [low, high], "source": "declared"|"inferred"}``, or None for a run without ratings or a bundle
    written before scales were stored): a rating outside a declared scale is a :class:`DataError` naming
    ``source``, the line and the value; outside an inferred one it is counted in a logged warning."""
    if not isinstance(scale, dict) or not isinstance(scale.get("range"), list) or len(scale["range"]) != 2:
        return df
    lo, hi = float(scale["range"][0]), float(scale["range"][1])
    if scale.get("source") == "declared":
        return check_rating_range(df, (lo, hi), source=source, lines=lines, why="declared", skip_hint=False)[
            0
        ]
    _warn_outside(df, (lo, hi), source, lines)
    return df


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
    #: the ratings' scale (low, high), declared by the run or inferred from its training split; rating models clip
    #: predictions to it (:meth:`rating_bounds`). None: not known, the rows' own min and max stand in
    rating_range: tuple[float, float] | None = None

    @classmethod
    def encode(
        cls,
        df: pl.DataFrame,
        user_vocab: Vocabulary,
        item_vocab: Vocabulary,
        *,
        unknown: str = "error",
        rating_range: tuple[float, float] | None = None,
    ) -> tuple[Interactions, int]:
        """Encode a table with external ids. ``unknown="drop"`` drops rows with unknown ids and returns the count.
        ``rating_range``: see :attr:`rating_range`."""
        u = user_vocab.lookup(df["user_id"], missing="minus_one")
        i = item_vocab.lookup(df["item_id"], missing="minus_one")
        keep = (u >= 0) & (i >= 0)
        dropped = int((~keep).sum())
        if dropped and unknown == "error":
            user_vocab.lookup(df["user_id"])  # raises with the unknown user ids
            item_vocab.lookup(df["item_id"])
        rest = [c for c in df.columns if c not in ("user_id", "item_id")]
        frame = pl.DataFrame({"user": u, "item": i}).hstack(df.select(rest)).filter(pl.Series(keep))
        return cls(frame, user_vocab, item_vocab, rating_range), dropped

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

    def rating_bounds(self) -> tuple[float, float]:
        """The scale predictions are clipped to: :attr:`rating_range` when the run gave one, else the min and max
        of these rows' ratings."""
        if self.rating_range is not None:
            return float(self.rating_range[0]), float(self.rating_range[1])
        r = self.ratings
        return float(r.min()), float(r.max())

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
        return Interactions(frame, self.user_vocab, self.item_vocab, self.rating_range)

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
