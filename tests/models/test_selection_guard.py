"""Select on validation, report test once (STYLE.md convention 6), for EVERY registered model.

Each model runs through :func:`attnrec.experiments.run.run_experiment` (its task's data path: interactions, or CTR
rows from CSV files) twice: once with a clean test split and once with a poisoned one (ratings reversed, labels
flipped, or every test item moved to the other group). Fitting must not notice — same validation history, same
selected epoch, same validation metrics — while the test metrics must change (the poison is live). A spy on every
evaluation checks that the test split is evaluated exactly once, last, after fitting has ended. A model added to
the registry is covered without touching this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import attnrec.evaluation.protocols as protocols
import attnrec.experiments.run as run_module
from attnrec.data.ctr import CTRData
from attnrec.data.table import Interactions
from attnrec.experiments.run import RunConfig, run_experiment
from attnrec.models.base import TaskKind, available_models, get_model_class
from attnrec.testing import checkerboard, planted_ctr, planted_sequence_items, planted_sequences
from attnrec.text import HashingTextModel, SentenceEncoder

#: small settings for the built-in models (a model not listed runs with its defaults)
SMALL: dict[str, dict[str, Any]] = {
    "svd": {"factors": 4, "iterations": 3, "patience": 3},
    "bpr": {"dim": 8},
    "lightgcn": {"dim": 8, "n_layers": 1},
    "hybrid_csa": {"svd_factors": 4, "svd_iterations": 2, "d_model": 8, "heads": 2, "mlp_hidden": 8},
    "fm": {"embedding_dim": 4},
    "nfm": {"embedding_dim": 4, "hidden": [8]},
    "afm": {"embedding_dim": 4, "attention_dim": 4},
    "deepfm": {"embedding_dim": 4, "hidden": [8]},
    "xdeepfm": {"embedding_dim": 4, "hidden": [8], "cin_layers": [4]},
    "dcn": {"embedding_dim": 4, "hidden": [8], "cross_layers": 1},
    "autoint": {"embedding_dim": 4, "attention_layers": 1, "heads": 2, "head_dim": 2},
    "secn": {"embedding_dim": 4, "cross_layers": 1},
    "freedom": {"dim": 8, "feat_dim": 8, "knn_k": 4},
    "mrcsaf": {"dim": 8, "feat_dim": 8, "knn_k": 4},
    "vbpr": {"dim": 8, "feat_dim": 8},
    "lattice": {"dim": 8, "feat_dim": 8, "knn_k": 4},
    "bm3": {"dim": 8, "feat_dim": 8},
    "deepconn": {"word_dim": 8, "n_kernels": 8, "cnn_out": 4, "review_count": 3, "review_length": 6},
    "transnet": {"word_dim": 8, "n_kernels": 8, "cnn_out": 4, "review_count": 3, "review_length": 6},
    "safmr": {"word_dim": 8, "n_kernels": 8, "cnn_out": 4, "fm_factors": 4, "review_count": 3},
}
EVALUATE = protocols.evaluate  # the real one, whatever a test patches
TRAINER = {"epochs": 3, "patience": None, "lr": 0.02, "batch_size": 128, "progress": False, "device": "cpu"}


class Offline(SentenceEncoder):
    """The sentence encoder a text model builds, replaced by the hashing model (offline, deterministic)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(HashingTextModel(dim=32), progress=False)


def _write_parts(task: TaskKind, folder: Path, poison: bool) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    if task is TaskKind.CTR:
        frames = []
        for part in planted_ctr(n_rows=1500):
            cat = part.categorical
            frames.append(
                pl.DataFrame({"label": part.labels.astype(np.int64), "a": cat[:, 0], "b": cat[:, 1]})
            )
        if poison:
            frames[2] = frames[2].with_columns((1 - pl.col("label")).alias("label"))
    else:
        implicit = task is not TaskKind.RATING
        # sequential models: two domains, leave-one-out sequences (the conformance suite's data)
        parts = planted_sequences() if task is TaskKind.SEQUENTIAL else checkerboard(implicit=implicit)
        frames = [p.decode() for p in parts]
        if poison and task is TaskKind.RATING:
            frames[2] = frames[2].with_columns((6.0 - pl.col("rating")).alias("rating"))
        elif poison:  # implicit: every test item moves to the other group (i_k -> i_{k+1})
            moved = (pl.col("item_id").str.slice(1).cast(pl.Int64) + 1) % 40
            frames[2] = frames[2].with_columns(pl.format("i{}", moved).alias("item_id"))
    for name, frame in zip(("train", "valid", "test"), frames, strict=True):
        paths[name] = folder / f"{name}.csv"
        frame.write_csv(paths[name])
    return paths


def _same_split(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, Interactions) and isinstance(b, Interactions):
        return a.frame.equals(b.frame)
    if isinstance(a, CTRData) and isinstance(b, CTRData):
        return np.array_equal(a.labels, b.labels) and np.array_equal(a.categorical, b.categorical)
    return False


def _run(name: str, tmp_path: Path, poison: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    cls = get_model_class(name)
    paths = _write_parts(cls.task, tmp_path / ("poisoned" if poison else "clean"), poison)
    extra: dict[str, Any] = {}
    if cls.task is TaskKind.CTR:
        extra["ctr"] = {"format": "csv"}
    if "items" in cls.side_inputs:
        ids = [f"i{k}" for k in range(40)]
        items = pl.DataFrame({"item_id": ids, "title": [f"group {'ab'[k % 2]} item {k}" for k in range(40)]})
        if cls.task is TaskKind.SEQUENTIAL:  # the catalogue's item domains
            items = items.with_columns(planted_sequence_items()["domain"])
        extra["items"] = tmp_path / "items.csv"
        items.write_csv(extra["items"])
    if "item_features" in cls.side_inputs:  # a multi-hot modality of the items' genres, built by the run
        genres = [f"g{k % 2}|s{k % 5}" for k in range(40)]
        items = pl.DataFrame({"item_id": [f"i{k}" for k in range(40)], "genres": genres})
        extra["items"] = tmp_path / "items.csv"
        items.write_csv(extra["items"])
        extra["modalities"] = ["meta"]
    calls: list[Any] = []

    def spy(model: Any, data: Any, *args: Any, **kw: Any) -> dict[str, float]:
        calls.append(data)
        return EVALUATE(model, data, *args, **kw)

    # the run's own evaluations and every validation pass during fit (models import it at call time)
    monkeypatch.setattr(protocols, "evaluate", spy)
    monkeypatch.setattr(run_module, "evaluate", spy)
    # a trainer field the model's solver sets itself or never reads (svd's ALS, pop's one pass) is an error when given
    model = cls(**SMALL.get(name, {}))
    fixed = {**model.trainer_overrides(), **model.unused_trainer_fields()}
    trainer = {k: v for k, v in TRAINER.items() if k not in fixed}
    cfg = RunConfig(model=name, **paths, model_params=SMALL.get(name, {}), trainer=trainer, **extra)
    return run_experiment(cfg, progress=False), calls


def _history(metrics: dict[str, Any]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in metrics["fit"]["history"]]


@pytest.fixture(autouse=True)
def _offline_text_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    import attnrec.models.rating.hybrid_csa.core as core  # where a text model builds its encoder

    monkeypatch.setattr(core, "SentenceEncoder", Offline)


@pytest.mark.parametrize("name", sorted(available_models()))
def test_selection_reads_validation_only_and_test_once_last(name: str, tmp_path: Path, monkeypatch) -> None:
    clean, calls = _run(name, tmp_path, poison=False, monkeypatch=monkeypatch)
    poisoned, poisoned_calls = _run(name, tmp_path, poison=True, monkeypatch=monkeypatch)
    a, b = clean.metrics, poisoned.metrics
    # fitting and selection do not notice the test split
    assert _history(a) == _history(b)
    assert a["fit"]["best_epoch"] == b["fit"]["best_epoch"]
    assert a["fit"]["best_valid"] == b["fit"]["best_valid"]
    assert a["valid"] == b["valid"]
    # the poison is live: the test metrics change
    assert a["test"] != b["test"]
    # every evaluation before the first test read is on the validation split; test is read only at the end, once per
    # reported view of the final model (a CTR run reports the calibrated and the raw probabilities), never followed
    # by another validation read (selection is over by then)
    for result, seen in ((clean, calls), (poisoned, poisoned_calls)):
        valid, test = result.data.valid, result.data.test
        first_test = next(i for i, c in enumerate(seen) if _same_split(c, test))
        assert first_test >= 1 and all(_same_split(c, test) for c in seen[first_test:])
        assert len(seen) - first_test == (2 if "raw_auc" in result.metrics["test"] else 1)
        assert all(_same_split(c, valid) and not _same_split(c, test) for c in seen[:first_test])
        epochs_validated = sum(
            any(k.startswith("valid_") for k in row) for row in result.metrics["fit"]["history"]
        )
        assert first_test >= epochs_validated + 1  # each validated epoch, then the final validation report
