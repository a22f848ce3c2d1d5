"""On-disk embedding cache keyed by (model id, SHA-256 of the text).

Layout, one folder per model id (the folder name is a readable slug plus a hash of the id)::

    <directory>/
      <slug>-<hash12>/
        meta.json                      {"format": 1, "model_id": ..., "dim": ...}
        <shard>.vecs.npy               (n, dim) float32 or float16 vectors
        <shard>.keys.npy               (n, 32) uint8 SHA-256 digests; row r of keys <-> row r of vecs

Shards are append-only. A writer saves both files under temporary names and renames them into place with
:func:`os.replace` (atomic on POSIX), vectors first and keys last, so a shard exists exactly when its keys file
does: a crash mid-write leaves only an ignorable ``.tmp-*`` file. Shard names carry a timestamp, the process id
and a random tag, so two writers never collide. The index (hash -> shard, row) is the concatenation of the keys
files, sorted once per change and searched with :func:`numpy.searchsorted`; vectors are read through
``np.load(mmap_mode="r")`` so a large catalogue never has to fit in memory. Everything is plain ``.npy`` / JSON
loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from attnrec.errors import ConfigError, DataError
from attnrec.paths import path_slug

FORMAT_VERSION = 1
KEY_BYTES = 32
_FLOAT16_MAX = float(np.finfo(np.float16).max)

CacheDType = Literal["float32", "float16"]


def text_keys(texts: Iterable[str]) -> np.ndarray:
    """SHA-256 digests of the UTF-8 bytes of each text: ``(n, 32)`` uint8.

    One ``hashlib`` call per text: neither NumPy nor Polars offers a vectorised SHA-256, and hashing runs at
    about a million short texts per second, far faster than any encoder.
    """
    digests = b"".join(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in texts)
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, KEY_BYTES).copy()


def _as_sortable(keys: np.ndarray) -> np.ndarray:
    """``(n, 32)`` uint8 -> ``(n,)`` fixed-width bytes that sort and compare like the digests."""
    keys = np.ascontiguousarray(keys, dtype=np.uint8)
    return keys.view(f"S{KEY_BYTES}").reshape(-1)


@dataclass
class _Space:
    """The loaded index of one model's folder."""

    path: Path
    dim: int | None = None
    shards: list[str] = field(default_factory=list)
    vecs: list[np.ndarray] = field(default_factory=list)  # memory-mapped, one per shard
    sorted_keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=f"S{KEY_BYTES}"))
    shard_of: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    row_of: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


class EmbeddingCache:
    """Embeddings on disk, keyed by ``(model_id, sha256(text))``.

    ``dtype`` is the storage type of shards this cache writes (``"float16"`` halves the disk and page-cache
    footprint at ~1e-3 relative error); reads always return float32. Construction does no I/O: the folder is
    created by the first :meth:`store`. Safe for several threads of one process (one lock) and, thanks to
    unique shard names and atomic renames, for concurrent writers in several processes (a text encoded by two
    at once is stored twice; the first shard wins on reads and :meth:`compact` drops the copy).
    """

    def __init__(self, directory: str | Path, *, dtype: CacheDType = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise ConfigError(f"EmbeddingCache dtype must be 'float32' or 'float16', got {dtype!r}")
        self.directory = Path(directory)
        self.dtype = np.dtype(dtype)
        self._spaces: dict[str, _Space] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r}, dtype={self.dtype.name!r})"

    # -- public API -------------------------------------------------------------------------------------

    def lookup(self, model_id: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Find cached vectors for ``keys`` (``(n, 32)`` uint8 from :func:`text_keys`).

        Returns ``(found, vectors)``: ``found`` is an ``(n,)`` bool mask and ``vectors`` is
        ``(found.sum(), dim)`` float32, the rows of the found keys in their order.
        """
        keys = _check_keys(keys)
        with self._lock:
            space = self._refresh(model_id)
            n = keys.shape[0]
            if n == 0 or space.sorted_keys.size == 0:
                return np.zeros(n, dtype=bool), np.empty((0, space.dim or 0), dtype=np.float32)
            query = _as_sortable(keys)
            pos = np.searchsorted(space.sorted_keys, query)
            pos_c = np.minimum(pos, space.sorted_keys.size - 1)
            found = space.sorted_keys[pos_c] == query
            hit = pos_c[found]
            return found, self._gather(space, space.shard_of[hit], space.row_of[hit])

    def store(self, model_id: str, keys: np.ndarray, vectors: np.ndarray) -> int:
        """Append vectors for keys not cached yet as one new shard; returns how many were written.

        ``vectors`` is ``(n, dim)`` and must be finite; ``dim`` must match what this model id stored before.
        Keys repeated within the call are written once.
        """
        keys = _check_keys(keys)
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != keys.shape[0]:
            raise DataError(
                "keys and vectors do not line up",
                field="vectors",
                value=tuple(vectors.shape),
                expected=f"shape ({keys.shape[0]}, dim)",
            )
        if not np.isfinite(vectors).all():
            row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
            raise DataError("non-finite embedding", field="vectors", line=row, expected="finite floats")
        if self.dtype == np.float16 and vectors.size and float(np.abs(vectors).max()) > _FLOAT16_MAX:
            raise DataError(
                "embedding values overflow float16",
                field="vectors",
                value=float(np.abs(vectors).max()),
                expected=f"|x| <= {_FLOAT16_MAX} or EmbeddingCache(dtype='float32')",
            )
        with self._lock:
            space = self._refresh(model_id)
            self._ensure_meta(space, model_id, vectors.shape[1])
            sortable = _as_sortable(keys)
            _, first = np.unique(sortable, return_index=True)
            first.sort()
            keep = np.zeros(keys.shape[0], dtype=bool)
            keep[first] = True
            if space.sorted_keys.size:
                pos = np.minimum(np.searchsorted(space.sorted_keys, sortable), space.sorted_keys.size - 1)
                keep &= space.sorted_keys[pos] != sortable
            if not keep.any():
                return 0
            self._write_shard(space, keys[keep], vectors[keep].astype(self.dtype))
            self._refresh(model_id)
            return int(keep.sum())

    def get(self, model_id: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`lookup` by text instead of key."""
        return self.lookup(model_id, text_keys(texts))

    def put(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> int:
        """:meth:`store` by text instead of key."""
        return self.store(model_id, text_keys(texts), vectors)

    def count(self, model_id: str) -> int:
        """Number of distinct texts cached for ``model_id``."""
        with self._lock:
            return int(self._refresh(model_id).sorted_keys.size)

    def models(self) -> list[str]:
        """Model ids that have a folder here (read from each ``meta.json``)."""
        if not self.directory.is_dir():
            return []
        out = []
        for meta in sorted(self.directory.glob("*/meta.json")):
            out.append(str(json.loads(meta.read_text())["model_id"]))
        return out

    def compact(self, model_id: str) -> int:
        """Merge all shards of ``model_id`` into one (dropping duplicate keys); returns the row count.

        Many small shards build up when texts arrive a few at a time; lookups loop over shards, so merging
        keeps them fast. The merged shard is committed before the old ones are removed.
        """
        with self._lock:
            space = self._refresh(model_id)
            if len(space.shards) <= 1:
                return int(space.sorted_keys.size)
            order = np.lexsort((space.row_of, space.shard_of))  # shard order, so older files stay readable
            vectors = self._gather(space, space.shard_of[order], space.row_of[order])
            keys = np.frombuffer(space.sorted_keys[order].tobytes(), dtype=np.uint8).reshape(-1, KEY_BYTES)
            old = list(space.shards)
            dtype = np.result_type(*(v.dtype for v in space.vecs))
            self._write_shard(space, keys, vectors.astype(dtype), prefix="00000000000000000000")
            for name in old:
                (space.path / f"{name}.keys.npy").unlink(missing_ok=True)
                (space.path / f"{name}.vecs.npy").unlink(missing_ok=True)
            return int(self._refresh(model_id).sorted_keys.size)

    def clear(self, model_id: str) -> None:
        """Delete every shard of ``model_id`` (its folder and ``meta.json`` too)."""
        with self._lock:
            space = self._space(model_id)
            if space.path.is_dir():
                for f in space.path.iterdir():
                    f.unlink()
                space.path.rmdir()
            self._spaces.pop(model_id, None)

    # -- internals --------------------------------------------------------------------------------------

    def _space(self, model_id: str) -> _Space:
        if not model_id:
            raise ConfigError("EmbeddingCache needs a non-empty model id")
        if model_id not in self._spaces:
            self._spaces[model_id] = _Space(self.directory / path_slug(model_id))
        return self._spaces[model_id]

    def _refresh(self, model_id: str) -> _Space:
        """Bring the in-memory index up to date with the shards on disk (new shards, or a compaction)."""
        space = self._space(model_id)
        if not space.path.is_dir():
            if space.shards:
                self._spaces[model_id] = space = _Space(space.path)
            return space
        if space.dim is None:
            space.dim = self._read_meta(space, model_id)
        on_disk = sorted(
            f.name[: -len(".keys.npy")] for f in space.path.glob("*.keys.npy") if not f.name.startswith(".")
        )
        known = set(space.shards)
        if set(on_disk) == known:
            return space
        if not known <= set(on_disk):  # shards were removed (a compaction): rebuild from scratch
            space = self._spaces[model_id] = _Space(space.path, dim=space.dim)
            known = set()
        # existing index entries first, so the stable sort below keeps them (older shards win a duplicate)
        all_keys, shard_ids, rows = [space.sorted_keys], [space.shard_of], [space.row_of]
        for name in (s for s in on_disk if s not in known):
            keys = self._keys_of(space, name)
            vecs = np.load(space.path / f"{name}.vecs.npy", mmap_mode="r", allow_pickle=False)
            if vecs.ndim != 2 or vecs.shape[0] != keys.shape[0] or vecs.shape[1] != space.dim:
                raise DataError(
                    "cache shard does not match its keys or the model's dimension",
                    file=space.path / f"{name}.vecs.npy",
                    value=tuple(vecs.shape),
                    expected=f"shape ({keys.shape[0]}, {space.dim})",
                )
            all_keys.append(_as_sortable(keys))
            shard_ids.append(np.full(keys.shape[0], len(space.shards), dtype=np.int32))
            rows.append(np.arange(keys.shape[0], dtype=np.int64))
            space.shards.append(name)
            space.vecs.append(vecs)
        flat, shard_of, row_of = np.concatenate(all_keys), np.concatenate(shard_ids), np.concatenate(rows)
        order = np.argsort(flat, kind="stable")
        flat, shard_of, row_of = flat[order], shard_of[order], row_of[order]
        first = np.ones(flat.size, dtype=bool)
        first[1:] = flat[1:] != flat[:-1]
        space.sorted_keys, space.shard_of, space.row_of = flat[first], shard_of[first], row_of[first]
        return space

    @staticmethod
    def _keys_of(space: _Space, name: str) -> np.ndarray:
        path = space.path / f"{name}.keys.npy"
        keys = np.load(path, allow_pickle=False)
        if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != KEY_BYTES:
            raise DataError(
                "corrupt cache keys file",
                file=path,
                value=f"{keys.dtype}{keys.shape}",
                expected=f"(n, {KEY_BYTES}) uint8",
            )
        return keys

    def _read_meta(self, space: _Space, model_id: str) -> int | None:
        path = space.path / "meta.json"
        if not path.exists():
            return None
        meta = json.loads(path.read_text())
        if meta.get("model_id") != model_id:
            raise DataError(
                "cache folder belongs to another model",
                file=path,
                value=meta.get("model_id"),
                expected=model_id,
            )
        if meta.get("format") != FORMAT_VERSION:
            raise DataError(
                "unknown cache format", file=path, value=meta.get("format"), expected=str(FORMAT_VERSION)
            )
        return int(meta["dim"])

    def _ensure_meta(self, space: _Space, model_id: str, dim: int) -> None:
        if space.dim is None:
            space.path.mkdir(parents=True, exist_ok=True)
            meta = {"format": FORMAT_VERSION, "model_id": model_id, "dim": int(dim)}
            _atomic_write(space.path / "meta.json", json.dumps(meta, indent=1).encode())
            space.dim = int(dim)
        elif space.dim != dim:
            raise DataError(
                "embedding dimension differs from the cached one",
                file=space.path / "meta.json",
                field="dim",
                value=dim,
                expected=str(space.dim),
            )

    @staticmethod
    def _write_shard(space: _Space, keys: np.ndarray, vectors: np.ndarray, prefix: str | None = None) -> str:
        stamp = prefix if prefix is not None else f"{time.time_ns():020d}"
        name = f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for suffix, arr in (("vecs", vectors), ("keys", keys)):  # keys last: their presence commits the shard
            tmp = space.path / f".tmp-{name}.{suffix}.npy"
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, space.path / f"{name}.{suffix}.npy")
        return name

    @staticmethod
    def _gather(space: _Space, shard_of: np.ndarray, row_of: np.ndarray) -> np.ndarray:
        out = np.empty((shard_of.size, space.dim or 0), dtype=np.float32)
        for s in np.unique(shard_of):  # a loop over shards, never over rows
            sel = shard_of == s
            out[sel] = space.vecs[int(s)][row_of[sel]]
        return out


def _check_keys(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys)
    if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != KEY_BYTES:
        raise DataError(
            "bad cache keys",
            field="keys",
            value=f"{keys.dtype}{keys.shape}",
            expected="(n, 32) uint8 from text_keys",
        )
    return keys


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
