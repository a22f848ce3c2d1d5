"""What sasrec and gca share: the config fields of a SASRec-family backbone, the next-item loss, the batches, and
the recommender wrapper (stored training sequences, call-time histories, a target domain per query).

A module computes, for every position ``t`` of a left-padded mixed sequence, the state that predicts the item
at ``t + 1`` (:meth:`SequentialModule.states`): one state for every target domain (``(B, W, D, d)``; a
domain-agnostic model such as SASRec has ``D = 1``). The score of item ``i`` is ``⟨state for i's domain, e_i⟩``
with the input item table ``e`` (shared input/output embedding, as SASRec).

Loss (``loss="sampled_softmax"``, the default): per target position, softmax cross-entropy of the target against
``n_negatives`` items drawn uniformly per batch from each domain (every position whose target is in domain D
shares D's draws). ``loss="bce"``: SASRec's binary cross-entropy with one uniform negative of the target's domain
per position. ``loss="softmax"``: cross-entropy of the target against every item of the target's domain (one
matmul per domain against that domain's rows of the table; nothing is drawn, ``n_negatives`` is unused). In every
case an item that is one of the row's own items (its training window; the target itself excepted as the positive)
is masked out of the negatives, as SASRec's ``random_neq`` and ABXI's ``get_neg`` never draw the user's items: a
re-consumed item is not pushed down. ``mask_own_items=False`` masks nothing but a draw of the position's own target
(as RecBole's cross-entropy: every item of the target's domain is a negative; RecBole's, over one domain's
items, also counts its padding row as one more class). docs/models/sasrec.md gives the reasons.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np
import polars as pl
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from attnrec.data.batches import _Batch
from attnrec.data.sequences import DEFAULT_MAX_LEN, Sequences, item_domains_of
from attnrec.data.side import SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.models.base import FitReport, ModelConfig, Query, TaskKind, TorchRecommender, TrainableModule
from attnrec.models.capabilities import DomainItemScorer
from attnrec.models.layers.diagnostics import CosineMeter
from attnrec.models.sequential.layers import INIT_STD, SequenceEncoder

if TYPE_CHECKING:
    from attnrec.training.trainer import TrainerConfig

#: the bundle tensor holding the stored training sequences (``(n_users, max_len)`` item index + 1)
SEQ_TENSOR = "_sequences"
#: the bundle tensor holding each item's domain id
DOMAIN_TENSOR = "_item_domains"


class SequentialConfig(ModelConfig):
    """A SASRec-family backbone: ``dim`` (d), ``n_blocks`` causal self-attention blocks of ``heads`` heads and a
    feed-forward of ``ffn_dim`` (None: d), ``dropout`` everywhere (embeddings, attention weights, sublayers),
    LayerNorm placed ``norm`` ("pre" as SASRec, or "post"), sequences cut to the last ``max_len`` items.
    ``loss``/``n_negatives``/``mask_own_items``: see the module docstring.

    The BERT-style options (RecBole's SASRec; defaults: SASRec's, docs/models/sasrec.md): ``init``, ``init_std``,
    ``activation``, ``ffn_inner_dropout``, ``embed_scale``, ``embed_norm``, ``layer_norm_eps``."""

    dim: int = Field(64, ge=1)
    n_blocks: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    ffn_dim: int | None = Field(None, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    norm: Literal["pre", "post"] = "pre"
    max_len: int = Field(DEFAULT_MAX_LEN, ge=2)
    loss: Literal["sampled_softmax", "bce", "softmax"] = "sampled_softmax"
    #: negatives per domain and batch of ``sampled_softmax``; unused by ``bce`` (one per position) and ``softmax``
    n_negatives: int = Field(128, ge=1)
    #: batch users of similar length together (batches in random order): padding, half of the work at random,
    #: mostly disappears; False draws each batch's users uniformly
    bucket_by_length: bool = True
    #: the user's own items (the training window) are no negatives in the loss (SASRec's and ABXI's samplers);
    #: False: every item of the target's domain is one but the target itself (RecBole's cross-entropy)
    mask_own_items: bool = True
    #: "scaled": item table N(0, 1/d), the rest torch's defaults; "normal": every Embedding (items, positions) and
    #: Linear weight of the backbone N(0, init_std), biases 0, LayerNorms (1, 0) (BERT, RecBole)
    init: Literal["scaled", "normal"] = "scaled"
    init_std: float = Field(INIT_STD, gt=0)
    #: the feed-forward's activation: ReLU (SASRec) or GELU (BERT, RecBole)
    activation: Literal["relu", "gelu"] = "relu"
    #: dropout between the feed-forward's two layers (SASRec's code; BERT and RecBole have none there)
    ffn_inner_dropout: bool = True
    #: the input is √d·e + p (SASRec); False: e + p (RecBole)
    embed_scale: bool = True
    #: a LayerNorm on the input e + p before its dropout (BERT, RecBole)
    embed_norm: bool = False
    #: ε of every backbone LayerNorm (torch's 1e-5; RecBole 1e-12)
    layer_norm_eps: float = Field(1e-5, gt=0)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SequentialConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        return self

    @property
    def hidden(self) -> int:
        return self.ffn_dim or self.dim


ConfigT = TypeVar("ConfigT", bound=SequentialConfig)

#: the backbone settings that make a SequentialConfig RecBole 1.2.1's SASRec (docs/models/sasrec.md, choice 9):
#: ``SASRec(**RECBOLE_SASREC)``; with its trainer (lr 1e-3, 205 users a batch) it is the recipe of
#: benchmarks/configs/cdsr/*-recbole.toml, which the defaults (SASRec's) are not
RECBOLE_SASREC: dict[str, Any] = {
    "loss": "softmax",
    "norm": "post",
    "init": "normal",
    "activation": "gelu",
    "ffn_inner_dropout": False,
    "embed_scale": False,
    "embed_norm": True,
    "layer_norm_eps": 1e-12,
    "mask_own_items": False,
    "bucket_by_length": False,
}


def backbone_encoder(c: SequentialConfig) -> SequenceEncoder:
    """One :class:`SequenceEncoder` with the backbone fields of ``c``."""
    return SequenceEncoder(
        c.dim,
        c.heads,
        c.hidden,
        c.n_blocks,
        c.dropout,
        c.norm,
        c.max_len,
        activation=c.activation,
        ffn_inner_dropout=c.ffn_inner_dropout,
        embed_scale=c.embed_scale,
        embed_norm=c.embed_norm,
        eps=c.layer_norm_eps,
        init=c.init,
        init_std=c.init_std,
    )


@dataclass
class SequenceBatch(_Batch):
    """Training sequences of a batch of users: ``items`` (B, W) item index + 1 (0 = padding, left-padded),
    ``domains`` (B, W) domain ids (-1 = padding), ``negatives``: (D, n) item indices per domain
    (sampled_softmax; (D, 0) for softmax, which draws none) or (B, W - 1) one per target position (bce);
    ``per_row_negatives`` says which (None: told by the shape, which cannot tell them apart when D == B and
    n == W - 1: the batches of ``train_batches`` say); ``item_domains``: (n_items,) each item's domain id, which
    the full-softmax loss needs (None for the other losses)."""

    items: torch.Tensor
    domains: torch.Tensor
    negatives: torch.Tensor
    per_row_negatives: bool | None = None
    item_domains: torch.Tensor | None = None

    @property
    def shared_fields(self) -> frozenset[str]:
        """For data-parallel training (``attnrec.training.distributed.shard_batch``): sampled-softmax negatives,
        ``(D, n)``, and the catalogue's ``item_domains`` are every row's and stay whole on each rank; bce
        negatives, ``(B, W - 1)``, are per row."""
        per_row = self.per_row_negatives
        if per_row is None:
            per_row = tuple(self.negatives.shape) == (self.items.shape[0], self.items.shape[1] - 1)
        return frozenset({"item_domains"}) if per_row else frozenset({"negatives", "item_domains"})

    def row_units(self) -> torch.Tensor:
        """(B,) target positions per row: the loss is a mean over these, so ranks are weighted by them."""
        return ((self.items[:, :-1] > 0) & (self.items[:, 1:] > 0)).sum(1)


class SequentialModule(TrainableModule):
    """Item table + next-item loss; subclasses implement :meth:`states`."""

    def __init__(self, n_items: int, config: SequentialConfig, n_domains: int) -> None:
        super().__init__()
        self.config, self.n_domains = config, n_domains
        self.item = nn.Embedding(n_items + 1, config.dim, padding_idx=0)
        std = config.dim**-0.5 if config.init == "scaled" else config.init_std
        nn.init.normal_(self.item.weight, std=std)
        with torch.no_grad():
            self.item.weight[0].zero_()
        #: when set, modules with a cross-attention add |cos(X, X')| per module here during forward
        self.meters: dict[str, CosineMeter] | None = None

    def states(self, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """(B, W, D', d): the state at each position that predicts the next item, per target domain (D' = 1 for
        a domain-agnostic model). Position t depends on items at positions <= t only."""
        raise NotImplementedError

    def last_states(self, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """(B, D', d): the states after each row's latest item (what scores the next item)."""
        return self.states(items, domains)[:, -1]

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        items, domains = batch.items, batch.domains
        s = self.states(items, domains)[:, :-1]  # position t predicts t + 1
        target, tdom = items[:, 1:], domains[:, 1:]
        valid = (items[:, :-1] > 0) & (target > 0)
        h = s[valid]  # (N, D', d)
        tdom_v = tdom[valid]
        if h.shape[1] > 1:
            h = h[torch.arange(len(h), device=h.device), tdom_v]
        else:
            h = h[:, 0]
        tgt = target[valid]
        # each target's row
        row_v = torch.arange(len(items), device=items.device)[:, None].expand_as(valid)[valid]
        if self.config.loss == "softmax":
            if batch.item_domains is None:
                raise DataError(
                    'loss="softmax" needs the batch\'s item domains (SequenceBatch.item_domains)',
                    field="item_domains",
                )
            # without own-item masking each position's "own items" are its target alone (never masked)
            own = items[row_v] if self.config.mask_own_items else tgt[:, None]
            return full_softmax_loss(
                h, self.item.weight[1:], tgt - 1, tdom_v, own, batch.item_domains, self.n_domains
            )
        pos = (h * self.item(tgt)).sum(-1)
        mask_own = self.config.mask_own_items
        if self.config.loss == "bce":
            neg_ids = batch.negatives[valid]
            neg = (h * self.item(neg_ids + 1)).sum(-1)
            # a draw among the row's own items (the target included; the target alone without mask_own_items)
            # is no negative
            hit = in_rows(items, batch.negatives + 1)[valid] if mask_own else neg_ids + 1 == tgt
            keep = (~hit).float()
            return (F.softplus(-pos).sum() + (F.softplus(neg) * keep).sum()) / max(len(tgt), 1)
        negs = batch.negatives  # (D, n)
        d, n = negs.shape
        logits = (h @ self.item(negs.reshape(-1) + 1).T).view(-1, d, n)
        logits = logits[torch.arange(len(h), device=h.device), tdom_v]  # (N, n): the target domain's draws
        if mask_own:
            # the draws among the row's own items (the target included) are masked
            own = in_rows(items, (negs.reshape(1, -1) + 1).expand(len(items), -1)).view(-1, d, n)  # (B, D, n)
            logits = logits.masked_fill(own[row_v, tdom_v], float("-inf"))
        else:  # a draw of the target itself is the positive, not a negative
            logits = logits.masked_fill(negs[tdom_v] + 1 == tgt[:, None], float("-inf"))
        full = torch.cat([pos[:, None], logits], dim=1)
        return F.cross_entropy(full, torch.zeros(len(full), dtype=torch.long, device=full.device))

    def item_scores(
        self, items: torch.Tensor, domains: torch.Tensor, item_domains: torch.Tensor
    ) -> torch.Tensor:
        """(B, n_items) score of every item after each row's latest item, each item by its own domain's state."""
        if len(items) == 1:
            # one row would take a matrix-vector kernel whose sums round differently from the matrix-matrix one
            # used for two rows or more: a duplicate row keeps a row's scores independent of its batch. The
            # meters (|cos|) count the row once: a one-row pass fills them, the duplicated pass runs without them
            meters = self.meters
            if meters is not None:
                self.last_states(items, domains)
            self.meters = None
            try:
                return self.item_scores(items.expand(2, -1), domains.expand(2, -1), item_domains)[:1]
            finally:
                self.meters = meters
        last = self.last_states(items, domains)  # (B, D', d)
        table = self.item.weight[1:]
        if last.shape[1] == 1:
            return last[:, 0] @ table.T
        per_domain = torch.einsum("bkd,nd->bkn", last, table)  # (B, D, n_items)
        index = item_domains[None, None, :].expand(len(last), 1, -1)
        return per_domain.gather(1, index)[:, 0]


ModuleT = TypeVar("ModuleT", bound=SequentialModule)


def in_rows(items: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: whether ``cand[b, k]`` (an item index + 1) is one of ``items[b]``'s items ``(B, W)`` (0 =
    padding, never matched by a candidate >= 1). Sorted rows and a binary search: O(B·(W + K)·log W) time and
    O(B·K) memory, whatever the catalogue's size."""
    rows = items.sort(dim=1).values
    at = torch.searchsorted(rows, cand.contiguous()).clamp(max=rows.shape[1] - 1)
    return rows.gather(1, at) == cand


def full_softmax_loss(
    h: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    target_domains: torch.Tensor,
    own: torch.Tensor,
    item_domains: torch.Tensor,
    n_domains: int,
) -> torch.Tensor:
    """Mean over N target positions of the cross-entropy of each target against every item of its domain.

    ``h`` (N, d) the state that predicts each target; ``table`` (n_items, d) the output item vectors (row i: item
    index i); ``targets`` (N,) item indices; ``target_domains`` (N,) their domain ids; ``own`` (N, W) the items
    of each position's row, index + 1 (0 = padding), masked out of the negatives except where equal to the
    target; ``item_domains`` (n_items,) each item's domain id. One (N_D, n_D) logit matrix per domain D, never an
    (N, n_items) one."""
    n_items = len(item_domains)
    total = h.sum() * 0.0  # keeps the graph when no position is given
    for d in range(n_domains):
        at = torch.nonzero(target_domains == d).squeeze(1)
        if not len(at):
            continue
        ids = torch.nonzero(item_domains == d).squeeze(1)  # (n_D,) the domain's item indices
        n_d = len(ids)
        # item index + 1 -> its column among the domain's items; n_d ("none") for padding and other domains
        col = torch.full((n_items + 1,), n_d, dtype=torch.long, device=h.device)
        col[ids + 1] = torch.arange(n_d, device=h.device)
        logits = h[at] @ table[ids].T  # (N_D, n_D)
        t = col[targets[at] + 1]
        if bool((t == n_d).any()):
            raise DataError("a target item is not in its position's domain", field="item_domains")
        mine = col[own[at]]
        mine = mine.masked_fill(mine == t[:, None], n_d)  # the target is the positive, never masked
        mask = torch.zeros(len(at), n_d + 1, dtype=torch.bool, device=h.device).scatter_(1, mine, True)
        logits = logits.masked_fill(mask[:, :n_d], float("-inf"))
        total = total + F.cross_entropy(logits, t, reduction="sum")
    return total / max(len(targets), 1)


class DomainItems:
    """Items grouped by domain for uniform sampling within a domain: ``sorted_items`` ordered by domain, and
    each domain's ``start`` and ``count`` in it."""

    def __init__(self, item_domains: np.ndarray, n_domains: int) -> None:
        order = np.argsort(item_domains, kind="stable")
        self.sorted_items = torch.from_numpy(order.astype(np.int64))
        counts = np.bincount(item_domains, minlength=n_domains).astype(np.int64)
        self.count = torch.from_numpy(counts)
        self.start = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))

    def sample(self, domains: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One uniform item of ``domains[...]``'s domain per entry (same shape); padding (-1) draws from domain 0."""
        d = domains.clamp(min=0)
        u = torch.rand(domains.shape, generator=generator)
        k = (u * self.count[d]).long().clamp(max=self.count[d] - 1)
        return self.sorted_items[self.start[d] + k]


class SequentialRecommender(TorchRecommender[ConfigT], DomainItemScorer):
    """Wrapper of a sequential module: builds the users' training sequences (:class:`Sequences`) at fit, stores
    them in the bundle, scores a known user from them and a query's history (known or new user) from the history
    (oldest first), restricted to ``query.domain``'s items when the query names a domain."""

    task = TaskKind.SEQUENTIAL
    query_inputs = frozenset({"users", "history", "domain"})
    #: the item catalogue (item_id, domain): each item's domain, also for items never in a training row
    side_inputs: ClassVar[frozenset[str]] = frozenset({"items"})
    #: the SASRec paper's Adam and batch 128, early stopping on validation NDCG@10; lr 5e-3 rather than the paper's
    #: 1e-3: on ABXI Food-Kitchen validation, sasrec learned about twice as fast per epoch with it (BENCHMARKS.md)
    default_trainer: ClassVar[dict[str, Any]] = {
        "epochs": 200,
        "patience": 10,
        "batch_size": 128,
        "lr": 5e-3,
    }
    #: scoring rows per forward pass (memory: rows x n_items floats)
    score_batch: ClassVar[int] = 1024

    def __init__(self, config: ConfigT | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.sequences: Sequences | None = None
        self._domain_names: tuple[str, ...] = ()
        self._domain_items: DomainItems | None = None
        self._catalogue: pl.DataFrame | None = None

    # ----------------------------------------------------------------- to implement
    def new_module(self, n_items: int, n_domains: int) -> SequentialModule:
        raise NotImplementedError

    def input_sequences(self, seqs: Sequences) -> Sequences:
        """What the module reads of the mixed sequences (sasrec with a ``domain`` keeps one domain's view)."""
        return seqs

    def check_domains(self, names: tuple[str, ...]) -> None:
        """Refuse data whose domains this model cannot use (gca needs exactly two)."""
        return None

    # ----------------------------------------------------------------- fitting
    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        side: SideInputs,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport:
        self._catalogue = side.items
        return super()._fit(train, valid, side, trainer, run_key)

    def build_module(self, train: Interactions) -> TrainableModule:
        # item domains from the catalogue (the items side input) when given: a run's vocabulary holds items seen
        # only in held-out rows, which training rows cannot place in a domain
        item_domains, names = item_domains_of(train, self._catalogue)
        seqs = Sequences.from_interactions(train, item_domains, names, max_len=self.config.max_len)
        self.check_domains(seqs.domain_names)
        self.sequences, self.domain_names = seqs, seqs.domain_names
        self._domain_items = DomainItems(seqs.item_domains, seqs.n_domains)
        return self.new_module(train.n_items, seqs.n_domains)

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> TrainableModule:
        return self.new_module(self.n_items, len(self.domain_names))

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[SequenceBatch]:
        if self.sequences is None or self._domain_items is None:
            raise ConfigError(f"{self.name}: train_batches() called before build_module()")
        seqs = self.input_sequences(self.sequences)
        rows = np.flatnonzero(seqs.lengths >= 2)  # a row needs an input and a target
        if not len(rows):
            raise DataError(
                "no training sequence has two items", field="user", expected="users with >= 2 training items"
            )
        order = rows[torch.randperm(len(rows), generator=generator).numpy()]
        starts = np.arange(0, len(order), batch_size)
        if self.config.bucket_by_length:
            # a stable sort of the shuffled rows by length: equal lengths stay in random order
            order = order[np.argsort(seqs.lengths[order], kind="stable")]
            starts = starts[torch.randperm(len(starts), generator=generator).numpy()]
        items, domains = torch.from_numpy(seqs.items), torch.from_numpy(seqs.domains)
        item_domains = torch.from_numpy(seqs.item_domains)
        for start in starts:
            idx = torch.from_numpy(order[start : start + batch_size])
            width = int(seqs.lengths[idx.numpy()].max())
            b_items, b_dom = items[idx, -width:], domains[idx, -width:]
            catalogue = None
            if self.config.loss == "bce":
                neg = self._domain_items.sample(b_dom[:, 1:], generator)
            elif self.config.loss == "softmax":  # every item of the domain is a negative: nothing is drawn
                neg, catalogue = torch.zeros(len(self.domain_names), 0, dtype=torch.long), item_domains
            else:
                wanted = torch.arange(len(self.domain_names))[:, None].expand(-1, self.config.n_negatives)
                neg = self._domain_items.sample(wanted, generator)
            yield SequenceBatch(
                b_items, b_dom, neg, per_row_negatives=self.config.loss == "bce", item_domains=catalogue
            )

    # ----------------------------------------------------------------- scoring
    def _module(self) -> SequentialModule:
        if self.module is None or self.sequences is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        assert isinstance(self.module, SequentialModule)
        return self.module

    def domain_index(self, name: str) -> int:
        if name not in self.domain_names:
            raise ConfigError(
                f"query domain {name!r} is not one of this model's domains {list(self.domain_names)}"
            )
        return self.domain_names.index(name)

    @torch.no_grad()
    def score_sequences(self, seqs: Sequences, domain: str | None = None) -> torch.Tensor:
        """(len(seqs), n_items) scores of the next item after each sequence; with ``domain``, items of other
        domains score -inf. A row's scores do not depend on the rows scored with it (eval mode: no trimmed
        views; a single row is scored as two)."""
        module = self._module()
        seqs = self.input_sequences(seqs)
        device = next(module.parameters()).device
        item_domains = torch.from_numpy(seqs.item_domains).to(device)
        parts = []
        for start in range(0, len(seqs), self.score_batch):
            part = slice(start, start + self.score_batch)
            items = torch.from_numpy(seqs.items[part]).to(device)
            doms = torch.from_numpy(seqs.domains[part]).to(device)
            parts.append(module.item_scores(items, doms, item_domains))
        scores = torch.cat(parts) if parts else torch.zeros(0, self.n_items, device=device)
        if domain is not None:
            scores[:, item_domains != self.domain_index(domain)] = float("-inf")
        return scores

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        self._module()
        assert self.sequences is not None
        return self.score_sequences(self.sequences.take(np.asarray(users, dtype=np.int64)))

    def score_history(self, query: Query) -> torch.Tensor:
        assert query.history is not None
        self._module()
        assert self.sequences is not None
        h = query.history
        seqs = Sequences.from_history(
            h.items,
            h.offsets,
            self.sequences.item_domains,
            self.domain_names,
            max_len=self.config.max_len,
            users=query.users,
        )
        return self.score_sequences(seqs)

    def score(self, query: Query) -> torch.Tensor:
        scores = super().score(query)
        if query.domain is not None:
            assert self.sequences is not None
            other = self.sequences.item_domains != self.domain_index(query.domain)
            scores[:, torch.from_numpy(other).to(scores.device)] = float("-inf")
        return scores

    # ----------------------------------------------------------------- diagnostics
    @torch.no_grad()
    def orthogonality(self, seqs: Sequences | None = None) -> dict[str, float]:
        """Mean |cos(X, X')| of every cross-attention module over the non-padding query positions that see at
        least one key, on ``seqs`` (default: the stored training sequences), in eval mode. Empty for a model
        without cross-attention."""
        module = self._module()
        seqs = self.input_sequences(seqs if seqs is not None else self.sequences)  # type: ignore[arg-type]
        was_training = module.training
        module.eval()
        module.meters = {}
        try:
            device = next(module.parameters()).device
            for start in range(0, len(seqs), self.score_batch):
                part = slice(start, start + self.score_batch)
                module.states(
                    torch.from_numpy(seqs.items[part]).to(device),
                    torch.from_numpy(seqs.domains[part]).to(device),
                )
            return {f"abs_cos[{k}]": m.value for k, m in sorted(module.meters.items())}
        finally:
            module.meters = None
            module.train(was_training)

    def validator(self, valid: Any, exclude: Any = None) -> Any:
        """Validation under the default protocol (a :class:`DomainItemScorer`'s: per target domain, 999 seeded
        negatives of the target's domain, scored from the stored training sequences; ``ndcg@10`` is the mean over
        domains), plus the |cos(X, X')| of every cross-attention module over the validation rows' input sequences
        (logged each epoch as ``valid_abs_cos[...]``, and kept with the best epoch's metrics)."""
        base = super().validator(valid, exclude)

        def run() -> dict[str, float]:
            # |cos| is read off the validation's own forward passes (each validation row's input sequence, once),
            # not a second pass over every user
            module = self._module()
            module.meters = {}
            try:
                metrics = base()
                cos = {f"abs_cos[{k}]": m.value for k, m in sorted(module.meters.items())}
            finally:
                module.meters = None
            return {**metrics, **cos}

        return run

    # ----------------------------------------------------------------- DomainItemScorer
    @property
    def domain_names(self) -> tuple[str, ...]:
        return self._domain_names

    @domain_names.setter
    def domain_names(self, names: tuple[str, ...]) -> None:
        self._domain_names = tuple(names)

    def item_domains(self) -> np.ndarray:
        if self.sequences is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        return self.sequences.item_domains

    # ----------------------------------------------------------------- persistence
    def bundle_json(self) -> dict[str, Any]:
        return {"domain_names": list(self.domain_names)}

    def load_bundle_json(self, data: dict[str, Any]) -> None:
        names = data.get("domain_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise DataError("expected a non-empty list of domain names", field="domain_names", value=names)
        self.check_domains(tuple(names))
        self.domain_names = tuple(names)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = super().state_tensors()
        assert self.sequences is not None
        out[SEQ_TENSOR] = torch.from_numpy(self.sequences.items.copy())
        out[DOMAIN_TENSOR] = torch.from_numpy(self.sequences.item_domains.copy())
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        tensors = dict(tensors)
        seq = tensors.pop(SEQ_TENSOR, None)
        dom = tensors.pop(DOMAIN_TENSOR, None)
        want = {SEQ_TENSOR: (self.n_users, self.config.max_len), DOMAIN_TENSOR: (self.n_items,)}
        for key, t in ((SEQ_TENSOR, seq), (DOMAIN_TENSOR, dom)):
            if t is None or t.dtype != torch.int64 or tuple(t.shape) != want[key]:
                got = "missing" if t is None else f"shape {tuple(t.shape)} dtype {t.dtype}"
                raise DataError(got, field=key, expected=f"int64 of shape {want[key]}")
        assert seq is not None and dom is not None
        item_domains = dom.numpy().copy()
        if item_domains.min() < 0 or item_domains.max() >= len(self.domain_names):
            raise DataError(
                "domain id out of range", field=DOMAIN_TENSOR, expected=f"0..{len(self.domain_names) - 1}"
            )
        items = seq.numpy().copy()
        if items.min() < 0 or items.max() > self.n_items:
            raise DataError("item out of range", field=SEQ_TENSOR, expected=f"0..{self.n_items} (item + 1)")
        self.sequences = _sequences_from_items(items, item_domains, self.domain_names)
        self._domain_items = DomainItems(item_domains, len(self.domain_names))
        super().load_state_tensors(tensors)


def _sequences_from_items(items: np.ndarray, item_domains: np.ndarray, names: tuple[str, ...]) -> Sequences:
    """Rebuild :class:`Sequences` from the stored (U, L) left-padded item + 1 array."""
    real = items > 0
    domains = np.where(real, item_domains[np.maximum(items - 1, 0)], -1)
    lengths = real.sum(1).astype(np.int64)
    order = np.where(real, np.cumsum(real, axis=1) - 1, -1)
    return Sequences(
        items=items,
        domains=domains.astype(np.int64),
        order=order.astype(np.int64),
        lengths=lengths,
        users=np.arange(len(items), dtype=np.int64),
        item_domains=item_domains.astype(np.int64),
        domain_names=names,
    )
