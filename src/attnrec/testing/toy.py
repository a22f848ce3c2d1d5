"""A toy model and data for tests of the training loop (early stopping, restoring, resuming), where what is trained
matters less than which epoch's weights the loop keeps."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from attnrec.data.batches import RatingBatch
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.base import TrainableModule


class ToyMF(TrainableModule):
    """rating ≈ <u, i> with 2-d user and item tables over 10 ids each; squared-error loss."""

    def __init__(self) -> None:
        super().__init__()
        self.u = nn.Embedding(10, 2)
        self.i = nn.Embedding(10, 2)

    def loss(self, batch: RatingBatch) -> torch.Tensor:
        return ((self.u(batch.users) * self.i(batch.items)).sum(-1) - batch.ratings).pow(2).mean()


def toy_ratings(n: int, base: float = 0.0) -> Interactions:
    """``n`` random (user, item) pairs over 10 users and 10 items (seed 0), rated ``base + user % 2``."""
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 10, n), rng.integers(0, 10, n)
    df = pl.DataFrame(
        {"user_id": u.astype(str), "item_id": i.astype(str), "rating": (u % 2 + base).astype(np.float32)}
    )
    return Interactions.encode(
        df, Vocabulary.from_ids(df["user_id"], kind="user"), Vocabulary.from_ids(df["item_id"], kind="item")
    )[0]
