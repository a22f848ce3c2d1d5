"""How hybrid_csa ranks a text query's candidates: a blend of the query's text relevance and the predicted rating,
the candidate pool's size, and the validation criterion that picks the blend's weight (docs/models/hybrid_csa.md,
"Text queries").

score = w · z(relevance) + (1 − w) · z(predicted rating), each standardised over the query's candidate pool
(mean 0, standard deviation 1 per query; a spread under :data:`MIN_SPREAD` counts as no spread, so a term that is
flat over the pool adds nothing rather than amplified rounding noise). ``w = 1`` ranks by text alone, ``w = 0`` by
the model's rating alone (the ranking before the blend)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch

#: the weight of text relevance when there is no validation split to choose it on (and for bundles saved before
#: the blend existed): neither signal preferred
DEFAULT_TEXT_WEIGHT = 0.5
#: the weights tried on validation
WEIGHT_GRID = tuple(i / 10 for i in range(11))
#: a pool standard deviation below this (cosine units / rating units) is taken as flat
MIN_SPREAD = 1e-3
#: validation queries used to choose the weight (a seeded sample of the validation positives)
MAX_VALID_QUERIES = 256
#: the rating a validation row needs to be a positive: this share of the way from the lowest training rating to the
#: highest (4 on a 1-5 scale)
POSITIVE_AT = 0.75
#: words of an item's text used as its validation query when it has no title
QUERY_WORDS = 12
#: (validation query, item) relevance entries computed at once when choosing the weight (bounds memory)
VALID_BLOCK = 1 << 22
#: the pool the validation queries are ranked in is the default pool for this k (the CLI's default --k)
VALID_K = 10


def pool_size(n_items: int, n_open: int, k: int) -> int:
    """The default candidate pool of a text query: ``max(10·k, min(⌈n_items / 10⌉, 1000))`` items, at most the
    ``n_open`` the user has not seen. Big enough that the blend, not the pool's cut, decides the top k (ten
    candidates a slot; a tenth of a small catalogue), bounded so a large catalogue costs ~1,000 scored pairs."""
    return max(0, min(n_open, max(10 * k, min(math.ceil(n_items / 10), 1000))))


def zscore(x: torch.Tensor) -> torch.Tensor:
    """``x`` (Q, P) standardised along each row; rows flatter than :data:`MIN_SPREAD` give zeros."""
    if x.shape[1] < 2:  # one candidate (or none) has no spread
        return torch.zeros_like(x)
    centred = x - x.mean(dim=1, keepdim=True)
    spread = x.std(dim=1, unbiased=False, keepdim=True)
    return torch.where(spread < MIN_SPREAD, torch.zeros_like(centred), centred / spread.clamp_min(MIN_SPREAD))


def blend_scores(relevance: torch.Tensor, preds: torch.Tensor, weight: float) -> torch.Tensor:
    """The ranking score (Q, P) of candidates with text ``relevance`` and predicted ratings ``preds`` (Q, P):
    ``weight · z(relevance) + (1 − weight) · z(preds)`` (module docstring)."""
    return weight * zscore(relevance.float()) + (1.0 - weight) * zscore(preds.float())


def reciprocal_ranks(scores: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """1 / rank of column ``target[q]`` in each row of ``scores`` (Q, P), ties sharing the mean rank; 0 where
    ``target`` is -1 (the target was not in the pool)."""
    rows = torch.arange(scores.shape[0])
    at = scores[rows, target.clamp_min(0)][:, None]
    rank = 1.0 + (scores > at).sum(1) + 0.5 * ((scores == at).sum(1) - 1)
    return torch.where(target >= 0, 1.0 / rank, torch.zeros_like(rank)).numpy()


def query_text(titles: list[str] | None, texts: pl.Series, item: int) -> str:
    """The validation query for an item: its title, else the first :data:`QUERY_WORDS` words of its text
    (metadata or training reviews: never a validation or test review)."""
    title = titles[item].strip() if titles is not None and item < len(titles) else ""
    return title or " ".join(str(texts[item]).split()[:QUERY_WORDS])


def choose_weight(rr: dict[float, np.ndarray]) -> tuple[float, float]:
    """The weight to use, from each grid weight's reciprocal ranks on the validation queries (same queries, same
    order): the one-standard-error rule — of the weights whose mean is within one standard error of the best mean
    (the best weight's rank spread over the number of queries), the one closest to :data:`DEFAULT_TEXT_WEIGHT`
    (ties: the smaller). So a weight is moved away from an even blend only as far as the evidence asks: a
    difference the sample cannot resolve does not push w to 0 or 1, which would drop one signal entirely. Returns
    the weight and the standard error used."""
    means = {w: float(v.mean()) for w, v in rr.items()}
    best = max(means, key=lambda w: (means[w], -_off_even(w)))
    values = rr[best]
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    close = [w for w, m in means.items() if m >= means[best] - se - 1e-12]
    return min(close, key=lambda w: (_off_even(w), w)), se


def _off_even(w: float) -> float:
    # rounded: 0.7 - 0.5 and 0.5 - 0.3 differ in the last bit
    return round(abs(w - DEFAULT_TEXT_WEIGHT), 9)
