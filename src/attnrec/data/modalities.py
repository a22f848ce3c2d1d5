"""Item modalities: named dense matrices aligned to the item vocabulary (``ItemFeatures``), built from metadata
or read from ``.npy`` files, and checked before a model sees them.

Builders (each returns an (n_items, d) float32 matrix, row ``i`` = ``vocab.ids[i]``):

* :func:`text_modality` — sentence embeddings of one text per item (the run builds the texts with
  ``attnrec.text.builders`` and passes a cached MiniLM ``SentenceEncoder``; ``data/`` does not import ``text/``);
  an item with an empty text gets a zero row (featureless), not the embedding of "";
* :func:`multihot_modality` — multi-hot of structured metadata: list or ``a|b`` string columns (genres,
  categories...), scalar columns (brand), and a year column as buckets (decades by default); Amazon's
  co-purchase lists (``also_buy``/``also_view``) only when named (:data:`COPURCHASE_FIELDS`);
* :func:`npy_modality` — a ``.npy`` matrix whose rows follow a given id list (or ids ``0..n-1``, MMRec's layout).

Checks (:func:`check_modality`), each a clear error naming the modality (and file) or a counted fallback:

* a row count that is not the number of items → ``DataError`` (``.npy`` given with an id list is aligned by id;
  a ``.npy`` whose row ids match no item of the vocabulary → ``DataError`` naming the id layout it assumed);
* NaN or inf → ``DataError`` naming the first bad row;
* a zero-variance modality (every item has the same row, e.g. all zeros) → ``DataError``: its kNN graph and
  projection would carry no information;
* items without features (an all-zero row: no metadata, or an id the source lacks) → kept, counted and reported
  (:class:`ModalityReport`); the item graph gives such an item only a self-loop (``models/layers/item_graph.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from attnrec.data.side import ItemFeatures
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModalityReport:
    """What a check found: the modality's shape and how many items have no features (all-zero rows)."""

    name: str
    n_items: int
    dim: int
    featureless: int

    def to_dict(self) -> dict[str, int | str]:
        """JSON-able form (for a run's metrics record)."""
        return {"name": self.name, "n_items": self.n_items, "dim": self.dim, "featureless": self.featureless}


def check_modality(name: str, matrix: np.ndarray, n_items: int, *, file: str | None = None) -> ModalityReport:
    """Check one modality matrix against the item count; raises ``DataError`` (naming ``name`` and ``file``) on a
    row-count mismatch, a non-2-d array, NaN/inf values, or zero variance; returns the featureless-item count."""
    if matrix.ndim != 2:
        raise DataError(
            "a modality must be a 2-d matrix",
            file=file,
            field=name,
            value=tuple(matrix.shape),
            expected="shape (n_items, d)",
        )
    if matrix.shape[0] != n_items:
        raise DataError(
            f"{matrix.shape[0]} feature rows for {n_items} items",
            file=file,
            field=name,
            value=tuple(matrix.shape),
            expected=f"one row per item: shape ({n_items}, d)",
        )
    if matrix.shape[1] == 0:
        raise DataError("a modality with no columns", file=file, field=name, expected="d >= 1")
    if not np.issubdtype(matrix.dtype, np.number):
        raise DataError(
            "non-numeric features",
            file=file,
            field=name,
            value=str(matrix.dtype),
            expected="a float or int array",
        )
    finite = np.isfinite(matrix)
    if not finite.all():
        row = int(np.nonzero(~finite.all(axis=1))[0][0])
        raise DataError(
            f"NaN or inf in {int((~finite).sum())} value(s), first at item row {row}",
            file=file,
            field=name,
            value=float(matrix[row][~finite[row]][0]),
            expected="finite numbers",
        )
    if n_items and bool((matrix == matrix[:1]).all()):
        raise DataError(
            "zero-variance modality: every item has the same feature row",
            file=file,
            field=name,
            expected="features that differ between items",
        )
    featureless = int((~matrix.any(axis=1)).sum())
    return ModalityReport(name, n_items, int(matrix.shape[1]), featureless)


def align_to_vocab(features: ItemFeatures, vocab: Vocabulary) -> ItemFeatures:
    """``features`` re-indexed to ``vocab``: rows of ids ``vocab`` lacks are dropped, ids ``features`` lacks get
    zero rows (featureless, counted by :func:`check_modality`)."""
    if features.vocab == vocab:
        return features
    src = features.vocab.lookup(vocab.ids, missing="minus_one")
    have = src >= 0
    out = {}
    for name, m in features.matrices.items():
        a = np.zeros((len(vocab), m.shape[1]), dtype=np.float32)
        a[have] = m[src[have]]
        out[name] = a
    missing = int((~have).sum())
    if missing:
        log.warning(
            "item features: %d of %d items have no row (zero-filled, counted as featureless)",
            missing,
            len(vocab),
        )
    return ItemFeatures(vocab, out)


def select_modalities(
    features: ItemFeatures, vocab: Vocabulary, names: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """The modalities ``names`` (empty: all, sorted by name) of ``features`` aligned to ``vocab``, each checked
    (:func:`check_modality`) and float32; ``ConfigError`` for a name that is not there."""
    aligned = align_to_vocab(features, vocab)
    chosen = list(names) or sorted(aligned.matrices)
    if not chosen:
        raise ConfigError("no item feature modality given: the model needs at least one (CLI: --modalities)")
    unknown = [n for n in chosen if n not in aligned.matrices]
    if unknown:
        raise ConfigError(
            f"unknown modality {unknown[0]!r}; the item features have {sorted(aligned.matrices)}"
        )
    out: dict[str, np.ndarray] = {}
    for n in chosen:
        rep = check_modality(n, aligned.matrices[n], len(vocab))
        if rep.featureless:
            log.warning(
                "modality %s: %d of %d items have no features (all-zero rows)",
                n,
                rep.featureless,
                rep.n_items,
            )
        out[n] = np.ascontiguousarray(aligned.matrices[n], dtype=np.float32)
    return out


def modality_reports(features: Mapping[str, np.ndarray]) -> list[ModalityReport]:
    """:func:`check_modality` of every matrix (all must have the same row count)."""
    return [check_modality(n, m, m.shape[0]) for n, m in features.items()]


class TextEncoder(Protocol):
    """What :func:`text_modality` needs of an encoder (``attnrec.text.SentenceEncoder`` is one)."""

    def encode(self, texts: Any, *, allow_empty: bool = False) -> np.ndarray: ...


def text_modality(
    texts: pl.Series | Sequence[str], encoder: TextEncoder, *, name: str = "text"
) -> np.ndarray:
    """(n_items, dim) float32 embeddings of ``texts`` (one per item, aligned to the vocabulary). Empty texts give
    zero rows (featureless: the item graph gives them a self-loop only), counted in a log line."""
    series = pl.Series(list(texts) if not isinstance(texts, pl.Series) else texts, dtype=pl.String)
    empty = series.fill_null("").str.strip_chars().str.len_chars().to_numpy() == 0
    out = np.asarray(encoder.encode(series.fill_null(""), allow_empty=True), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != len(series):
        raise DataError(
            "the text encoder returned the wrong shape",
            field=name,
            value=tuple(out.shape),
            expected=f"({len(series)}, dim)",
        )
    out = out.copy()
    out[empty] = 0.0
    if empty.any():
        log.warning(
            "modality %s: %d of %d items have no text (zero rows)", name, int(empty.sum()), len(series)
        )
    return out


#: metadata columns :func:`multihot_modality` uses by default, where the table has them
DEFAULT_MULTIHOT_FIELDS = ("genres", "categories", "category", "brand", "year")
#: Amazon's co-purchase / co-view lists: computed by Amazon from purchase logs that span the held-out period,
#: so they are interaction data (items co-bought by held-out users become neighbours), not item content;
#: never a default (MMRec's features do not use them), only when named (the run's ``copurchase`` modality)
COPURCHASE_FIELDS = ("also_buy", "also_view")


def multihot_modality(
    items: pl.DataFrame,
    vocab: Vocabulary,
    fields: Sequence[str] | None = None,
    *,
    year_bucket: int = 10,
    min_count: int = 2,
    max_columns: int = 4096,
    name: str = "meta",
) -> tuple[np.ndarray, list[str]]:
    """Multi-hot of structured item metadata: ``(matrix (n_items, n_columns) float32, column names)``.

    ``items`` is keyed by ``item_id``; ``fields`` defaults to the :data:`DEFAULT_MULTIHOT_FIELDS` the table has
    (never :data:`COPURCHASE_FIELDS`: those are interaction data; naming one is logged as a warning).
    A list column contributes one column per distinct value (nested lists are flattened); a string column is
    split on ``|`` (MovieLens genres) and one column per value; ``year`` (any column named so, numeric or text)
    is bucketed into ``year_bucket``-year spans (``year:1990``). Values held by fewer than ``min_count`` items
    are dropped (they connect nothing), and only the ``max_columns`` most frequent are kept (ties by name), both
    counted in a log line. Items of ``vocab`` absent from the table, or with no kept value, get zero rows.
    """
    if "item_id" not in items.columns:
        raise DataError("missing column in the items table", field="item_id", expected="an item_id column")
    if fields is None:
        fields = [f for f in DEFAULT_MULTIHOT_FIELDS if f in items.columns]
        if not fields:
            raise DataError(
                "no structured metadata column for a multi-hot modality",
                field=name,
                value=items.columns,
                expected=f"one of {list(DEFAULT_MULTIHOT_FIELDS)}",
            )
    copurchase = [f for f in fields if f in COPURCHASE_FIELDS]
    if copurchase:
        log.warning(
            "modality %s: %s are co-purchase lists computed from purchase logs that may cover the validation "
            "and test period: results using them are not leakage-free",
            name,
            "/".join(copurchase),
        )
    missing = [f for f in fields if f not in items.columns]
    if missing:
        raise DataError(
            "missing column in the items table", field=missing[0], expected=f"one of {items.columns}"
        )
    base = items.select(pl.col("item_id").cast(pl.String)).with_columns(
        pl.Series("_row", vocab.lookup(items["item_id"].cast(pl.String), missing="minus_one"))
    )
    parts = []
    for f in fields:
        col = items[f]
        if f == "year":
            year = col.cast(pl.String).str.extract(r"(\d{4})").cast(pl.Int64, strict=False)
            token = pl.Series(f, year // year_bucket * year_bucket).cast(pl.String)
            tokens = pl.concat_str([pl.lit("year:"), pl.col(f)]).alias("_tok")
            frame = base.with_columns(token).select("_row", tokens)
        else:
            while isinstance(col.dtype, pl.List) and isinstance(col.dtype.inner, pl.List):
                col = col.list.eval(pl.element().explode())
            if not isinstance(col.dtype, pl.List):
                col = col.cast(pl.String).str.split("|")
            frame = (
                base.with_columns(col.alias("_v"))
                .explode("_v")
                .select(
                    "_row",
                    pl.concat_str([pl.lit(f + ":"), pl.col("_v").cast(pl.String).str.strip_chars()]).alias(
                        "_tok"
                    ),
                )
            )
        parts.append(frame)
    pairs = (
        pl.concat(parts)
        .filter((pl.col("_row") >= 0) & pl.col("_tok").is_not_null() & ~pl.col("_tok").str.ends_with(":"))
        .unique(["_row", "_tok"])
    )
    counts = pairs.group_by("_tok").len().sort(["len", "_tok"], descending=[True, False])
    kept = counts.filter(pl.col("len") >= min_count).head(max_columns)
    if kept.height < counts.height:
        log.info(
            "modality %s: %d of %d metadata values kept (held by >= %d items, at most %d columns)",
            name,
            kept.height,
            counts.height,
            min_count,
            max_columns,
        )
    columns = kept["_tok"].to_list()
    col_index = pl.DataFrame({"_tok": columns, "_col": np.arange(len(columns), dtype=np.int64)})
    hits = pairs.join(col_index, on="_tok", how="inner")
    out = np.zeros((len(vocab), len(columns)), dtype=np.float32)
    out[hits["_row"].to_numpy(), hits["_col"].to_numpy()] = 1.0
    return out, columns


def npy_modality(
    path: str | Path, vocab: Vocabulary, ids: Sequence[str] | None = None, *, name: str = "features"
) -> np.ndarray:
    """A ``.npy`` feature matrix aligned to ``vocab``: row ``r`` belongs to ``ids[r]`` (default: the id ``str(r)``,
    MMRec's layout where item ids are ``0..n-1``). Loaded without pickles; ids the vocabulary lacks are ignored,
    vocabulary items without a row get zeros (featureless, counted). A file none of whose rows belongs to a
    vocabulary item (e.g. rows read as ``0..n-1`` for string ids, no mapping given) is a ``DataError``, not a
    modality of zeros. Errors name the file."""
    p = Path(path)
    try:
        m = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the feature matrix: {exc}", file=p, field=name, expected="a .npy array (numpy.save)"
        ) from None
    if m.ndim != 2:
        raise DataError(
            "a feature file must hold a 2-d matrix",
            file=p,
            field=name,
            value=tuple(m.shape),
            expected="shape (n_items, d)",
        )
    row_ids = [str(i) for i in ids] if ids is not None else [str(r) for r in range(m.shape[0])]
    if len(row_ids) != m.shape[0]:
        raise DataError(
            f"{m.shape[0]} rows for {len(row_ids)} ids",
            file=p,
            field=name,
            value=tuple(m.shape),
            expected=f"one row per id: shape ({len(row_ids)}, d)",
        )
    check = check_modality(name, m, m.shape[0], file=str(p))
    del check
    src = Vocabulary(row_ids, kind="item").lookup(vocab.ids, missing="minus_one")
    have = src >= 0
    if len(vocab) and not have.any():
        layout = "the ids given" if ids is not None else "item ids 0..n-1 (MMRec's layout)"
        hint = "rows keyed by the item ids"
        if ids is None:
            hint += ": put a tab-separated i_id_mapping.csv (item_id, itemID) beside the file"
        raise DataError(
            f"no item of the vocabulary has a row: rows are read as {layout}, and none of the {len(vocab)} "
            f"item ids (e.g. {str(vocab.ids[0])!r}) is among them",
            file=p,
            field=name,
            value=tuple(m.shape),
            expected=hint,
        )
    out = np.zeros((len(vocab), m.shape[1]), dtype=np.float32)
    out[have] = m[src[have]]
    if not have.all():
        log.warning(
            "%s: %d of %d items have no row (zero rows, featureless)", p, int((~have).sum()), len(vocab)
        )
    return out
