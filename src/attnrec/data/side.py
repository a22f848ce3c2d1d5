"""Side inputs: what a model may know besides the interactions, built by the run and passed explicitly.

* item / user metadata tables keyed by external id (titles, descriptions, genres...), as read by the readers;
* :class:`ItemFeatures` — named dense matrices aligned to the item vocabulary (text embeddings, multi-hot
  metadata, image features);
* :class:`ReviewCorpus` — review texts of the TRAINING split only.

The leakage guarantee lives here, not in each model: :meth:`ReviewCorpus.from_split` is the only constructor, it
records the fingerprint of the split it was built from, and :func:`strip_text` keeps only ids, rating, timestamp and
domain of the validation and test splits before a model sees them (``experiments.run`` does both), so no validation or test
review can reach a model's ``fit`` or its scoring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import DataError

#: the names a model may list in ``Estimator.side_inputs``
SIDE_INPUT_KINDS = frozenset({"items", "users", "item_features", "reviews"})


@dataclass(frozen=True)
class ItemFeatures:
    """Named dense item-feature matrices, each (n_items, d_name) float32, row ``i`` = item index ``i``."""

    vocab: Vocabulary
    matrices: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, m in self.matrices.items():
            if m.ndim != 2 or m.shape[0] != len(self.vocab):
                raise DataError(
                    "item feature matrix is not aligned to the item vocabulary",
                    field=name,
                    value=tuple(m.shape),
                    expected=f"shape ({len(self.vocab)}, d)",
                )
            if not np.isfinite(m).all():
                raise DataError(
                    "item feature matrix has non-finite values", field=name, expected="finite numbers"
                )

    @classmethod
    def from_frame(
        cls, frame: pl.DataFrame, vocab: Vocabulary, columns: Mapping[str, list[str]]
    ) -> ItemFeatures:
        """Matrices from a table keyed by ``item_id``: ``columns`` maps a feature name to its numeric columns.
        Items of the vocabulary missing from the table get zeros; rows of unknown items are ignored."""
        idx = vocab.lookup(frame["item_id"], missing="minus_one")
        keep = idx >= 0
        out: dict[str, np.ndarray] = {}
        for name, cols in columns.items():
            m = np.zeros((len(vocab), len(cols)), dtype=np.float32)
            m[idx[keep]] = frame.select(cols).to_numpy().astype(np.float32)[keep]
            out[name] = m
        return cls(vocab, out)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.matrices:
            raise DataError("no such item feature", field=name, expected=f"one of {sorted(self.matrices)}")
        return self.matrices[name]


@dataclass(frozen=True)
class ReviewCorpus:
    """(user, item, review) of the training split; build it with :meth:`from_split` only."""

    frame: pl.DataFrame
    source_fingerprint: str

    @classmethod
    def from_split(cls, train: Interactions) -> ReviewCorpus:
        """The reviews of ``train`` (empty when it has no ``review`` column)."""
        df = train.frame
        if "review" in df.columns:
            reviews = df.select("user", "item", pl.col("review").fill_null(""))
        else:
            reviews = pl.DataFrame(schema={"user": pl.Int64, "item": pl.Int64, "review": pl.String})
        return cls(reviews, train.fingerprint())

    def __len__(self) -> int:
        return len(self.frame)

    def check_built_from(self, train: Interactions) -> None:
        """Raise :class:`DataError` unless this corpus was built from ``train`` (and so holds no other split's text)."""
        if train.fingerprint() != self.source_fingerprint:
            raise DataError(
                "the review corpus was not built from this training split",
                field="reviews",
                expected="ReviewCorpus.from_split(train) of the split the model is fitted on",
            )


@dataclass(frozen=True)
class SideInputs:
    """Everything besides the interactions a run hands a model; each model takes the kinds it declares."""

    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    item_features: ItemFeatures | None = None
    reviews: ReviewCorpus | None = None

    def kinds(self) -> frozenset[str]:
        """The side-input kinds present."""
        return frozenset(k for k in SIDE_INPUT_KINDS if getattr(self, k) is not None)


#: what a model may see of a validation or test row: who, what, the target, when, and the domain
HELD_OUT_COLUMNS = ("user", "item", "rating", "timestamp", "domain")


def strip_text(data: Interactions) -> Interactions:
    """``data`` with only :data:`HELD_OUT_COLUMNS`: what a model may see of a validation or test split (no review,
    summary, votes or any other column the source carried, which can state the target)."""
    keep = [c for c in data.frame.columns if c in HELD_OUT_COLUMNS]
    if keep == data.frame.columns:
        return data
    return data.with_frame(data.frame.select(keep))
