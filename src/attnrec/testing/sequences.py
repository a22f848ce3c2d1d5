"""Planted-pattern item sequences over two domains, for the conformance suite and sequential model tests.

Items ``i0 .. i{n-1}``: the first half is domain ``A``, the second half domain ``B``; item ``k``'s *twin* in the
other domain is ``k ± n/2``. User ``u`` belongs to group ``u % 2`` and only ever meets items of that parity (the
checkerboard pattern of :func:`~attnrec.testing.data.checkerboard`, so every check written for it holds). Its
sequence alternates domains, ``x_0, y_0, x_1, y_1, ...``, led by domain A for a random half of the users and by
B for the others:

* ``x_{t+1} = x_t + 2`` within the lead domain (a cycle over the group's items there, from a random start): the
  next lead item follows from the last lead item (a within-domain pattern);
* ``y_t = twin(x_t)``: the next item of the other domain follows from the last lead item (a cross-domain
  pattern), and also ``y_{t+1} = y_t + 2``;
* a share ``noise`` of the users takes a random subset of its group's items instead (twins included), in a
  random order, which teaches a model the group rather than the next item; no item repeats within a user while
  ``length <= n_items / 2``.

:func:`planted_sequences` returns the leave-one-out split (last item test, the one before validation, the rest
train), encoded with one vocabulary over every item; :func:`planted_sequence_items` the catalogue (``item_id``,
``domain``): the ``items`` side input a sequential model takes its item domains from.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError


def planted_sequence_items(n_items: int = 40) -> pl.DataFrame:
    """The catalogue of :func:`planted_sequences`: ``item_id`` (``i{k}``) and ``domain`` (``A`` for the first
    half, ``B`` for the second)."""
    half = n_items // 2
    return pl.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n_items)],
            "domain": ["A" if k < half else "B" for k in range(n_items)],
        }
    )


@cache
def planted_sequences(
    n_users: int = 60, n_items: int = 40, length: int = 12, noise: float = 0.0, seed: int = 0
) -> tuple[Interactions, Interactions, Interactions]:
    """(train, valid, test) of the planted two-domain sequences (see the module docstring); ``length`` items per
    user (>= 3), ``timestamp`` = position. Vocabularies in index order (``u{k}``, ``i{k}``)."""
    if n_items % 4 or n_items < 8:
        raise ConfigError(
            f"n_items={n_items}: expected a multiple of 4, at least 8 (two domains x two groups)"
        )
    if length < 3:
        raise ConfigError(f"length={length}: leave-one-out needs at least 3 items per user")
    rng = np.random.default_rng(seed)
    half = n_items // 2
    group = np.arange(n_users) % 2
    per_group = half // 2  # items of one parity in one domain
    steps = (length + 1) // 2
    start = rng.integers(0, per_group, n_users)
    # the t-th A item of user u: the (start + t)-th item of its parity in A, cyclically
    a_rank = (start[:, None] + np.arange(steps)[None, :]) % per_group
    # noisy users walk their group's items in a random order (still no repeat while steps <= per_group)
    shuffled = rng.permuted(np.tile(np.arange(per_group), (n_users, 1)), axis=1)[:, : min(steps, per_group)]
    noisy = rng.random(n_users) < noise
    a_rank[noisy, : shuffled.shape[1]] = shuffled[noisy]
    b_rank = a_rank
    # half the users lead with domain B (then the A items are the twins), so held-out targets fall in both
    lead_b = (rng.random(n_users) < 0.5)[:, None]
    a = np.where(lead_b, half, 0) + 2 * a_rank + group[:, None]
    b = np.where(lead_b, 0, half) + 2 * b_rank + group[:, None]
    seq = np.stack([a, b], axis=2).reshape(n_users, -1)[:, :length]  # a_0, b_0, a_1, b_1, ...
    # noisy users' items come in a random order (domains interleave at random too)
    seq[noisy] = rng.permuted(seq[noisy], axis=1)
    users = np.repeat(np.arange(n_users), length)
    items = seq.reshape(-1)
    pos = np.tile(np.arange(length), n_users)
    uvocab = Vocabulary([f"u{k}" for k in range(n_users)], kind="user")
    ivocab = Vocabulary([f"i{k}" for k in range(n_items)], kind="item")
    domain = np.where(items < half, "A", "B")

    def make(sel: np.ndarray) -> Interactions:
        df = pl.DataFrame(
            {
                "user_id": uvocab.ids[users[sel]],
                "item_id": ivocab.ids[items[sel]],
                "timestamp": pos[sel].astype(np.int64),
                "domain": domain[sel],
            }
        )
        return Interactions.encode(df, uvocab, ivocab)[0]

    return make(pos < length - 2), make(pos == length - 2), make(pos == length - 1)
