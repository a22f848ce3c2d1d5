"""The shared CTR wrapper: raw rows through an encoder, bundles that carry it, shards, penalties, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from attnrec.data.batches import CTRBatch
from attnrec.data.ctr import CTRData, FeatureEncoder, ctr_batches
from attnrec.data.ctr_shards import preprocess_to_shards
from attnrec.data.readers.ctr import CTRReaderSpec
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.protocols import evaluate
from attnrec.models.ctr.fm import FM
from attnrec.models.ctr.lr import LR
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import planted_ctr
from attnrec.training.trainer import TrainerConfig

FAST = {"epochs": 3, "batch_size": 128, "lr": 0.02, "progress": False, "device": "cpu"}


def raw_frame(n: int = 600, seed: int = 0) -> pl.DataFrame:
    """Rows in the reader's table format: a click when colour and shape agree in parity."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 4, n)
    shape = rng.integers(0, 4, n)
    p = np.where(colour % 2 == shape % 2, 0.9, 0.1)
    return pl.DataFrame(
        {
            "label": (rng.random(n) < p).astype(np.int64),
            "colour": [f"c{v}" for v in colour],
            "shape": [f"s{v}" for v in shape],
            "price": rng.normal(0, 1, n),
            "tags": ["|".join(f"t{t}" for t in rng.integers(0, 5, k)) for k in rng.integers(0, 3, n)],
        }
    )


def raw_schema() -> FeatureSchema:
    return FeatureSchema(
        fields=[
            FieldSpec(name="colour"),
            FieldSpec(name="shape"),
            FieldSpec(name="price", kind="numeric"),
            FieldSpec(name="tags", kind="multi", max_len=2),
        ]
    )


def test_encoder_travels_in_the_bundle_and_scores_raw_rows(tmp_path: Path) -> None:
    frame = raw_frame()
    enc = FeatureEncoder(raw_schema()).fit(frame[:500])
    train, valid = enc.transform(frame[:500]), enc.transform(frame[500:])
    model = FM(embedding_dim=4)
    model.fit(train, valid, trainer=TrainerConfig(**FAST), encoder=enc)
    save_bundle(model, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.encoder is not None and loaded.encoder.vocabulary("colour") == ["c0", "c1", "c2", "c3"]
    unlabeled = frame[500:].drop("label")
    np.testing.assert_array_equal(loaded.predict_frame(unlabeled), model.predict_proba(valid))
    # an unseen value maps to the missing/OOV row instead of failing
    odd = unlabeled.head(2).with_columns(pl.lit("c9").alias("colour"))
    assert np.isfinite(loaded.predict_frame(odd)).all()


def test_predict_frame_without_encoder_is_a_clear_error() -> None:
    train, valid, _ = planted_ctr()
    model = LR()
    model.fit(train, None, trainer=TrainerConfig(**{**FAST, "epochs": 1}))
    with pytest.raises(ConfigError, match="no feature encoder"):
        model.predict_frame(pl.DataFrame({"a": ["x"]}))


def test_fit_on_shards_streams_and_matches_in_memory_scoring(tmp_path: Path) -> None:
    frame = raw_frame(400)
    src = tmp_path / "train.csv"
    frame.write_csv(src)
    spec = CTRReaderSpec(format="table", feature_schema=raw_schema())
    shards = preprocess_to_shards(src, spec, tmp_path / "shards", rows_per_shard=150)
    assert shards.n_shards == 3
    model = FM(embedding_dim=4)
    report = model.fit(shards, shards.load(), trainer=TrainerConfig(**FAST))
    assert report.epochs_run == 3 and report.best_valid["n"] == 400
    np.testing.assert_array_equal(model.predict_proba(shards), model.predict_proba(shards.load()))
    assert evaluate(model, shards)["auc"] == pytest.approx(evaluate(model, shards.load())["auc"])


def test_loss_is_bce_plus_weighted_embedding_penalty() -> None:
    train, _, _ = planted_ctr()
    schema = train.schema
    torch.manual_seed(0)
    plain = FM(embedding_dim=4).build_ctr_module(schema)
    torch.manual_seed(0)
    reg = FM(embedding_dim=4, embedding_reg=0.5).build_ctr_module(schema)
    reg.load_state_dict(plain.state_dict())
    with torch.no_grad():  # non-zero first-order weights so both penalty parts count
        for m in (plain, reg):
            m.linear.weights.table.weight.fill_(0.3)
    batch = CTRBatch(
        torch.tensor([1.0, 0.0]),
        torch.from_numpy(train.categorical[:2]),
        torch.from_numpy(train.numeric[:2]),
        torch.from_numpy(train.multi[:2]),
    )
    logits = plain(batch)
    emb = plain.embedding(batch)
    terms = plain.linear.terms(batch)
    penalty = (emb.pow(2).sum() + terms.pow(2).sum()) / 2
    bce = F.binary_cross_entropy_with_logits(logits, batch.labels)
    torch.testing.assert_close(plain.loss(batch), bce)
    torch.testing.assert_close(reg.loss(batch), bce + 0.5 * penalty)
    assert penalty.item() > 0


def test_predict_proba_is_sigmoid_of_logits_and_row_ordered() -> None:
    train, valid, test = planted_ctr()
    model = FM(embedding_dim=4)
    model.fit(train, valid, trainer=TrainerConfig(**FAST))
    logits = model.predict_logits(test, batch_size=50)
    np.testing.assert_allclose(
        model.predict_proba(test, calibrated=False), 1 / (1 + np.exp(-logits)), rtol=1e-6
    )
    # the default config fits temperature scaling on valid: σ(z / T), T > 0
    cal = model.calibrator
    assert cal is not None and cal.method == "temperature" and cal.b == 0.0 and cal.a != 1.0
    np.testing.assert_allclose(model.predict_proba(test), 1 / (1 + np.exp(-cal.a * logits)), rtol=1e-5)
    batch = next(ctr_batches(test, 7, shuffle=False))
    with torch.no_grad():
        np.testing.assert_allclose(model.module(batch).numpy(), logits[:7], rtol=1e-6)


def test_fit_and_data_errors() -> None:
    train, valid, _ = planted_ctr()
    with pytest.raises(ConfigError, match="not fitted"):
        FM().predict_proba(train)
    with pytest.raises(ConfigError, match="CTRData"):
        FM().fit(np.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        FM().fit(train.subset(slice(0, 0)))
    other = FeatureSchema(fields=[f for f in valid.schema.fields if f.name != "x"])
    narrow = CTRData(valid.labels, valid.categorical, valid.numeric[:, :0], valid.multi, other)
    with pytest.raises(DataError, match="valid.*numeric"):
        FM().fit(train, narrow)
    unfitted = FeatureSchema(fields=[FieldSpec(name="a")])
    with pytest.raises(DataError, match="not fitted"):
        FM().fit(
            CTRData(
                np.ones(2, np.float32),
                np.zeros((2, 1), np.int64),
                np.zeros((2, 0), np.float32),
                np.zeros((2, 0, 0), np.int64),
                unfitted,
            )
        )
    neg = train.subset(slice(0, 5))
    neg.multi = neg.multi.copy()
    neg.multi[0, 0, 0] = -1
    with pytest.raises(DataError, match="'tags'.*-1"):
        FM().fit(neg)


def test_evaluate_single_class_gives_nan_auc() -> None:
    train, valid, _ = planted_ctr()
    model = LR()
    model.fit(train, None, trainer=TrainerConfig(**{**FAST, "epochs": 1}))
    ones = valid.subset(np.flatnonzero(valid.labels == 1))
    metrics = evaluate(model, ones)
    assert math.isnan(metrics["auc"]) and metrics["logloss"] > 0 and metrics["n"] == len(ones)
