"""Side inputs: alignment checks, the training-only review corpus, and the leakage guarantee over every model
that takes text (no validation or test review reaches a model's fit or its scoring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from attnrec.data.side import ItemFeatures, ReviewCorpus, SideInputs, strip_text
from attnrec.data.vocab import Vocabulary
from attnrec.errors import DataError
from attnrec.models.base import TaskKind, available_models
from attnrec.testing import checkerboard

SENTINEL = "zzleakzz"


def _with_reviews(data: Any, tag: str) -> Any:
    text = [f"{tag} review {k}" for k in range(len(data))]
    return data.with_frame(data.frame.with_columns(pl.Series("review", text)))


def test_review_corpus_holds_training_reviews_only() -> None:
    train, valid, _ = checkerboard()
    train, valid = _with_reviews(train, "train"), _with_reviews(valid, SENTINEL)
    corpus = ReviewCorpus.from_split(train)
    assert len(corpus) == len(train)
    assert corpus.frame["review"].str.starts_with("train").all()
    corpus.check_built_from(train)
    with pytest.raises(DataError, match="not built from this training split"):
        corpus.check_built_from(valid)


def test_strip_text_drops_reviews_and_keeps_the_rest() -> None:
    _, valid, _ = checkerboard()
    v = _with_reviews(valid, SENTINEL)
    out = strip_text(v)
    assert "review" not in out.frame.columns
    assert out.frame.columns == [c for c in v.frame.columns if c != "review"]
    np.testing.assert_array_equal(out.users, v.users)
    assert strip_text(out) is out  # nothing to strip: the same object
    # an allowlist, not a denylist: a summary or vote column (which can state the rating) goes too
    extra = v.with_frame(v.frame.with_columns(pl.lit("Five Stars").alias("summary"), pl.lit(3).alias("vote")))
    assert set(strip_text(extra).frame.columns) <= {"user", "item", "rating", "timestamp", "domain"}


def test_item_features_must_align_with_the_vocabulary() -> None:
    vocab = Vocabulary(["a", "b", "c"], kind="item")
    with pytest.raises(DataError, match="not aligned"):
        ItemFeatures(vocab, {"text": np.zeros((2, 4), np.float32)})
    with pytest.raises(DataError, match="non-finite"):
        ItemFeatures(vocab, {"text": np.full((3, 4), np.nan, np.float32)})
    frame = pl.DataFrame({"item_id": ["c", "a", "zz"], "x": [3.0, 1.0, 9.0], "y": [30.0, 10.0, 90.0]})
    feats = ItemFeatures.from_frame(frame, vocab, {"xy": ["x", "y"]})
    np.testing.assert_array_equal(
        feats["xy"], [[1, 10], [0, 0], [3, 30]]
    )  # "b" absent: zeros; "zz" unknown: ignored
    with pytest.raises(DataError, match="no such item feature"):
        feats["nope"]
    assert SideInputs(item_features=feats).kinds() == {"item_features"}


# ------------------------------------------------------------------ leakage over every model that takes text
def _record_hybrid_csa(monkeypatch: pytest.MonkeyPatch, seen: list[str]) -> dict[str, Any]:
    """hybrid_csa reads item metadata and training reviews through its sentence encoder: record every text."""
    from attnrec.models.rating.hybrid_csa import core
    from attnrec.text.encoder import HashingTextModel, SentenceEncoder

    class Recording(SentenceEncoder):
        def encode(self, texts: Any, **kw: Any) -> np.ndarray:
            seen.extend(str(t) for t in texts)
            return super().encode(texts, **kw)

    monkeypatch.setattr(core.HybridCSACore, "encoder", property(lambda self: Recording(HashingTextModel())))
    return {"text_source": "item+user"}


def _record_review_models(monkeypatch: pytest.MonkeyPatch, seen: list[str]) -> dict[str, Any]:
    """The review models (DeepCoNN, TransNet, safmr) read text only through their base's tokenizer: record it."""
    from attnrec.models.review import base

    tokenize = base.tokenize

    def recording(texts: Any) -> Any:
        seen.extend(str(t) for t in texts.to_list())
        return tokenize(texts)

    monkeypatch.setattr(base, "tokenize", recording)
    return {"word_dim": 8, "n_kernels": 8, "cnn_out": 4, "review_count": 3, "review_length": 6}


#: how each model that takes side inputs is watched; a new such model must add its hook here
TEXT_HOOKS = {
    "hybrid_csa": _record_hybrid_csa,
    "deepconn": _record_review_models,
    "transnet": _record_review_models,
    "safmr": _record_review_models,
}


def test_every_model_with_side_inputs_has_a_leakage_hook() -> None:
    # item features (the multimodal family) are built by the run from item metadata and files only, never from a
    # split (experiments/modalities_run.py; tests/data/test_modalities.py), so they carry no review text to watch
    # the sequential models (sasrec, gca) read only the catalogue's item -> domain column of the items side input
    # (attnrec.data.sequences.item_domains_of), no text: tests/models/sequential/test_models.py checks it
    takes_side = {
        name
        for name, cls in available_models().items()
        if cls.side_inputs - {"item_features"} and cls.task is not TaskKind.SEQUENTIAL
    }
    assert takes_side == set(TEXT_HOOKS), "add a leakage hook for every model that takes side inputs"


@pytest.mark.parametrize("name", sorted(TEXT_HOOKS))
def test_no_validation_or_test_review_reaches_the_model(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attnrec.experiments.run import RunConfig, run_experiment

    train, valid, test = checkerboard()
    paths = {}
    for part, data, tag in (("train", train, "train"), ("valid", valid, SENTINEL), ("test", test, SENTINEL)):
        df = _with_reviews(data, tag).decode()
        paths[part] = tmp_path / f"{part}.csv"
        df.write_csv(paths[part])
    seen: list[str] = []
    params = TEXT_HOOKS[name](monkeypatch, seen)
    cfg = RunConfig(
        model=name,
        train=paths["train"],
        valid=paths["valid"],
        test=paths["test"],
        model_params=params,
        trainer={"epochs": 2, "progress": False},
        out=None,
    )
    result = run_experiment(cfg, progress=False)
    assert seen, "the hook recorded nothing: it does not watch the model's text path"
    assert any(t.startswith("train") or "train review" in t for t in seen)
    assert not any(SENTINEL in t for t in seen)
    assert np.isfinite(result.metrics["test"]["rmse"])
