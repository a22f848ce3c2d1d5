"""The serving core: loaded bundles and every scoring path of the HTTP service, in plain Python.

:class:`ModelSlot` is one bundle loaded through :func:`~attnrec.serving.bundle.load_bundle` (registered model
names, checksums verified) with what serving needs beside it: id -> index maps, titles, the popularity order used
for cold-start users, and the unit-normalised item vectors for similar items. :class:`ServiceState` maps names to
slots and swaps a freshly loaded bundle in atomically. Nothing here imports a web framework, so the paths are
tested and benchmarked in-process; :mod:`attnrec.serving.app` puts HTTP around them.

The paths, and what an unknown id gets (never an exception that would become a 500):

* recommend by ``user_id`` — a known user from the stored state (path ``known_user``); an unknown user with nothing
  else to go on gets the most popular training items (path ``new_user``, ``cold_start=True``);
* by ``query`` text (models taking ``"text"``: hybrid_csa) — a known user brings their vector, an unknown or absent
  one is the learned unknown user (``new_user=True``); path ``text``;
* by ``items``, a history given now (models taking ``"history"``: svd, bpr, lightgcn, pop) — folded in as the
  model does (path ``history``); ids the model does not know are left out and listed in ``unknown_items``;
* predict — ratings (svd, hybrid_csa), scores (other recommenders) or click probabilities (CTR rows); a pair whose
  user or item is unknown gets ``value=None`` and a ``cold_start`` flag;
* similar items — cosine over the model's item vectors (svd / hybrid_csa: the SVD item factors; bpr / lightgcn:
  the item embeddings); a model without item vectors (pop, CTR, review models) is a :class:`UnsupportedError`;
* explain — hybrid_csa's attention shares per (user, item), safmr's shares of its CNN features (``/metadata``'s
  ``explain_kind``: ``tokens``, ``features``); other models are a :class:`UnsupportedError`.

Concurrency: every call into a model runs under its slot's lock. The models keep caches they build on first use
(hybrid_csa's encoder, its ONNX query graph and token tables, lightgcn's propagated embeddings) and hybrid_csa
records the last query's truncation on itself, so the lock is what makes one shared model safe under a threaded
server; :meth:`ModelSlot.warmup` builds those caches before the first request. Per-request state lives only in
locals and in the response.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

import attnrec
from attnrec.errors import AttnrecError
from attnrec.models.base import Estimator, Recommender
from attnrec.models.capabilities import Explainer, ExplainKind, RatingPredictor
from attnrec.models.ctr.base import CTRRecommender
from attnrec.models.query import History, Query
from attnrec.models.rating.hybrid_csa import HybridCSA
from attnrec.models.rating.svd import SVD
from attnrec.models.review.safmr import SAFMR
from attnrec.models.topk.bpr import PairwiseRecommender
from attnrec.serving.bundle import MAX_MANIFEST_BYTES, load_bundle, load_bundle_items, read_manifest_bytes
from attnrec.serving.retrieval import (
    ModelIndex,
    check_ann,
    index_kind,
    index_note,
    index_top,
    scores_top,
    slot_index,
)
from attnrec.serving.schemas import (
    ExplainRequest,
    ExplainResponse,
    Explanation,
    Pair,
    Prediction,
    PredictRequest,
    PredictResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RecPath,
    Shares,
    SimilarItem,
    SimilarResponse,
    cold_start_flag,
)

log = logging.getLogger(__name__)

#: how often a load retries when the bundle folder was replaced while it was being read (a run finishing)
_LOAD_TRIES = 3


class ServiceError(AttnrecError):
    """A request the service answers with a 4xx: ``status``, and the request ``field`` at fault where there is one."""

    status = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(ServiceError):
    """An id (item for similar items, user/item for explain) or model name that is not there."""

    status = 404


class UnsupportedError(ServiceError):
    """The model cannot do what was asked (e.g. similar items from pop, explain from svd, a text query to bpr)."""

    status = 422


@dataclass(frozen=True)
class BundleInfo:
    """Where a slot's bundle came from: folder, manifest, fingerprints, when it was loaded (Unix seconds)."""

    path: Path
    manifest: dict[str, Any]
    #: sha256 of manifest.json, which lists the sha256 of every other file: one id for the bundle's content
    fingerprint: str
    #: the training data's fingerprint from the run's metrics.json beside the bundle, when there is one
    data_fingerprint: str | None
    loaded_at: float


def _manifest_digest(root: Path) -> tuple[str, dict[str, Any]]:
    # read before load_bundle too: through its checks (a FIFO would block a plain open, a folder may be gone)
    raw, manifest = read_manifest_bytes(root)
    return hashlib.sha256(raw).hexdigest(), manifest


def _data_fingerprint(root: Path) -> str | None:
    """The run's data fingerprint (``RUN/metrics.json``'s ``data.fingerprint``, RUN being the bundle's parent)."""
    metrics = root.parent / "metrics.json"
    try:
        if not metrics.is_file() or metrics.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        fp = json.loads(metrics.read_text()).get("data", {}).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return fp if isinstance(fp, str) else None


def load_slot_parts(
    path: Path, *, trust_code: bool = False
) -> tuple[Estimator[Any], BundleInfo, pl.DataFrame | None]:
    """Load the bundle at ``path`` with its info and item metadata, all from one version of the folder: when the
    manifest changed during the load (the folder was replaced), it is loaded again."""
    root = Path(path)
    for _ in range(_LOAD_TRIES):
        before, _m = _manifest_digest(root)
        model = load_bundle(root, trust_code=trust_code)
        items = load_bundle_items(root, trust_code=trust_code)
        after, manifest = _manifest_digest(root)
        if before == after:
            info = BundleInfo(root, manifest, after, _data_fingerprint(root), time.time())
            return model, info, items
    raise ServiceError(f"{root}: the bundle kept changing while it was loaded ({_LOAD_TRIES} tries)")


def _index_map(ids: np.ndarray) -> dict[str, int]:
    # a dict lookup is microseconds; Vocabulary.lookup (a Polars join) costs more than scoring one user
    return {str(x): i for i, x in enumerate(ids.tolist())}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _shares(row: Mapping[str, Any]) -> Shares | None:
    vals = {k: row.get(f"share_{k}") for k in ("user", "item", "text", "user_text")}
    if vals["user"] is None or not math.isfinite(vals["user"]):
        return None  # concat_mlp fusion: no attention
    return Shares(
        user=float(vals["user"]),
        item=float(vals["item"] or 0.0),
        text=float(vals["text"] or 0.0),
        user_text=None if vals["user_text"] is None else float(vals["user_text"]),
    )


def explain_kind(model: Estimator[Any]) -> ExplainKind | None:
    """What ``POST /explain`` answers for ``model`` (``/metadata``'s ``explain_kind``), as the model declares it
    (:attr:`~attnrec.models.capabilities.Explainer.explain_kind`): ``"tokens"``, hybrid_csa's token ``shares``;
    ``"features"``, the ``feature_shares`` over the CNN features of a safmr trained with its attention; None, no
    explanation (the route refuses)."""
    return model.explain_kind if isinstance(model, Explainer) else None


def _item_space(model: Estimator[Any]) -> tuple[torch.Tensor, str] | None:
    """Unit-normalised item vectors (n_items, d) float32 and what they are, or None for a model without them.

    Dispatch is on the model's class (the families whose item vectors are its scoring space), never on attributes.
    """
    vecs: torch.Tensor
    if isinstance(model, HybridCSA):
        vecs, what = model.csa.item_factors.detach(), "hybrid_csa SVD item factors"
    elif isinstance(model, SVD):
        vecs, what = torch.from_numpy(model.item_factors), "svd item factors"
    elif isinstance(model, PairwiseRecommender):
        if model.module is None:
            return None
        with torch.no_grad():
            vecs = model.module.user_item_embeddings()[1].detach()  # type: ignore[operator]
        what = f"{model.name} item embeddings"
    else:
        return None
    vecs = vecs.float().cpu()
    return vecs / vecs.norm(dim=1, keepdim=True).clamp(min=1e-12), what


class ModelSlot:
    """One loaded bundle, served under ``name``; immutable once built (a reload builds a new slot)."""

    def __init__(self, name: str, path: str | Path, *, trust_code: bool = False, ann: str = "auto") -> None:
        self.name, self.ann = name, check_ann(ann)
        self.index: ModelIndex | None = None  # over the item vectors, built at warm-up (serving/retrieval.py)
        self.model, self.info, items = load_slot_parts(Path(path), trust_code=trust_code)
        self.lock = threading.Lock()
        self.warmed = False
        self.warm_error: str | None = None
        self.recommender = self.model if isinstance(self.model, Recommender) else None
        self._users: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self.item_ids = np.zeros(0, dtype=str)
        self.titles: list[str | None] | None = None
        self._popular = torch.zeros(0)
        self._space: tuple[torch.Tensor, str] | None = None
        rec = self.recommender
        if rec is not None:
            uv, iv = rec._vocabs()
            self._users, self._items, self.item_ids = _index_map(uv.ids), _index_map(iv.ids), iv.ids
            self.titles = self._titles(items, rec)
            # the cold-start order: training interactions per item (the bundle's seen matrix)
            counts = np.zeros(rec.n_items, dtype=np.float32)
            if rec.seen is not None:
                counts = np.bincount(rec.seen.indices, minlength=rec.n_items).astype(np.float32)
            self._popular = torch.from_numpy(counts)
            with self.lock:
                self._space = _item_space(rec)

    def _titles(self, items: pl.DataFrame | None, rec: Recommender[Any]) -> list[str | None] | None:
        if items is not None and "title" in items.columns:
            by_id = dict(zip(items["item_id"].to_list(), items["title"].to_list(), strict=True))
            return [by_id.get(str(i)) for i in self.item_ids.tolist()]
        if isinstance(rec, HybridCSA) and rec.titles is not None:
            return list(rec.titles)
        return None

    def user_ids(self, offset: int = 0, limit: int = 100, prefix: str = "") -> list[str]:
        """Known user ids ``offset .. offset + limit - 1`` in vocabulary order, of those starting with ``prefix``
        when one is given (the page's user picker suggests them as the id is typed); none for a CTR model."""
        if self.recommender is None:
            return []
        ids = self.recommender._vocabs()[0].ids
        if prefix:
            ids = ids[np.char.startswith(ids, prefix)]
        return [str(u) for u in ids[offset : offset + limit].tolist()]

    def title(self, index: int) -> str | None:
        return None if self.titles is None else self.titles[index]

    # ------------------------------------------------------------------------------------------ recommend
    def _need_recommender(self, what: str) -> Recommender[Any]:
        if self.recommender is None:
            use = (
                " (it scores CTR rows: use predict with rows)"
                if isinstance(self.model, CTRRecommender)
                else ""
            )
            raise UnsupportedError(f"model {self.name!r} ({self.model.name}) cannot {what}{use}")
        return self.recommender

    def _known_items(self, ids: Sequence[str] | None, unknown: list[str]) -> np.ndarray | None:
        if ids is None:
            return None
        found = [self._items.get(i, -1) for i in ids]
        unknown.extend(i for i, j in zip(ids, found, strict=True) if j < 0)
        return np.array([j for j in found if j >= 0], dtype=np.int64)

    def recommend(self, req: RecommendRequest) -> RecommendResponse:
        """Top-``req.k`` items by the path the request selects (see the module docstring)."""
        rec = self._need_recommender("recommend items")
        inputs = rec.query_inputs
        for field, given, part in (("query", req.query, "text"), ("items", req.items, "history")):
            if given is not None and part not in inputs:
                raise UnsupportedError(
                    f"model {self.name!r} ({rec.name}) does not take {part} in a query "
                    f"(it takes: {', '.join(sorted(inputs))})",
                    field=field,
                )
        if req.domain is not None and "domain" not in inputs:
            raise UnsupportedError(f"model {self.name!r} ({rec.name}) has no target domains", field="domain")
        uidx = self._users.get(req.user_id) if req.user_id is not None else None
        known = uidx is not None
        unknown: list[str] = []
        allow = self._known_items(req.allow, unknown)
        deny = self._known_items(req.deny, unknown)
        notes: list[str] = []
        if req.user_id is not None and not known:
            notes.append(f"user {req.user_id!r} is not in the model: served as a new user")
        users = None if req.user_id is None else np.array([uidx if known else -1], dtype=np.int64)
        exclude = "seen" if req.exclude_seen else "none"
        hist = self._known_items(req.items, unknown)
        path: RecPath
        if req.query is not None:
            if isinstance(rec, HybridCSA) and allow is None and deny is None and req.domain is None:
                return self._hybrid_text(rec, req, known, unknown, notes)
            query: Query | None = Query(users=users, text=[req.query], domain=req.domain, exclude=exclude)
            path = "text"
        elif hist is not None and len(hist):
            query = Query(users=users, history=History.from_lists([hist]), domain=req.domain, exclude=exclude)
            path = "history"
        elif known:
            if req.items is not None:
                notes.append("no item of items is in the model: served from the user's stored history")
            query = Query(users=users, domain=req.domain, exclude=exclude)
            path = "known_user"
        else:
            query, path = None, "new_user"
            notes.append("cold start: the most popular training items")
        fast = self.index is not None and path == "known_user" and allow is deny is req.domain is None
        with self.lock, torch.no_grad():
            if query is None:
                scores, excl = self._popular, None
            elif fast:  # an index over the model's item vectors (retrieval.py): no full scoring
                assert self.index is not None and query.users is not None
                excl = self._exclusion(rec, query)
                idx, vals = index_top(self.index, int(query.users[0]), req.k, excl, rec.n_items)
                notes.append(index_note(self.index))
            else:
                scores = rec.score(query)[0].float()
                excl = self._exclusion(rec, query)
        if not fast:
            idx, vals = scores_top(scores, req.k, excl, allow, deny)
        # a rating model ranks on its unclipped score; its rating is that score clipped to the scale (as predict)
        ratings: Sequence[float | None] = [None] * len(vals)
        if query is not None and isinstance(rec, RatingPredictor):
            ratings = rec.ratings_from_scores(np.asarray(vals, dtype=np.float64)).tolist()
        items = [
            RecommendedItem(
                rank=r + 1,
                item_id=str(self.item_ids[j]),
                score=float(v),
                title=self.title(j),
                predicted_rating=None if rating is None else float(rating),
            )
            for r, (j, v, rating) in enumerate(zip(idx.tolist(), vals.tolist(), ratings, strict=True))
        ]
        return RecommendResponse(
            model=self.name,
            path=path,
            user_id=req.user_id,
            new_user=not known,
            cold_start=query is None,
            items=items,
            unknown_items=unknown,
            notes=notes,
        )

    @staticmethod
    def _exclusion(rec: Recommender[Any], query: Query) -> np.ndarray | None:
        """The item indices ``query``'s one row never gets (``ItemScorer.exclusion``). A known user's stored
        items are a slice of the seen CSR: the hot path skips building a sparse row (scipy's fancy indexing
        costs more than scoring a 10k-item catalogue)."""
        users, seen = query.users, rec.seen
        if query.exclude == "seen" and query.history is None and users is not None and seen is not None:
            u = int(users[0])
            return seen.indices[seen.indptr[u] : seen.indptr[u + 1]] if u >= 0 else None
        ex = rec.exclusion(query)
        return None if ex is None else ex.indices

    def _hybrid_text(
        self, rec: HybridCSA, req: RecommendRequest, known: bool, unknown: list[str], notes: list[str]
    ) -> RecommendResponse:
        """hybrid_csa's retrieve-then-rank text path (its fast ONNX scorer; attention shares per item)."""
        assert req.query is not None
        with self.lock:
            df = rec.recommend_by_text(
                req.query, user=req.user_id if known else None, k=req.k, exclude_seen=req.exclude_seen
            )
            truncated = rec.last_query_truncated
        items = [
            RecommendedItem(
                rank=r + 1,
                item_id=row["item_id"],
                score=float(row["score"]),
                title=row.get("title") or self.title(self._items[row["item_id"]]),
                predicted_rating=_finite(row["predicted_rating"]),
                relevance=_finite(row["relevance"]),
                shares=_shares(row),
            )
            for r, row in enumerate(df.iter_rows(named=True))
        ]
        return RecommendResponse(
            model=self.name,
            path="text",
            user_id=req.user_id,
            new_user=not known,
            cold_start=False,
            items=items,
            unknown_items=unknown,
            query_truncated=truncated,
            notes=notes,
        )

    # ------------------------------------------------------------------------------------------ predict
    def predict(self, req: PredictRequest) -> PredictResponse:
        """Ratings / scores for ``req.pairs``, or click probabilities for CTR ``req.rows``."""
        if req.rows is not None:
            return self._predict_rows(req.rows)
        assert req.pairs is not None
        rec = self._need_recommender("score (user, item) pairs")
        return self._predict_pairs(rec, req.pairs)

    def _predict_pairs(self, rec: Recommender[Any], pairs: Sequence[Pair]) -> PredictResponse:
        u = np.array([self._users.get(p.user_id, -1) for p in pairs], dtype=np.int64)
        i = np.array([self._items.get(p.item_id, -1) for p in pairs], dtype=np.int64)
        ok = (u >= 0) & (i >= 0)
        values = np.full(len(pairs), np.nan)
        is_rating = isinstance(rec, RatingPredictor)
        if ok.any():
            with self.lock, torch.no_grad():
                if isinstance(rec, RatingPredictor):
                    values[ok] = rec.predict(u[ok], i[ok])
                else:
                    values[ok] = rec.score_pairs(u[ok], i[ok])
        preds = [
            Prediction(
                value=_finite(v) if good else None,
                user_id=p.user_id,
                item_id=p.item_id,
                cold_start=cold_start_flag(bool(uu >= 0), bool(ii >= 0)),
            )
            for p, v, good, uu, ii in zip(pairs, values.tolist(), ok.tolist(), u, i, strict=True)
        ]
        return PredictResponse(model=self.name, kind="rating" if is_rating else "score", predictions=preds)

    def _predict_rows(self, rows: Sequence[Mapping[str, str | int | float | None]]) -> PredictResponse:
        model = self.model
        if not isinstance(model, CTRRecommender):
            raise UnsupportedError(
                f"model {self.name!r} ({model.name}) does not score CTR rows: give pairs", field="rows"
            )
        frame = _rows_frame(rows)
        with self.lock:
            probs = model.predict_frame(frame)
        return PredictResponse(
            model=self.name,
            kind="probability",
            predictions=[Prediction(value=_finite(p)) for p in probs.tolist()],
        )

    # ------------------------------------------------------------------------------------------ similar
    def similar(self, item_id: str, k: int = 10) -> SimilarResponse:
        """The ``k`` items closest to ``item_id`` by cosine in the model's item space (the item itself left out)."""
        self._need_recommender("find similar items")
        if self._space is None:
            raise UnsupportedError(
                f"model {self.name!r} ({self.model.name}) has no item vectors to compare "
                "(similar items: svd, hybrid_csa, bpr, lightgcn)"
            )
        j = self._items.get(item_id)
        if j is None:
            raise NotFoundError(f"item {item_id!r} is not in model {self.name!r}", field="item_id")
        space, what = self._space
        cos = space @ space[j]
        idx, vals = scores_top(cos, k, np.array([j]), None, None)
        return SimilarResponse(
            model=self.name,
            item_id=item_id,
            title=self.title(j),
            space=what,
            items=[
                SimilarItem(rank=r + 1, item_id=str(self.item_ids[t]), score=float(v), title=self.title(t))
                for r, (t, v) in enumerate(zip(idx.tolist(), vals.tolist(), strict=True))
            ],
        )

    # ------------------------------------------------------------------------------------------ explain
    def explain(self, req: ExplainRequest) -> ExplainResponse:
        """Attention per prediction for ``req.user_id`` and each of ``req.item_ids``: hybrid_csa's shares of its
        tokens; safmr's shares of its n CNN features (``feature_shares``), ``abs_cos`` and ``has_text``."""
        rec = self.model
        if explain_kind(rec) is None:
            raise UnsupportedError(
                f"model {self.name!r} ({rec.name}) has no attention to explain (explain: hybrid_csa, or safmr trained with attention)"
            )
        if req.query is not None and not isinstance(rec, HybridCSA):
            raise UnsupportedError(f"model {self.name!r} ({rec.name}) takes no text query", field="query")
        if req.user_id not in self._users:
            raise NotFoundError(f"user {req.user_id!r} is not in model {self.name!r}", field="user_id")
        missing = [i for i in req.item_ids if i not in self._items]
        if missing:
            raise NotFoundError(
                f"item(s) not in model {self.name!r}: {', '.join(repr(i) for i in missing[:5])}",
                field="item_ids",
            )
        n, users = len(req.item_ids), [req.user_id] * len(req.item_ids)
        with self.lock:
            if isinstance(rec, HybridCSA):
                df = rec.explain(users, req.item_ids, texts=None if req.query is None else [req.query] * n)
            else:
                assert isinstance(rec, SAFMR)  # explain_kind
                df = rec.explain(users, req.item_ids)
        return ExplainResponse(
            model=self.name,
            user_id=req.user_id,
            explanations=[
                Explanation(
                    item_id=row["item_id"],
                    predicted_rating=float(row["predicted_rating"]),
                    shares=_shares(row),
                    feature_shares=row.get("attention"),
                    abs_cos=row.get("abs_cos"),
                    has_text=row.get("has_text"),
                    title=self.title(self._items[row["item_id"]]),
                )
                for row in df.iter_rows(named=True)
            ],
        )

    # ------------------------------------------------------------------------------------------ lifecycle
    def warmup(self) -> None:
        """Run each path the model serves once, so its lazily built state (text encoder, ONNX query graph, token
        tables, propagated embeddings) exists before the first request. A failure is logged and kept in
        :attr:`warm_error` (the slot is then not ready)."""
        try:
            rec = self.recommender
            if rec is not None and rec.n_users and rec.n_items:
                self.index = slot_index(rec, self.ann)
                user, item = str(rec._vocabs()[0].ids[0]), str(self.item_ids[0])
                self.recommend(RecommendRequest(user_id=user))
                if "history" in rec.query_inputs:
                    self.recommend(RecommendRequest(items=[item]))
                if "text" in rec.query_inputs:
                    self.recommend(RecommendRequest(query="warm up the text encoder"))
                self.predict(PredictRequest(pairs=[Pair(user_id=user, item_id=item)]))
                if isinstance(rec, HybridCSA):
                    self.explain(ExplainRequest(user_id=user, item_ids=[item]))
            self.warm_error = None
            self.warmed = True
        except Exception as exc:  # a broken model stays loaded but is reported not ready, with the reason
            log.exception("warm-up of model %r failed", self.name)
            self.warm_error = f"{type(exc).__name__}: {exc}"

    def metadata(self) -> dict[str, Any]:
        """What is being served: model, config, bundle and data fingerprints, versions (JSON-able)."""
        m, info = self.model, self.info
        rec = self.recommender
        caps = [c.__name__ for c in (RatingPredictor, Recommender, CTRRecommender) if isinstance(m, c)]
        return {
            "name": self.name,
            "model": m.name,
            "task": str(m.task),
            "capabilities": caps,
            "query_inputs": sorted(rec.query_inputs) if rec is not None else [],
            "similar_items": self._space is not None,
            "index": index_kind(self.index),
            # a bool, as before explain_kind existed; explain_kind says which answer /explain gives
            "explain": explain_kind(m) is not None,
            "explain_kind": explain_kind(m),
            "n_users": rec.n_users if rec is not None else None,
            "n_items": rec.n_items if rec is not None else None,
            "titles": self.titles is not None,
            "config": m.config.to_dict(),
            "bundle": {
                "path": str(info.path),
                "fingerprint": info.fingerprint,
                "format": info.manifest.get("format"),
                "written_with": {k: info.manifest.get(k) for k in ("attnrec", "torch")},
                "extra": info.manifest.get("extra", {}),
            },
            "data_fingerprint": info.data_fingerprint,
            "loaded_at": info.loaded_at,
            "warmed": self.warmed,
            "versions": runtime_versions(),
        }


def runtime_versions() -> dict[str, str]:
    """Versions of what is serving (the bundle's own are in its manifest)."""
    return {
        "attnrec": attnrec.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


_INT64 = range(-(2**63), 2**63)


def _is_int64(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v in _INT64


def _rows_frame(rows: Sequence[Mapping[str, str | int | float | None]]) -> pl.DataFrame:
    """CTR rows (field -> value) as a frame: a column of integers (and nulls) is Int64, of numbers Float64, any
    other String; so ``3`` and ``"3"`` are the same token of a categorical field, as a file's reader gives it.
    An integer outside int64 (JSON integers are unbounded) makes its column String, as a file's reader would."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    cols = {}
    for name in names:
        vals = [row.get(name) for row in rows]
        given = [v for v in vals if v is not None]
        if all(_is_int64(v) for v in given):
            cols[name] = pl.Series(name, vals, dtype=pl.Int64)
        elif all(isinstance(v, float) or _is_int64(v) for v in given):
            cols[name] = pl.Series(name, vals, dtype=pl.Float64)
        else:
            cols[name] = pl.Series(name, [None if v is None else str(v) for v in vals], dtype=pl.String)
    return pl.DataFrame(cols)


class ServiceState:
    """The models being served, by name, and their atomic replacement.

    A request takes its slot once (:meth:`slot`) and uses it to the end, so a reload that swaps in a new slot
    meanwhile changes nothing for it: the old slot stays whole until its last request lets go. The swap itself
    is one assignment of a new dict (atomic under the GIL); loads and warm-ups happen before it, outside any lock
    a request takes.
    """

    def __init__(
        self,
        bundles: Mapping[str, str | Path],
        *,
        default: str | None = None,
        trust_code: bool = False,
        ann: str = "auto",
    ) -> None:
        if not bundles:
            raise ServiceError("no model to serve: give at least one bundle")
        self.paths = {name: Path(p) for name, p in bundles.items()}
        self.default = default if default is not None else next(iter(self.paths))
        if self.default not in self.paths:
            raise ServiceError(f"default model {self.default!r} is not among {sorted(self.paths)}")
        self.trust_code, self.ann = trust_code, check_ann(ann)  # ann: see serving/retrieval.py
        self._slots = {
            name: ModelSlot(name, p, trust_code=trust_code, ann=self.ann) for name, p in self.paths.items()
        }
        self._reload_lock = threading.Lock()
        self.reloads = 0

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def slot(self, name: str | None = None) -> ModelSlot:
        """The slot serving ``name`` (the default model for None); :class:`NotFoundError` for an unknown name."""
        slots = self._slots  # one read: the rest of the request sees one version
        key = self.default if name is None else name
        found = slots.get(key)
        if found is None:
            raise NotFoundError(f"no model named {key!r} (serving: {', '.join(sorted(slots))})", field="name")
        return found

    def warmup(self) -> None:
        """Warm every current slot up (see :meth:`ModelSlot.warmup`)."""
        for s in list(self._slots.values()):
            if not s.warmed:
                s.warmup()

    def ready(self) -> dict[str, bool]:
        return {name: s.warmed for name, s in self._slots.items()}

    def reload(self, name: str | None = None, *, warmup: bool = True) -> list[ModelSlot]:
        """Load ``name``'s bundle (every model for None) afresh from its folder, warm it up, then swap it in.

        A bundle that fails to load (a :class:`ServiceError` with the reason: a 422) or warm up raises and changes
        nothing: the previous one keeps serving. Reloads run one at a time.
        """
        if name is not None and name not in self.paths:
            raise NotFoundError(
                f"no model named {name!r} (serving: {', '.join(sorted(self.paths))})", field="model"
            )
        with self._reload_lock:
            names = [name] if name is not None else list(self.paths)
            fresh = {}
            for n in names:
                try:
                    fresh[n] = ModelSlot(n, self.paths[n], trust_code=self.trust_code, ann=self.ann)
                except ServiceError:
                    raise
                except (OSError, ValueError, AttnrecError) as exc:  # a folder gone, a file bad: not a 500
                    raise ServiceError(f"model {n!r}: the new bundle failed to load: {exc}") from exc
            if warmup:
                for s in fresh.values():
                    s.warmup()
                    if s.warm_error is not None:
                        raise ServiceError(
                            f"model {s.name!r}: the new bundle failed its warm-up: {s.warm_error}"
                        )
            self._slots = {**self._slots, **fresh}
            self.reloads += 1
            log.info("reloaded %s", ", ".join(f"{n} ({s.info.fingerprint[:12]})" for n, s in fresh.items()))
            return list(fresh.values())
