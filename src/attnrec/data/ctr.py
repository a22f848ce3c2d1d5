"""Click-through-rate data: an encoder fitted on training data, encoded arrays and batches.

The path is ``raw frame (readers/ctr.py) -> FeatureEncoder.fit (training rows only) -> CTRData -> CTRBatch``.
The field schema lives in :mod:`attnrec.data.schema`; files that do not fit in memory go through
:mod:`attnrec.data.ctr_shards` (the same encoder in two streaming passes, written to Parquet shards).

Index conventions, shared by every CTR model:

* every categorical field has its own index space ``0..vocab_size-1``; index 0 means missing, unseen (OOV) or,
  in a multi-valued field, padding; known values get ``1..vocab_size-1`` in sorted (string) order;
* a numeric field with ``bucketize="log2"`` becomes a categorical field (Criteo convention of the Kaggle
  winning solution: ``v > 2 -> floor(ln(v)^2)``, else ``int(v)``); other numeric fields stay float32
  (missing -> 0);
* a field with ``hash_buckets=H`` has no vocabulary: a value maps to ``1 + fnv1a64(value) mod H``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.errors import ConfigError, DataError

#: seed of the hash that the vocabulary lookup uses in memory (never saved; strings are compared after it)
_LOOKUP_SEED = 0x5EED


# ---------------------------------------------------------------------------------------------------------------
# encoded data and batches


@dataclass
class CTRData:
    """An encoded CTR table (NumPy arrays, N rows).

    ``labels`` (N,) float32 in {0, 1}; ``categorical`` (N, n_cat) int64, per-field indices (0 = missing/OOV);
    ``numeric`` (N, n_num) float32; ``multi`` (N, n_multi, L) int64 (0 = padding); columns follow
    ``schema.categorical`` / ``schema.numeric`` / ``schema.multi``.
    """

    labels: np.ndarray
    categorical: np.ndarray
    numeric: np.ndarray
    multi: np.ndarray
    schema: FeatureSchema

    def __post_init__(self) -> None:
        n = len(self.labels)
        s = self.schema
        want = {
            "categorical": (n, s.n_categorical),
            "numeric": (n, s.n_numeric),
            "multi": (n, s.n_multi, s.multi_len),
        }
        for name, shape in want.items():
            got = getattr(self, name).shape
            if got != shape:
                raise DataError(f"CTRData.{name} has shape {got}", field=name, expected=f"shape {shape}")

    def __len__(self) -> int:
        return int(len(self.labels))

    def subset(self, idx: np.ndarray | Sequence[int] | slice) -> CTRData:
        """Rows ``idx`` (indices, a boolean mask or a slice), as a new CTRData."""
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
        return CTRData(
            self.labels[idx], self.categorical[idx], self.numeric[idx], self.multi[idx], self.schema
        )

    @staticmethod
    def concat(parts: Sequence[CTRData]) -> CTRData:
        """Rows of ``parts`` one after another; all must share the same schema."""
        if not parts:
            raise DataError("nothing to concatenate", expected="at least one CTRData")
        schema = parts[0].schema
        for p in parts[1:]:
            if p.schema != schema:
                raise DataError("CTRData parts have different schemas", expected="one encoder for all parts")
        return CTRData(
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.categorical for p in parts]),
            np.concatenate([p.numeric for p in parts]),
            np.concatenate([p.multi for p in parts]),
            schema,
        )

    @property
    def positive_rate(self) -> float:
        return float(self.labels.mean()) if len(self) else math.nan


def ctr_batches(
    data: CTRData, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[CTRBatch]:
    """One pass over ``data`` in mini-batches of ``batch_size`` rows (the last may be smaller).

    With ``shuffle`` the order is a permutation drawn from ``generator``; every row appears exactly once.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
    labels = torch.from_numpy(np.ascontiguousarray(data.labels, dtype=np.float32))
    cat = torch.from_numpy(np.ascontiguousarray(data.categorical, dtype=np.int64))
    num = torch.from_numpy(np.ascontiguousarray(data.numeric, dtype=np.float32))
    multi = torch.from_numpy(np.ascontiguousarray(data.multi, dtype=np.int64))
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            sl = slice(start, start + batch_size)
            yield CTRBatch(labels[sl], cat[sl], num[sl], multi[sl])
        else:
            idx = order[start : start + batch_size]
            yield CTRBatch(labels[idx], cat[idx], num[idx], multi[idx])


# ---------------------------------------------------------------------------------------------------------------
# value -> token


def log2_bucket(values: pl.Expr) -> pl.Expr:
    """Criteo bucketing of the Kaggle winning solution: ``floor(ln(v)^2)`` for ``v > 2``, else ``int(v)``.

    (Named ``log2`` for the square of the log.) Returns Int64; missing stays missing. E.g. 0->0, 1->1, 2->2,
    3->1, 10->5, 100->21.
    """
    v = values.cast(pl.Float64)
    return (
        pl.when(v > 2)
        .then((v.log() ** 2).floor())
        .otherwise(v)
        .cast(pl.Int64, strict=False)  # int() truncates
    )


def fnv1a64(values: pl.Series) -> np.ndarray:
    """Stable 64-bit FNV-1a hash of each string's UTF-8 bytes (uint64, (N,)); stable across runs and versions.

    Vectorised over rows; loops only over character positions (the longest string's length).
    """
    import pyarrow as pa

    arr = values.cast(pl.String).fill_null("").to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = (
        np.frombuffer(arr.buffers()[2], dtype=np.uint8)
        if arr.buffers()[2] is not None
        else np.zeros(0, np.uint8)
    )
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    h = np.full(len(arr), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for pos in range(int(lengths.max(initial=0))):
        live = np.flatnonzero(lengths > pos)
        h[live] = (h[live] ^ data[starts[live] + pos].astype(np.uint64)) * prime
    return h


def _field_tokens(df: pl.DataFrame, spec: FieldSpec, source: str) -> pl.Series:
    """The field's values as String tokens (null = missing); a List(String) Series for multi-valued fields."""
    if spec.name not in df.columns:
        raise DataError("missing column", file=source, field=spec.name, expected=f"a column {spec.name!r}")
    col = df[spec.name]
    if spec.kind == "multi":
        if isinstance(col.dtype, pl.List):
            lists = col.cast(pl.List(pl.String))
        else:
            lists = col.cast(pl.String).str.split(spec.sep)
        return lists.list.eval(pl.element().filter(pl.element().is_not_null() & (pl.element() != "")))
    if spec.kind == "numeric":
        if not col.dtype.is_numeric():
            raise DataError(
                f"numeric field has type {col.dtype}", file=source, field=spec.name, expected="numbers"
            )
        return col.to_frame().select(log2_bucket(pl.col(spec.name)).cast(pl.String)).to_series()
    s = col.cast(pl.String)
    return pl.select(pl.when(pl.lit(s) != "").then(pl.lit(s))).to_series().alias(spec.name)


class _Lookup:
    """Sorted vocabulary of one field with a fast vectorised lookup: hash, binary search, exact string check."""

    def __init__(self, tokens: pl.Series) -> None:
        self.tokens = tokens.cast(pl.String).alias("token")
        h = self.tokens.hash(seed=_LOOKUP_SEED).to_numpy()
        self._order = np.argsort(h, kind="stable")
        self._hashes = h[self._order]

    def __len__(self) -> int:
        return len(self.tokens)

    def indices(self, values: pl.Series) -> np.ndarray:
        """1-based index of each value (int64, (N,)); 0 for missing and unknown values."""
        n = len(values)
        if n == 0 or len(self.tokens) == 0:
            return np.zeros(n, dtype=np.int64)
        q = values.cast(pl.String)
        qh = q.hash(seed=_LOOKUP_SEED).to_numpy()
        pos = np.searchsorted(self._hashes, qh).clip(0, len(self._hashes) - 1)
        cand = self._order[pos]
        ok = self._hashes[pos] == qh
        ok &= (self.tokens.gather(cand) == q).fill_null(False).to_numpy()
        return np.where(ok, cand.astype(np.int64) + 1, 0)


def _merge_counts(parts: list[pl.DataFrame]) -> pl.DataFrame:
    if len(parts) == 1:
        return parts[0]
    return pl.concat(parts).group_by("token").agg(pl.col("count").sum())


class FeatureEncoder:
    """Builds per-field vocabularies from training data and turns raw frames into :class:`CTRData`.

    ``fit`` accepts one DataFrame or an iterable of DataFrames (chunks of a stream); counting is incremental,
    so a file is never held whole. Values seen fewer than ``min_count`` times are left out (they map to 0).
    ``transform`` maps unseen values to 0 and counts them per field in ``last_oov_counts`` (missing values are
    not OOV; they are counted in ``last_missing_counts``).
    """

    def __init__(self, schema: FeatureSchema | None = None) -> None:
        self._hint = schema
        self._schema: FeatureSchema | None = None
        self._lookups: dict[str, _Lookup] = {}
        self.last_oov_counts: dict[str, int] = {}
        self.last_missing_counts: dict[str, int] = {}
        self.n_fit_rows = 0

    @property
    def schema(self) -> FeatureSchema:
        """The fitted schema (vocabulary sizes and ``max_len`` filled in)."""
        if self._schema is None:
            raise ConfigError("FeatureEncoder is not fitted; call fit() first")
        return self._schema

    @property
    def is_fitted(self) -> bool:
        return self._schema is not None

    def vocabulary(self, field: str) -> list[str]:
        """The tokens of ``field`` in index order (token ``i`` has index ``i + 1``)."""
        self.schema.field(field)
        if field not in self._lookups:
            raise ConfigError(f"field {field!r} has no vocabulary (numeric or hashed)")
        return self._lookups[field].tokens.to_list()

    def fit(
        self, data: pl.DataFrame | Iterable[pl.DataFrame], schema: FeatureSchema | None = None
    ) -> FeatureEncoder:
        """Count every field's values in ``data`` (training rows only) and build the vocabularies.

        ``schema`` (or the one given to the constructor) names the fields; its ``vocab_size`` values are
        ignored and recomputed. Returns ``self``.
        """
        hint = schema or self._hint
        if hint is None:
            raise ConfigError("FeatureEncoder.fit needs a FeatureSchema (schema=...)")
        chunks: Iterable[pl.DataFrame] = [data] if isinstance(data, pl.DataFrame) else data
        counted = [f for f in hint.fields if f.has_vocabulary]
        merged: dict[str, pl.DataFrame] = {}
        pending: dict[str, list[pl.DataFrame]] = {f.name: [] for f in counted}
        pending_rows = dict.fromkeys(pending, 0)
        longest = {f.name: 0 for f in hint.multi}
        n_rows = 0
        for chunk in chunks:
            n_rows += chunk.height
            for f in hint.fields:
                if f.is_numeric:
                    if f.name not in chunk.columns:
                        raise DataError("missing column", field=f.name, expected=f"a column {f.name!r}")
                    continue
                if not f.has_vocabulary and f.kind != "multi":
                    continue
                tokens = _field_tokens(chunk, f, "<fit data>")
                if f.kind == "multi":
                    longest[f.name] = max(longest[f.name], int(tokens.list.len().max() or 0))  # type: ignore[arg-type]
                    if not f.has_vocabulary:
                        continue
                    tokens = tokens.explode()
                counts = tokens.drop_nulls().alias("token").value_counts(name="count")
                counts = counts.with_columns(pl.col("count").cast(pl.Int64))
                pending[f.name].append(counts)
                pending_rows[f.name] += counts.height
                # merge when the pending tables outgrow the merged one: bounded memory, few large merges
                base = merged.get(f.name)
                if pending_rows[f.name] > max(1_000_000, base.height if base is not None else 0):
                    merged[f.name] = _merge_counts(([base] if base is not None else []) + pending[f.name])
                    pending[f.name], pending_rows[f.name] = [], 0
        if n_rows == 0:
            raise DataError("no training rows to fit on", expected="at least one row")
        fields: list[FieldSpec] = []
        self._lookups = {}
        for f in hint.fields:
            update: dict[str, object] = {}
            if f.has_vocabulary:
                base = merged.get(f.name)
                counts = (
                    _merge_counts(([base] if base is not None else []) + pending[f.name])
                    if (base is not None or pending[f.name])
                    else pl.DataFrame(
                        {"token": [], "count": []}, schema={"token": pl.String, "count": pl.Int64}
                    )
                )
                tokens = counts.filter(pl.col("count") >= f.min_count)["token"].sort()
                self._lookups[f.name] = _Lookup(tokens)
                update["vocab_size"] = len(tokens) + 1
            elif f.hash_buckets is not None:
                update["vocab_size"] = f.hash_buckets + 1
            if f.kind == "multi" and f.max_len is None:
                update["max_len"] = max(1, longest[f.name])
            fields.append(f.model_copy(update=update))
        self._schema = FeatureSchema(fields=fields, label=hint.label)
        self.n_fit_rows = n_rows
        return self

    def transform(self, df: pl.DataFrame, *, source: str = "<frame>") -> CTRData:
        """Encode a raw frame (a ``label`` column and the schema's fields) into :class:`CTRData`.

        Labels must be 0 or 1 (DataError naming the row otherwise; ``source`` names the input in errors).
        """
        schema = self.schema
        labels = _labels(df, schema.label, source)
        n = df.height
        oov: dict[str, int] = {}
        missing: dict[str, int] = {}
        cat = np.zeros((n, schema.n_categorical), dtype=np.int64)
        for j, f in enumerate(schema.categorical):
            tokens = _field_tokens(df, f, source)
            cat[:, j] = self._encode(f, tokens)
            missing[f.name] = tokens.null_count()
            oov[f.name] = int(n - missing[f.name] - np.count_nonzero(cat[:, j]))
        num = np.zeros((n, schema.n_numeric), dtype=np.float32)
        for j, f in enumerate(schema.numeric):
            col = df[f.name] if f.name in df.columns else None
            if col is None:
                raise DataError("missing column", file=source, field=f.name, expected=f"a column {f.name!r}")
            if not col.dtype.is_numeric():
                raise DataError(
                    f"numeric field has type {col.dtype}", file=source, field=f.name, expected="numbers"
                )
            v = col.cast(pl.Float64).to_numpy()
            missing[f.name] = int(np.isnan(v).sum())
            v = np.nan_to_num(v, nan=0.0)
            if f.transform == "log1p":
                v = np.sign(v) * np.log1p(np.abs(v))
            num[:, j] = v
        L = schema.multi_len
        mul = np.zeros((n, schema.n_multi, L), dtype=np.int64)
        for j, f in enumerate(schema.multi):
            lists = _field_tokens(df, f, source)
            missing[f.name] = int((lists.list.len().fill_null(0) == 0).sum())
            lists = lists.list.head(f.max_len or L)
            lens = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
            flat = lists.explode().drop_nulls()
            idx = self._encode(f, flat)
            oov[f.name] = int(len(flat) - np.count_nonzero(idx))
            rows = np.repeat(np.arange(n), lens)
            pos = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
            mul[rows, j, pos] = idx
        self.last_oov_counts = oov
        self.last_missing_counts = missing
        return CTRData(labels, cat, num, mul, schema)

    def fit_transform(self, df: pl.DataFrame, schema: FeatureSchema | None = None) -> CTRData:
        return self.fit(df, schema).transform(df)

    def _encode(self, f: FieldSpec, tokens: pl.Series) -> np.ndarray:
        if f.hash_buckets is not None:
            idx = (fnv1a64(tokens) % np.uint64(f.hash_buckets)).astype(np.int64) + 1
            return np.where(tokens.is_null().to_numpy(), 0, idx)
        return self._lookups[f.name].indices(tokens)

    # ---- persistence: JSON only (vocabularies are lists of strings)

    def to_json(self) -> str:
        """The fitted schema and every vocabulary as JSON text."""
        payload = {
            "schema": json.loads(self.schema.to_json()),
            "vocabularies": {name: lk.tokens.to_list() for name, lk in self._lookups.items()},
            "n_fit_rows": self.n_fit_rows,
        }
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str | bytes) -> FeatureEncoder:
        payload = json.loads(text)
        schema = FeatureSchema.model_validate(payload["schema"])
        enc = cls(schema)
        enc._schema = schema
        vocabs = payload.get("vocabularies", {})
        for f in schema.fields:
            if f.has_vocabulary:
                if f.name not in vocabs:
                    raise DataError("encoder JSON lacks a vocabulary", field=f.name, expected="one per field")
                tokens = vocabs[f.name]
                if len(tokens) + 1 != f.vocab_size:
                    raise DataError(
                        f"vocabulary has {len(tokens)} tokens",
                        field=f.name,
                        expected=f"{f.vocab_size - 1} tokens",
                    )
                enc._lookups[f.name] = _Lookup(pl.Series("token", tokens, dtype=pl.String))
        enc.n_fit_rows = int(payload.get("n_fit_rows", 0))
        return enc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> FeatureEncoder:
        return cls.from_json(Path(path).read_text())


def _labels(df: pl.DataFrame, label: str, source: str) -> np.ndarray:
    if label not in df.columns:
        raise DataError(
            "missing label column", file=source, field=label, expected=f"a column {label!r} of 0/1"
        )
    col = df[label]
    v = col.cast(pl.Float64, strict=False)
    bad = (v.is_null() | ~v.is_in([0.0, 1.0])).fill_null(True)
    if bad.any():
        row = int(bad.arg_true()[0])
        line = int(df["line"][row]) if "line" in df.columns else row + 1
        raise DataError(
            "label is not 0 or 1", file=source, line=line, field=label, value=col[row], expected="0 or 1"
        )
    return v.to_numpy().astype(np.float32)
