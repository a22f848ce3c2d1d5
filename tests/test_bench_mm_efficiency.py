"""benchmarks/bench_mm_efficiency.py: the generated Sports-shaped set and the CPU-step measurement, at a tiny scale."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnrec.testing.scripts import load_script

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> Any:
    return load_script(BENCH_DIR / f"{name}.py")


bench = _load("bench_mm_efficiency")


def test_sports_like_has_the_shapes_and_feature_kinds_asked_for() -> None:
    train, feats = bench.sports_like(0, 0.01)
    assert (train.n_users, train.n_items) == (355, 183)
    pairs = train.users * train.n_items + train.items
    assert len(np.unique(pairs)) == len(train)  # a pair once
    # 80 % of at most 2,963 distinct pairs (5 per user before pairs repeat)
    assert 0.6 * 2963 < len(train) <= 2963
    assert feats["image"].shape == (183, 4096) and feats["text"].shape == (183, 384)
    assert feats["image"].dtype == np.float32 and bool((feats["image"] >= 0).all())
    np.testing.assert_allclose(np.linalg.norm(feats["text"], axis=1), 1.0, rtol=1e-5)
    again, _ = bench.sports_like(0, 0.01)
    assert again.frame.equals(train.frame)  # deterministic under the seed


@pytest.mark.slow  # builds and steps two models on the generated set: ~5 s CPU, more under load
def test_cpu_steps_times_each_model_and_variant(tmp_path: Path) -> None:
    args = argparse.Namespace(scale=0.01, seed=0, graph_dir=str(tmp_path), cpu_steps=1, profile=2)
    out = bench.cpu_steps(args, ["freedom", "mrcsaf:selector_only"])
    for name in ("freedom", "mrcsaf:selector_only"):
        assert len(out[name]["cpu_seconds_per_step"]) == 1
        assert out[name]["cpu_seconds_per_step_median"] > 0
        ops = out["profile"][name]["ops"]  # --profile 2: the step's operators, costliest first
        assert 0 < len(ops) <= 15 and all(op["self_cpu_s_per_step"] >= 0 for op in ops)
        assert [op["self_cpu_s_per_step"] for op in ops] == sorted(
            (op["self_cpu_s_per_step"] for op in ops), reverse=True
        )
        assert any(op["op"].startswith("aten::") for op in ops)
        assert len({op["op"] for op in ops}) == len(ops)  # summed per operator
        assert all("input_shapes" in op for op in out["profile"][name]["by_shape"])
    train, _ = bench.sports_like(0, 0.01)
    assert out["batches_per_epoch"] == -(-len(train) // 2048)
    assert (tmp_path / "mm_eff_graphs_seed0_scale0.01.pt").exists()  # the graphs are cached for the next fit


def test_model_spec_reads_a_variant_and_options() -> None:
    assert bench.model_spec("freedom") == ("freedom", {})
    assert bench.model_spec("mrcsaf:selector_only") == ("mrcsaf", {"variant": "selector_only"})
    assert bench.model_spec("mrcsaf:csa_only+fusion_scope=batch") == (
        "mrcsaf",
        {"variant": "csa_only", "fusion_scope": "batch"},
    )
