"""benchmarks/bench_scaling_e2e.py: the per-stage measurement (one child process each) and the growth exponents."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))
import bench_scaling_e2e as e2e  # noqa: E402


def test_growth_is_the_log_log_slope() -> None:
    assert e2e.growth([(10, 3 * 10**2), (100, 3 * 100**2), (1000, 3 * 1000**2)]) == 2.0
    assert e2e.growth([(1e5, 7.0), (1e6, 70.0)]) == 1.0
    assert e2e.growth([(5, 1.0)]) is None
    assert e2e.growth([(5, 1.0), (5, 2.0)]) is None


def test_run_stage_measures_the_child_alone(tmp_path: Path) -> None:
    # the child holds ~300 MB and burns CPU; this process's own memory must not leak into the child's peak
    code = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); s = sum(range(3_000_000))"
    rec = e2e.run_stage([sys.executable, "-c", code], tmp_path / "log")
    assert 300 < rec["peak_rss_mb"] < 600
    assert rec["cpu_s"] > 0 and rec["wall_s"] >= rec["cpu_s"] * 0.5
    small = e2e.run_stage([sys.executable, "-c", "pass"], tmp_path / "log2")
    assert small["peak_rss_mb"] < 100


def test_run_stage_failure_names_the_command_and_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)exited 3.*boom"):
        e2e.run_stage([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "log")


def test_exponents_per_stage() -> None:
    def run(n: int, cpu: float) -> dict[str, object]:
        counts = {"rows_read": n, "rows_kept": n, "users": n // 10, "items": n // 30}
        stage = {"cpu_s": cpu, "wall_s": cpu, "peak_rss_mb": 500.0, "counts": counts}
        return {"stages": {"ingest": stage, "eval_lightgcn": {**stage, "cpu_s": cpu * cpu}}}

    runs = {"0.1": run(1000, 2.0), "1": run(10_000, 20.0)}
    got = e2e.exponents(runs)
    assert got["ingest"]["cpu_vs_interactions"] == 1.0
    assert got["ingest"]["rss_vs_interactions"] == 0.0
    assert got["eval_lightgcn"]["cpu_vs_interactions"] == 2.0
    assert got["eval_lightgcn"]["cpu_vs_users_x_items"] == 1.0  # users × items grew 100×, CPU 100×
    assert "split" not in got
