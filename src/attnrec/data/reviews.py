"""The text pipeline of the review models (DeepCoNN, TransNet, safmr), built from the TRAINING split only.

* :func:`tokenize` — lowercase, then words = maximal runs of ``[a-z0-9']`` (punctuation and other characters
  separate words and are dropped; stop words are kept, as the safmr paper does). Vectorised (Polars string ops).
* :class:`WordVocab` — the ``max_words`` most frequent words of the training reviews (ties: alphabetical);
  index 0 is padding, 1 out-of-vocabulary, words from 2 in frequency order. :meth:`WordVocab.encode` turns texts
  into an (N, L) int32 matrix of the first L words, zero-padded.
* :class:`ReviewDocuments` — per user and per item a document of their training reviews, (n, R, L) int32
  (R reviews of L words), and the target review of every training row, built once with NumPy scatters (no loop
  over reviews). A user's (item's) reviews are ordered by timestamp (then training row), and the R most recent
  are kept when there are more. Empty or missing review text is kept as an all-padding review and counted; a
  user or item with no training review text has an all-padding document (the documented fallback at predict
  time; :meth:`ReviewDocuments.has_text` flags it).

Nothing here reads a validation or test review: :meth:`ReviewDocuments.build` takes a
:class:`~attnrec.data.side.ReviewCorpus`, which only :meth:`ReviewCorpus.from_split` of the training split builds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import polars as pl
import torch

from attnrec.data.side import ReviewCorpus
from attnrec.errors import ConfigError, DataError

PAD, OOV = 0, 1
#: what a word is (after lowercasing): letters, digits and apostrophes ("don't" is one word)
WORD_PATTERN = r"[a-z0-9']+"


def tokenize(texts: pl.Series) -> pl.Series:
    """Words of each text: a ``list[str]`` Series, one list per text (null or empty text -> empty list)."""
    return texts.cast(pl.String).fill_null("").str.to_lowercase().str.extract_all(WORD_PATTERN)


@dataclass(frozen=True)
class WordVocab:
    """Word indices for the review models: 0 = padding, 1 = out-of-vocabulary, ``words[k]`` = index ``k + 2``."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, tokens: pl.Series, max_words: int) -> WordVocab:
        """The ``max_words`` most frequent words of ``tokens`` (a :func:`tokenize` Series); ties alphabetical."""
        if max_words < 1:
            raise ConfigError(f"max_words must be >= 1, got {max_words}")
        flat = tokens.explode().drop_nulls()
        if flat.len() == 0:
            return cls(())
        counts = (
            flat.alias("word")
            .to_frame()
            .group_by("word")
            .len()
            .sort(["len", "word"], descending=[True, False])
            .head(max_words)
        )
        return cls(tuple(counts["word"].to_list()))

    def __len__(self) -> int:
        """Rows of an embedding table over this vocabulary (words + padding + out-of-vocabulary)."""
        return len(self.words) + 2

    def encode(self, tokens: pl.Series, length: int) -> np.ndarray:
        """The first ``length`` words of each token list as indices: (N, length) int32, zero-padded."""
        n = tokens.len()
        out = np.zeros((n, length), dtype=np.int32)
        head = tokens.list.head(length)
        lengths = head.list.len().fill_null(0).to_numpy().astype(np.int64)
        total = int(lengths.sum())
        if total == 0:
            return out
        flat = head.explode().drop_nulls()
        if self.words:
            lookup = pl.DataFrame(
                {"word": list(self.words), "id": np.arange(2, len(self.words) + 2, dtype=np.int32)}
            )
            ids = (
                flat.alias("word")
                .to_frame()
                .join(lookup, on="word", how="left", maintain_order="left")["id"]
                .fill_null(OOV)
                .to_numpy()
            )
        else:
            ids = np.full(total, OOV, dtype=np.int32)
        rows = np.repeat(np.arange(n), lengths)
        starts = np.cumsum(lengths) - lengths
        cols = np.arange(total) - np.repeat(starts, lengths)
        out[rows, cols] = ids
        return out


def _documents(
    owner: np.ndarray, n_owners: int, order: np.ndarray, review_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Slots of each row in its owner's document: (rows kept, their slot), the ``review_count`` latest per owner.

    ``order`` sorts the rows chronologically; slot 0 is the oldest kept review."""
    sorted_owner = owner[order]
    by_owner = np.argsort(sorted_owner, kind="stable")
    rows = order[by_owner]  # grouped by owner, chronological within
    counts = np.bincount(owner, minlength=n_owners)
    starts = np.cumsum(counts) - counts
    grouped_owner = owner[rows]
    pos = np.arange(len(rows)) - starts[grouped_owner]
    drop = np.maximum(counts - review_count, 0)[grouped_owner]
    keep = pos >= drop
    return rows[keep], (pos - drop)[keep]


@dataclass(frozen=True)
class ReviewDocuments:
    """The review model inputs of one training split (every array indexed by the training split's indices).

    ``user_docs`` (n_users, R, L) and ``item_docs`` (n_items, R, L) int32: each user's / item's training reviews;
    ``row_tokens`` (n_rows, L) int32: the review of each training row (the target network's input, training only);
    ``user_slot`` / ``item_slot`` (n_rows,) int64: where that review sits in its user's / item's document (-1 when
    it is not among the R kept), so training can hide a row's own review from its documents.
    """

    user_docs: np.ndarray
    item_docs: np.ndarray
    row_tokens: np.ndarray
    user_slot: np.ndarray
    item_slot: np.ndarray
    #: training reviews with no words (empty or missing text): kept as all-padding reviews
    n_empty_reviews: int

    @classmethod
    def build(
        cls,
        corpus: ReviewCorpus,
        vocab: WordVocab,
        n_users: int,
        n_items: int,
        *,
        review_count: int = 10,
        review_length: int = 80,
        timestamps: np.ndarray | None = None,
        tokens: pl.Series | None = None,
    ) -> ReviewDocuments:
        """Documents of ``corpus`` (rows aligned with the training split). ``timestamps`` (n_rows,) orders each
        document (None: training-row order); ``tokens`` is ``tokenize(corpus.frame["review"])`` if already
        computed."""
        if review_count < 1 or review_length < 1:
            raise ConfigError(
                f"review_count and review_length must be >= 1, got {review_count} and {review_length}"
            )
        frame = corpus.frame
        n = len(frame)
        users = frame["user"].to_numpy().astype(np.int64)
        items = frame["item"].to_numpy().astype(np.int64)
        for name, idx, size in (("user", users, n_users), ("item", items, n_items)):
            if n and (idx.min() < 0 or idx.max() >= size):
                bad = int(idx[(idx < 0) | (idx >= size)][0])
                raise DataError(
                    "review corpus index outside the training vocabulary",
                    field=name,
                    value=bad,
                    expected=f"0..{size - 1}",
                )
        if tokens is None:
            tokens = tokenize(frame["review"])
        row_tokens = vocab.encode(tokens, review_length)
        n_words = tokens.list.len().fill_null(0).to_numpy()
        if timestamps is not None and len(timestamps) != n:
            raise DataError(
                "timestamps are not aligned with the review corpus",
                field="timestamp",
                value=len(timestamps),
                expected=f"{n} values",
            )
        order = (
            np.lexsort((np.arange(n), timestamps)) if timestamps is not None else np.arange(n, dtype=np.int64)
        )
        docs, slots = [], []
        for owner, size in ((users, n_users), (items, n_items)):
            rows, slot = _documents(owner, size, order, review_count)
            doc = np.zeros((size, review_count, review_length), dtype=np.int32)
            doc[owner[rows], slot] = row_tokens[rows]
            where = np.full(n, -1, dtype=np.int64)
            where[rows] = slot
            docs.append(doc)
            slots.append(where)
        return cls(
            user_docs=docs[0],
            item_docs=docs[1],
            row_tokens=row_tokens,
            user_slot=slots[0],
            item_slot=slots[1],
            n_empty_reviews=int((n_words == 0).sum()),
        )

    @property
    def review_count(self) -> int:
        return int(self.user_docs.shape[1])

    @property
    def review_length(self) -> int:
        return int(self.user_docs.shape[2])

    def has_text(self) -> tuple[np.ndarray, np.ndarray]:
        """(users (n_users,), items (n_items,)) bool: whose document holds at least one word (else all padding)."""
        return (self.user_docs != PAD).any(axis=(1, 2)), (self.item_docs != PAD).any(axis=(1, 2))

    def stats(self) -> dict[str, int]:
        """Counts for logs and reports: rows, empty reviews, users and items without any training text."""
        users, items = self.has_text()
        return {
            "reviews": len(self.row_tokens),
            "empty_reviews": self.n_empty_reviews,
            "users_without_text": int((~users).sum()),
            "items_without_text": int((~items).sum()),
        }


@dataclass
class ReviewBatch:
    """Training rows of a review model: ``rows`` (B,) int64 indices into the training split (the target review
    ``row_tokens[rows]``), ``users``, ``items`` (B,) int64 and ``ratings`` (B,) float32."""

    rows: torch.Tensor
    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor

    def to(self, device: torch.device | str) -> ReviewBatch:
        """A copy with every tensor on ``device``."""
        return ReviewBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return int(self.rows.shape[0])
