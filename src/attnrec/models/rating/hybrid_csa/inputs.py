"""hybrid_csa's fit inputs: the SVD stage (ALS, best sweep on validation), svd_crossfit's per-fold refits, and the
item / user / row texts encoded once, gathered in one frozen :class:`FitInputs` that the module is built from and
the training batches read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError
from attnrec.models.rating.hybrid_csa.config import HybridCSAConfig
from attnrec.models.rating.svd import SVD, als_refit
from attnrec.text.builders import (
    item_text_from_meta,
    item_text_from_reviews,
    movielens_item_text,
    texts_for_vocab,
    user_text_from_reviews,
)
from attnrec.training.types import FitReport

log = logging.getLogger(__name__)

#: svd_crossfit's refits: user factors (K, n_users, k), user biases (K, n_users), item factors (K, n_items, k),
#: item biases (K, n_items)
CrossfitTables = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class FitInputs:
    """What the fusion network is built and trained from (float32 tensors on the CPU).

    ``user_factors`` (n_users, k) / ``item_factors`` (n_items, k): the SVD's vectors (k = svd_factors, + 1 with
    svd_biases); ``item_text`` (n_items, d_text) and ``user_text`` (n_users, d_text) or None: the encoded texts;
    ``row_text`` (n_train_rows, d_text): each training row's own review in the leaky mode, else None; ``mu``: the
    SVD's global mean with svd_residual, else the training mean rating; ``biases``: the SVD's (b_u (n_users,),
    b_i (n_items,)) with svd_residual; ``fold`` (n_train_rows,) int64 and ``crossfit``: svd_crossfit's fold per
    row and its refits, or None."""

    user_factors: torch.Tensor
    item_factors: torch.Tensor
    item_text: torch.Tensor
    user_text: torch.Tensor | None
    row_text: torch.Tensor | None
    mu: float
    biases: tuple[torch.Tensor, torch.Tensor] | None
    fold: torch.Tensor | None
    crossfit: CrossfitTables | None


def prepare_inputs(
    config: HybridCSAConfig,
    train: Interactions,
    valid: Interactions | None,
    items: pl.DataFrame | None,
    encode: Callable[[pl.Series], np.ndarray],
) -> tuple[FitInputs, list[str] | None, pl.Series, FitReport]:
    """Fit the SVD on ``train`` (``valid`` picks its best ALS sweep) and encode the texts with ``encode`` (texts
    (n,) -> (n, d_text) float32; empty texts allowed). Returns the inputs, the item titles aligned with the item
    vocabulary (None without a ``title`` column in ``items``), the item texts that were encoded (aligned with the
    item vocabulary) and the SVD stage's report."""
    c = config
    leaky = c.target_review_leakage
    train_df = train.decode()
    if (leaky or c.text_source == "item+user") and "review" not in train_df.columns:
        need = "target_review_leakage=True" if leaky else "text_source='item+user'"
        raise ConfigError(f"hybrid_csa with {need} needs a 'review' column in the training data")

    # 1. the SVD the paper extracts U and V from (validation picks the best ALS sweep)
    # reg_prior=0: svd_reg was chosen on validation before svd had the factor prior (issue 19); keeps the fit
    svd = SVD(factors=c.svd_factors, reg=c.svd_reg, iterations=c.svd_iterations, seed=c.seed, reg_prior=0.0)
    from attnrec.training.trainer import inner_fit

    with inner_fit():  # a tuner's epoch callbacks see hybrid_csa's epochs, not the svd's
        svd_report = svd.fit(train, valid)
    uf, itf = svd.user_factors, svd.item_factors
    if c.svd_biases:
        uf = np.hstack([uf, svd.mf.bu.detach().cpu().numpy()[:, None]])
        itf = np.hstack([itf, svd.mf.bi.detach().cpu().numpy()[:, None]])
    folds, crossfit = crossfit_tables(svd, train, c.svd_crossfit, seed=c.seed, biases=c.svd_biases)

    # 2. texts: item text (metadata, else training reviews), user text, and in leaky mode each row's review
    texts, titles = item_texts(train_df, items, train.item_vocab, max_chars=c.review_max_chars)
    item_text = encode(texts)
    user_text = None
    if c.text_source == "item+user":
        built = user_text_from_reviews(train_df, max_chars=c.review_max_chars)
        user_text = encode(texts_for_vocab(built, train.user_vocab, key="user_id"))
    row_text = None
    if leaky:
        row_text = torch.from_numpy(encode(train_df["review"].fill_null("")))
    inputs = FitInputs(
        user_factors=torch.from_numpy(np.ascontiguousarray(uf, dtype=np.float32)),
        item_factors=torch.from_numpy(np.ascontiguousarray(itf, dtype=np.float32)),
        item_text=torch.from_numpy(item_text),
        user_text=None if user_text is None else torch.from_numpy(user_text),
        row_text=row_text,
        mu=float(svd.mf.mu) if c.svd_residual else float(train.ratings.mean()),
        biases=(svd.mf.bu.detach().cpu().float(), svd.mf.bi.detach().cpu().float())
        if c.svd_residual
        else None,
        fold=folds,
        crossfit=crossfit,
    )
    return inputs, titles, texts, svd_report


def crossfit_tables(
    svd: SVD, train: Interactions, folds: int, *, seed: int, biases: bool
) -> tuple[torch.Tensor | None, CrossfitTables | None]:
    """svd_crossfit = ``folds`` = K: each training row's fold (a balanced assignment seeded by ``seed``) and the K
    refits without each fold (:func:`~attnrec.models.rating.svd.als_refit`), stacked as (K, n, k) / (K, n);
    (None, None) when K is 0. With ``biases`` (svd_biases) the bias is appended to the factors, as for the full
    fit."""
    if not folds:
        return None, None
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(train)) % folds
    parts = [als_refit(svd, train, fold != f) for f in range(folds)]
    p, bu, q, bi = (torch.stack([part[j] for part in parts]) for j in range(4))
    if biases:
        p, q = torch.cat([p, bu[..., None]], dim=-1), torch.cat([q, bi[..., None]], dim=-1)
    return torch.from_numpy(fold.astype(np.int64)), (p, bu, q, bi)


def item_texts(
    train_df: pl.DataFrame, items: pl.DataFrame | None, vocab: Vocabulary, *, max_chars: int
) -> tuple[pl.Series, list[str] | None]:
    """Item texts aligned with ``vocab`` and titles (or None): metadata text, with items whose metadata is
    empty or absent falling back to their TRAINING reviews (each item's joined reviews cut to ``max_chars``).

    One log line says what each item got: how many texts come from metadata, how many from training reviews,
    how many are empty (encoded as ``""``), and how many items have no title (INFO; WARNING when some text is
    empty)."""
    meta = titles = None
    if items is not None:
        meta = texts_for_vocab(meta_text(items, report=False), vocab, report=False)
        if "title" in items.columns:
            t = items.select(pl.col("item_id"), pl.col("title").cast(pl.String).fill_null("").alias("text"))
            titles = texts_for_vocab(t, vocab, report=False).to_list()
    reviews = None
    if "review" in train_df.columns:
        built = item_text_from_reviews(train_df, max_chars=max_chars, report=False)
        reviews = texts_for_vocab(built, vocab, report=False)
    if meta is None and reviews is None:
        raise ConfigError(
            "hybrid_csa needs item text: pass items= (item metadata with item_id and title/description/...) "
            "to fit(), or training data with a 'review' column"
        )
    n = len(vocab)
    blank = pl.Series([""] * n, dtype=pl.String)
    has_meta = _has_text(meta if meta is not None else blank)
    has_reviews = _has_text(reviews if reviews is not None else blank)
    from_meta = int(has_meta.sum())
    from_reviews = int((~has_meta & has_reviews).sum())
    empty = n - from_meta - from_reviews
    untitled = sum(not t.strip() for t in titles) if titles is not None else None
    parts = [f"{from_meta} from metadata"] if meta is not None else []
    if reviews is not None:
        fallback = " (no metadata text)" if meta is not None else ""
        parts.append(f"{from_reviews} from their training reviews{fallback}")
    parts.append(f"{empty} with no text (encoded as '')")
    if untitled:
        parts.append(f"{untitled} without a title")
    log.log(
        logging.WARNING if empty else logging.INFO,
        "hybrid_csa item text for %d items: %s",
        n,
        ", ".join(parts),
    )
    if meta is None:
        assert reviews is not None
        return reviews, titles
    if reviews is None:
        return meta, titles
    chosen = pl.select(pl.when(pl.lit(has_meta)).then(pl.lit(meta)).otherwise(pl.lit(reviews)))
    return chosen.to_series(), titles


def _has_text(texts: pl.Series) -> pl.Series:
    return texts.str.strip_chars().str.len_bytes() > 0


def meta_text(items: pl.DataFrame, *, report: bool = True) -> pl.DataFrame:
    """(item_id, text) from metadata: MovieLens style (title/year/genres) when there is a ``genres`` column
    and no ``description``, else the Amazon style fields. ``report=False``: empty texts are not logged here
    (:func:`item_texts` reports the outcome after its fallback)."""
    if "genres" in items.columns and "description" not in items.columns:
        return movielens_item_text(items, report=report)
    return item_text_from_meta(items, report=report)
