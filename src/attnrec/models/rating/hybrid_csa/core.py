"""What every part of the hybrid_csa recommender shares: its state, the lazily built sentence encoder, the
fitted module, row-wise forward passes, clipping, the leaky-mode guard and the attention-share columns. The
text-query (:mod:`.queries`) and explanation (:mod:`.explain`) mixins and the model (:mod:`.model`) build on it."""

from __future__ import annotations

import importlib.util
import logging
import math
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import polars as pl
import torch

from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError, MissingExtraError
from attnrec.models.base import RatingPredictor, TorchRecommender
from attnrec.models.layers.attention import attention_shares
from attnrec.models.rating.hybrid_csa.config import ROWS, HybridCSAConfig
from attnrec.models.rating.hybrid_csa.inference import TokenTables
from attnrec.models.rating.hybrid_csa.inputs import FitInputs
from attnrec.models.rating.hybrid_csa.module import HybridCSAModule
from attnrec.models.rating.hybrid_csa.text_blend import DEFAULT_TEXT_WEIGHT
from attnrec.text.encoder import SentenceEncoder, packaged_model_path
from attnrec.training.types import FitReport

if TYPE_CHECKING:
    from attnrec.models.rating.hybrid_csa.onnx import QueryRunner

log = logging.getLogger(__name__)


def onnx_available() -> bool:
    """ONNX Runtime and onnx (the exporter's serialiser) are importable: the ``fast`` extra."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


class HybridCSACore(TorchRecommender[HybridCSAConfig], RatingPredictor):
    """The state and helpers shared by :class:`~attnrec.models.rating.hybrid_csa.HybridCSA`'s parts (not a
    registered model by itself)."""

    def __init__(self, config: HybridCSAConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.rating_range: tuple[float, float] = (-math.inf, math.inf)
        #: item titles aligned with the item vocabulary (when the items metadata had a ``title`` column)
        self.titles: list[str] | None = None
        #: items 0..n_warm_items-1 were in training; later ones were added by add_items (cold start)
        self.n_warm_items = 0
        #: the encoder that produced the stored embeddings: {"name", "model_id", "dim"}
        self.encoder_info: dict[str, Any] = {}
        #: whether the last recommend_by_text query was cut to the encoder's maximum length
        self.last_query_truncated = False
        #: the weight w of text relevance in a text query's ranking (text_blend.py): chosen on validation by fit
        #: (unless config.text_weight fixes it), saved in the bundle
        self.text_weight: float = DEFAULT_TEXT_WEIGHT
        #: how fit chose text_weight (criterion, queries, mean reciprocal rank per weight), None when it did not
        self.text_weight_report: dict[str, Any] | None = None
        self._text_norms: tuple[weakref.ref[torch.Tensor], int, torch.Tensor] | None = None
        self._runner: tuple[tuple[TokenTables, TokenTables], QueryRunner] | None = None
        self._runner_skips: set[str] = set()
        self._encoder: SentenceEncoder | None = None
        #: set by loading an untrusted bundle: the encoder may only be a registered offline model (no hub, no path)
        self.offline_only = False
        self._inputs: FitInputs | None = None
        self._memo: tuple[pl.DataFrame, np.ndarray] | None = None
        #: what the SVD stage of the last fit did (its best ALS sweep on validation)
        self.svd_report: FitReport | None = None

    @property
    def leaky(self) -> bool:
        """True in the paper-literal mode where the text token is the row's own review."""
        return self.config.target_review_leakage

    # ----------------------------------------------------------------- encoder
    @property
    def encoder(self) -> SentenceEncoder:
        """The sentence encoder; built lazily from ``config.encoder`` with an on-disk cache under
        ``$ATTNREC_HOME/embeddings`` unless one was given to :meth:`fit` or :meth:`set_encoder`."""
        if self._encoder is None:
            from attnrec.paths import cache_home
            from attnrec.text.cache import EmbeddingCache

            name, configured = self.config.encoder, self.config.query_backend
            fallback: Literal["torch"] | None = None
            backend = configured
            if configured == "auto":  # ONNX Runtime where installed; PyTorch if it is not, or fails to load
                backend, fallback = ("onnx", "torch") if onnx_available() else ("torch", None)
            query_model = None
            if backend != "sentence-transformers" and (
                packaged_model_path(name) is not None or (not self.offline_only and Path(name).is_dir())
            ):
                from attnrec.text.fast import Backend, FastTextModel  # noqa: F401 - Backend: the cast below

                try:  # the lean path reproduces Transformer + mean/CLS pooling (+ Normalize) folders only
                    query_model = FastTextModel(name, backend=cast("Backend", backend), fallback=fallback)
                    query_model.settings  # noqa: B018 - reads and checks the folder's layout (no weights)
                except (DataError, ConfigError, MissingExtraError) as exc:
                    log.warning(
                        "hybrid_csa: query_backend=%r cannot run %r (%s); queries use sentence-transformers",
                        self.config.query_backend,
                        name,
                        exc,
                    )
                    query_model = None
            self._encoder = SentenceEncoder(
                name,
                cache=EmbeddingCache(cache_home() / "embeddings"),
                progress=False,
                query_model=query_model,
                offline_only=self.offline_only,
            )
        return self._encoder

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_runner"] = None  # an ONNX Runtime session (rebuilt on the next query) does not pickle
        state["_text_norms"] = None  # nor does a weak reference
        return state

    def set_encoder(self, encoder: SentenceEncoder) -> None:
        """Use ``encoder`` for queries and new items (e.g. after loading a bundle fitted with a custom model)."""
        self._encoder = encoder

    def _encode(self, texts: pl.Series | Sequence[str], *, allow_empty: bool) -> np.ndarray:
        vecs = self.encoder.encode(texts, allow_empty=allow_empty)
        if self.module is not None and vecs.shape[1] != self.csa.item_text.shape[1]:
            raise ConfigError(
                f"encoder {self.encoder.model_name!r} gives {vecs.shape[1]}-d vectors but this model was fitted "
                f"with {self.encoder_info.get('name')!r} ({self.csa.item_text.shape[1]}-d): call set_encoder() "
                "with the same model"
            )
        return vecs

    @property
    def csa(self) -> HybridCSAModule:
        """The fitted module (typed)."""
        if not isinstance(self.module, HybridCSAModule):
            raise ConfigError("hybrid_csa is not fitted: call fit() or load a bundle first")
        return self.module

    # ----------------------------------------------------------------- scoring helpers
    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(*self.rating_range) if self.config.clip else x

    def clips_predictions(self) -> bool:
        return self.config.clip

    def _no_leaky(self, what: str) -> None:
        if self.leaky:
            raise ConfigError(
                f"{what}: this model was fitted with target_review_leakage=True, whose text token is the review "
                "the user wrote about the item — it does not exist before the rating. Use evaluate(data) or "
                "predict_rows(data) (each row's own review), or explain(..., texts=...)"
            )

    def _forward_rows(
        self, users: np.ndarray, items: np.ndarray, text: torch.Tensor | None, *, weights: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions (N,) and attention (N, T, T) for aligned indices; ``text`` (N, d_text) or None for the
        items' own text."""
        m = self.csa
        u = torch.tensor(np.asarray(users), dtype=torch.int64)
        i = torch.tensor(np.asarray(items), dtype=torch.int64)
        preds, atts = [], []
        with torch.no_grad():
            for s in range(0, len(u), ROWS):
                ub, ib = u[s : s + ROWS].to(self.device), i[s : s + ROWS].to(self.device)
                tb = m.item_text[ib] if text is None else text[s : s + ROWS].to(self.device)
                p, w = m(ub, ib, tb)
                preds.append(self._clip(p).cpu())
                if weights and w is not None:
                    atts.append(w.cpu())
        pred = torch.cat(preds).numpy() if preds else np.zeros(0, np.float32)
        att = torch.cat(atts).numpy() if atts else None
        return pred, att

    def _row_reviews(self, data: Interactions) -> np.ndarray:
        if "review" not in data.frame.columns:
            raise DataError(
                "target_review_leakage=True scores each row with its own review",
                field="review",
                expected=f"a review column in the data (have {data.frame.columns})",
            )
        if self._memo is not None and self._memo[0] is data.frame:
            return self._memo[1]
        vecs = self._encode(data.frame["review"].fill_null(""), allow_empty=True)
        self._memo = (data.frame, vecs)
        return vecs

    def _share_columns(self, att: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
        """share_user / share_item / share_text (/ share_user_text) from attention (n, T, T); a token the fusion
        does not have gets 0; NaN everywhere for concat_mlp (no attention)."""
        names = ["user", "item", "text"] + (["user_text"] if self.csa.has_user_text else [])
        if att is None:
            return {f"share_{k}": np.full(n, np.nan, dtype=np.float32) for k in names}
        shares = attention_shares(torch.from_numpy(att)).numpy()
        pos = {name: j for j, name in enumerate(self.csa.token_names)}
        return {f"share_{k}": shares[:, pos[k]] if k in pos else np.zeros(n, dtype=np.float32) for k in names}

    def _flag(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(pl.lit(True).alias("leaky")) if self.leaky else df
