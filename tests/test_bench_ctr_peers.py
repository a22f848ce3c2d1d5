"""The CTR benchmark's shared peer rule (benchmarks/ctr_peer_common.py) and the FuxiCTR peer runner (skipped when
FuxiCTR or its model zoo is absent: FuxiCTR is installed outside the venv, see benchmarks/ctr_fuxictr_peer.py)."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnrec.testing.data import planted_ctr
from attnrec.testing.scripts import load_script

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> Any:
    return load_script(BENCH_DIR / f"{name}.py")


def test_stop_rule_matches_the_trainer_rule() -> None:
    common = _load("ctr_peer_common")
    curve = [(0.50, 0.70), (0.45, 0.72), (0.46, 0.74), (0.48, 0.75), (0.52, 0.76), (0.55, 0.75), (0.57, 0.74)]
    rule = common.StopRule.named("both", patience=2)
    kept, stopped_at = [], None
    for epoch, (ll, auc) in enumerate(curve, 1):
        keep, stop = rule.update({"logloss": ll, "auc": auc})
        if keep:
            kept.append(epoch)
        if stop:
            stopped_at = epoch
            break
    # the same curve as tests/training/test_trainer_valid_also.py: logloss-best epoch 2 kept, stop after epoch 7
    assert kept == [1, 2] and stopped_at == 7
    auc_rule = common.StopRule.named("auc", patience=2)
    assert [auc_rule.update({"logloss": ll, "auc": a})[0] for ll, a in curve[:3]] == [True, True, True]


def test_report_scores_calibrates_on_valid_only() -> None:
    common = _load("ctr_peer_common")
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.random(4000) < p).astype(float)
    sharp = 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))  # over-confident: logit x 3
    row = common.report_scores(y[:2000], sharp[:2000], y[2000:], sharp[2000:])
    assert row["temperature"] == pytest.approx(3.0, rel=0.15)
    assert row["cal_logloss"] < row["logloss"] and row["cal_auc"] == pytest.approx(row["auc"])


ZOO = Path(os.environ.get("FUXICTR_ZOO", BENCH_DIR.parents[1] / "fuxictr-zoo" / "model_zoo"))
PEERS = os.environ.get("CTR_PEER_PATH", str(BENCH_DIR.parents[1] / "ctr-peers-lib"))


def test_fuxictr_peer_runs_on_the_encoded_split() -> None:
    if PEERS not in sys.path and Path(PEERS).is_dir():
        sys.path.append(PEERS)
    if importlib.util.find_spec("fuxictr") is None or not ZOO.is_dir():
        pytest.skip("FuxiCTR 2.3.10 or its model zoo is not installed (see benchmarks/ctr_fuxictr_peer.py)")
    peer = _load("ctr_fuxictr_peer")
    train, valid, test = planted_ctr(n_rows=1500)
    fmap = peer.feature_map(train, 8)
    assert fmap.num_fields == len(train.schema.fields)
    for name in ("deepfm", "dcn"):
        row = peer.run_peer(
            name, train, valid, test, zoo=ZOO, seed=0, embedding_dim=8, max_epochs=2, batch_size=128
        )
        assert row["epochs_run"] == 2 and row["best_epoch"] in (1, 2)
        assert 0.5 < row["auc"] <= 1.0 and math.isfinite(row["cal_logloss"]), (name, row)
