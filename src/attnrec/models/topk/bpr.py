"""BPR-MF (Rendle et al. 2009): matrix factorisation trained with the Bayesian personalised ranking loss.

    ŝ_ui = e_uᵀ e_i
    L = 1/|B| Σ_(u,p,n)∈B −log σ(ŝ_up − ŝ_un)  +  λ (‖e_u‖² + ‖e_p‖² + ‖e_n‖²) / |B|

with n a sampled item that is not a training positive of u, and the regulariser taken over the batch's embeddings
(the form of the LightGCN paper's experiments). :class:`PairwiseRecommender` is the shared wrapper of every
embedding model trained on (user, positive, negatives) triples; LightGCN builds on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from attnrec.data.batches import PairwiseBatch, pairwise_batches
from attnrec.data.samplers import NegativeSampler
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.models.base import ModelConfig, Query, TaskKind, TorchRecommender, TrainableModule, register
from attnrec.models.query import History


class BPRConfig(ModelConfig):
    """BPR-MF hyper-parameters.

    ``reg`` is λ of the per-batch L2 term; ``init="normal"`` draws N(0, ``init_std``²), ``"xavier"`` is Glorot-uniform
    per table; ``n_negatives`` items are sampled per positive (the loss averages over them) from
    ``negative_sampling`` (uniform over items, or ∝ training count ** ``sampling_alpha``), never a training positive.
    """

    dim: int = Field(64, ge=1)
    #: λ chosen on validation NDCG@20 for BPR on MovieLens-100k (BENCHMARKS.md, bpr/lightgcn)
    reg: float = Field(1e-3, ge=0)
    init: Literal["normal", "xavier"] = "normal"
    init_std: float = Field(0.1, gt=0)
    n_negatives: int = Field(1, ge=1)
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    sampling_alpha: float = Field(1.0, ge=0)
    #: ridge weight per history item when a query's history folds a user in (scoring only; not a training knob)
    fold_in_reg: float = Field(0.1, gt=0)


# --------------------------------------------------------------------------------------------- the math


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean of −log σ(pos − neg), computed as softplus(neg − pos) (no overflow for large margins).

    ``pos`` (B,); ``neg`` (B,) or (B, n) with n negatives per positive (then the mean runs over all B·n pairs).
    """
    if neg.dim() == pos.dim() + 1:
        pos = pos.unsqueeze(-1)
    return F.softplus(neg - pos).mean()


def l2_reg(*embeddings: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(Σ over ``embeddings`` of ‖x‖²) / ``batch_size``: the squared Frobenius norms of the batch's rows, per triple."""
    total = embeddings[0].square().sum()
    for x in embeddings[1:]:
        total = total + x.square().sum()
    return total / batch_size


def pair_scores(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dot-product scores: ``u``, ``p`` (B, d) and ``n`` (B, d) or (B, k, d) → (B,) and (B,) or (B, k)."""
    pos = (u * p).sum(-1)
    neg = (u.unsqueeze(1) * n).sum(-1) if n.dim() == 3 else (u * n).sum(-1)
    return pos, neg


def init_embedding(weight: torch.Tensor, init: str, std: float) -> None:
    """In place: N(0, std²) for ``"normal"``, Glorot-uniform over the (rows, dim) table for ``"xavier"``."""
    if init == "normal":
        nn.init.normal_(weight, std=std)
    else:
        nn.init.xavier_uniform_(weight)


class MFModule(TrainableModule):
    """User and item embedding tables ``user`` (n_users, dim) and ``item`` (n_items, dim); score = dot product."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, reg: float, init: str = "normal", init_std: float = 0.1
    ) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        init_embedding(self.user.weight, init, init_std)
        init_embedding(self.item.weight, init, init_std)
        self.reg = reg

    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings scores are computed from: (n_users, dim), (n_items, dim)."""
        return self.user.weight, self.item.weight

    def loss(self, batch: PairwiseBatch) -> torch.Tensor:
        u, p, n = self.user(batch.users), self.item(batch.pos), self.item(batch.neg)
        pos, neg = pair_scores(u, p, n)
        return bpr_loss(pos, neg) + self.reg * l2_reg(u, p, n, batch_size=len(batch.users))


# --------------------------------------------------------------------------------------------- the wrapper


class PairwiseRecommender(TorchRecommender[BPRConfig]):
    """Shared wrapper of embedding models trained on sampled (user, positive, negatives) triples.

    The module must provide ``user_item_embeddings()`` returning the (n_users, d) and (n_items, d) tensors that
    scores are dot products of; full ranking is then one matmul per user batch. A query's history folds a user in
    (:meth:`fold_in`): new users, or a known user's history "now".
    """

    task = TaskKind.TOPK
    query_inputs = frozenset({"users", "history"})
    _sampler: NegativeSampler | None = None

    def build_sampler(self, train: Interactions) -> NegativeSampler:
        c = self.config
        sampler = NegativeSampler(train.csr(), distribution=c.negative_sampling, alpha=c.sampling_alpha)
        stuck = sampler.stuck_users()
        if stuck.size:
            # said before the first epoch, by the ids in the user's file (the sampler only knows indices)
            ids = train.user_vocab.ids[stuck[:5]].tolist()
            raise DataError(
                f"{stuck.size} training user(s) have every item as a positive: pairwise training has no negative "
                f"item to contrast them with",
                field="user_id",
                value=ids[0] if stuck.size == 1 else ids,
                expected="every training user with at least one item they have not interacted with "
                "(drop those users, or add items)",
            )
        return sampler

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[PairwiseBatch]:
        if self._sampler is None:
            raise ConfigError(f"{self.name}: train_batches() called before build_module()")
        return pairwise_batches(
            train, self._sampler, batch_size, generator=generator, n_negatives=self.config.n_negatives
        )

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.module is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        return self.module.user_item_embeddings()  # type: ignore[operator, no-any-return]

    @torch.no_grad()
    def score_users(self, users: np.ndarray) -> torch.Tensor:
        """Scores of all items for ``users``: (len(users), n_items) = E_users @ E_itemsᵀ on the model's device."""
        eu, ei = self._embeddings()
        return eu[_index(users, eu.device)] @ ei.T

    @torch.no_grad()
    def score_history(self, query: Query) -> torch.Tensor:
        """Scores of all items for users folded in from the query's history: (len(query), n_items)."""
        assert query.history is not None
        _, ei = self._embeddings()
        return self.fold_in(query.history) @ ei.T

    def fold_in(self, history: History) -> torch.Tensor:
        """User vectors (len(history), d) for histories: the ridge fit of e_u to score 1 on every history item,
        ``argmin_e Σ_{i∈H} (eᵀe_i − 1)² + λ_f ‖e‖²`` with ``λ_f = fold_in_reg · |H|`` (implicit's fold-in for
        matrix factorisation). An empty history gives the zero vector (every item scores 0)."""
        _, ei = self._embeddings()
        return ridge_fold_in(ei, history, self.config.fold_in_reg)


def ridge_fold_in(items: torch.Tensor, history: History, reg: float) -> torch.Tensor:
    """Solve ``(E_Hᵀ E_H + reg·|H| I) e = E_Hᵀ 1`` for every history row at once: (len(history), d)."""
    d = items.shape[1]
    rows = torch.from_numpy(history.row_ids()).to(items.device)
    e = items[torch.from_numpy(history.items).to(items.device)].float()
    gram = torch.zeros(len(history), d, d, device=items.device).index_add_(
        0, rows, e[:, :, None] * e[:, None, :]
    )
    rhs = torch.zeros(len(history), d, device=items.device).index_add_(0, rows, e)
    n = torch.from_numpy(history.lengths()).to(items.device).clamp(min=1).float()
    gram.diagonal(dim1=1, dim2=2).add_((reg * n)[:, None])
    return torch.linalg.solve(gram, rhs)


def _index(idx: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.tensor(np.asarray(idx, dtype=np.int64), device=device)


@register
class BPR(PairwiseRecommender):
    """BPR-MF with sampled negatives that exclude each user's training positives."""

    name = "bpr"
    config_class = BPRConfig
    paper = "Rendle et al. 2009, BPR: Bayesian Personalized Ranking from Implicit Feedback (UAI)"
    #: the benchmark's settings with lr chosen on validation (BENCHMARKS.md): batch 2048, Adam lr 1e-3, early
    #: stopping on validation NDCG@20 with patience 10 within at most 300 epochs
    default_trainer: ClassVar[dict[str, Any]] = {
        "epochs": 300,
        "patience": 10,
        "batch_size": 2048,
        "lr": 1e-3,
    }

    def build_module(self, train: Interactions) -> MFModule:
        self._sampler = self.build_sampler(train)
        return self._new_module(train.n_users, train.n_items)

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> MFModule:
        return self._new_module(self.n_users, self.n_items)

    def _new_module(self, n_users: int, n_items: int) -> MFModule:
        c = self.config
        return MFModule(n_users, n_items, c.dim, c.reg, c.init, c.init_std)
