"""bench_review's request building: trainer settings in a row's fixed settings or grid reach the Trainer."""

from __future__ import annotations

from pathlib import Path

from attnrec.testing.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_review.py"


def test_grid_point_splits_into_model_and_trainer_settings() -> None:
    bench = load_script(BENCH)
    req = bench.model_request("safmr_tuned", {"lr": 0.002, "dropout": 0.7}, {})
    assert req == {"model": "safmr", "params": {"loss": "l2", "dropout": 0.7}, "trainer": {"lr": 0.002}}


def test_table3_row_runs_every_epoch() -> None:
    bench = load_script(BENCH)
    req = bench.model_request("safmr_table3", {}, {})
    assert req == {"model": "safmr", "params": {}, "trainer": {"patience": None}}


def test_rows_without_trainer_settings_send_none() -> None:
    bench = load_script(BENCH)
    assert bench.model_request("deepconn", {}, {}) == {"model": "deepconn", "params": {}}
    req = bench.model_request("hybrid_csa", {}, {"svd": {"reg": 0.6}})
    assert req["params"]["svd_reg"] == 0.6 and "trainer" not in req


def test_tuned_rows_share_one_grid() -> None:
    bench = load_script(BENCH)
    assert bench.MODELS["safmr_tuned"]["grid"] == bench.MODELS["deepconn_tuned"]["grid"]
    assert set(bench.MODELS["safmr_tuned"]["grid"]) & bench.TRAINER_KEYS == {"lr"}
