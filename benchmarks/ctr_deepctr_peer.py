"""Peer runner: DeepCTR-Torch's DeepFM, xDeepFM and DCN on the exact encoded data attnrec's CTR benchmark uses.

    .venv/bin/pip install deepctr-torch   # 0.3.0; check `--dry-run` first that it keeps the installed torch

The peer gets the integer-encoded columns and vocabulary sizes of attnrec's :class:`~attnrec.data.ctr.FeatureEncoder`
(fitted on train only): one ``SparseFeat`` per categorical field, one ``DenseFeat`` per numeric field and one
mean-pooled ``VarLenSparseFeat`` (0 = padding, masked) per multi-valued field, so both libraries see the same
rows, fields and indices. Training uses DeepCTR-Torch's own ``fit`` (one call per epoch, so the early-stopping rule
can be the one attnrec's Trainer applies, :class:`ctr_peer_common.StopRule`: by default keep the weights of the
best validation logloss and stop when neither logloss nor AUC improved for ``patience`` epochs; score test once
with the kept weights, raw and temperature-scaled on valid). Seconds per epoch time that
``fit(epochs=1)`` call: DeepCTR's training pass including its per-call tensor/DataLoader set-up, no validation.

Compatibility: deepctr-torch 0.3.0 runs unchanged on torch 2.13 / NumPy 2.4 for what is used here; the only
adjustments live in this file: its ``fit`` prints two lines per call (silenced), and it casts all inputs to
float32, so indices must stay below 2**24 (checked).

DCN (issue 18) is DeepCTR-Torch's ``DCN`` with ``cross_parameterization="matrix"`` (DCN-M, the full-rank cross layer
``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` of DCN-v2, as attnrec's ``dcn`` and FuxiCTR's ``DCNv2``), ``cross_layers``
layers (attnrec's dcn's: bench_ctr.py passes its value, the default is ``DCNConfig().cross_layers``) beside the MLP (``parallel``), no cross-kernel L2. The library's own first-order part is
kept (its ``DCN`` always starts the logit from ``linear_model``; attnrec's ``dcn`` has one only with ``use_linear``).
Its ``l2_reg_linear`` (= ``embedding_reg``) also weighs the output layer's weight (``dnn_linear``), so at an L2
above 0 that layer is penalised too (attnrec's is not).
"""

from __future__ import annotations

import contextlib
import io
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnrec.data.ctr import CTRData
from attnrec.data.schema import FeatureSchema
from attnrec.errors import DataError
from attnrec.models.ctr.dcn import DCNConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ctr_peer_common import StopRule, train_with_rule  # noqa: E402 - the benchmark folder is no package

PEER_MODELS = ("deepfm", "xdeepfm", "dcn")
_FLOAT_EXACT = 2**24  # DeepCTR-Torch feeds every input as float32; larger integers would lose precision


def deepctr_version() -> str | None:
    """The installed deepctr-torch version, or None when it is not installed."""
    try:
        return metadata.version("deepctr-torch")
    except metadata.PackageNotFoundError:
        return None


def _require() -> None:
    if deepctr_version() is None:
        raise ImportError(
            "the CTR benchmark's peer needs deepctr-torch: .venv/bin/pip install deepctr-torch "
            "(or run bench_ctr.py with --peer '')"
        )


def feature_columns(schema: FeatureSchema, embedding_dim: int, multi_len: int) -> list[Any]:
    """DeepCTR-Torch feature columns for a fitted ``schema``, in attnrec's field order (categorical, numeric, multi)."""
    _require()
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat

    cols: list[Any] = [
        SparseFeat(f.name, vocabulary_size=f.vocab_size, embedding_dim=embedding_dim)
        for f in schema.categorical
    ]
    cols += [DenseFeat(f.name, 1) for f in schema.numeric]
    cols += [
        VarLenSparseFeat(
            SparseFeat(f.name, vocabulary_size=f.vocab_size, embedding_dim=embedding_dim),
            maxlen=multi_len,
            combiner=f.pooling,
        )
        for f in schema.multi
    ]
    return cols


def model_inputs(data: CTRData) -> dict[str, np.ndarray]:
    """``{field name: column}`` as DeepCTR-Torch's ``fit``/``predict`` take them: (N,) per categorical/numeric
    field, (N, L) per multi-valued field."""
    s = data.schema
    for part, specs in (("categorical", s.categorical), ("multi", s.multi)):
        arr = getattr(data, part)
        if specs and arr.size and int(arr.max()) >= _FLOAT_EXACT:
            raise DataError(
                "an index is too large for DeepCTR-Torch's float32 inputs",
                field=part,
                value=int(arr.max()),
                expected=f"indices below {_FLOAT_EXACT}",
            )
    x: dict[str, np.ndarray] = {f.name: data.categorical[:, j] for j, f in enumerate(s.categorical)}
    x.update({f.name: data.numeric[:, j] for j, f in enumerate(s.numeric)})
    x.update({f.name: data.multi[:, j, :] for j, f in enumerate(s.multi)})
    return x


def build_model(
    name: str,
    schema: FeatureSchema,
    multi_len: int,
    *,
    seed: int,
    embedding_dim: int,
    hidden: list[int],
    dropout: float,
    cin_layers: list[int],
    embedding_reg: float = 0.0,
    cross_layers: int | None = None,
) -> torch.nn.Module:
    """DeepCTR-Torch ``DeepFM``, ``xDeepFM`` or ``DCN`` with attnrec's settings: L2 ``embedding_reg`` on the embedding
    and first-order (linear) tables, as attnrec's ``embedding_reg`` covers both (DeepCTR-Torch penalises whole tables,
    attnrec the rows a batch uses); no DNN/CIN/cross L2; linear CIN activation and split-half as attnrec's xDeepFM;
    DCN with ``cross_layers`` full-rank ("matrix") cross layers as attnrec's DCN-v2 (module docstring; None:
    attnrec's default, ``DCNConfig().cross_layers``)."""
    _require()
    from deepctr_torch.models import DCN, DeepFM, xDeepFM

    cols = feature_columns(schema, embedding_dim, multi_len)
    common: dict[str, Any] = dict(
        dnn_hidden_units=tuple(hidden),
        dnn_dropout=dropout,
        l2_reg_linear=embedding_reg,
        l2_reg_embedding=embedding_reg,
        l2_reg_dnn=0.0,
        seed=seed,
        task="binary",
        device="cpu",
    )
    if name == "deepfm":
        return DeepFM(cols, cols, **common)
    if name == "xdeepfm":
        return xDeepFM(
            cols,
            cols,
            cin_layer_size=tuple(cin_layers),
            cin_split_half=True,
            cin_activation="linear",
            l2_reg_cin=0.0,
            **common,
        )
    if name == "dcn":
        return DCN(
            cols,
            cols,
            cross_num=DCNConfig().cross_layers if cross_layers is None else cross_layers,
            cross_parameterization="matrix",
            l2_reg_cross=0.0,
            **common,
        )
    raise ValueError(f"unknown peer model {name!r}; have {PEER_MODELS}")


def run_peer(
    name: str,
    train: CTRData,
    valid: CTRData,
    test: CTRData,
    *,
    seed: int,
    embedding_dim: int = 16,
    hidden: list[int] | None = None,
    dropout: float = 0.1,
    cin_layers: list[int] | None = None,
    lr: float = 1e-3,
    batch_size: int = 256,
    max_epochs: int = 30,
    patience: int = 3,
    stop: str = "both",
    embedding_reg: float = 0.0,
    cross_layers: int | None = None,
) -> dict[str, Any]:
    """Fit DeepCTR-Torch's ``name`` under the benchmark's early-stopping rule ``stop``
    (:class:`ctr_peer_common.StopRule`, the rule of attnrec's Trainer) and score test once.

    Returns :func:`ctr_peer_common.report_scores`'s fields (test AUC/logloss/ECE raw and temperature-scaled on
    valid), ``s_per_epoch`` (median training seconds per epoch), ``best_epoch``, ``epochs_run``, ``valid_auc`` and
    ``valid_logloss`` (at the restored epoch).
    """
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - DeepCTR-Torch draws from NumPy's global state in places
    multi_len = train.multi.shape[2] if train.schema.multi else 0
    model = build_model(
        name,
        train.schema,
        multi_len,
        seed=seed,
        embedding_dim=embedding_dim,
        hidden=hidden or [64, 32],
        dropout=dropout,
        cin_layers=cin_layers or [16, 16],
        embedding_reg=embedding_reg,
        cross_layers=cross_layers,
    )
    model.compile(torch.optim.Adam(model.parameters(), lr=lr), "binary_crossentropy")
    xtr, xva, xte = model_inputs(train), model_inputs(valid), model_inputs(test)
    ytr = np.ascontiguousarray(train.labels, dtype=np.float32)

    def train_epoch(epoch: int) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            model.fit(dict(xtr), ytr, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)

    def scores(x: dict[str, np.ndarray]) -> np.ndarray:
        return model.predict(dict(x), batch_size=4096).ravel().astype(np.float64)

    return train_with_rule(
        model,
        train_epoch,
        lambda: scores(xva),
        lambda: scores(xte),
        valid.labels,
        test.labels,
        StopRule.named(stop, patience),
        max_epochs,
    )
