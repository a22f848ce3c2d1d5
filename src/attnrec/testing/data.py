"""Synthetic data with planted patterns, for the conformance suite (:mod:`attnrec.testing.conformance`).

* :func:`checkerboard` — interactions (ratings or implicit) of a two-group checkerboard (after implicit's test):
  users and items fall into two groups by the parity of their index; users rate (or interact with) items of their
  own group highly and the others lowly. A model that learns anything about users and items recovers it.
* :func:`review_checkerboard` — the rating checkerboard with training reviews that name each side's group.
* :func:`planted_ctr` — CTR feature rows whose click depends on a planted (interaction or first-order) pattern.
* :func:`write_criteo_sample` — Kaggle-Criteo text files (train/dev/test) shaped like the benchmark's 8k sample.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError

if TYPE_CHECKING:
    from attnrec.data.ctr import CTRData


@cache
def checkerboard(
    n_users: int = 60, n_items: int = 40, density: float = 0.5, seed: int = 0, implicit: bool = False
) -> tuple[Interactions, Interactions, Interactions]:
    """(train, valid, test) of a two-group checkerboard.

    Rating data: every user rates a random ``density`` share of all items; rating 5 in-group, 1 out-of-group, plus
    noise. Implicit data: users interact only with in-group items (``density`` of them). Valid and test are 10% each,
    drawn so that every user and item of valid/test appears in train.
    """
    rng = np.random.default_rng(seed)
    ug = np.arange(n_users) % 2
    ig = np.arange(n_items) % 2
    same = ug[:, None] == ig[None, :]
    mask = rng.random((n_users, n_items)) < density
    if implicit:
        mask &= same
    u, i = np.nonzero(mask)
    r = np.where(same[u, i], 5.0, 1.0) + rng.normal(0, 0.3, len(u))
    part = rng.random(len(u))
    uvocab = Vocabulary([f"u{k}" for k in range(n_users)], kind="user")
    ivocab = Vocabulary([f"i{k}" for k in range(n_items)], kind="item")

    def make(sel: np.ndarray) -> Interactions:
        df = pl.DataFrame(
            {
                "user_id": uvocab.ids[u[sel]],
                "item_id": ivocab.ids[i[sel]],
                "rating": r[sel].astype(np.float32),
                "timestamp": np.arange(len(u))[sel].astype(np.int64),
            }
        )
        return Interactions.encode(df, uvocab, ivocab)[0]

    return make(part < 0.8), make((part >= 0.8) & (part < 0.9)), make(part >= 0.9)


#: sizes of a review model small enough for :func:`review_checkerboard`'s short documents (config overrides)
TINY_REVIEW_MODEL: dict[str, int] = {
    "word_dim": 8,
    "n_kernels": 8,
    "cnn_out": 4,
    "review_count": 3,
    "review_length": 6,
    "max_words": 100,
}


@cache
def review_checkerboard() -> tuple[Interactions, Interactions, Interactions]:
    """:func:`checkerboard` (ratings) whose TRAINING rows carry a ``review``: the user's group word (``ga``/``gb``),
    the item's (``ha``/``hb``) and a filler word, so a model that reads only review text can recover the
    pattern. Validation and test rows have no review (as after ``strip_text``)."""
    train, valid, test = checkerboard()
    g = np.where(train.users % 2 == 0, "ga", "gb")
    h = np.where(train.items % 2 == 0, "ha", "hb")
    text = [f"{a} {b} word{k % 7}" for k, (a, b) in enumerate(zip(g, h, strict=True))]
    return train.with_frame(train.frame.with_columns(pl.Series("review", text))), valid, test


@cache
def planted_ctr(
    n_rows: int = 5000, pattern: str = "interaction", seed: int = 0, strength: float = 2.5
) -> tuple[CTRData, CTRData, CTRData]:
    """(train, valid, test) :class:`~attnrec.data.ctr.CTRData` (70/15/15%) with a planted click pattern.

    Fields: categorical ``a``, ``b`` (6 values + missing), ``c`` (10 values, noise), numeric ``x`` (N(0,1),
    noise), multi-valued ``tags`` (up to 3 of 8 tokens, mean-pooled, noise). The click logit is
    ``strength * s`` with ``s = +1`` when ``a`` and ``b`` have the same parity and -1 otherwise
    (``pattern="interaction"``: no field alone carries any signal, so a first-order model scores AUC ~0.5), or
    ``s = +1`` when ``a`` is odd (``pattern="first_order"``). A missing ``a``/``b`` (index 0, 5% of rows) counts
    as even. The Bayes AUC is about 0.92 for ``strength=2.5``.
    """
    from attnrec.data.ctr import CTRData
    from attnrec.data.schema import FeatureSchema, FieldSpec

    if pattern not in ("interaction", "first_order"):
        raise ConfigError(f"planted_ctr pattern must be 'interaction' or 'first_order', not {pattern!r}")
    rng = np.random.default_rng(seed)
    schema = FeatureSchema(
        fields=[
            FieldSpec(name="a", vocab_size=7),
            FieldSpec(name="b", vocab_size=7),
            FieldSpec(name="x", kind="numeric"),
            FieldSpec(name="c", vocab_size=11),
            FieldSpec(name="tags", kind="multi", vocab_size=9, max_len=3, pooling="mean"),
        ]
    )
    a = np.where(rng.random(n_rows) < 0.05, 0, rng.integers(1, 7, n_rows))
    b = np.where(rng.random(n_rows) < 0.05, 0, rng.integers(1, 7, n_rows))
    c = rng.integers(0, 11, n_rows)
    x = rng.normal(0, 1, n_rows).astype(np.float32)
    lens = rng.integers(0, 4, n_rows)
    tags = rng.integers(1, 9, (n_rows, 1, 3)) * (np.arange(3)[None, None, :] < lens[:, None, None])
    s = np.where(a % 2 == b % 2, 1.0, -1.0) if pattern == "interaction" else np.where(a % 2 == 1, 1.0, -1.0)
    labels = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-strength * s))).astype(np.float32)
    data = CTRData(
        labels,
        np.stack([a, b, c], axis=1).astype(np.int64),
        x[:, None],
        tags.astype(np.int64),
        schema,
    )
    cut1, cut2 = int(0.7 * n_rows), int(0.85 * n_rows)
    return data.subset(slice(0, cut1)), data.subset(slice(cut1, cut2)), data.subset(slice(cut2, None))


def planted_item_features(n_items: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Item features of the checkerboard for multimodal models: a dense ``text`` (n_items, 5) and a binary ``meta``
    (n_items, 4) modality, both carrying the item's group (index % 2) under noise."""
    rng = np.random.default_rng(seed)
    group = np.eye(2, dtype=np.float32)[np.arange(n_items) % 2]
    text = np.hstack([group * 2 + rng.normal(0, 0.3, (n_items, 2)), rng.normal(0, 0.3, (n_items, 3))])
    meta = np.hstack([group, rng.integers(0, 2, (n_items, 2))])
    return {"text": text.astype(np.float32), "meta": meta.astype(np.float32)}


def write_criteo_sample(folder: Path, sizes: tuple[int, int, int] = (300, 80, 80), seed: int = 0) -> Path:
    """``folder/criteo/{train,dev,test}.csv`` with ``sizes`` rows in Kaggle Criteo's format (TAB separated, no
    header: label, I1..I13 integers or empty, C1..C26 8-digit hex tokens or empty; 10% of values missing), as the
    benchmark's sample folder holds them; returns ``folder``. The label follows C1 (token ``aaaa0000`` clicks 80% of
    the time, the three others 10%), so both classes appear in every part."""
    rng = np.random.default_rng(seed)
    (folder / "criteo").mkdir(parents=True, exist_ok=True)
    for part, n in zip(("train", "dev", "test"), sizes, strict=True):
        lines = []
        for _ in range(n):
            c1 = rng.integers(0, 4)
            label = int(rng.random() < (0.8 if c1 == 0 else 0.1))
            ints = ["" if rng.random() < 0.1 else str(int(rng.integers(0, 50))) for _ in range(13)]
            cats = [f"{['aaaa0000', 'bbbb1111', 'cccc2222', 'dddd3333'][c1]}"]
            cats += ["" if rng.random() < 0.1 else f"{int(rng.integers(0, 6)):08x}" for _ in range(25)]
            lines.append("\t".join([str(label), *ints, *cats]))
        (folder / "criteo" / f"{part}.csv").write_text("\n".join(lines) + "\n")
    return folder
