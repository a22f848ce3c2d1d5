"""Item modalities: named dense matrices aligned to the item vocabulary (``ItemFeatures``), built from metadata
or read from ``.npy`` files, and checked before a model sees them.

Checks (:func:`check_modality`), each a clear error naming the modality (and file) or a counted fallback:

* a row count that is not the number of items → ``DataError`` (``.npy`` given with an id list is aligned by id);
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

import numpy as np

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
