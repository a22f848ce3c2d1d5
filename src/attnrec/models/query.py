"""What a scoring call asks for: :class:`Query`, in the index space of a fitted model.

A query is a batch of ``Q`` rows. Each row names a known user, or carries a history given at call time (a new
user, or "this user's history now"), optionally a domain and a text. What to leave out of the ranking is part
of the query too: by default the stored training interactions of known users plus the row's own history.

* implicit's ``recommend(userid, user_items)`` takes the history at call time; LensKit's ``RecQuery`` bundles user,
  history and context. attnrec's :class:`Query` is both, vectorised over rows.
* External ids are mapped to indices by the model's vocabularies (:meth:`Query.from_ids`); unknown users become
  index ``-1`` ("new user"), which then needs a history or a text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp

from attnrec.errors import ConfigError

if TYPE_CHECKING:
    from attnrec.data.vocab import Vocabulary

#: what a query may carry; a model declares the subset it uses in ``ItemScorer.query_inputs``
QUERY_INPUTS = frozenset({"users", "history", "text", "domain"})
Exclude = Literal["seen", "history", "none"]


@dataclass(frozen=True)
class History:
    """Ragged item histories, one per query row, in the order given (oldest first for sequences).

    ``items`` (N,) int64 item indices of all rows back to back; ``offsets`` (Q + 1,) int64 with row ``r`` at
    ``items[offsets[r]:offsets[r + 1]]``; optional ``values`` (N,) float32 (e.g. ratings) and ``timestamps`` (N,)
    int64 aligned with ``items``.
    """

    items: np.ndarray
    offsets: np.ndarray
    values: np.ndarray | None = None
    timestamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        items = np.asarray(self.items, dtype=np.int64)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "offsets", offsets)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(items):
            raise ConfigError(
                f"query history: offsets must start at 0 and end at len(items)={len(items)}, got {offsets[:3]}..."
            )
        if np.any(np.diff(offsets) < 0):
            raise ConfigError("query history: offsets must be non-decreasing")
        for name in ("values", "timestamps"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != len(items):
                raise ConfigError(f"query history: {name} has {len(arr)} entries for {len(items)} items")

    @classmethod
    def from_lists(
        cls,
        rows: Sequence[Sequence[int] | np.ndarray],
        values: Sequence[Sequence[float] | np.ndarray] | None = None,
    ) -> History:
        """From one list of item indices per row (and optionally one list of values per row)."""
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = (
            np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
            if len(rows)
            else np.zeros(0, np.int64)
        )
        vals = None
        if values is not None:
            if [len(v) for v in values] != lengths.tolist():
                raise ConfigError("query history: values must have one entry per item in every row")
            vals = np.concatenate([np.asarray(v, dtype=np.float32) for v in values]) if len(values) else None
        return cls(items, offsets, vals)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, r: int) -> np.ndarray:
        return self.items[self.offsets[r] : self.offsets[r + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_ids(self) -> np.ndarray:
        """The query row of every entry of ``items``, (N,) int64."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def csr(self, n_items: int) -> sp.csr_matrix:
        """(Q, n_items) 0/1 matrix of the items in each row (duplicates counted once)."""
        self.check_range(n_items)
        m = sp.csr_matrix(
            (np.ones(len(self.items), dtype=np.float32), self.items, self.offsets), shape=(len(self), n_items)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def check_range(self, n_items: int) -> None:
        if len(self.items) and (self.items.min() < 0 or self.items.max() >= n_items):
            bad = self.items[(self.items < 0) | (self.items >= n_items)][0]
            raise ConfigError(f"query history: item index {int(bad)} is out of range 0..{n_items - 1}")


@dataclass(frozen=True)
class Query:
    """A batch of scoring requests in index space.

    Attributes:
        users: (Q,) int64 user indices, ``-1`` for a user the model has not seen; None when no row names a user.
        history: the items each row has interacted with, given at call time; None to use the stored state only.
        domain: the target domain for cross-domain models (one name for the batch), else None.
        text: one text per row for models that take text queries, else None.
        exclude: what never to recommend: ``"seen"`` (default: the stored training items of known users plus the
            row's history), ``"history"`` (the row's history only), ``"none"``, or an explicit (Q, n_items) CSR.
    """

    users: np.ndarray | None = None
    history: History | None = None
    domain: str | None = None
    text: Sequence[str] | None = None
    exclude: Exclude | sp.csr_matrix = "seen"

    def __post_init__(self) -> None:
        if self.users is not None:
            raw = np.asarray(self.users).reshape(-1)
            if raw.size and raw.dtype.kind not in "iu":
                raise ConfigError(
                    f"query users: expected integer indices (Query.from_ids maps external ids), got dtype {raw.dtype}"
                )
            users = raw.astype(np.int64)
            object.__setattr__(self, "users", users)
            if users.size and users.min() < -1:
                raise ConfigError(f"query users: index {int(users.min())} is invalid (-1 marks a new user)")
        if isinstance(self.text, str | bytes):
            raise ConfigError("query text: give one text per row (a list), not a single string")
        if not isinstance(self.exclude, str):
            if not sp.issparse(self.exclude):
                raise ConfigError(
                    f"query exclude: expected 'seen', 'history', 'none' or a sparse matrix, got {type(self.exclude).__name__}"
                )
            object.__setattr__(self, "exclude", sp.csr_matrix(self.exclude))
        sizes = {
            name: n
            for name, n in (
                ("users", None if self.users is None else len(self.users)),
                ("history", None if self.history is None else len(self.history)),
                ("text", None if self.text is None else len(self.text)),
            )
            if n is not None
        }
        if not sizes:
            raise ConfigError("a query needs users, a history or a text")
        if len(set(sizes.values())) > 1:
            raise ConfigError(f"query parts have different numbers of rows: {sizes}")
        if isinstance(self.exclude, str) and self.exclude not in ("seen", "history", "none"):
            raise ConfigError(
                f"query exclude: expected 'seen', 'history', 'none' or a matrix, got {self.exclude!r}"
            )
        if not isinstance(self.exclude, str) and self.exclude.shape[0] != len(self):
            raise ConfigError(
                f"query exclude: the matrix has {self.exclude.shape[0]} rows for {len(self)} query rows"
            )
        if self.users is not None and self.history is None and self.text is None and (self.users < 0).any():
            raise ConfigError("query: a new user (index -1) needs a history or a text")

    def __len__(self) -> int:
        if self.users is not None:
            return len(self.users)
        if self.history is not None:
            return len(self.history)
        assert self.text is not None
        return len(self.text)

    @property
    def inputs(self) -> frozenset[str]:
        """The parts this query carries (a subset of :data:`QUERY_INPUTS`)."""
        parts = {
            "users": self.users is not None and bool((self.users >= 0).any()),
            "history": self.history is not None,
            "text": self.text is not None,
            "domain": self.domain is not None,
        }
        return frozenset(k for k, v in parts.items() if v)

    def take(self, rows: slice) -> Query:
        """Rows ``rows`` (a slice) of this query."""
        hist = None
        if self.history is not None:
            h = self.history
            lo, hi = int(h.offsets[rows.start or 0]), int(h.offsets[min(rows.stop, len(h))])
            sl = slice(lo, hi)
            hist = History(
                h.items[sl],
                h.offsets[rows.start or 0 : min(rows.stop, len(h)) + 1] - lo,
                None if h.values is None else h.values[sl],
                None if h.timestamps is None else h.timestamps[sl],
            )
        excl = self.exclude if isinstance(self.exclude, str) else self.exclude[rows]
        return Query(
            users=None if self.users is None else self.users[rows],
            history=hist,
            domain=self.domain,
            text=None if self.text is None else list(self.text)[rows],
            exclude=excl,
        )

    @classmethod
    def from_ids(
        cls,
        user_vocab: Vocabulary | None,
        item_vocab: Vocabulary,
        *,
        user_ids: Sequence[object] | None = None,
        history_ids: Sequence[Sequence[object]] | None = None,
        text: Sequence[str] | None = None,
        domain: str | None = None,
        exclude: Exclude = "seen",
        unknown_users: Literal["raise", "new"] = "raise",
    ) -> Query:
        """A query from external ids. History items must be known items (an unknown one raises, naming it);
        unknown users raise unless ``unknown_users="new"``, which marks them ``-1`` (they then need a history or
        text)."""
        users = None
        for name, arg in (("user_ids", user_ids), ("history_ids", history_ids), ("text", text)):
            if isinstance(arg, str | bytes):
                raise ConfigError(f"Query.from_ids: {name} must be a list, not the string {arg!r}")
        if user_ids is not None:
            if user_vocab is None:
                raise ConfigError("this model has no user vocabulary: query by history or text instead")
            if unknown_users == "new":
                users = user_vocab.lookup([str(u) for u in user_ids], missing="minus_one")
            else:
                users = user_vocab.lookup([str(u) for u in user_ids])
        hist = None
        if history_ids is not None:
            hist = History.from_lists([item_vocab.lookup([str(i) for i in row]) for row in history_ids])
        return cls(users=users, history=hist, text=text, domain=domain, exclude=exclude)
