"""Out-of-core CTR data: two streaming passes over a large file into Parquet shards, read back one at a time.

:func:`preprocess_to_shards` runs :class:`~attnrec.data.ctr.FeatureEncoder` over a file block by block (count,
then encode) and writes Parquet shards that :class:`ShardedCTRData` reads back one shard at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import torch

from attnrec.data.batches import CTRBatch
from attnrec.data.ctr import CTRData, FeatureEncoder, ctr_batches
from attnrec.data.readers.ctr import CTRReaderSpec, iter_ctr_chunks
from attnrec.data.readers.tabular import OnBadLines
from attnrec.data.schema import FeatureSchema
from attnrec.errors import ConfigError, DataError


def preprocess_to_shards(
    source_path: str | Path,
    reader_spec: CTRReaderSpec | str,
    out_dir: str | Path,
    *,
    rows_per_shard: int = 1_000_000,
    on_bad_lines: OnBadLines = "error",
    encoder: FeatureEncoder | None = None,
    block_bytes: int = 32 << 20,
) -> ShardedCTRData:
    """Encode a CTR file too large for memory into Parquet shards, in two streaming passes.

    Pass 1 reads the file block by block (``block_bytes`` of text at a time) and counts each field's values
    into the vocabularies (skipped when a fitted ``encoder`` is given, e.g. from the training file, for
    validation/test files). Pass 2 reads it again and writes ``part-00000.parquet``, ... of ``rows_per_shard``
    rows each (label float32, one int32 column per categorical field, float32 per numeric field, a fixed-size
    int32 list per multi-valued field), plus ``schema.json`` (the fitted schema), ``encoder.json`` (the
    vocabularies) and ``manifest.json`` (rows per shard, skipped lines, OOV counts). Memory stays bounded by a
    shard and the vocabularies. ``reader_spec`` is ``"criteo"``, ``"avazu"`` or a
    :class:`~attnrec.data.readers.ctr.CTRReaderSpec`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    spec = reader_spec if isinstance(reader_spec, CTRReaderSpec) else CTRReaderSpec(format=reader_spec)  # type: ignore[arg-type]
    if rows_per_shard < 1:
        raise ConfigError(f"rows_per_shard must be >= 1, not {rows_per_shard}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.parquet"):
        old.unlink()
    src = Path(source_path)

    def stream(stats: dict[str, object]) -> Iterator[pl.DataFrame]:
        return iter_ctr_chunks(src, spec, on_bad_lines=on_bad_lines, block_bytes=block_bytes, stats=stats)

    if encoder is None:
        pass1: dict[str, object] = {}
        encoder = FeatureEncoder(spec.default_schema()).fit(stream(pass1))
    schema = encoder.schema
    stats: dict[str, object] = {}
    shards: list[dict[str, object]] = []
    oov_total: dict[str, int] = {}
    pending: list[CTRData] = []
    pending_rows = 0

    def flush(parts: list[CTRData]) -> None:
        data = CTRData.concat(parts)
        name = f"part-{len(shards):05d}.parquet"
        pq.write_table(_to_arrow(data, pa), out / name, compression="zstd")
        shards.append({"file": name, "rows": len(data)})

    for chunk in stream(stats):
        data = encoder.transform(chunk, source=str(src))
        for k, v in encoder.last_oov_counts.items():
            oov_total[k] = oov_total.get(k, 0) + v
        pending.append(data)
        pending_rows += len(data)
        while pending_rows >= rows_per_shard:
            merged = CTRData.concat(pending)
            flush([merged.subset(slice(0, rows_per_shard))])
            rest = merged.subset(slice(rows_per_shard, None))
            pending, pending_rows = ([rest] if len(rest) else []), len(rest)
    if pending_rows:
        flush(pending)
    if not shards:
        raise DataError("no data rows", file=src, expected="at least one data row")
    schema.save(out / "schema.json")
    encoder.save(out / "encoder.json")
    manifest = {
        "source": str(src),
        "reader": spec.model_dump(),
        "rows": sum(int(s["rows"]) for s in shards),  # type: ignore[call-overload]
        "shards": shards,
        "skipped_rows": stats.get("skipped_rows", 0),
        "skipped_lines": stats.get("skipped_lines", []),
        "oov_counts": oov_total,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return ShardedCTRData(out)


def _to_arrow(data: CTRData, pa):  # type: ignore[no-untyped-def]
    s = data.schema
    cols: dict[str, object] = {s.label: pa.array(data.labels.astype(np.float32))}
    for j, f in enumerate(s.categorical):
        cols[f.name] = pa.array(data.categorical[:, j].astype(np.int32))
    for j, f in enumerate(s.numeric):
        cols[f.name] = pa.array(data.numeric[:, j].astype(np.float32))
    L = s.multi_len
    for j, f in enumerate(s.multi):
        flat = pa.array(np.ascontiguousarray(data.multi[:, j, :]).astype(np.int32).reshape(-1))
        cols[f.name] = pa.FixedSizeListArray.from_arrays(flat, L)
    return pa.table(cols)


class ShardedCTRData:
    """Encoded shards written by :func:`preprocess_to_shards`, read one shard at a time.

    Iterating yields one :class:`CTRData` per shard in file order. :meth:`iter_batches` shuffles in two levels:
    a random permutation of the shard order, then a random permutation of the rows inside each shard (rows left
    over at a shard's end are carried into the next shard's batches). This is not a global shuffle: rows of one
    batch come from at most two shards, so the source should not be sorted by label or time, and shards should
    hold many batches. Memory holds one shard at a time.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        manifest = self.directory / "manifest.json"
        if not manifest.is_file():
            raise DataError(
                "not a shard folder: no manifest.json",
                file=self.directory,
                expected="a folder written by preprocess_to_shards",
            )
        self.manifest: dict = json.loads(manifest.read_text())  # type: ignore[type-arg]
        self.schema = FeatureSchema.load(self.directory / "schema.json")

    @property
    def shard_files(self) -> list[Path]:
        return [self.directory / str(s["file"]) for s in self.manifest["shards"]]

    @property
    def shard_rows(self) -> list[int]:
        return [int(s["rows"]) for s in self.manifest["shards"]]

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    @property
    def n_shards(self) -> int:
        return len(self.manifest["shards"])

    @property
    def encoder(self) -> FeatureEncoder:
        """The encoder (vocabularies) the shards were written with; use it to encode validation/test data."""
        return FeatureEncoder.load(self.directory / "encoder.json")

    def shard(self, i: int) -> CTRData:
        """Shard ``i`` as CTRData (int64 indices, float32 values)."""
        import pyarrow.parquet as pq

        table = pq.read_table(self.shard_files[i])
        s = self.schema
        n = table.num_rows
        labels = table.column(s.label).to_numpy().astype(np.float32)
        cat = np.empty((n, s.n_categorical), dtype=np.int64)
        for j, f in enumerate(s.categorical):
            cat[:, j] = table.column(f.name).to_numpy()
        num = np.empty((n, s.n_numeric), dtype=np.float32)
        for j, f in enumerate(s.numeric):
            num[:, j] = table.column(f.name).to_numpy()
        L = s.multi_len
        mul = np.empty((n, s.n_multi, L), dtype=np.int64)
        for j, f in enumerate(s.multi):
            col = table.column(f.name).combine_chunks()
            mul[:, j, :] = col.flatten().to_numpy().reshape(n, L)
        return CTRData(labels, cat, num, mul, s)

    def __iter__(self) -> Iterator[CTRData]:
        for i in range(self.n_shards):
            yield self.shard(i)

    def load(self) -> CTRData:
        """All shards in memory as one CTRData (only for data that fits)."""
        return CTRData.concat(list(self))

    def iter_batches(
        self, batch_size: int, generator: torch.Generator | None = None, *, shuffle: bool = True
    ) -> Iterator[CTRBatch]:
        """One epoch of batches: shard order permuted, rows permuted within each shard (see the class docstring).

        Every row appears exactly once; all batches have ``batch_size`` rows except the last.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
        order = (
            torch.randperm(self.n_shards, generator=generator).tolist() if shuffle else range(self.n_shards)
        )
        carry: CTRData | None = None
        for i in order:
            data = self.shard(i)
            if shuffle:
                data = data.subset(torch.randperm(len(data), generator=generator).numpy())
            if carry is not None and len(carry):
                data = CTRData.concat([carry, data])
            full = len(data) - len(data) % batch_size
            yield from ctr_batches(data.subset(slice(0, full)), batch_size, shuffle=False)
            carry = data.subset(slice(full, None))
        if carry is not None and len(carry):
            yield from ctr_batches(carry, batch_size, shuffle=False)
