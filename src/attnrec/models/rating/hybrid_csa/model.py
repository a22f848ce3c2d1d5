"""hybrid_csa: SVD latent factors and sentence embeddings fused by multi-head self-attention (paper 000).

u, i: the user / item rows of a biased-MF (SVD) fitted by ALS on the training split; r: a sentence embedding,
fused by :class:`~attnrec.models.rating.hybrid_csa.module.HybridCSAModule` (eq. 6-16 there).
Which text r is matters (``docs/models/hybrid_csa.md``): by default the ITEM's text (metadata, else its training
reviews), never the review the user wrote about the rated item — that review does not exist at recommendation
time and states the rating. ``target_review_leakage=True`` is the paper-literal mode, and everything it returns
is flagged ``leaky``.

:class:`HybridCSA` is the thin recommender: fit (the SVD stage and texts in :mod:`.inputs`, then the one
Trainer), rating predictions and scores, cold-start items (:mod:`.cold_start`) and bundle I/O; text queries and
explanations come from the :mod:`.queries` and :mod:`.explain` mixins.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
import torch

from attnrec.data.side import SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.models.base import Query, TaskKind, register
from attnrec.models.rating.hybrid_csa.cold_start import (
    check_new_items,
    grow_catalogue,
    new_items_from_frame,
    text_to_factors,
)
from attnrec.models.rating.hybrid_csa.config import PAPER_TRAINER, HybridCSAConfig
from attnrec.models.rating.hybrid_csa.explain import Explanations
from attnrec.models.rating.hybrid_csa.inputs import prepare_inputs
from attnrec.models.rating.hybrid_csa.module import HybridBatch, HybridCSAModule
from attnrec.models.rating.hybrid_csa.queries import TextQueries
from attnrec.models.rating.hybrid_csa.text_blend import blend_scores
from attnrec.text.encoder import SentenceEncoder
from attnrec.training.types import FitReport

if TYPE_CHECKING:
    from attnrec.training.trainer import TrainerConfig


@register
class HybridCSA(TextQueries, Explanations):
    """SVD + sentence-embedding rating model fused by cross self-attention, with text queries, cold-start
    items and attention explanations. See the module docstring and ``docs/models/hybrid_csa.md``."""

    #: the package, which re-exports this class: bundles record it as their model_class, pickles find it there
    __module__ = "attnrec.models.rating.hybrid_csa"
    name = "hybrid_csa"
    task = TaskKind.RATING
    config_class = HybridCSAConfig
    paper = "Gunreddy, Hybrid Recommendation System Using Cross Self Attention Fusion for Electronic Products (paper 000)"
    #: item metadata (titles, descriptions, genres...) gives the item text; without it, training reviews do
    side_inputs: ClassVar[frozenset[str]] = frozenset({"items"})
    #: text queries rank every item with the query as the text token (the paper's section VI-B)
    query_inputs: ClassVar[frozenset[str]] = frozenset({"users", "text"})
    default_trainer: ClassVar[dict[str, Any]] = PAPER_TRAINER

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        side: SideInputs | None = None,
        trainer: TrainerConfig | None = None,
        run_key: str | None = None,
        encoder: SentenceEncoder | None = None,
    ) -> FitReport:
        """Fit the SVD (ALS, best sweep on ``valid``), encode texts, then train the fusion network with the Trainer
        (early stopping on ``valid``).

        ``side.items``: optional item metadata keyed by ``item_id`` (Amazon: title/description/categories/brand;
        MovieLens: title/year/genres). Item text is that metadata, else (or where it is empty) the item's reviews
        from ``train`` (a ``review`` column). ``encoder``: a :class:`SentenceEncoder` to use instead of
        ``config.encoder`` (e.g. ``SentenceEncoder(HashingTextModel())`` in tests). ``trainer``: a TrainerConfig;
        None means the paper's settings, :data:`PAPER_TRAINER`.
        """
        if encoder is not None:
            self._encoder = encoder
        # checked before anything is fitted (the SVD stage takes seconds to minutes)
        if (
            (side is None or side.items is None)
            and isinstance(train, Interactions)
            and "review" not in train.frame.columns
        ):
            raise ConfigError(
                "hybrid_csa needs item text and was given neither item metadata nor reviews: pass item metadata "
                "(CLI: --items FILE, a CSV with item_id and title/description/genres; Python: "
                "fit(..., side=SideInputs(items=frame))) or training data with a 'review' column"
            )
        if side is not None and side.items is not None and isinstance(train, Interactions):
            # ids that match no training item would train on empty texts (a run checks text coverage earlier)
            known = set(side.items["item_id"].cast(pl.String).to_list())
            ids = [str(i) for i in train.item_vocab.ids]
            if not known.intersection(ids) and "review" not in train.frame.columns:
                raise DataError(
                    f"no training item is in the item metadata: 0 of {len(ids)} match (training ids, e.g. "
                    f"{ids[:5]}; metadata ids, e.g. {sorted(known)[:5]}) and there are no reviews to fall back on",
                    field="side.items.item_id",
                    expected="the interactions' item ids",
                )
        return super().fit(train, valid, side=side, trainer=trainer, run_key=run_key)

    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        side: SideInputs,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport:
        trainer = self.make_trainer_config(trainer)
        items = side.items
        c = self.config
        t0 = time.perf_counter()
        self.module = None
        self.rating_range = train.rating_bounds()
        # 1-2. the SVD stage and the encoded texts
        inputs, self.titles, texts, svd_report = prepare_inputs(
            c, train, valid, items, lambda texts: self._encode(texts, allow_empty=True)
        )
        enc = self.encoder
        dim = int(inputs.item_text.shape[1])
        self.encoder_info = {"name": enc.model_name, "model_id": enc.model_id, "dim": dim}
        self.n_warm_items = train.n_items
        self._inputs = inputs
        try:
            # 3. the fusion network, in the one Trainer
            report = super()._fit(train, valid, side, trainer, run_key)
        finally:
            self._inputs = None
            self._memo = None
            if isinstance(self.module, HybridCSAModule):
                self.module.set_crossfit(None)  # training only; inference uses the full fit
        # 4. the cold-start map, on the (possibly fine-tuned) warm item factors
        self.csa.fit_cold_maps(c.cold_ridge)
        # 5. the text-query blend's weight: fixed by the config, else chosen on validation
        self._fit_text_weight(valid, texts)
        report.seconds = time.perf_counter() - t0
        self.svd_report = svd_report
        if self.leaky:
            report.best_valid = {**report.best_valid, "leaky": True}
        return report

    def build_module(self, train: Interactions) -> HybridCSAModule:
        p = self._inputs
        if p is None:
            raise ConfigError("hybrid_csa: build_module is called by fit()")
        module = self._new_module(p.user_factors, p.item_factors, p.item_text, p.user_text, p.mu, p.biases)
        module.fit_cold_maps(self.config.cold_ridge)  # cold_item_rate's rows use it during training
        module.set_crossfit(p.crossfit)
        return module

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> HybridCSAModule:
        # the module takes its sizes from these tensors: each must have one row per user / item of the vocabularies
        rows = {"user_factors": self.n_users, "item_factors": self.n_items, "item_text": self.n_items}
        rows |= {"user_text": self.n_users, "user_bias": self.n_users, "item_bias": self.n_items}
        for key, n in rows.items():
            t = tensors.get(key)
            if t is not None and (t.dim() not in (1, 2) or t.shape[0] != n):
                raise DataError(
                    f"shape {tuple(t.shape)}", field=key, expected=f"{n} rows, one per vocabulary entry"
                )
        user_text = tensors.get("user_text")
        return self._new_module(
            torch.zeros_like(tensors["user_factors"]),
            torch.zeros_like(tensors["item_factors"]),
            torch.zeros_like(tensors["item_text"]),
            None if user_text is None else torch.zeros_like(user_text),
            0.0,
            (torch.zeros_like(tensors["user_bias"]), torch.zeros_like(tensors["item_bias"]))
            if "user_bias" in tensors
            else None,
        )

    def _new_module(
        self,
        uf: torch.Tensor,
        itf: torch.Tensor,
        item_text: torch.Tensor,
        user_text: torch.Tensor | None,
        mu: float,
        biases: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> HybridCSAModule:
        c = self.config
        return HybridCSAModule(
            uf,
            itf,
            item_text,
            user_text,
            d_model=c.d_model,
            heads=c.heads,
            dropout=c.dropout,
            mlp_hidden=c.mlp_hidden,
            fusion=c.fusion,
            freeze_svd=c.freeze_svd,
            attn_norm=c.attn_norm,
            attn_residual=c.attn_residual,
            pooling=c.pooling,
            mu=mu,
            biases=biases,
        )

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[HybridBatch]:
        """Shuffled batches; ``unknown_user_rate`` of the rows get the unknown-user token. A final batch of one
        row is skipped (BatchNorm cannot normalise a single row in training mode)."""
        p = self._inputs
        assert p is not None
        users = torch.tensor(train.users, dtype=torch.int64)
        items = torch.tensor(train.items, dtype=torch.int64)
        ratings = torch.tensor(train.ratings, dtype=torch.float32)
        n = len(train)
        order = torch.randperm(n, generator=generator)
        unknown = torch.rand(n, generator=generator) < self.config.unknown_user_rate
        cold = torch.rand(n, generator=generator) < self.config.cold_item_rate
        rows_text, fold = p.row_text, p.fold
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue
            text = rows_text[idx] if rows_text is not None else p.item_text[items[idx]]
            folds = None if fold is None else fold[idx]
            yield HybridBatch(users[idx], items[idx], ratings[idx], text, unknown[idx], cold[idx], folds)

    # ----------------------------------------------------------------- scoring
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings for aligned user / item indices (N,), the text token being each item's text."""
        self._no_leaky("predict")
        users, items = self.check_pairs(users, items)
        return self._forward_rows(users, items, None)[0]

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        """(len(users), n_items) predicted ratings, in blocks of at most 65,536 pairs; unclipped, so a ranking does not
        tie every item predicted above the top rating."""
        self._no_leaky("score_users")
        m = self.csa
        u = torch.tensor(np.asarray(users), dtype=torch.int64, device=self.device)
        items = torch.arange(self.n_items, device=self.device)
        with torch.no_grad():
            preds, _ = m.score_grid(u, torch.zeros_like(u, dtype=torch.bool), items, m.item_text)
        return preds

    def predict_interactions(self, data: Interactions) -> np.ndarray:
        """Predictions for every row of a split encoded with this model's vocabularies. In leaky mode the text
        token is each row's own review (the data needs a ``review`` column; every result is flagged ``leaky``);
        otherwise the item's text."""
        if not self.leaky:
            return self.predict(data.users, data.items)
        return self._forward_rows(data.users, data.items, torch.from_numpy(self._row_reviews(data)))[0]

    def score(self, query: Query) -> torch.Tensor:
        """Scores (len(query), n_items). A text query ranks as :meth:`recommend_by_text` does with every item a
        candidate: w·z(relevance) + (1 − w)·z(prediction) over the catalogue (w = :attr:`text_weight`), where the
        prediction (unclipped) has the query's embedding as the text token of every item (each row's known user,
        or the learned unknown user for ``-1`` / no user). Without text: the predicted rating with every item's own
        text (:meth:`score_users`)."""
        self.check_query(query)
        if query.text is None:
            return super().score(query)
        self._no_leaky("score")
        texts = list(query.text)
        for i, q in enumerate(texts):
            if not isinstance(q, str) or not q.strip():
                raise DataError("empty query", field=f"text[{i}]", value=q, expected="a non-empty string")
        vecs = self.encoder.encode_queries(texts)
        self._check_dim(vecs.shape[1])
        n_q = len(texts)
        users = query.users if query.users is not None else np.full(n_q, -1, dtype=np.int64)
        dev = self.device
        rows = torch.arange(n_q, device=dev)[:, None]
        with torch.no_grad():
            text = torch.from_numpy(np.array(vecs, dtype=np.float32)).to(dev)
            preds, _ = self.csa.score_pairs(
                torch.from_numpy(np.maximum(users, 0)).to(dev),
                torch.from_numpy(users < 0).to(dev),
                torch.arange(self.n_items, device=dev),
                text,
                rows,
                torch.arange(self.n_items, device=dev)[None],
                rows,
            )
            # ranked by the prediction alone, the item the query asks for is lost (text_blend.py)
            return blend_scores(self._relevance(text), preds, self.text_weight)

    # ----------------------------------------------------------------- cold-start items
    def add_items(
        self, item_ids: Sequence[object], texts: Sequence[str], *, titles: Sequence[str] | None = None
    ) -> np.ndarray:
        """Add items never seen in training: their SVD item vectors are predicted from their text embeddings by
        the ridge map learned on the warm items; they join the item vocabulary (indices returned) and can be
        predicted, scored and recommended. ``texts``: one non-empty text per id."""
        _, iv = self._vocabs()
        ids = check_new_items(item_ids, texts, titles, iv)
        if not ids:
            return np.zeros(0, dtype=np.int64)
        m = self.csa
        vecs = torch.from_numpy(self._encode(list(texts), allow_empty=False))
        with torch.no_grad():
            factors = text_to_factors(vecs, m.cold_map.cpu())
            m.append_items(factors, vecs)
        start = len(iv)
        self.item_vocab, self.seen, self.titles = grow_catalogue(iv, self.seen, self.titles, ids, titles)
        return np.arange(start, start + len(ids), dtype=np.int64)

    def add_items_from_frame(self, items: pl.DataFrame) -> np.ndarray:
        """:meth:`add_items` for every item of a metadata frame (same text builder as :meth:`fit`) that the
        model does not know yet; items whose text is empty are skipped (their count is logged)."""
        _, iv = self._vocabs()
        ids, texts, titles = new_items_from_frame(items, iv)
        return self.add_items(ids, texts, titles=titles)

    # ----------------------------------------------------------------- persistence
    def bundle_json(self) -> dict[str, Any]:
        return {
            "titles": self.titles,
            "n_warm_items": self.n_warm_items,
            "encoder": self.encoder_info,
            "leaky": self.leaky,
            **self._text_weight_json(),
        }

    def load_bundle_json(self, data: dict[str, Any]) -> None:
        titles, warm, info = data.get("titles"), data.get("n_warm_items", 0), data.get("encoder") or {}
        if titles is not None and (
            not isinstance(titles, list)
            or len(titles) != self.n_items
            or not all(isinstance(t, str) for t in titles)
        ):
            raise DataError(
                "not a title per item", field="titles", expected=f"{self.n_items} strings, or null"
            )
        if not isinstance(warm, int) or isinstance(warm, bool) or not 0 <= warm <= self.n_items:
            raise DataError("out of range", field="n_warm_items", value=warm, expected=f"0..{self.n_items}")
        if not isinstance(info, dict):
            raise DataError(
                "not an object", field="encoder", value=info, expected='{"name", "model_id", "dim"}'
            )
        self.titles, self.n_warm_items, self.encoder_info = titles, warm, dict(info)
        self._load_text_weight(data)

    def restrict_to_bundle(self) -> None:
        """A bundle's ``config.encoder`` may name only a registered offline text model (see
        :func:`~attnrec.text.encoder.require_offline_model`); the encoder built for its queries stays offline."""
        from attnrec.text.encoder import require_offline_model

        require_offline_model(self.config.encoder, field="config.encoder")
        self.offline_only = True
