"""Id vocabularies: external id <-> contiguous index, stable and saved."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from attnrec.errors import DataError, UnknownIdError


class Vocabulary:
    """A stable bijection between external ids (strings) and indices ``0..n-1``.

    Indices follow the order in which ids were given (``from_ids`` sorts first unless ``sort=False``),
    so the same data always gives the same vocabulary. Lookups are vectorised through a Polars join.
    """

    def __init__(self, ids: Iterable[str], *, kind: str = "id") -> None:
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object).astype(str)
        self.kind = kind
        self._ids = arr
        self._frame = pl.DataFrame(
            {"_id": pl.Series(arr, dtype=pl.String), "_idx": np.arange(len(arr), dtype=np.int64)}
        )
        if self._frame["_id"].n_unique() != len(arr):
            dup = self._frame.filter(pl.col("_id").is_duplicated())["_id"][0]
            raise DataError(f"duplicate {kind} id in vocabulary", value=dup, expected="unique ids")

    @classmethod
    def from_ids(
        cls, ids: pl.Series | np.ndarray | Iterable[str], *, kind: str = "id", sort: bool = True
    ) -> Vocabulary:
        """Build from possibly repeated ids; unique ids are sorted (stable across runs) unless ``sort=False``."""
        s = (
            ids.cast(pl.String)
            if isinstance(ids, pl.Series)
            else pl.Series(np.asarray(list(ids)).astype(str))
        )
        uniq = s.unique(maintain_order=True)
        if sort:
            uniq = uniq.sort()
        return cls(uniq.to_numpy().astype(str), kind=kind)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, ext: object) -> bool:
        return bool(self._frame["_id"].is_in([str(ext)]).any())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self._ids, other._ids)

    def __repr__(self) -> str:
        return f"Vocabulary(kind={self.kind!r}, size={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """External ids by index (a NumPy array of str)."""
        return self._ids

    def lookup(self, ext: pl.Series | np.ndarray | Iterable[object], *, missing: str = "error") -> np.ndarray:
        """Map external ids to indices.

        ``missing``: ``"error"`` raises :class:`UnknownIdError` naming the unknown ids; ``"minus_one"`` maps them to -1.
        """
        s = (
            ext.cast(pl.String)
            if isinstance(ext, pl.Series)
            else pl.Series("_id", [str(x) for x in ext], dtype=pl.String)
        )
        joined = pl.DataFrame({"_id": s}).join(self._frame, on="_id", how="left", maintain_order="left")
        idx = joined["_idx"]
        if idx.null_count():
            if missing == "error":
                bad = joined.filter(pl.col("_idx").is_null())["_id"].unique(maintain_order=True)
                raise UnknownIdError(self.kind, bad.head(5).to_list(), total=len(bad))
            idx = idx.fill_null(-1)
        return idx.to_numpy().astype(np.int64)

    def index(self, ext: object) -> int:
        """Index of one external id (raises :class:`UnknownIdError`)."""
        return int(self.lookup([ext])[0])

    def to_json(self) -> list[str]:
        return [str(x) for x in self._ids]

    @classmethod
    def from_json(cls, data: list[str], *, kind: str = "id") -> Vocabulary:
        return cls(np.asarray(data, dtype=str), kind=kind)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": self.kind, "ids": self.to_json()}))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        data = json.loads(Path(path).read_text())
        return cls.from_json(data["ids"], kind=data.get("kind", "id"))
