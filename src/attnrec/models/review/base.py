"""What the review-text rating models (DeepCoNN, TransNet, safmr) share.

* :class:`ReviewConfig` — the text pipeline and CNN options (the safmr paper's Table 3 defaults);
* :class:`ReviewModule` — the ``nn.Module`` base: the users' and items' documents as int32 buffers (saved in the
  bundle, so a loaded model predicts without the training file), the training rows' target reviews (training
  only, never saved), and the per-batch gathers; a subclass supplies the towers, the test-time rating
  ``rate(user_vectors, item_vectors)`` and the training loss;
* :class:`FactorizationMachine` — Rendle's FM on a dense vector (DeepCoNN's and TransNet's rating layer);
* :class:`RatingBiases` — the opt-in per-user and per-item rating offsets b_u + b_i (``id_biases``; NARRE's
  prediction layer, not in the three papers) that :meth:`ReviewModule.biased` adds to a rating head's output,
  started at zero or at :func:`baseline_offsets` (``bias_init``);
* :class:`ReviewRatingModel` — the estimator: builds vocabulary and documents from the training reviews
  (:class:`~attnrec.data.side.ReviewCorpus`, checked to come from the training split), trains on the one Trainer,
  predicts from the user's and item's documents only (never a target review).

A user or item whose training reviews hold no words (empty or missing text; or no review column at all) gets an
all-padding document: its vector is the towers' output for padding. :meth:`ReviewRatingModel.has_text` flags such
pairs and :meth:`ReviewRatingModel.predict` logs their count. With ``id_biases`` a user or item without training
rows has b = 0 (zero at the start, also under ``bias_init="baseline"``, and never in a batch: no gradient).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np
import polars as pl
import torch
from pydantic import Field, model_validator
from torch import nn

from attnrec.data.reviews import ReviewBatch, ReviewDocuments, WordVocab, tokenize
from attnrec.data.side import ReviewCorpus, SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.models.base import (
    FitReport,
    ModelConfig,
    RatingPredictor,
    TaskKind,
    TorchRecommender,
    TrainableModule,
)
from attnrec.models.layers.interaction import fm_second_order
from attnrec.models.layers.text_cnn import TextCNN

if TYPE_CHECKING:
    from attnrec.training.trainer import TrainerConfig

log = logging.getLogger(__name__)

#: documents encoded per forward pass at prediction time, and (user, item) pairs rated per pass
_DOC_CHUNK = 256
_PAIR_CHUNK = 16384


class ReviewConfig(ModelConfig):
    """Options every review model shares. Defaults: the safmr paper's Table 3 (kernels, sizes, dropout, review
    count and length, 50,000 words); ``word_dim`` is ours (Table 3 gives none). Training settings (15 epochs,
    batch 128, Adam lr 0.008 decayed by 0.99 per epoch) are the models' ``default_trainer``."""

    review_count: int = Field(10, ge=1)
    review_length: int = Field(80, ge=1)
    max_words: int = Field(50_000, ge=1)
    word_dim: int = Field(64, ge=1)
    #: "random": random word embeddings (DeepCoNN: ``TextCNN``'s N(0, 1); TransNet and safmr: N(0, 1/word_dim),
    #: :func:`unit_norm_word_vectors`); "skipgram": vectors trained on the training reviews (needs gensim)
    word_vectors: Literal["random", "skipgram"] = "random"
    skipgram_epochs: int = Field(5, ge=1)
    skipgram_window: int = Field(5, ge=1)
    freeze_words: bool = False
    n_kernels: int = Field(100, ge=1)
    kernel_size: int = Field(3, ge=1)
    cnn_out: int = Field(50, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    #: in training, remove a row's own review from its user's and item's documents, as it is absent at test time
    hide_target_review: bool = True
    #: add per-user and per-item rating offsets b_u + b_i (started per ``bias_init``) to the rating head that predicts, as
    #: NARRE's prediction layer (Chen et al., WWW 2018) does; none of the three papers has them (ours, opt-in;
    #: docs/models/deepconn.md, transnet.md, safmr.md)
    id_biases: bool = False
    #: with ``id_biases``: the penalty bias_l2 · (b_u² + b_i²), averaged over the batch's rows, added to the loss of
    #: the head the biases join (the per-rating L2 of SGD matrix factorisation)
    bias_l2: float = Field(0.01, ge=0.0)
    #: with ``id_biases``: where b_u, b_i start. "zero" (NARRE's); "baseline": at the training ratings' regularised
    #: baseline estimates (:func:`baseline_offsets`, Surprise BaselineOnly's ALS), so TransNet's and safmr's rating
    #: heads, whose w0 starts at the mean rating μ, start from μ + b_u + b_i and learn what the text adds (ours);
    #: DeepCoNN's FM starts w0 at 0 (its paper's), so it starts from b_u + b_i (docs/models/deepconn.md)
    bias_init: Literal["zero", "baseline"] = "zero"

    #: the fields came after bundles and checkpoints of these models were written (these values: the model before)
    bundle_legacy: ClassVar[dict[str, Any]] = {"id_biases": False, "bias_l2": 0.01, "bias_init": "zero"}

    @model_validator(mode="after")
    def _bias_options_need_biases(self) -> ReviewConfig:
        if self.bias_init != "zero" and not self.id_biases:
            raise ValueError(
                f"bias_init = {self.bias_init!r} starts the rating offsets, which exist only with id_biases = true"
            )
        if self.bias_l2 != self.bundle_legacy["bias_l2"] and not self.id_biases:
            raise ValueError(
                f"bias_l2 = {self.bias_l2} penalises the rating offsets, which exist only with id_biases = true"
            )
        return self


ReviewConfigT = TypeVar("ReviewConfigT", bound=ReviewConfig)


class FactorizationMachine(nn.Module):
    """ŷ = w0 + Σ_i w_i z_i + Σ_{i<j} <v_i, v_j> z_i z_j for a dense z (B, n) -> (B,) (Rendle 2010, eq. 1);
    ``bias`` is w0's initial value (in rating units)."""

    def __init__(self, n: int, factors: int, bias: float = 0.0) -> None:
        super().__init__()
        self.w0 = nn.Parameter(torch.tensor(float(bias)))
        self.linear = nn.Linear(n, 1, bias=False)
        self.v = nn.Parameter(torch.randn(n, factors) * 0.01)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        pair = fm_second_order(z.unsqueeze(-1) * self.v)  # feature i's embedding is z_i v_i
        return self.w0 + self.linear(z).squeeze(-1) + pair


class RatingBiases(nn.Module):
    """b_u + b_i (B,) for (user, item) index pairs: one zero-initialised offset per user and per item (NARRE's
    prediction layer, R = W1ᵀh0 + b_u + b_i + μ, with μ as the rating head's own w0); ``l2`` weighs
    :meth:`penalty`."""

    def __init__(self, n_users: int, n_items: int, l2: float) -> None:
        super().__init__()
        # zeros given, not drawn then zeroed: no random number is used, so with the biases on every other tensor
        # starts as in the model without them (same seed), and the two differ by the biases alone
        self.user = nn.Embedding.from_pretrained(torch.zeros(n_users, 1), freeze=False)
        self.item = nn.Embedding.from_pretrained(torch.zeros(n_items, 1), freeze=False)
        self.l2 = l2

    def start_at(self, user: np.ndarray, item: np.ndarray) -> None:
        """Set the offsets to ``user`` (n_users,) and ``item`` (n_items,)."""
        with torch.no_grad():
            self.user.weight.copy_(torch.as_tensor(user, dtype=torch.float32).reshape(-1, 1))
            self.item.weight.copy_(torch.as_tensor(item, dtype=torch.float32).reshape(-1, 1))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.user(users).squeeze(-1) + self.item(items).squeeze(-1)

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """l2 · mean over the rows of (b_u² + b_i²) (a user or item counted once per row it has in the batch)."""
        sq = self.user(users).squeeze(-1).square() + self.item(items).squeeze(-1).square()
        return self.l2 * sq.mean()


#: the baseline estimates of ``bias_init="baseline"``: Surprise BaselineOnly's ALS defaults (reg_u 15, reg_i 10,
#: 10 sweeps; Koren, TKDD 2010, §2.1)
BASELINE_REG_USER, BASELINE_REG_ITEM, BASELINE_SWEEPS = 15.0, 10.0, 10


def baseline_offsets(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    reg_user: float = BASELINE_REG_USER,
    reg_item: float = BASELINE_REG_ITEM,
    sweeps: int = BASELINE_SWEEPS,
) -> tuple[np.ndarray, np.ndarray]:
    """Regularised baseline estimates ``(b_u (n_users,), b_i (n_items,))`` float32 of r ≈ μ + b_u + b_i (μ the mean
    rating) by alternating least squares from zeros, as Surprise's BaselineOnly: each sweep sets
    b_i = Σ_{u∈R(i)} (r − μ − b_u) / (reg_item + |R(i)|), then b_u = Σ_{i∈R(u)} (r − μ − b_i) / (reg_user + |R(u)|).
    A user or item without rows gets 0."""
    r = np.asarray(ratings, dtype=np.float64)
    mu = float(r.mean()) if len(r) else 0.0
    n_u = np.bincount(users, minlength=n_users)
    n_i = np.bincount(items, minlength=n_items)
    b_u, b_i = np.zeros(n_users), np.zeros(n_items)
    for _ in range(sweeps):
        b_i = np.bincount(items, weights=r - mu - b_u[users], minlength=n_items) / (reg_item + n_i)
        b_u = np.bincount(users, weights=r - mu - b_i[items], minlength=n_users) / (reg_user + n_u)
    return b_u.astype(np.float32), b_i.astype(np.float32)


class ReviewModule(TrainableModule):
    """Documents as buffers and the gathers every review model needs; subclasses add the towers ``user_net`` and
    ``item_net``, :meth:`rate` and the loss.

    ``user_docs`` (n_users, R, L) and ``item_docs`` (n_items, R, L) are saved with the weights; ``row_tokens``,
    ``user_slot`` and ``item_slot`` (see :class:`ReviewDocuments`) are set by :meth:`attach_training` and are
    not saved (the target reviews are a training-time input only). With ``id_biases`` the module holds
    :class:`RatingBiases` (``biases``): :meth:`rate_ids` adds them at test time, and a subclass scores the
    predicting head's output with :meth:`predicting_loss`, which adds them and their L2 in training.
    """

    #: the towers a subclass builds (or it overrides :meth:`user_vectors` / :meth:`item_vectors`)
    user_net: TextCNN
    item_net: TextCNN
    #: the rating loss a subclass trains with (its config's ``loss``)
    loss_kind: Literal["l1", "l2"]
    user_docs: torch.Tensor
    item_docs: torch.Tensor
    row_tokens: torch.Tensor
    user_slot: torch.Tensor
    item_slot: torch.Tensor

    def __init__(self, n_users: int, n_items: int, config: ReviewConfig) -> None:
        super().__init__()
        shape = (config.review_count, config.review_length)
        self.register_buffer("user_docs", torch.zeros((n_users, *shape), dtype=torch.int32))
        self.register_buffer("item_docs", torch.zeros((n_items, *shape), dtype=torch.int32))
        for name in ("row_tokens", "user_slot", "item_slot"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.int64), persistent=False)
        self.hide_target_review = config.hide_target_review
        #: built only when asked for, so a model without them holds (and saves) exactly the tensors it did before
        self.biases: RatingBiases | None = (
            RatingBiases(n_users, n_items, config.bias_l2) if config.id_biases else None
        )

    def set_documents(self, docs: ReviewDocuments) -> None:
        """Copy the documents in (shapes must match the module's)."""
        self.user_docs.copy_(torch.from_numpy(docs.user_docs))
        self.item_docs.copy_(torch.from_numpy(docs.item_docs))

    def attach_training(self, docs: ReviewDocuments) -> None:
        """Set the training-only inputs: the target review of every training row and its document slots."""
        dev = self.user_docs.device
        self.row_tokens = torch.from_numpy(docs.row_tokens).to(dev)
        self.user_slot = torch.from_numpy(docs.user_slot).to(dev)
        self.item_slot = torch.from_numpy(docs.item_slot).to(dev)

    def documents(
        self, users: torch.Tensor, items: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened documents (B, R·L) of ``users`` and ``items``; with training ``rows`` (and
        ``hide_target_review``) each row's own review is blanked out of both documents."""
        ud, idoc = self.user_docs[users], self.item_docs[items]
        if rows is not None and self.hide_target_review:
            slots = torch.arange(ud.shape[1], device=ud.device)
            ud = ud * (slots != self.user_slot[rows, None]).unsqueeze(-1)
            idoc = idoc * (slots != self.item_slot[rows, None]).unsqueeze(-1)
        return ud.flatten(1), idoc.flatten(1)

    def target(self, rows: torch.Tensor) -> torch.Tensor:
        """The target reviews (B, L) of training rows ``rows``."""
        if self.row_tokens.shape[0] == 0:
            raise ConfigError("the target reviews are a training input only: this module has none attached")
        return self.row_tokens[rows]

    def user_vectors(self, docs: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """User representations (B, d_u) from user documents (B, R·L): the ``user_net`` tower by default.
        ``ids`` (B,) are the users' indices, for a model whose representation also holds an id embedding
        (TransNet-Ext); the text-only models ignore them."""
        return self.user_net(docs)

    def item_vectors(self, docs: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Item representations (B, d_i) from item documents (B, R·L): the ``item_net`` tower by default;
        ``ids`` as in :meth:`user_vectors`."""
        return self.item_net(docs)

    @abstractmethod
    def rate(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """Test-time predicted ratings (B,) from aligned user and item representations (no target review)."""

    def biased(self, pred: torch.Tensor, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``pred`` (B,) + b_u + b_i of the aligned ``users`` and ``items`` (B,); ``pred`` itself without
        ``id_biases``."""
        return pred if self.biases is None else pred + self.biases(users, items)

    def predicting_loss(self, pred: torch.Tensor, batch: ReviewBatch) -> torch.Tensor:
        """The loss of the head that rates at test time, from its output ``pred`` (B,) on ``batch``:
        :func:`rating_loss` of ``pred`` + b_u + b_i, plus the biases' L2 (:meth:`RatingBiases.penalty`); without
        ``id_biases``, :func:`rating_loss` of ``pred`` alone."""
        loss = rating_loss(self.biased(pred, batch.users, batch.items), batch.ratings, self.loss_kind)
        return loss if self.biases is None else loss + self.biases.penalty(batch.users, batch.items)

    def rate_ids(
        self, user_vecs: torch.Tensor, item_vecs: torch.Tensor, users: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """Test-time ratings (B,): :meth:`rate` plus the pairs' b_u + b_i (``users``, ``items`` (B,) their
        indices), the one prediction path of :meth:`forward` and the estimator."""
        return self.biased(self.rate(user_vecs, item_vecs), users, items)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Test-time ratings (B,) of (user, item) index pairs from their documents."""
        ud, idoc = self.documents(users, items)
        return self.rate_ids(self.user_vectors(ud, users), self.item_vectors(idoc, items), users, items)


def text_cnn(config: ReviewConfig, vocab_size: int, word_vectors: np.ndarray | None, **kw: Any) -> TextCNN:
    """A :class:`TextCNN` with the config's sizes."""
    return TextCNN(
        vocab_size,
        config.word_dim,
        config.n_kernels,
        config.kernel_size,
        config.cnn_out,
        config.dropout,
        word_vectors,
        freeze_words=config.freeze_words,
        **kw,
    )


def unit_norm_word_vectors(vocab_size: int, word_dim: int, seed: int) -> np.ndarray:
    """Random word vectors (vocab_size, word_dim) float32 of unit expected norm, N(0, 1/word_dim) (row 0, padding,
    is zeroed by :class:`TextCNN`). With the N(0, 1) default the pooled CNN features of an 800-word document are
    so large that a few Adam steps drive a tanh output into saturation, and it then stops depending on the text
    (``docs/models/safmr.md``, choice 15)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((vocab_size, word_dim)) / np.sqrt(word_dim)).astype(np.float32)


def rating_loss(pred: torch.Tensor, target: torch.Tensor, kind: Literal["l1", "l2"]) -> torch.Tensor:
    """Mean absolute (``l1``) or squared (``l2``) error over the batch."""
    diff = pred - target
    return diff.abs().mean() if kind == "l1" else diff.square().mean()


class ReviewRatingModel(TorchRecommender[ReviewConfigT], RatingPredictor):
    """Base estimator of the review models: documents from the training reviews, test-time ratings from the
    user's and item's documents. Subclasses set ``name``, ``config_class``, ``paper`` and :meth:`new_module`."""

    task = TaskKind.RATING
    query_inputs = frozenset({"users"})
    side_inputs = frozenset({"reviews"})
    required_side_inputs = frozenset({"reviews"})
    #: the safmr paper's Table 3 (DeepCoNN and TransNet are trained with the same settings there)
    default_trainer: ClassVar[dict[str, Any]] = {
        "epochs": 15,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 0.008,
        "lr_schedule": "step",
        "step_size": 1,
        "gamma": 0.99,
    }

    def __init__(self, config: ReviewConfigT | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.vocab: WordVocab | None = None
        self.text_stats: dict[str, int] = {}
        self._docs: ReviewDocuments | None = None
        self._word_vectors: np.ndarray | None = None
        #: the training rating scale (low, high) that :meth:`predict` clips to
        self.rating_range: tuple[float, float] = (-np.inf, np.inf)
        #: the mean training rating while a module is built (:meth:`new_module` may start a rating bias there)
        self._global_bias = 0.0

    @abstractmethod
    def new_module(self, vocab_size: int, word_vectors: np.ndarray | None) -> ReviewModule:
        """A fresh module over ``self.n_users`` users and ``self.n_items`` items."""

    # ------------------------------------------------------------------ fitting
    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        side: SideInputs,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport:
        c = self.config
        self.rating_range = train.rating_bounds()
        corpus = side.reviews
        assert corpus is not None  # check_side required it
        corpus.check_built_from(train)
        if len(corpus) == 0:  # a training split without a review column: every document is padding
            corpus = ReviewCorpus(
                train.frame.select("user", "item", pl.lit("").alias("review")), corpus.source_fingerprint
            )
        tokens = tokenize(corpus.frame["review"])
        self.vocab = WordVocab.build(tokens, c.max_words)
        stamps = train.column("timestamp") if "timestamp" in train.frame.columns else None
        self._docs = ReviewDocuments.build(
            corpus,
            self.vocab,
            train.n_users,
            train.n_items,
            review_count=c.review_count,
            review_length=c.review_length,
            timestamps=stamps,
            tokens=tokens,
        )
        self.text_stats = {**self._docs.stats(), "words": len(self.vocab.words)}
        log.info("%s: text of the training split: %s", self.name, self.text_stats)
        self._word_vectors = None
        if c.word_vectors == "skipgram":
            from attnrec.text.word2vec import skipgram_vectors

            self._word_vectors = skipgram_vectors(
                tokens,
                self.vocab,
                c.word_dim,
                seed=c.seed,
                epochs=c.skipgram_epochs,
                window=c.skipgram_window,
            )
        try:
            return super()._fit(train, valid, side, trainer, run_key)
        finally:
            self._docs, self._word_vectors = None, None  # fitting inputs: the module holds what it needs

    def build_module(self, train: Interactions) -> ReviewModule:
        assert self._docs is not None and self.vocab is not None
        self._global_bias = float(np.mean(train.ratings)) if len(train) else 0.0
        module = self.new_module(len(self.vocab), self._word_vectors)
        if module.biases is not None and self.config.bias_init == "baseline":
            module.biases.start_at(
                *baseline_offsets(train.users, train.items, train.ratings, self.n_users, self.n_items)
            )
        module.set_documents(self._docs)
        module.attach_training(self._docs)
        return module

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> ReviewModule:
        if self.vocab is None:
            raise ConfigError(f"{self.name}: the bundle has no word vocabulary (extra.json 'words')")
        return self.new_module(len(self.vocab), None)

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[ReviewBatch]:
        users, items = (
            torch.tensor(train.users, dtype=torch.int64),
            torch.tensor(train.items, dtype=torch.int64),
        )
        ratings = torch.tensor(train.ratings, dtype=torch.float32)
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield ReviewBatch(idx, users[idx], items[idx], ratings[idx])

    # ------------------------------------------------------------------ scoring
    @property
    def review_module(self) -> ReviewModule:
        if not isinstance(self.module, ReviewModule):
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        return self.module

    def _vectors(self, which: Literal["user", "item"], idx: torch.Tensor) -> torch.Tensor:
        """Test-time representations of users or items ``idx`` (N,), encoded in fixed-size chunks."""
        m = self.review_module
        docs, encode = (m.user_docs, m.user_vectors) if which == "user" else (m.item_docs, m.item_vectors)
        chunks = idx.split(_DOC_CHUNK)
        parts = [encode(docs[chunk].flatten(1), chunk) for chunk in chunks]
        return torch.cat(parts) if parts else torch.zeros(0)

    def _rate_pairs(
        self, uvec: torch.Tensor, ivec: torch.Tensor, users: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """Ratings (N,) of aligned representations and the pairs' indices (N,), in chunks."""
        m = self.review_module
        c = _PAIR_CHUNK
        parts = [
            m.rate_ids(uvec[s : s + c], ivec[s : s + c], users[s : s + c], items[s : s + c])
            for s in range(0, len(uvec), c)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, device=uvec.device)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings (N,) float32 of aligned (user, item) index arrays, from their training documents only,
        clipped to the training rating scale. Pairs whose user or item has no training text (all-padding document)
        are counted in the log."""
        u, i = self.check_pairs(users, items)
        m = self.review_module
        m.eval()
        if len(u) == 0:
            return np.zeros(0, dtype=np.float32)
        lacking = int((~self.has_text(u, i)).sum())
        if lacking:
            log.info(
                "%s: %d of %d pairs have a user or item without training text", self.name, lacking, len(u)
            )
        dev = m.user_docs.device
        uu, uinv = np.unique(u, return_inverse=True)
        ii, iinv = np.unique(i, return_inverse=True)
        with torch.no_grad():
            uvec = self._vectors("user", torch.from_numpy(uu).to(dev))
            ivec = self._vectors("item", torch.from_numpy(ii).to(dev))
            out = self._rate_pairs(
                uvec[torch.from_numpy(uinv).to(dev)],
                ivec[torch.from_numpy(iinv).to(dev)],
                torch.from_numpy(u).to(dev),
                torch.from_numpy(i).to(dev),
            )
        return out.clamp(*self.rating_range).float().cpu().numpy()

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        """Predicted ratings of every item (B, n_items) for users (B,), each user and item encoded once; not
        clipped (a ranking on clipped ratings would tie every item predicted above the top rating)."""
        m = self.review_module
        m.eval()
        dev = m.user_docs.device
        with torch.no_grad():
            uidx = torch.tensor(np.asarray(users, dtype=np.int64), device=dev)
            iidx = torch.arange(self.n_items, device=dev)
            uvec, ivec = self._vectors("user", uidx), self._vectors("item", iidx)
            n = len(ivec)
            step = max(1, _PAIR_CHUNK // max(1, n))  # users per pass: the pairs of a pass stay ~_PAIR_CHUNK
            rows = [
                m.rate_ids(
                    block.repeat_interleave(n, dim=0),
                    ivec.repeat(len(block), 1),
                    ids.repeat_interleave(n),
                    iidx.repeat(len(block)),
                ).reshape(len(block), n)
                for block, ids in zip(uvec.split(step), uidx.split(step), strict=True)
            ]
        return torch.cat(rows) if rows else torch.zeros((0, n), device=dev)

    def has_text(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(N,) bool: True where both the user's and the item's documents hold a word (False: the all-padding
        fallback was used for at least one side)."""
        m = self.review_module
        u = torch.tensor(np.asarray(users, dtype=np.int64), device=m.user_docs.device)
        i = torch.tensor(np.asarray(items, dtype=np.int64), device=m.user_docs.device)
        return (
            ((m.user_docs[u] != 0).flatten(1).any(1) & (m.item_docs[i] != 0).flatten(1).any(1)).cpu().numpy()
        )

    # ------------------------------------------------------------------ persistence
    def bundle_json(self) -> dict[str, Any]:
        """The word vocabulary (documents are tensors of the bundle) and the training-text counts."""
        if self.vocab is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        return {"words": list(self.vocab.words), "text_stats": self.text_stats}

    def load_bundle_json(self, data: dict[str, Any]) -> None:
        words = data.get("words")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DataError("not the word vocabulary", field="words", expected="a list of strings")
        self.vocab = WordVocab(tuple(words))
        stats = data.get("text_stats", {})
        self.text_stats = {str(k): int(v) for k, v in stats.items()} if isinstance(stats, dict) else {}
