"""What a model can do, declared by the classes it inherits (STYLE.md convention 15).

Evaluation, the CLI and the service dispatch on these with ``isinstance``; nothing probes a model with
``getattr``. A model inherits every capability it has:

* :class:`RatingPredictor` — ratings for (user, item) index pairs (svd, hybrid_csa).
* :class:`ItemScorer` — scores of every item for a :class:`~attnrec.models.query.Query` (known users, histories
  given at call time, text, domain), and the top-k that follows from them (pop, svd, bpr, lightgcn, hybrid_csa).
* :class:`RowScorer` — click probabilities of feature rows (the CTR models).
* :class:`Explainer` — explains its predictions, and declares with :attr:`Explainer.explain_kind` which
  explanation it gives (hybrid_csa, safmr); the service's ``/explain`` reads that declaration.

This module is a leaf of the model layer: ``evaluation/`` imports it to dispatch, and it imports no model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.errors import ConfigError
from attnrec.models.query import QUERY_INPUTS, Query

if TYPE_CHECKING:
    from attnrec.data.table import Interactions


class TaskKind(StrEnum):
    """What a model is trained for; decides batches, losses and the default evaluation protocol."""

    RATING = "rating"
    CTR = "ctr"
    TOPK = "topk"
    SEQUENTIAL = "sequential"


#: the validation metric early stopping watches by default, and whether larger is better
DEFAULT_VALID_METRIC: dict[TaskKind, tuple[str, str]] = {
    TaskKind.RATING: ("rmse", "min"),
    TaskKind.CTR: ("auc", "max"),
    TaskKind.TOPK: ("ndcg@20", "max"),
    TaskKind.SEQUENTIAL: ("ndcg@10", "max"),
}


class RatingPredictor(ABC):
    """Predicts ratings for aligned (user, item) index pairs."""

    name: ClassVar[str]

    #: the rating scale (low, high) predictions are clipped to; set by fit from the run's scale, stored in bundles
    rating_range: tuple[float, float] = (-np.inf, np.inf)

    @abstractmethod
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings, float (N,), for int64 index arrays ``users`` and ``items`` of shape (N,)."""

    def clips_predictions(self) -> bool:
        """Whether :meth:`predict` clips to :attr:`rating_range` (a model whose config can turn it off overrides)."""
        return True

    def ratings_from_scores(self, scores: np.ndarray) -> np.ndarray:
        """Predicted ratings from ranking scores of the same pairs (any shape): a rating model ranks on its
        unclipped prediction (clipping would tie every item predicted above the top rating), so its rating is
        that score clipped to the scale, as :meth:`predict` gives it. -inf (an excluded item) stays -inf."""
        if not self.clips_predictions():
            return scores
        lo, hi = self.rating_range
        return np.where(np.isfinite(scores), np.clip(scores, lo, hi), scores)

    def predict_interactions(self, data: Interactions) -> np.ndarray:
        """Ratings for the rows of an encoded split (override when a row carries more than its ids)."""
        return self.predict(data.users, data.items)


class ItemScorer(ABC):
    """Scores every item for each row of a :class:`Query`; the top-k follows from the scores."""

    name: ClassVar[str]
    #: the query parts this model uses (see :data:`attnrec.models.query.QUERY_INPUTS`)
    query_inputs: ClassVar[frozenset[str]] = frozenset({"users"})

    @property
    @abstractmethod
    def n_items(self) -> int:
        """Size of the item vocabulary the scores index."""

    @abstractmethod
    def score(self, query: Query) -> torch.Tensor:
        """Scores (len(query), n_items), float, higher is better; nothing is excluded here (see :meth:`top_k`)."""

    def check_query(self, query: Query) -> None:
        """Raise :class:`ConfigError` when ``query`` carries parts this model does not use, naming them."""
        unused = (query.inputs - self.query_inputs) & QUERY_INPUTS
        if unused:
            raise ConfigError(
                f"{self.name} does not take {', '.join(sorted(unused))} in a query "
                f"(it takes: {', '.join(sorted(self.query_inputs))})"
            )
        if query.history is not None:
            query.history.check_range(self.n_items)

    def stored_seen(self, users: np.ndarray) -> sp.csr_matrix | None:
        """Rows of the stored training interactions for ``users`` (-1 rows empty); None when none are stored."""
        return None

    def exclusion(self, query: Query) -> sp.csr_matrix | None:
        """The (len(query), n_items) 0/1 matrix of items never to recommend for ``query``, or None."""
        ex = query.exclude
        if not isinstance(ex, str):
            m = sp.csr_matrix(ex)
            if m.shape != (len(query), self.n_items):
                raise ConfigError(
                    f"query exclude: matrix is {m.shape}, expected ({len(query)}, {self.n_items})"
                )
            return m
        if ex == "none":
            return None
        hist = query.history.csr(self.n_items) if query.history is not None else None
        if ex == "history":
            return hist
        seen = self.stored_seen(query.users) if query.users is not None else None
        if seen is None:
            return hist
        return seen if hist is None else (seen + hist).tocsr()

    def top_k(self, query: Query, k: int, *, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per row: ``(scores (Q, k) float32, items (Q, k) int64)``.

        Excluded items score ``-inf`` and sort last (drop them with ``np.isfinite``); tied scores come in
        ``torch.topk``'s order.
        Scored in blocks of ``batch_size`` rows, so memory is ``batch_size x n_items`` floats.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"k must be >= 1 (an integer), got {k!r}")
        self.check_query(query)
        k = min(k, self.n_items)
        vals, idx = [], []
        for start in range(0, len(query), batch_size):
            part = query.take(slice(start, start + batch_size))
            with torch.no_grad():
                scores = self.score(part).float().cpu().clone()
            excl = self.exclusion(part)
            if excl is not None:
                coo = excl.tocoo()
                scores[
                    torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))
                ] = -torch.inf
            top = torch.topk(scores, k, dim=1, sorted=True)
            vals.append(top.values.numpy())
            idx.append(top.indices.numpy().astype(np.int64))
        if not vals:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate(vals), np.concatenate(idx)

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of aligned (user, item) index pairs, (N,) float32: each distinct user scored once."""
        uniq, inv = np.unique(np.asarray(users, dtype=np.int64), return_inverse=True)
        with torch.no_grad():
            scores = self.score(Query(users=uniq, exclude="none")).float().cpu()
        return scores[torch.from_numpy(inv), torch.from_numpy(np.asarray(items, dtype=np.int64))].numpy()


class DomainItemScorer(ItemScorer):
    """An :class:`ItemScorer` whose items each belong to one domain (the cross-domain sequential models): its
    default protocol ranks per target domain against negatives of that domain
    (:class:`~attnrec.evaluation.sequential.SequentialRanking`)."""

    @property
    @abstractmethod
    def domain_names(self) -> tuple[str, ...]:
        """The domains' names, by domain id."""

    @abstractmethod
    def item_domains(self) -> np.ndarray:
        """(n_items,) int64: the domain id of every item index."""


class RowScorer(ABC):
    """Scores feature rows (CTR): probabilities that each row's label is 1."""

    name: ClassVar[str]

    @abstractmethod
    def predict_proba(self, data: Any, batch_size: int = 4096) -> np.ndarray:
        """Probabilities float32 (N,) in [0, 1] for every row of ``data`` (a CTRData or sharded CTR data)."""


#: what an :class:`Explainer`'s explanation covers: ``"tokens"``, shares of the attention over the model's input
#: tokens (hybrid_csa's user, item and text tokens); ``"features"``, shares over its n learned features (safmr's
#: CNN features, ``feature_shares``)
ExplainKind = Literal["tokens", "features"]


class Explainer(ABC):
    """Explains its predictions with attention shares (an ``explain`` method by external ids)."""

    @property
    @abstractmethod
    def explain_kind(self) -> ExplainKind | None:
        """Which explanation this model gives (:data:`ExplainKind`), or None when this instance has none (a
        model whose config can turn its attention off)."""
