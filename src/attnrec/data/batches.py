"""Typed batches, one dataclass of tensors per task, and the iterators that cut them from encoded data.

Each batch knows how to move itself to a device; models read named fields, never string keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch

from attnrec.data.table import Interactions

if TYPE_CHECKING:
    from attnrec.data.samplers import NegativeSampler


class _Batch:
    def to(self, device: torch.device | str):  # type: ignore[no-untyped-def]
        """A copy with every tensor on ``device``."""
        return type(self)(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(getattr(self, fields(self)[0].name).shape[0])  # type: ignore[arg-type]


def _move(x: object, device: torch.device | str) -> object:
    return x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x


@dataclass
class RatingBatch(_Batch):
    """Explicit feedback: ``users``, ``items`` (int64, (B,)) and ``ratings`` (float32, (B,))."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor


@dataclass
class PairwiseBatch(_Batch):
    """Implicit feedback for BPR-style losses: ``users``, ``pos`` (B,), ``neg`` (B,) or (B, n_neg)."""

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor


@dataclass
class CTRBatch(_Batch):
    """Click-through data (see :mod:`attnrec.data.ctr`): ``labels`` (B,) float32 in {0, 1};
    ``categorical`` (B, n_cat) int64 per-field indices (0 = missing/unseen); ``numeric`` (B, n_num) float32;
    ``multi`` (B, n_multi, L) int64 token indices of multi-valued fields (0 = padding/unseen). Columns follow
    ``FeatureSchema.categorical`` / ``.numeric`` / ``.multi``; a part with no fields has size 0 on its axis."""

    labels: torch.Tensor
    categorical: torch.Tensor
    numeric: torch.Tensor
    multi: torch.Tensor


def _order(n: int, generator: torch.Generator | None, shuffle: bool) -> torch.Tensor:
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


def rating_batches(
    data: Interactions, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[RatingBatch]:
    """Shuffled mini-batches of (user, item, rating) over the whole split, one pass."""
    users = torch.tensor(data.users)
    items = torch.tensor(data.items)
    ratings = torch.tensor(data.ratings)
    order = _order(len(data), generator, shuffle)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield RatingBatch(users[idx], items[idx], ratings[idx])


def pairwise_batches(
    data: Interactions,
    sampler: NegativeSampler,
    batch_size: int,
    *,
    generator: torch.Generator,
    n_negatives: int = 1,
) -> Iterator[PairwiseBatch]:
    """One pass over the positives in random order, each with ``n_negatives`` sampled non-positive items.

    The NumPy generator for negatives is derived from ``generator`` so that one torch seed fixes the whole epoch.
    """
    users = torch.tensor(data.users)
    items = torch.tensor(data.items)
    order = _order(len(data), generator, True)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    neg_all = torch.from_numpy(sampler.sample(data.users[order.numpy()], n_negatives, rng))
    if n_negatives == 1:
        neg_all = neg_all[:, 0]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield PairwiseBatch(users[idx], items[idx], neg_all[start : start + batch_size])
