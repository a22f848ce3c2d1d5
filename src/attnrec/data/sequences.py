"""Padded per-user item sequences for sequential (and cross-domain sequential) models.

:class:`Sequences` is built once from an encoded training split (:class:`~attnrec.data.table.Interactions`) and
an item -> domain array, or from histories given at call time (:class:`~attnrec.models.query.History`-like
ragged arrays). Every array is ``(U, L)``, one row per user, **right-aligned** (padded on the LEFT), the most
recent interaction in the last column, so ``items[:, -1]`` is each user's latest item and a causal model reads
left to right:

=============  ==========  =============================================================================
field          dtype       meaning (pad value)
=============  ==========  =============================================================================
``items``      int64       item index + 1 (0 = padding): index 0 of an embedding table is the pad row
``domains``    int64       domain id of the item, ``0 .. n_domains - 1`` (-1 = padding)
``order``      int64       chronological rank of the position in the user's *mixed* sequence as stored,
                           0 = oldest kept (-1 = padding); a per-domain :meth:`~Sequences.view` keeps the
                           ranks of the mixed sequence, so two views can be aligned in time (a key of domain
                           B is earlier than a query of domain A iff ``order_B < order_A``)
``timestamps`` int64       the interaction's timestamp (0 = padding), or None when the data has none
``lengths``    int64 (U,)  real positions per row (``<= L``)
``users``      int64 (U,)  the user index of each row (-1 for a history given at call time)
=============  ==========  =============================================================================

Order within a user is by timestamp, ties by the rows' order in the encoded frame (the file order: ABXI and
C2DSR files are chronological with many equal day-level timestamps); without a timestamp column, frame order.
Only the last ``max_len`` interactions are kept.

Test-time context (standard leave-one-out): the model's input at test time is the training sequence plus the
validation item, never the test item: ``train_seq.append(valid)`` (:meth:`Sequences.append`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError

#: the pad value of ``items`` (item index + 1 elsewhere)
PAD_ITEM = 0
#: the pad value of ``domains`` and ``order``
PAD_DOMAIN = -1
#: the maximum sequence length ABXI, SASRec and the GCA paper use
DEFAULT_MAX_LEN = 50


@dataclass(frozen=True)
class Sequences:
    """Left-padded item sequences, one row per user (see the module docstring for every field).

    ``item_domains`` (n_items,) int64 maps item index -> domain id; ``domain_names`` names the ids in order
    (``("A", "B")``, or a single ``("all",)`` for single-domain data). ``max_len`` is ``L``.
    """

    items: np.ndarray
    domains: np.ndarray
    order: np.ndarray
    lengths: np.ndarray
    users: np.ndarray
    item_domains: np.ndarray
    domain_names: tuple[str, ...]
    timestamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.items.ndim != 2:
            raise ConfigError(f"Sequences.items: expected a (U, L) array, got shape {self.items.shape}")
        shape = self.items.shape
        for name in ("domains", "order") + (("timestamps",) if self.timestamps is not None else ()):
            arr = getattr(self, name)
            if arr.shape != shape:
                raise ConfigError(f"Sequences.{name}: shape {arr.shape}, expected {shape} as items")
        if self.lengths.shape != (shape[0],) or self.users.shape != (shape[0],):
            raise ConfigError(f"Sequences.lengths/users: expected shape ({shape[0]},)")
        if self.item_domains.ndim != 1:
            raise ConfigError("Sequences.item_domains: expected a 1-D array (one domain id per item)")
        if len(self.item_domains) and (
            self.item_domains.min() < 0 or self.item_domains.max() >= len(self.domain_names)
        ):
            raise ConfigError(
                f"Sequences.item_domains: ids must lie in 0..{len(self.domain_names) - 1} "
                f"(domains {list(self.domain_names)})"
            )

    # ----------------------------------------------------------------------------------------- shape helpers

    def __len__(self) -> int:
        return int(self.items.shape[0])

    @property
    def max_len(self) -> int:
        """``L``, the number of columns."""
        return int(self.items.shape[1])

    @property
    def n_items(self) -> int:
        """Items in the vocabulary (item indices are ``0 .. n_items - 1``; ``items`` holds them + 1)."""
        return len(self.item_domains)

    @property
    def n_domains(self) -> int:
        return len(self.domain_names)

    @property
    def mask(self) -> np.ndarray:
        """(U, L) bool, True at real positions."""
        return self.items != PAD_ITEM

    def domain_id(self, domain: int | str) -> int:
        """The id of ``domain`` (a name from :attr:`domain_names` or an id); a :class:`ConfigError` naming the
        declared domains otherwise."""
        if isinstance(domain, str):
            if domain not in self.domain_names:
                raise ConfigError(
                    f"unknown domain {domain!r}; this data has domains {list(self.domain_names)}"
                )
            return self.domain_names.index(domain)
        d = int(domain)
        if not 0 <= d < self.n_domains:
            raise ConfigError(f"domain id {d} out of range; this data has domains {list(self.domain_names)}")
        return d

    # ----------------------------------------------------------------------------------------- constructors

    @classmethod
    def from_arrays(
        cls,
        rows: np.ndarray,
        items: np.ndarray,
        n_rows: int,
        item_domains: np.ndarray,
        domain_names: Sequence[str],
        *,
        max_len: int = DEFAULT_MAX_LEN,
        timestamps: np.ndarray | None = None,
        users: np.ndarray | None = None,
    ) -> Sequences:
        """Build from flat interactions already in order: ``rows`` (N,) int64 row of each interaction (any
        order of rows; within a row the given order is chronological), ``items`` (N,) int64 item indices,
        optional ``timestamps`` (N,) int64. ``users`` (n_rows,) defaults to ``arange(n_rows)``. Vectorised: one
        stable sort, one scatter; only the last ``max_len`` interactions of each row are kept."""
        if max_len < 1:
            raise ConfigError(f"max_len={max_len}; expected >= 1")
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        item_domains = np.asarray(item_domains, dtype=np.int64)
        if rows.shape != items.shape or rows.ndim != 1:
            raise ConfigError(
                f"Sequences: rows {rows.shape} and items {items.shape} must be equal 1-D shapes"
            )
        if len(items) and (items.min() < 0 or items.max() >= len(item_domains)):
            bad = int(items[(items < 0) | (items >= len(item_domains))][0])
            raise DataError(
                "item index out of range",
                field="item",
                value=bad,
                expected=f"0 <= item < {len(item_domains)} (the item vocabulary)",
            )
        if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
            raise ConfigError(f"Sequences: row index out of range 0..{n_rows - 1}")
        # stable sort by row keeps the given within-row order; then position counted from each row's end
        by_row = np.argsort(rows, kind="stable")
        r, it = rows[by_row], items[by_row]
        counts = np.bincount(r, minlength=n_rows).astype(np.int64)
        ends = np.cumsum(counts)
        from_end = ends[r] - np.arange(len(r), dtype=np.int64) - 1  # 0 = the row's latest interaction
        keep = from_end < max_len
        r, it, from_end = r[keep], it[keep], from_end[keep]
        lengths = np.minimum(counts, max_len)
        col = max_len - 1 - from_end
        out_items = np.zeros((n_rows, max_len), dtype=np.int64)
        out_dom = np.full((n_rows, max_len), PAD_DOMAIN, dtype=np.int64)
        out_order = np.full((n_rows, max_len), PAD_DOMAIN, dtype=np.int64)
        out_items[r, col] = it + 1
        out_dom[r, col] = item_domains[it]
        out_order[r, col] = lengths[r] - 1 - from_end
        out_ts = None
        if timestamps is not None:
            ts = np.asarray(timestamps, dtype=np.int64)[by_row][keep]
            out_ts = np.zeros((n_rows, max_len), dtype=np.int64)
            out_ts[r, col] = ts
        return cls(
            items=out_items,
            domains=out_dom,
            order=out_order,
            lengths=lengths,
            users=np.arange(n_rows, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64),
            item_domains=item_domains,
            domain_names=tuple(domain_names),
            timestamps=out_ts,
        )

    @classmethod
    def from_interactions(
        cls,
        data: Interactions,
        item_domains: np.ndarray | None = None,
        domain_names: Sequence[str] | None = None,
        *,
        max_len: int = DEFAULT_MAX_LEN,
    ) -> Sequences:
        """One row per user of ``data``'s user vocabulary (row ``u`` = user index ``u``; users without rows
        have length 0), ordered by ``timestamp`` then frame order (frame order alone without timestamps).

        ``item_domains`` (n_items,) domain id per item index; default: :func:`item_domains_of` ``data``
        (from its ``domain`` column), or a single domain ``"all"`` when it has none.
        """
        if item_domains is None:
            item_domains, names = item_domains_of(data)
            domain_names = names if domain_names is None else domain_names
        if domain_names is None:
            n = int(np.max(item_domains)) + 1 if len(item_domains) else 1
            domain_names = [str(d) for d in range(n)]
        if len(item_domains) != data.n_items:
            raise ConfigError(
                f"item_domains has {len(item_domains)} entries for {data.n_items} items in the vocabulary"
            )
        users, items = data.users, data.items
        ts = (
            data.frame["timestamp"].to_numpy().astype(np.int64) if "timestamp" in data.frame.columns else None
        )
        if ts is not None:
            perm = np.lexsort((np.arange(len(users)), ts))  # by timestamp, ties by frame row
            users, items, ts = users[perm], items[perm], ts[perm]
        return cls.from_arrays(
            users, items, data.n_users, item_domains, domain_names, max_len=max_len, timestamps=ts
        )

    @classmethod
    def from_history(
        cls,
        history_items: np.ndarray,
        offsets: np.ndarray,
        item_domains: np.ndarray,
        domain_names: Sequence[str],
        *,
        max_len: int = DEFAULT_MAX_LEN,
        timestamps: np.ndarray | None = None,
        users: np.ndarray | None = None,
    ) -> Sequences:
        """From ragged call-time histories, oldest first: ``history_items`` (N,) item indices, ``offsets``
        (Q + 1,) with row ``r`` at ``history_items[offsets[r]:offsets[r + 1]]`` (the fields of a
        :class:`~attnrec.models.query.History`: ``Sequences.from_history(h.items, h.offsets, ...)``). ``users``
        default to -1 (new users)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        n = len(offsets) - 1
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
        return cls.from_arrays(
            rows,
            history_items,
            n,
            item_domains,
            domain_names,
            max_len=max_len,
            timestamps=timestamps,
            users=np.full(n, -1, dtype=np.int64) if users is None else users,
        )

    # ----------------------------------------------------------------------------------------- derived

    def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The real positions as flat arrays in row-major (chronological) order: ``(rows, items, timestamps)``,
        ``items`` as item indices (no +1)."""
        m = self.mask
        rows = np.nonzero(m)[0].astype(np.int64)
        ts = None if self.timestamps is None else self.timestamps[m]
        return rows, self.items[m] - 1, ts

    def append(self, data: Interactions) -> Sequences:
        """These sequences extended with ``data``'s interactions (e.g. the validation item: the test-time input
        of leave-one-out), placed after every stored position (they are later in time), ordered among
        themselves by timestamp then frame order, and cut to the last ``max_len``. Rows are users: ``data``
        must use the same user and item index spaces (same vocabularies)."""
        if data.n_items != self.n_items:
            raise ConfigError(
                f"Sequences.append: the data has {data.n_items} items, these sequences {self.n_items}"
            )
        new_u, new_i = data.users, data.items
        if len(new_u) and new_u.max() >= len(self):
            raise ConfigError(f"Sequences.append: user index {int(new_u.max())} beyond {len(self)} rows")
        has_ts = "timestamp" in data.frame.columns
        new_ts = data.frame["timestamp"].to_numpy().astype(np.int64) if has_ts else None
        if new_ts is not None:
            perm = np.lexsort((np.arange(len(new_u)), new_ts))
            new_u, new_i, new_ts = new_u[perm], new_i[perm], new_ts[perm]
        rows, items, ts = self.flat()
        both_ts = None
        if self.timestamps is not None:
            add = new_ts if new_ts is not None else np.zeros(len(new_u), dtype=np.int64)
            both_ts = np.concatenate([ts if ts is not None else np.zeros(0, np.int64), add])
        return Sequences.from_arrays(
            np.concatenate([rows, new_u]),
            np.concatenate([items, new_i]),
            len(self),
            self.item_domains,
            self.domain_names,
            max_len=self.max_len,
            timestamps=both_ts,
            users=self.users,
        )

    def view(self, domain: int | str) -> Sequences:
        """The positions of one domain only, same rows (users) and ``L``, left-padded again. ``order`` keeps
        the ranks of the mixed sequence (for time alignment between views); ``lengths`` count the domain's
        positions."""
        d = self.domain_id(domain)
        keep = self.domains == d
        # a stable argsort of the keep mask moves kept positions to the right, in their order
        perm = np.argsort(keep, axis=1, kind="stable")
        kept = np.take_along_axis(keep, perm, axis=1)

        def gather(a: np.ndarray, pad: int) -> np.ndarray:
            return np.where(kept, np.take_along_axis(a, perm, axis=1), pad)

        return replace(
            self,
            items=gather(self.items, PAD_ITEM),
            domains=gather(self.domains, PAD_DOMAIN),
            order=gather(self.order, PAD_DOMAIN),
            lengths=keep.sum(axis=1).astype(np.int64),
            timestamps=None if self.timestamps is None else gather(self.timestamps, 0),
        )

    def take(self, rows: np.ndarray | slice) -> Sequences:
        """The sequences of ``rows`` (an index array or a slice), in that order."""
        return replace(
            self,
            items=self.items[rows],
            domains=self.domains[rows],
            order=self.order[rows],
            lengths=self.lengths[rows],
            users=self.users[rows],
            timestamps=None if self.timestamps is None else self.timestamps[rows],
        )

    def last_items(self) -> np.ndarray:
        """(U,) int64 item index of each row's latest position, -1 for an empty row."""
        return self.items[:, -1] - 1


def item_domains_of(
    data: Interactions, items: pl.DataFrame | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(item_domains (n_items,) int64, domain_names)`` for ``data``'s item vocabulary: names sorted, ids in
    that order.

    ``items``: the catalogue (``item_id``, ``domain``; the ``items`` side input / ``Dataset.items`` of the CDSR
    readers), used when it has a ``domain`` column: every vocabulary item must be listed with a domain (rows of
    other items are ignored; a DataError names the items that are not). Otherwise from ``data``'s ``domain``
    column: every item index must occur in ``data``. An item in two domains is a :class:`DataError` naming it;
    without any domain, every item is in the one domain ``"all"``.
    A run's vocabulary holds items that occur only in held-out rows (their domain comes from the catalogue).
    """
    if items is not None and "domain" in items.columns:
        # an item listed twice: its first row is the one used (as read_items warns, and as catalogue_gaps checks)
        items = items.unique("item_id", keep="first", maintain_order=True)
        idx = data.item_vocab.lookup(items["item_id"], missing="minus_one")
        keep = idx >= 0
        listed = np.zeros(data.n_items, dtype=bool)
        listed[idx[keep]] = True
        listed[idx[keep & items["domain"].is_null().to_numpy()]] = False
        if not listed.all():  # not listed, or listed with an empty domain: say which items, not a row number
            gaps = data.item_vocab.ids[np.flatnonzero(~listed)]
            raise DataError(
                f"{len(gaps)} item(s) of the vocabulary have no domain in the catalogue (no row, or an empty "
                f"domain): {[str(i) for i in gaps[:5]]}{' ...' if len(gaps) > 5 else ''}",
                field="item_id",
                value=str(gaps[0]),
                expected="a catalogue row with a domain for every item of the interactions",
            )
        cat = Interactions(
            pl.DataFrame({"user": np.zeros(int(keep.sum()), np.int64), "item": idx[keep]}).with_columns(
                items["domain"].cast(pl.String).filter(pl.Series(keep))
            ),
            data.user_vocab,
            data.item_vocab,
        )
        return item_domains_of(cat)
    if "domain" not in data.frame.columns:
        return np.zeros(data.n_items, dtype=np.int64), ("all",)
    dom = data.frame["domain"].cast(str)
    names = tuple(sorted(dom.unique().drop_nulls().to_list()))
    if dom.null_count():
        row = int(dom.is_null().arg_true()[0])
        raise DataError("empty domain", line=row + 1, field="domain", expected=f"one of {list(names)}")
    ids = np.searchsorted(np.array(names, dtype=object), dom.to_numpy().astype(object)).astype(np.int64)
    idx = data.items
    out = np.full(data.n_items, -1, dtype=np.int64)
    out[idx] = ids
    clash = out[idx] != ids
    if clash.any():
        k = int(np.flatnonzero(clash)[0])
        raise DataError(
            "item in two domains",
            field="domain",
            value=f"item {data.item_vocab.ids[idx[k]]!r}: {names[out[idx[k]]]!r} and {names[ids[k]]!r}",
            expected="one domain per item",
        )
    missing = out < 0
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{int(missing.sum())} item(s) of the vocabulary have no row to give them a domain",
            field="domain",
            value=str(data.item_vocab.ids[i]),
            expected="every item of the vocabulary in the data (build item domains from the whole dataset)",
        )
    return out, names
