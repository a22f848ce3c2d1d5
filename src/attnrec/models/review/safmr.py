"""safmr (paper 002): CNN review encoders, a self-attention factorization machine, and TransNet's target and source
networks trained with L1 rating losses and an L2 transform loss; only the source network predicts.

The math is in :mod:`attnrec.models.review.safmr_module`; equations mapped to code, and every choice where the
paper is vague, in ``docs/models/safmr.md``. This file holds the config, the estimator and the attention
diagnostics (per-prediction attention over the CNN feature matrix, and mean |cos| between the attention's input
and output).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import polars as pl
import torch
from pydantic import Field

from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.models.base import register
from attnrec.models.capabilities import Explainer, ExplainKind
from attnrec.models.layers.attention import attention_shares
from attnrec.models.layers.diagnostics import CosineMeter, mean_abs_cosine_per_row
from attnrec.models.review.base import ReviewConfig, ReviewRatingModel, unit_norm_word_vectors
from attnrec.models.review.safmr_module import FMOutput, SAFMRModule

#: (user, item) pairs per forward pass of the diagnostics (each keeps an (n, n) attention matrix per pair)
_EXPLAIN_CHUNK = 4096


class SAFMRConfig(ReviewConfig):
    """safmr options: the shared text options (Table 3 defaults) plus the FM factor size (the paper gives none;
    TransNet's k = 8), the number of transform layers (Table 3: 2) and the two ablation switches; the shared
    ``id_biases`` / ``bias_l2`` join the source head (safmr.md, choice 17)."""

    fm_factors: int = Field(8, ge=1)
    transform_layers: int = Field(2, ge=1)
    #: self-attention over the feature matrix (eqs. 6-8); False: the plain FM of eq. 5 in both networks
    attention: bool = True
    #: the target network and the transform loss (eqs. 12-13); False: the source network alone, trained on eq. 14
    transform_loss: bool = True
    #: the rating losses (eqs. 11, 12, 14): "l1" as the paper (absolute error); "l2" squared error (MSE's own loss)
    loss: Literal["l1", "l2"] = "l1"


@register
class SAFMR(ReviewRatingModel[SAFMRConfig], Explainer):
    """SAFMR: self-attention FM over CNN review features, TransNet-style target and source networks."""

    name = "safmr"
    config_class = SAFMRConfig
    paper = "SAFMR: a deep recommendation model based on self-attention factorization (paper 002)"

    def new_module(self, vocab_size: int, word_vectors: np.ndarray | None) -> SAFMRModule:
        c = self.config
        if word_vectors is None:  # tanh outputs (eq. 4): N(0, 1) vectors saturate them (safmr.md, choice 15)
            word_vectors = unit_norm_word_vectors(vocab_size, c.word_dim, c.seed)
        return SAFMRModule(
            self.n_users,
            self.n_items,
            vocab_size,
            c,
            word_vectors,
            factors=c.fm_factors,
            transform_layers=c.transform_layers,
            attention=c.attention,
            transform_loss=c.transform_loss,
            loss=c.loss,
            global_bias=self._global_bias,  # both heads start w_0 at the mean rating (safmr.md, choice 8)
        )

    @property
    def safmr_module(self) -> SAFMRModule:
        m = self.review_module
        assert isinstance(m, SAFMRModule)
        return m

    # ------------------------------------------------------------------ attention diagnostics
    def _source_attention(
        self, users: np.ndarray, items: np.ndarray
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, FMOutput]]:
        """The source head's forward pass over (user, item) index pairs, chunk by chunk, as at prediction time (eval
        mode, no gradient): ``(users, items, output)`` per chunk, the output's ``weights`` and ``mixed`` set."""
        if not self.config.attention:
            raise ConfigError("safmr was trained with attention=False: its heads have no attention to report")
        u, i = self.check_pairs(users, items)
        m = self.safmr_module
        m.eval()
        dev = m.user_docs.device
        with torch.no_grad():
            for s in range(0, len(u), _EXPLAIN_CHUNK):
                uu = torch.from_numpy(u[s : s + _EXPLAIN_CHUNK]).to(dev)
                ii = torch.from_numpy(i[s : s + _EXPLAIN_CHUNK]).to(dev)
                ud, idoc = m.documents(uu, ii)
                out: FMOutput = m.source(m.user_vectors(ud), m.item_vectors(idoc))
                assert out.weights is not None and out.mixed is not None
                yield uu, ii, out

    def attention(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The source head's attention for (user, item) index pairs, as at prediction time.

        Returns ``(pred (N,), shares (N, n), abs_cos (N,))``: the predicted rating (with b_u + b_i under
        ``id_biases``; not clipped); the share of attention each of the n CNN features receives (the mean over
        query features of X̂'s column, eq. 7; each row sums to 1); and the mean over features of
        |cos(e_i, (X̂ S)_i)| between the attention's input and output rows, by the library's rule
        (:func:`~attnrec.models.layers.diagnostics.mean_abs_cosine_per_row`: a feature whose e_i or (X̂ S)_i is
        zero is left out; NaN for a pair with none left)."""
        m = self.safmr_module
        preds, shares, cos = [], [], []
        for uu, ii, out in self._source_attention(users, items):
            assert out.weights is not None and out.mixed is not None
            preds.append(m.biased(out.pred, uu, ii))  # the rating predict() gives, before clipping
            shares.append(attention_shares(out.weights))
            cos.append(mean_abs_cosine_per_row(out.features, out.mixed))
        n = self.config.cnn_out
        if not preds:
            return np.zeros(0, np.float32), np.zeros((0, n), np.float32), np.zeros(0, np.float32)
        return tuple(torch.cat(t).float().cpu().numpy() for t in (preds, shares, cos))  # type: ignore[return-value]

    @property
    def explain_kind(self) -> ExplainKind | None:
        """``"features"``: :meth:`explain` gives the shares of the n CNN features; None for a safmr built without
        its attention (``attention=False``), which has none to explain."""
        return "features" if self.config.attention else None

    def explain(self, user_ids: Sequence[object], item_ids: Sequence[object]) -> pl.DataFrame:
        """Attention per prediction by external ids: ``user_id, item_id, predicted_rating`` (as :meth:`predict`
        gives it, clipped to the training scale), ``attention`` (list of n shares, one per CNN feature, summing to
        1), ``top_feature`` / ``top_share`` (the feature with the largest share), ``abs_cos`` (mean |cos| between
        the attention's input and output rows, as :meth:`attention`; null where no feature qualifies) and
        ``has_text`` (False: the user's or item's document is all padding, the documented fallback)."""
        uv, iv = self._vocabs()
        users, items = self.check_pairs(uv.lookup(list(user_ids)), iv.lookup(list(item_ids)))
        pred, shares, cos = self.attention(users, items)
        return pl.DataFrame(
            {
                "user_id": pl.Series(uv.ids[users], dtype=pl.String),
                "item_id": pl.Series(iv.ids[items], dtype=pl.String),
                "predicted_rating": np.clip(pred, *self.rating_range),  # as predict() clips it
                "attention": pl.Series(list(shares), dtype=pl.List(pl.Float32)),
                "top_feature": shares.argmax(1).astype(np.int32) if len(shares) else np.zeros(0, np.int32),
                "top_share": shares.max(1) if len(shares) else np.zeros(0, np.float32),
                "abs_cos": pl.Series(cos, dtype=pl.Float32).fill_nan(None),  # no feature qualified: null
                "has_text": self.has_text(users, items),
            }
        )

    def attention_summary(self, data: Interactions) -> dict[str, float]:
        """Means over ``data``'s rows (encoded with this model's vocabularies): ``abs_cos`` (|cos(X, X')| of the
        attention input and output rows, over every (row, feature) position by
        :class:`~attnrec.models.layers.diagnostics.CosineMeter`'s rule, the one every attention-fusion model's
        diagnostic uses: positions with a zero vector left out; NaN when none is left), ``top_share`` (largest
        feature share), ``entropy`` of the shares in nats (uniform over n features: ln n), and ``n`` rows."""
        if len(data.user_vocab) != self.n_users or len(data.item_vocab) != self.n_items:
            raise DataError(
                "attention_summary needs data encoded with this model's vocabularies",
                field="data",
                value=len(data.user_vocab),
                expected=f"{self.n_users} users",
            )
        meter, parts = CosineMeter(), []
        for _, _, out in self._source_attention(data.users, data.items):
            assert out.weights is not None and out.mixed is not None
            meter.add(out.features, out.mixed)
            parts.append(attention_shares(out.weights))
        if not parts:
            return {"n": 0.0}
        shares = torch.cat(parts).float().cpu().numpy()
        entropy = -(shares * np.log(np.clip(shares, 1e-12, None))).sum(1)
        return {
            "n": float(len(shares)),
            "abs_cos": meter.value,
            "top_share": float(shares.max(1).mean()),
            "entropy": float(entropy.mean()),
        }
