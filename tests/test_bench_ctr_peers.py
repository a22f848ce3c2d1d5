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

from attnrec.errors import ConfigError
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


def _deepctr_peer() -> Any:
    """benchmarks/ctr_deepctr_peer.py with DeepCTR-Torch on the path (``CTR_PEER_PATH``), or a skip."""
    if PEERS not in sys.path and Path(PEERS).is_dir():
        sys.path.append(PEERS)
    peer = _load("ctr_deepctr_peer")
    if peer.deepctr_version() is None:
        pytest.skip("deepctr-torch is not installed (see benchmarks/ctr_deepctr_peer.py)")
    return peer


def test_deepctr_dcn_is_built_as_attnrecs_dcn_v2() -> None:
    import torch

    peer = _deepctr_peer()
    train, _, _ = planted_ctr(n_rows=600)
    s = train.schema
    model = peer.build_model(
        "dcn", s, s.multi_len, seed=0, embedding_dim=8, hidden=[64, 32], dropout=0.1, cin_layers=[16, 16],
        embedding_reg=0.01,
    )  # fmt: skip
    dim = 8 * (len(s.categorical) + len(s.multi)) + len(s.numeric)
    # attnrec's number of full-rank ("matrix", DCN-M / v2) cross layers over the flattened input, beside the MLP
    from attnrec.models.ctr.dcn import DCNConfig

    assert tuple(model.crossnet.kernels.shape) == (DCNConfig().cross_layers, dim, dim)
    assert [fc.out_features for fc in model.dnn.linears] == [64, 32] and model.dnn.dropout.p == 0.1
    # the cross layer computes x_{l+1} = x0 * (W_l x_l + b_l) + x_l (a "vector" DCN-v1 layer would not)
    torch.manual_seed(1)
    with torch.no_grad():
        model.crossnet.bias.normal_()
        x0 = torch.randn(5, dim)
        x = x0
        for w, b in zip(model.crossnet.kernels, model.crossnet.bias, strict=True):
            x = x0 * (x @ w.T + b.squeeze(-1)) + x
        torch.testing.assert_close(model.crossnet(x0), x)
        # L2 only on the embedding and first-order tables (and, by DeepCTR-Torch's DCN, its output weight):
        # no cross-kernel or MLP penalty
        tables = [
            *model.embedding_dict.parameters(),
            *model.linear_model.parameters(),
            model.dnn_linear.weight,
        ]
        expected = 0.01 * sum(float((w**2).sum()) for w in tables)
        assert float(model.get_regularization_loss()) == pytest.approx(expected, rel=1e-5)


def test_deepctr_dcn_peer_runs_on_the_encoded_split() -> None:
    peer = _deepctr_peer()
    train, valid, test = planted_ctr(n_rows=1500)
    row = peer.run_peer(
        "dcn", train, valid, test, seed=0, embedding_dim=8, max_epochs=2, batch_size=128, lr=1e-2
    )
    assert row["epochs_run"] == 2 and row["best_epoch"] in (1, 2)
    assert 0.5 < row["auc"] <= 1.0 and math.isfinite(row["cal_logloss"]), row


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("dcn", {"cross_layers": "default"}),  # attnrec's DCNConfig default, not a constant of the peer's
        ("dcn:cross_layers=2", {"cross_layers": 2}),  # the depth --models dcn:cross_layers=2 runs
        ("deepfm", {}),
        ("xdeepfm", {}),
    ],
)
def test_the_dcn_peers_get_attnrecs_cross_depth(
    spec: str, want: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from attnrec.models.ctr.dcn import DCNConfig

    bench = _load("bench_ctr")
    calls: list[tuple[str, str, dict[str, Any]]] = []

    class FakePeer:
        def __init__(self, module: str) -> None:
            self.module = module

        def run_peer(self, name: str, *data: Any, **kwargs: Any) -> dict[str, Any]:
            calls.append((self.module, name, kwargs))
            return {}

    monkeypatch.setattr(bench, "peer_module", lambda module="ctr_deepctr_peer": FakePeer(module))
    # a changed attnrec default must reach the peers: a default no peer ever hard-coded
    from pydantic import Field

    class Deeper(DCNConfig):
        cross_layers: int = Field(5, ge=1)

    monkeypatch.setattr(bench, "DCNConfig", Deeper)
    expected = {k: 5 if v == "default" else v for k, v in want.items()}
    s = bench.BenchSettings(fuxictr_zoo="zoo")
    rows = [bench.run_deepctr(spec, (None, None, None), 0, s)]
    if spec.split(":")[0] in ("deepfm", "dcn"):
        rows.append(bench.run_fuxictr(spec, (None, None, None), 0, s))
    # each peer's row records the cross depth it ran with
    assert all({k: row[k] for k in ("cross_layers",) if k in row} == expected for row in rows)
    assert [c[0] for c in calls] == ["ctr_deepctr_peer", "ctr_fuxictr_peer"][: 2 if spec != "xdeepfm" else 1]
    for module, name, kwargs in calls:
        assert name == spec.split(":")[0], module
        assert {k: kwargs[k] for k in ("cross_layers",) if k in kwargs} == expected, module


def test_a_peer_spec_with_an_option_the_peer_lacks_is_refused() -> None:
    bench = _load("bench_ctr")
    with pytest.raises(SystemExit, match="cross_layers is not an option of the deepfm peer"):
        bench.peer_settings("deepfm:cross_layers=2")
    with pytest.raises(SystemExit, match="dropout is not an option of the dcn peer"):
        bench.peer_settings("dcn:dropout=0.3")
    with pytest.raises(ConfigError, match="cross_layers"):
        bench.peer_settings("dcn:cross_layers=0")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--peer", "deepfm:x=1"], "x is not an option of the deepfm peer"),
        (["--peer", "dcn:cross_layers=0"], "cross_layers"),
        (
            ["--peer", "", "--fuxictr-zoo", "zoo", "--fuxictr-peer", "dcn:dropout=0.3"],
            "dropout is not an option",
        ),
    ],
)
def test_main_refuses_a_bad_peer_spec_before_any_fit(
    argv: list[str], match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load("bench_ctr")

    def no_suite(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("run_suite reached with a bad peer spec")

    monkeypatch.setattr(bench, "run_suite", no_suite)
    with pytest.raises((SystemExit, ConfigError), match=match):
        bench.main(["--datasets", "criteo", "--models", "lr", *argv])
