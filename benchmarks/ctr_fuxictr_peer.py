"""Peer runner: FuxiCTR 2.3.10's DeepFM and DCNv2 (the BARS benchmark's library) on attnrec's encoded CTR splits.

Install (outside the repo; FuxiCTR's package holds the layers and ``BaseModel``, its model zoo the models):

    .venv/bin/pip install --no-deps --target ../ctr-peers-lib fuxictr==2.3.10 h5py pyyaml
    git clone https://github.com/reczoo/FuxiCTR ../fuxictr-src      # model_zoo/DeepFM, model_zoo/DCNv2
    .venv/bin/python benchmarks/bench_ctr.py --peer-path ../ctr-peers-lib --fuxictr-zoo ../fuxictr-src/model_zoo ...

``--no-deps``: FuxiCTR 2.3.10 lists ``ray[data]``, ``pandas`` and others that only its CSV/Parquet preprocessing uses;
the models need torch, NumPy, scikit-learn, PyYAML and h5py (imported by its tokenizer module). Its package
``fuxictr.preprocess`` imports ray at import time, so this runner registers that package without running its
``__init__`` (the tokenizer submodule the layers import then loads on its own); nothing else is patched.

What the peer gets (the same as attnrec's models and DeepCTR-Torch):

* a ``FeatureMap`` built from attnrec's fitted schema: one ``categorical`` feature per categorical field
  (``vocab_size`` = ours, no padding row: our index 0 is the trainable OOV row, as in attnrec), one ``numeric``
  feature per numeric field, one ``sequence`` feature per multi-valued field (padding index 0, masked mean pooling:
  ``layers.MaskedAveragePooling``), and the same integer columns, batch by batch;
* embedding 16, Adam lr 1e-3, batch 256, DeepFM MLP [64, 32], DCNv2 ``parallel`` with attnrec's dcn's
  ``cross_layers`` cross layers (bench_ctr.py passes its value; default ``DCNConfig().cross_layers``) and MLP
  [64, 32], dropout 0.1, ``embedding_regularizer`` = attnrec's ``embedding_reg`` (FuxiCTR penalises whole tables,
  first-order ones included, attnrec the rows a batch uses), no net regularizer (attnrec has none);
* training through FuxiCTR's own ``train_step`` (its loss, regulariser and gradient clipping at norm 10, the
  default of its ``fit``); the epoch loop and the early-stopping rule are the benchmark's
  (:class:`ctr_peer_common.StopRule`), not FuxiCTR's ``fit``: its plateau LR decay is not applied, so both libraries
  follow one rule. Test is scored once with the restored weights, raw and temperature-scaled on valid.

What still differs by design: FuxiCTR initialises embeddings N(0, 1e-4) and linear layers Xavier-normal (attnrec:
N(0, 1e-4) = std 0.01 embeddings, PyTorch defaults for linear layers), keeps one table per field, and clips gradients.
Seconds per epoch time the training pass (batch assembly included, validation excluded).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from collections import OrderedDict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ctr_peer_common import StopRule, train_with_rule  # noqa: E402

from attnrec.data.ctr import CTRData  # noqa: E402
from attnrec.models.ctr.dcn import DCNConfig  # noqa: E402

PEER_MODELS = ("deepfm", "dcn")
#: model name -> (model zoo folder, class)
ZOO = {"deepfm": ("DeepFM/DeepFM_torch", "DeepFM"), "dcn": ("DCNv2", "DCNv2")}
LABEL = "__label__"


def fuxictr_version() -> str | None:
    """The installed FuxiCTR version (from its package), or None when it is not importable."""
    try:
        return metadata.version("fuxictr")
    except metadata.PackageNotFoundError:
        spec = importlib.util.find_spec("fuxictr")
        if spec is None or spec.origin is None:
            return None
        text = (Path(spec.origin).parent / "version.py").read_text()
        return text.split("=", 1)[1].strip().strip("\"'")


def _import_fuxictr() -> Any:
    """``fuxictr`` with ``fuxictr.preprocess`` registered as a bare package (its ``__init__`` imports ray)."""
    if importlib.util.find_spec("fuxictr") is None:
        raise ImportError(
            "the FuxiCTR peer needs fuxictr 2.3.10 on the path: see benchmarks/ctr_fuxictr_peer.py "
            "(or run bench_ctr.py with --fuxictr-peer '')"
        )
    import fuxictr

    if "fuxictr.preprocess" not in sys.modules:
        pkg = types.ModuleType("fuxictr.preprocess")
        pkg.__path__ = [str(Path(fuxictr.__file__).parent / "preprocess")]
        sys.modules["fuxictr.preprocess"] = pkg
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    return fuxictr


def model_class(name: str, zoo: Path) -> type:
    """FuxiCTR's model class ``name`` (deepfm: ``DeepFM``, dcn: ``DCNv2``) from the model zoo folder ``zoo``."""
    _import_fuxictr()
    folder, cls = ZOO[name]
    path = zoo / folder / "src" / f"{cls}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FuxiCTR's model zoo (git clone reczoo/FuxiCTR; --fuxictr-zoo)")
    spec = importlib.util.spec_from_file_location(f"fuxictr_zoo_{cls}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return getattr(module, cls)


def feature_map(data: CTRData, embedding_dim: int) -> Any:
    """A FuxiCTR ``FeatureMap`` for attnrec's fitted schema (see the module docstring for the mapping)."""
    _import_fuxictr()
    from fuxictr.features import FeatureMap

    s = data.schema
    fmap = FeatureMap("attnrec", data_dir="")
    feats: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for f in s.categorical:
        feats[f.name] = {"type": "categorical", "vocab_size": f.vocab_size, "source": ""}
    for f in s.numeric:
        feats[f.name] = {"type": "numeric", "source": ""}
    for f in s.multi:
        feats[f.name] = {
            "type": "sequence",
            "vocab_size": f.vocab_size,
            "padding_idx": 0,
            "max_len": s.multi_len,
            "feature_encoder": "layers.MaskedAveragePooling()",
            "source": "",
        }
    fmap.features = feats
    fmap.labels = [LABEL]
    fmap.default_emb_dim = embedding_dim
    fmap.num_fields = fmap.get_num_fields()
    fmap.total_features = sum(v.get("vocab_size", 1) for v in feats.values())
    fmap.set_column_index()
    return fmap


def columns(data: CTRData) -> dict[str, torch.Tensor]:
    """``{feature: tensor}`` of every row: (N,) per categorical/numeric field, (N, L) per multi field, and labels."""
    s = data.schema
    x = {
        f.name: torch.from_numpy(np.ascontiguousarray(data.categorical[:, j], dtype=np.int64))
        for j, f in enumerate(s.categorical)
    }
    x.update(
        {
            f.name: torch.from_numpy(np.ascontiguousarray(data.numeric[:, j], dtype=np.float32))
            for j, f in enumerate(s.numeric)
        }
    )
    x.update(
        {
            f.name: torch.from_numpy(np.ascontiguousarray(data.multi[:, j, :], dtype=np.int64))
            for j, f in enumerate(s.multi)
        }
    )
    x[LABEL] = torch.from_numpy(np.ascontiguousarray(data.labels, dtype=np.float32))
    return x


def _batches(cols: dict[str, torch.Tensor], batch_size: int, order: torch.Tensor) -> Any:
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield {k: v[idx] for k, v in cols.items()}


def predict(model: Any, cols: dict[str, torch.Tensor], batch_size: int = 4096) -> np.ndarray:
    """Click probabilities (N,) in row order (FuxiCTR's output activation is the sigmoid)."""
    model.eval()
    n = len(cols[LABEL])
    with torch.no_grad():
        out = [model(b)["y_pred"].reshape(-1) for b in _batches(cols, batch_size, torch.arange(n))]
    return torch.cat(out).double().numpy()


def build_model(
    name: str,
    train: CTRData,
    zoo: Path,
    *,
    seed: int,
    embedding_dim: int,
    hidden: list[int],
    dropout: float,
    lr: float,
    embedding_reg: float = 0.0,
    cross_layers: int | None = None,
) -> Any:
    """FuxiCTR's ``name`` with the benchmark's settings (see the module docstring); DCNv2 with ``cross_layers``
    cross layers (None: attnrec's default, ``DCNConfig().cross_layers``)."""
    from fuxictr.pytorch.torch_utils import seed_everything

    seed_everything(seed)
    cls = model_class(name, zoo)
    common: dict[str, Any] = dict(
        model_id=f"attnrec_bench_{name}",
        gpu=-1,
        learning_rate=lr,
        embedding_dim=embedding_dim,
        net_dropout=dropout,
        batch_norm=False,
        embedding_regularizer=embedding_reg,
        net_regularizer=0,
        optimizer="adam",
        loss="binary_crossentropy",
        verbose=0,
        model_root=str(Path("bench_results") / "fuxictr_unused"),
        metrics=["AUC", "logloss"],
    )
    if name == "deepfm":
        model = cls(
            feature_map(train, embedding_dim), hidden_units=list(hidden), hidden_activations="relu", **common
        )
    elif name == "dcn":
        model = cls(
            feature_map(train, embedding_dim),
            model_structure="parallel",
            num_cross_layers=DCNConfig().cross_layers if cross_layers is None else cross_layers,
            parallel_dnn_hidden_units=list(hidden),
            dnn_activations="relu",
            **common,
        )
    else:
        raise ValueError(f"unknown FuxiCTR peer model {name!r}; have {PEER_MODELS}")
    model._max_gradient_norm = 10.0  # the default of FuxiCTR's fit(), which train_step reads
    return model


def run_peer(
    name: str,
    train: CTRData,
    valid: CTRData,
    test: CTRData,
    *,
    zoo: Path,
    seed: int,
    embedding_dim: int = 16,
    hidden: list[int] | None = None,
    dropout: float = 0.1,
    lr: float = 1e-3,
    batch_size: int = 256,
    max_epochs: int = 30,
    patience: int = 3,
    stop: str = "both",
    embedding_reg: float = 0.0,
    cross_layers: int | None = None,
) -> dict[str, Any]:
    """Fit FuxiCTR's ``name`` under the benchmark's stopping rule ``stop`` and score test once.

    Returns :func:`ctr_peer_common.report_scores`'s fields plus ``s_per_epoch`` (median training seconds per epoch),
    ``best_epoch``, ``epochs_run``, ``valid_auc`` and ``valid_logloss`` (at the restored epoch).
    """
    _import_fuxictr()
    model = build_model(
        name,
        train,
        zoo,
        seed=seed,
        embedding_dim=embedding_dim,
        hidden=hidden or [64, 32],
        dropout=dropout,
        lr=lr,
        embedding_reg=embedding_reg,
        cross_layers=cross_layers,
    )
    ctr, cva, cte = columns(train), columns(valid), columns(test)

    def order(epoch: int) -> torch.Tensor:  # the epoch's batch order, a function of (seed, epoch) only
        return torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))

    def train_epoch(epoch: int) -> None:
        model.train()
        for batch in _batches(ctr, batch_size, order(epoch)):
            model.train_step(batch)

    return train_with_rule(
        model,
        train_epoch,
        lambda: predict(model, cva),
        lambda: predict(model, cte),
        valid.labels,
        test.labels,
        StopRule.named(stop, patience),
        max_epochs,
    )
