"""hybrid_csa's text queries: a free-text query's embedding is the text token of every candidate item. The
candidates are retrieved by cosine relevance of the items' own text and scored by the model, in PyTorch or in one
ONNX Runtime graph per module state (``query_scorer="onnx"``, :mod:`.onnx`) that is kept while the state is, then
ranked by a blend of relevance and predicted rating whose weight is chosen on validation (:mod:`.text_blend`)."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
import torch

from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.models.rating.hybrid_csa.config import GRAPH_PAIRS
from attnrec.models.rating.hybrid_csa.core import HybridCSACore
from attnrec.models.rating.hybrid_csa.inference import top_stable
from attnrec.models.rating.hybrid_csa.text_blend import (
    DEFAULT_TEXT_WEIGHT,
    MAX_VALID_QUERIES,
    POSITIVE_AT,
    VALID_BLOCK,
    VALID_K,
    WEIGHT_GRID,
    blend_scores,
    choose_weight,
    pool_size,
    query_text,
    reciprocal_ranks,
)
from attnrec.text.encoder import SentenceEncoder

if TYPE_CHECKING:
    from attnrec.models.rating.hybrid_csa.onnx import QueryRunner

log = logging.getLogger(__name__)

#: a text query's candidate pool: a number of items, "auto" (:func:`~.text_blend.pool_size`) or None (every item)
Candidates = int | Literal["auto"] | None


class TextQueries(HybridCSACore):
    """recommend_by_text / recommend_by_texts for :class:`~attnrec.models.rating.hybrid_csa.HybridCSA`."""

    def _encode_query(self, query: object) -> np.ndarray:
        if not isinstance(query, str) or not query.strip():
            raise DataError("empty query", field="query", value=query, expected="a non-empty string")
        enc = self.encoder
        misses = enc.query_misses
        vec = enc.encode_query(query)
        if (
            enc.query_misses > misses
        ):  # first time: say whether it was cut (a cached query was checked before)
            runner = enc.query_runner
            # the lean runner reports what its last call (this query) truncated; others are tokenized again
            truncated = getattr(runner, "last_truncated", None)
            if truncated is None:
                truncated = SentenceEncoder._count_truncated(runner, [query])
            self.last_query_truncated = bool(truncated)
            if truncated:
                log.warning(
                    "recommend_by_text: the query was truncated to %d tokens (%d characters given)",
                    int(runner.max_seq_length),
                    len(query),
                )
        self._check_dim(vec.shape[0])
        return vec

    def _check_dim(self, dim: int) -> None:
        if dim != self.csa.item_text.shape[1]:
            raise ConfigError(
                f"encoder {self.encoder.model_name!r} gives {dim}-d vectors but this model was fitted with "
                f"{self.encoder_info.get('name')!r} ({self.csa.item_text.shape[1]}-d): call set_encoder()"
            )

    def recommend_by_text(
        self,
        query: str,
        user: str | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: Candidates = "auto",
        text_weight: float | None = None,
    ) -> pl.DataFrame:
        """Top-``k`` items for a free-text query: the query's embedding is the text token of every candidate
        item (the item keeps its SVD token; its own text is not used). A known ``user`` brings their SVD vector
        (and seen items are excluded when ``exclude_seen``); an unknown or absent user gets the learned
        unknown-user vector and ``new_user=True``. Columns: ``item_id``, ``title`` (when known),
        ``predicted_rating``, ``share_user``, ``share_item``, ``share_text`` (+ ``share_user_text``),
        ``relevance``, ``score``, ``new_user``. An over-long query is truncated (logged;
        :attr:`last_query_truncated`). Repeated queries hit the encoder's in-memory LRU.

        Retrieve, score, rank: the ``candidates`` items whose own text is most similar to the query (cosine,
        ``relevance``) are scored by the model (``predicted_rating``) and ranked by ``score`` = w · z(relevance) +
        (1 − w) · z(predicted_rating), z standardising over the pool (:mod:`.text_blend`). The model predicts a
        rating, which the query only modulates, so ranking by it alone loses the item the query asks for.
        ``text_weight`` is w for this query (default :attr:`text_weight`, chosen on validation at fit and kept in
        the bundle; 0 ranks by the rating alone, 1 by relevance alone). ``candidates``: ``"auto"`` sizes the pool
        to the catalogue (:func:`~.text_blend.pool_size`), a number fixes it, ``None`` scores every item."""
        self._check_candidates(candidates, k, text_weight)
        return self._rank_for_query(self._encode_query(query), user, k, exclude_seen, candidates, text_weight)

    def recommend_by_texts(
        self,
        queries: Sequence[str],
        user: str | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: Candidates = "auto",
        text_weight: float | None = None,
    ) -> pl.DataFrame:
        """:meth:`recommend_by_text` for a batch of queries, encoded in one model call (queries already in the
        LRU skip it). The frame gains a first column ``query`` (its index in ``queries``)."""
        self._check_candidates(candidates, k, text_weight)
        texts = list(queries)
        if not texts:
            raise DataError("no queries", field="queries", value=[], expected="at least one query")
        for i, q in enumerate(texts):
            if not isinstance(q, str) or not q.strip():
                raise DataError("empty query", field=f"queries[{i}]", value=q, expected="a non-empty string")
        vecs = self.encoder.encode_queries(texts)
        self._check_dim(vecs.shape[1])
        return self._rank_for_queries(vecs, user, k, exclude_seen, candidates, text_weight)

    @staticmethod
    def _check_candidates(candidates: Candidates, k: int, text_weight: float | None = None) -> None:
        if (
            candidates != "auto"
            and candidates is not None
            and (isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1)
        ):
            raise DataError(
                "candidates must be a positive number of items, 'auto' or None (every item)",
                field="candidates",
                value=candidates,
                expected=">= 1, 'auto' or None",
            )
        if k < 1:
            raise DataError("k must be positive", field="k", value=k, expected=">= 1")
        if text_weight is not None and not 0.0 <= text_weight <= 1.0:  # NaN fails too
            raise DataError(
                "the text weight is a share", field="text_weight", value=text_weight, expected="0 <= w <= 1"
            )

    def _rank_for_query(
        self,
        vec: np.ndarray,
        user: str | None,
        k: int,
        exclude_seen: bool,
        candidates: Candidates,
        text_weight: float | None,
    ) -> pl.DataFrame:
        return self._rank_for_queries(
            vec[None], user, k, exclude_seen, candidates, text_weight, query_column=False
        )

    def _rank_for_queries(
        self,
        vecs: np.ndarray,
        user: str | None,
        k: int,
        exclude_seen: bool,
        candidates: Candidates,
        text_weight: float | None = None,
        *,
        query_column: bool = True,
    ) -> pl.DataFrame:
        """Top-k per query for query embeddings (Q, d): every query's candidate pool is retrieved by cosine
        relevance in one (Q, I) product, all Q × pool pairs are scored in one pass and ranked by the blend
        (``query`` column first unless ``query_column=False``)."""
        uv, iv = self._vocabs()
        m = self.csa
        known = user is not None and str(user) in uv
        uidx = uv.index(str(user)) if known else 0
        n_q = vecs.shape[0]
        seen: np.ndarray | None = None
        if known and exclude_seen and self.seen is not None:
            seen = self.seen[uidx].indices.astype(np.int64)
        n_open = self.n_items - (0 if seen is None else len(np.unique(seen)))
        if candidates == "auto":
            size = pool_size(self.n_items, n_open, k)
        else:
            size = n_open if candidates is None else min(candidates, n_open)
        runner = self._query_runner(n_q * size) if self.config.query_scorer == "onnx" else None
        if runner is not None:  # retrieval and scoring in one ONNX Runtime call
            exclude = np.zeros(self.n_items, dtype=bool)
            if seen is not None:
                exclude[seen] = True
            row = uidx if known else m.user_factors.shape[0]  # the unknown user's row of the cached table
            pool, rel_pool, preds, att = runner(vecs, row, size, exclude)
        else:
            pool, rel_pool, preds, att = self._score_queries(vecs, uidx, known, seen, size)
        # blend the unclipped prediction (clipping ties every item above the top rating); report the clipped one.
        # Both scorers give the pool by relevance, ties by item index; a stable sort keeps that order among tied
        # scores, so tied items come out the same from either
        preds = preds.cpu()  # (Q, size)
        weight = self.text_weight if text_weight is None else float(text_weight)
        scores = blend_scores(rel_pool.cpu(), preds, weight)
        k = min(k, size)
        order = top_stable(scores, k)[1]  # (Q, k)
        top = pool.cpu().gather(1, order)  # (Q, k) item indices
        flat = top.reshape(-1).numpy()
        w: np.ndarray | None = None
        if att is not None:
            n_t = att.shape[-1]
            w = att.cpu()[torch.arange(n_q)[:, None], order].reshape(-1, n_t, n_t).numpy()
        # a list of Series from lists / arrays: the cheapest polars constructor for a few rows (BENCHMARKS.md)
        cols = [pl.Series("query", np.repeat(np.arange(n_q, dtype=np.int32), k))] if query_column else []
        cols.append(pl.Series("item_id", iv.ids[flat].tolist(), dtype=pl.String))
        if self.titles is not None:
            cols.append(pl.Series("title", [self.titles[j] for j in flat], dtype=pl.String))
        cols.append(pl.Series("predicted_rating", self._clip(preds.gather(1, order)).reshape(-1).numpy()))
        cols += [pl.Series(name, v) for name, v in self._share_columns(w, len(flat)).items()]
        cols.append(pl.Series("relevance", rel_pool.cpu().gather(1, order).reshape(-1).numpy()))
        cols.append(pl.Series("score", scores.gather(1, order).reshape(-1).numpy()))
        cols.append(pl.Series("new_user", np.full(len(flat), not known)))
        return self._flag(pl.DataFrame(cols))

    def _fit_text_weight(self, valid: Interactions | None, texts: pl.Series) -> None:
        """Set :attr:`text_weight` at the end of fit: ``config.text_weight`` when given, else chosen on ``valid``
        (:meth:`_choose_text_weight`), else (no validation split, or the leaky mode, which answers no text query)
        :data:`~.text_blend.DEFAULT_TEXT_WEIGHT`."""
        fixed = self.config.text_weight
        self.text_weight, self.text_weight_report = DEFAULT_TEXT_WEIGHT, None
        if fixed is not None:
            self.text_weight = fixed
        elif valid is not None and not self.leaky:
            self.text_weight, self.text_weight_report = self._choose_text_weight(valid, texts)
        else:
            log.info(
                "hybrid_csa: text-query weight %.1f (the default: no validation split to choose it on)",
                self.text_weight,
            )

    def _text_weight_json(self) -> dict[str, Any]:
        """The bundle's record of the text-query weight (``extra.json``)."""
        return {"text_weight": self.text_weight, "text_weight_report": self.text_weight_report}

    def _load_text_weight(self, data: dict[str, Any]) -> None:
        """:attr:`text_weight` from a bundle's ``extra.json``, checked; a bundle saved before the blend existed
        (it ranked by the rating alone) gets :data:`~.text_blend.DEFAULT_TEXT_WEIGHT`."""
        weight = data.get("text_weight", DEFAULT_TEXT_WEIGHT)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 <= weight <= 1.0:
            raise DataError(
                "not a text-query weight",
                file="extra.json",
                field="text_weight",
                value=weight,
                expected="a number from 0 to 1",
            )
        report = data.get("text_weight_report")
        self.text_weight = float(weight)
        self.text_weight_report = dict(report) if isinstance(report, dict) else None

    def _choose_text_weight(self, valid: Interactions, texts: pl.Series) -> tuple[float, dict[str, Any]]:
        """Choose the blend's text weight on validation (docs/models/hybrid_csa.md, "Text queries").

        Each query is a validation positive (u, i, r ≥ :data:`~.text_blend.POSITIVE_AT` of the training range): the
        query is item i's title (else the first words of its text: metadata or TRAINING reviews, ``texts`` aligned
        with the item vocabulary; no validation text exists here), asked by user u, whose training items are
        excluded. Its pool is the default one for k = 10. For each weight of the grid, the reciprocal rank of i in
        the blended ranking; :func:`~.text_blend.choose_weight` picks by the one-standard-error rule. At most
        :data:`~.text_blend.MAX_VALID_QUERIES` queries, a sample seeded by ``config.seed``. Returns the weight and a
        report (criterion, queries, mean reciprocal rank per weight, the standard error of the best)."""
        lo, hi = self.rating_range
        users, items = np.asarray(valid.users), np.asarray(valid.items)
        ok = (np.asarray(valid.ratings) >= lo + POSITIVE_AT * (hi - lo)) & (items < self.n_items)
        if self.seen is not None:  # a validation pair also in training is no unseen target
            ok &= np.asarray(self.seen[users, items]).ravel() == 0
        rows = np.flatnonzero(ok)
        rng = np.random.default_rng(self.config.seed)
        if len(rows) > MAX_VALID_QUERIES:
            rows = np.sort(rng.choice(rows, MAX_VALID_QUERIES, replace=False))
        queries = [query_text(self.titles, texts, int(i)) for i in items[rows]]
        keep = np.array([bool(q.strip()) for q in queries], dtype=bool)  # an item with no text makes no query
        rows, queries = rows[keep], [q for q, k in zip(queries, keep, strict=True) if k]
        report: dict[str, Any] = {
            "criterion": "mean reciprocal rank of a validation positive for a query made from its title",
            "queries": int(len(rows)),
        }
        if not len(rows):
            report["chosen"] = self.text_weight
            log.info(
                "hybrid_csa: text-query weight %.1f (the default: no validation positive with text to choose it on)",
                self.text_weight,
            )
            return self.text_weight, report
        u, target = torch.from_numpy(users[rows]), items[rows]
        vecs = self.encoder.encode_queries(queries)
        self._check_dim(vecs.shape[1])
        seen = self.seen[users[rows]] if self.seen is not None else None
        size = pool_size(
            self.n_items, self.n_items - (int(seen.getnnz(axis=1).max()) if seen is not None else 0), VALID_K
        )
        step = max(1, VALID_BLOCK // self.n_items)  # queries per block: bounds the (queries, items) relevance
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        dev = self.device
        with torch.no_grad():
            for s in range(0, len(rows), step):
                text = torch.from_numpy(np.array(vecs[s : s + step], dtype=np.float32)).to(dev)
                n_b = text.shape[0]
                relevance = self._relevance(text).cpu()  # (n_b, I)
                if seen is not None:
                    relevance[torch.from_numpy(seen[s : s + step].toarray() > 0)] = -torch.inf
                rel_pool, pool = top_stable(relevance, size)
                cand, i_idx = torch.unique(pool, return_inverse=True)
                preds, _ = self.csa.score_pairs(
                    u[s : s + step].to(dev),
                    torch.zeros(n_b, dtype=torch.bool, device=dev),
                    cand.to(dev),
                    text,
                    torch.arange(n_b, device=dev)[:, None],
                    i_idx.to(dev),
                    torch.arange(n_b, device=dev)[:, None],
                )
                hit = pool == torch.from_numpy(target[s : s + step])[:, None]
                col = torch.where(hit.any(1), hit.int().argmax(1), torch.full((n_b,), -1))
                parts.append((rel_pool, preds.cpu(), col))
        rel_pool, preds, col = (torch.cat([p[j] for p in parts]) for j in range(3))
        rr = {w: reciprocal_ranks(blend_scores(rel_pool, preds, w), col) for w in WEIGHT_GRID}
        weight, se = choose_weight(rr)
        report["mrr"] = {f"{w:.1f}": round(float(v.mean()), 4) for w, v in rr.items()}
        report["se"] = round(se, 4)
        report["chosen"] = weight
        log.info(
            "hybrid_csa: text-query weight %.1f chosen on %d validation queries (MRR %.3f; rating only %.3f, text "
            "only %.3f)",
            weight,
            len(rows),
            float(rr[weight].mean()),
            float(rr[0.0].mean()),
            float(rr[1.0].mean()),
        )
        return weight, report

    def _score_queries(
        self, vecs: np.ndarray, uidx: int, known: bool, seen: np.ndarray | None, size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """PyTorch's query ranking step: per query the ``size`` most relevant items not in ``seen`` (Q, P), best
        first, ties by item index (as ONNX's TopK), their relevance (Q, P), predictions (Q, P) and attention
        (Q, P, T, T) (None for concat_mlp)."""
        m = self.csa
        n_q = vecs.shape[0]
        with torch.no_grad():
            # a copy: the LRU's rows are read-only
            text = torch.from_numpy(np.array(vecs, dtype=np.float32)).to(self.device)
            relevance = self._relevance(text)  # (Q, I) cosine
            if seen is not None:
                relevance[:, torch.from_numpy(seen).to(self.device)] = -torch.inf
            rel_pool, pool = top_stable(relevance, size)
            # only the pools are scored: each (query, item) pair is one attention over its 3-4 tokens; the user,
            # each pooled item and each query are projected once, and the pairs are laid out as (query, candidate)
            # so the user token is shared by all and each query's token by its row (nothing gathered per pair)
            if n_q == 1:  # one pool (its items are distinct): one row of candidates
                items, i_idx = pool[0], torch.arange(size, device=self.device)[None]
            else:
                items, i_idx = torch.unique(pool, return_inverse=True)
            preds, att = m.score_pairs(
                torch.tensor([uidx], device=self.device),
                torch.tensor([not known], device=self.device),
                items,
                text,
                torch.zeros((1, 1), dtype=torch.int64, device=self.device),
                i_idx,
                torch.arange(n_q, device=self.device)[:, None],
                with_weights=True,
            )
        return pool, rel_pool, preds, att

    def _query_runner(self, pairs: int) -> QueryRunner | None:
        """``query_scorer="onnx"``: the query graph of the current module state in ONNX Runtime, exported when
        the module's table cache is (re)built. Raises MissingExtraError without attnrec[fast]; None (PyTorch
        runs, logged once per reason) on a non-CPU device, for no pairs or more than 2,048, or when the tables
        and the item texts baked into the graph would exceed the table cache's budget."""
        from attnrec.models.rating.hybrid_csa.onnx import QueryRunner

        QueryRunner.check_installed()
        m = self.csa
        why = None
        if torch.device(self.device).type != "cpu":
            why = f"the model is on {self.device}"
        elif m.table_bytes() + 4 * m.item_text.numel() > m.table_cache_bytes:
            why = f"its tables exceed table_cache_bytes ({m.table_cache_bytes})"
        if why is not None:
            if why not in self._runner_skips:
                self._runner_skips.add(why)
                log.info("hybrid_csa: query_scorer='onnx' not used (%s); queries run in PyTorch", why)
            return None
        if not 0 < pairs <= GRAPH_PAIRS:
            return None
        with torch.no_grad():
            sides = m.table_cache()
        if sides is None:
            return None
        cached = self._runner
        if cached is None or cached[0] is not sides:
            self._runner = None  # let the old graph go before exporting the new one
            self._runner = cached = (sides, QueryRunner(m, sides, threads=torch.get_num_threads()))
        return cached[1]

    def _relevance(self, text: torch.Tensor) -> torch.Tensor:
        """Cosine of each query embedding (Q, d) with every item's text: (Q, I)."""
        unit = torch.nn.functional.normalize(text, dim=1)
        return (unit @ self.csa.item_text.T) * self._item_text_inv_norm()

    def _item_text_inv_norm(self) -> torch.Tensor:
        """1 / ‖item text embedding‖ per item (I,), for query relevance; recomputed when the table is another
        tensor (fit, add_items, set_encoder, loading) or was written in place (its version counter moved)."""
        table = self.csa.item_text
        cached = self._text_norms
        if cached is None or cached[0]() is not table or cached[1] != table._version:
            inv = 1.0 / table.norm(dim=1).clamp_min(1e-12)
            self._text_norms = cached = (weakref.ref(table), table._version, inv)
        return cached[2]
