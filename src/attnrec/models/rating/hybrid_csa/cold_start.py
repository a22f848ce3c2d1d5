"""hybrid_csa's cold-start items: the ridge map from a text embedding to SVD item factors (and biases), and the
checks and bookkeeping of adding never-seen items to a fitted model (vocabulary, seen matrix, titles)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from attnrec.data.vocab import Vocabulary
from attnrec.errors import DataError
from attnrec.models.rating.hybrid_csa.inputs import meta_text

log = logging.getLogger(__name__)


def fit_text_to_factors(
    text: np.ndarray | torch.Tensor, factors: np.ndarray | torch.Tensor, reg: float
) -> torch.Tensor:
    """Ridge regression from text embeddings (n, d) to factors (n, k): returns W (d + 1, k), intercept last.

    Solves (X̃ᵀX̃ + reg·diag(1, …, 1, 0)) W = X̃ᵀY with X̃ = [X, 1] in float64 (the intercept is not shrunk).
    """
    x = torch.as_tensor(np.asarray(text) if not isinstance(text, torch.Tensor) else text).double().cpu()
    y = torch.as_tensor(np.asarray(factors) if not isinstance(factors, torch.Tensor) else factors)
    y = y.detach().double().cpu()
    xt = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    penalty = torch.full((xt.shape[1],), float(reg), dtype=torch.float64)
    penalty[-1] = 0.0
    a = xt.T @ xt + torch.diag(penalty)
    return torch.linalg.solve(a, xt.T @ y).float()


def text_to_factors(text: np.ndarray | torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Apply :func:`fit_text_to_factors`'s map: (n, d) embeddings -> (n, k) predicted factors."""
    x = torch.as_tensor(np.asarray(text) if not isinstance(text, torch.Tensor) else text).float()
    w = w.to(x.device)
    return x @ w[:-1] + w[-1]


def check_new_items(
    item_ids: Sequence[object], texts: Sequence[str], titles: Sequence[str] | None, vocab: Vocabulary
) -> list[str]:
    """The ids of items to add, as strings, after checking that there is one text (and title) per id, that the
    ids are distinct and that ``vocab`` (the model's item vocabulary) does not know any of them."""
    ids = [str(x) for x in item_ids]
    if len(ids) != len(texts):
        raise DataError(
            "one text per new item", field="texts", value=len(texts), expected=f"{len(ids)} texts"
        )
    if titles is not None and len(titles) != len(ids):
        raise DataError(
            "one title per new item", field="titles", value=len(titles), expected=f"{len(ids)} titles"
        )
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise DataError("duplicate new item id", field="item_ids", value=dup, expected="distinct ids")
    known = vocab.lookup(ids, missing="minus_one") >= 0
    if known.any():
        raise DataError(
            "item already in the model",
            field="item_ids",
            value=ids[int(np.flatnonzero(known)[0])],
            expected="ids of new items",
        )
    return ids


def grow_catalogue(
    vocab: Vocabulary,
    seen: sp.csr_matrix | None,
    titles: list[str] | None,
    ids: list[str],
    new_titles: Sequence[str] | None,
) -> tuple[Vocabulary, sp.csr_matrix | None, list[str] | None]:
    """The item vocabulary, seen matrix (n_users, n_items) and titles with ``ids`` appended (no one has seen
    them; a missing title is "")."""
    start = len(vocab)
    grown = Vocabulary(np.concatenate([vocab.ids, np.asarray(ids, dtype=str)]), kind=vocab.kind)
    if seen is not None:
        seen = sp.hstack([seen, sp.csr_matrix((seen.shape[0], len(ids)))], format="csr")
    if titles is not None or new_titles is not None:
        old = titles if titles is not None else [""] * start
        titles = [*old, *(list(new_titles) if new_titles is not None else [""] * len(ids))]
    return grown, seen, titles


def new_items_from_frame(
    items: pl.DataFrame, vocab: Vocabulary
) -> tuple[list[str], list[str], list[str] | None]:
    """(ids, texts, titles or None) of the items of a metadata frame that ``vocab`` does not know, texts built as
    in fit; items whose text is empty are skipped (their count is logged)."""
    built = meta_text(items).with_columns(pl.col("item_id").cast(pl.String))
    new = built.filter(pl.Series(vocab.lookup(built["item_id"], missing="minus_one") < 0))
    empty = new["text"].str.strip_chars().str.len_bytes() == 0
    if empty.any():
        log.warning("add_items_from_frame: %d new items have no text and were skipped", int(empty.sum()))
        new = new.filter(~empty)
    titles: list[str] | None = None
    if "title" in items.columns:
        t = items.select(pl.col("item_id").cast(pl.String), pl.col("title").cast(pl.String).fill_null(""))
        joined = new.select("item_id").join(t.unique("item_id", keep="first"), on="item_id", how="left")
        titles = joined["title"].fill_null("").to_list()
    return new["item_id"].to_list(), new["text"].to_list(), titles
