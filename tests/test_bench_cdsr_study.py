"""benchmarks/cdsr_study.py and cdsr_report.py: the grid, parameter matching, record parsing, resumability,
tables, correlations and plots (on made-up records), and ABXI's per-epoch lines."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> Any:
    if name not in sys.modules:
        sys.path.insert(0, str(BENCH_DIR))
        spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


study = _load("cdsr_study")
rep = _load("cdsr_report")


def test_grid_is_the_issues_grid() -> None:
    names = [v.name for v in study.grid(3)]
    assert names[:3] == ["sasrec-A", "sasrec-B", "sasrec-mixed"]
    gca = [v for v in study.grid(3) if v.family == "gca"]
    assert len(gca) == 4 * 2 * 2  # positions x activation x LayerNorm
    assert {tuple(v.params["positions"]) for v in gca} == {(0,), (1,), (2,), (0, 1, 2)}
    assert "gca[0,1,2]-tanh-noln" in names
    # a 2-block backbone has no block 2: positions beyond it are left out
    assert all(max(v.params["positions"]) < 2 for v in study.grid(2) if v.family == "gca")


def test_matched_variant_picks_the_closest_width() -> None:
    # a made-up count: 1000 per unit of ffn_dim, 50,000 per GCA position
    def counter(model: str, params: dict[str, Any], n_items: int, names: tuple[str, ...]) -> int:
        return (
            100_000 + 1000 * int(params.get("ffn_dim") or params["dim"]) + 50_000 * len(params["positions"])
        )

    target = study.Variant(
        "gca[0,1,2]-sigmoid-ln", "gca", "gca", {"positions": [0, 1, 2], "gate_act": "sigmoid"}
    )
    mv, got, goal = study.matched_variant(target, {"dim": 64}, 10, ("A", "B"), counter)
    assert goal == 100_000 + 64_000 + 150_000
    assert mv.params == {"positions": [], "ffn_dim": 64 + 150}
    assert got == goal and mv.name == "matched-gca[0,1,2]" and mv.family == "matched"


def test_matched_variant_refuses_beyond_two_percent() -> None:
    # widening moves the count in steps of 1M: the closest baseline (1.0M) is 4.8% below the target (1.05M)
    def counter(model: str, params: dict[str, Any], n_items: int, names: tuple[str, ...]) -> int:
        width = int(params.get("ffn_dim") or params["dim"])
        return 1_000_000 + 1_000_000 * (width // 1000) + 50_000 * len(params["positions"])

    target = study.Variant("gca[1]-sigmoid-ln", "gca", "gca", {"positions": [1]})
    with pytest.raises(ValueError, match="beyond 2%"):
        study.matched_variant(target, {"dim": 64}, 10, ("A", "B"), counter)


def test_run_key_changes_with_any_setting() -> None:
    v = study.Variant("sasrec-A", "sasrec", "sasrec", {"domain": "A"})
    k = study.run_key(v, 0, {"dim": 64}, {"epochs": 5}, "d")
    assert k == study.run_key(v, 0, {"dim": 64}, {"epochs": 5}, "d")
    assert k.startswith("sasrec-A|s0|")
    others = {
        study.run_key(v, 1, {"dim": 64}, {"epochs": 5}, "d"),
        study.run_key(v, 0, {"dim": 32}, {"epochs": 5}, "d"),
        study.run_key(v, 0, {"dim": 64}, {"epochs": 6}, "d"),
        study.run_key(v, 0, {"dim": 64}, {"epochs": 5}, "e"),
    }
    assert k not in others and len(others) == 4


def test_record_parsing() -> None:
    flat = {"A/ndcg@10": 0.2, "A/hit@10": 0.3, "B/mrr": 0.1, "ndcg@10": 0.15, "A/auc": 0.9}
    assert study.domain_metrics(flat) == {"A": {"ndcg@10": 0.2, "hr@10": 0.3, "auc": 0.9}, "B": {"mrr": 0.1}}
    modules, cos = study.cos_by_domain(
        {"abs_cos[A<-B@0]": 0.2, "abs_cos[A<-B@2]": 0.4, "abs_cos[B<-A@0]": 0.1}
    )
    assert modules == {"A<-B@0": 0.2, "A<-B@2": 0.4, "B<-A@0": 0.1}
    assert cos == pytest.approx({"A": 0.3, "B": 0.1})
    curve = study.curve_of(
        [
            {"epoch": 1, "seconds": 2.0, "valid_A/ndcg@10": 0.1, "valid_B/ndcg@10": 0.05},
            {"epoch": 2, "seconds": 3.0, "valid_A/ndcg@10": 0.2, "valid_B/ndcg@10": 0.04},
        ]
    )
    assert curve[1] == {"epoch": 2, "train_s_cum": 5.0, "valid": {"A": 0.2, "B": 0.04}}


def _records() -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate([0.1, 0.2, 0.3, 0.4, 0.5]):
        out.append(
            {
                "variant": f"gca-v{i % 2}",
                "family": "gca",
                "seed": i,
                "n_params": 1000 + i,
                "test": {"A": {"ndcg@10": 0.5 - c, "hr@10": 0.6, "mrr": 0.3, "auc": 0.9}},
                "cos": {"A": c},
                "s_per_epoch": 2.0,
                "curve": [{"epoch": 1, "train_s_cum": 2.0, "valid": {"A": 0.1}}],
            }
        )
    return out


def test_correlation_and_table() -> None:
    c = rep.correlation([1, 2, 3, 4], [2, 4, 6, 8.5])
    assert c["n"] == 4 and c["spearman"] == pytest.approx(1.0) and 0.99 < c["pearson"] <= 1.0
    assert math.isnan(rep.correlation([1, 2], [1, 2])["pearson"])  # below 3 pairs
    assert rep.correlation([1, np.nan, 3, 4, 5], [1, 2, 3, 4, 5])["n"] == 4
    table = rep.domain_table(_records(), "A")
    # gca-v0 = seeds 0, 2, 4: NDCG 0.4, 0.2, 0.0 -> mean 0.2, sample std 0.2
    assert "| gca-v0 | 3 | 0.6000 ± 0.0000 | 0.2000 ± 0.2000 |" in table
    assert "| gca-v1 | 2 |" in table


def test_report_written_with_plots_and_abxi(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "study"
    out.mkdir()
    with (out / "results.jsonl").open("w") as f:
        for r in _records():
            f.write(json.dumps(r) + "\n")
        f.write('{"variant": "torn')  # an interrupted write: skipped
    metrics = {"hr@1": 0.1, "hr@5": 0.2, "hr@10": 0.3, "ndcg@10": 0.15, "mrr": 0.12, "auc": 0.8, "n": 3}
    lines = [{"kind": "header", "commit": "abc", "command": "x", "n_params": 9, "threads": 1}]
    for e, sel in ((1, False), (2, True), (3, False)):
        ep = {d: {**metrics, "ndcg@10": 0.1 * e} for d in ("A", "B")}
        lines.append(
            {
                "kind": "epoch",
                "epoch": e,
                "train_s": 10.0,
                "loadavg_before": [1, 1, 1],
                "abxi_selected": sel,
                "val": ep,
                "test": ep,
            }
        )
    abxi_path = tmp_path / "abxi.jsonl"
    abxi_path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    summary = rep.abxi_summary(rep.read_jsonl(abxi_path))
    assert summary["selected_epoch"] == 2 and summary["test"]["A"]["ndcg@10"] == pytest.approx(0.2)
    assert rep.value_at(summary["curve"], "test", "A", seconds=25.0) == pytest.approx(0.2)  # 2 epochs in 25 s
    assert rep.value_at(summary["curve"], "test", "A", epoch=1) == pytest.approx(0.1)
    assert rep.value_at(summary["curve"], "test", "A", seconds=5.0) is None
    text = study.write_report(out, abxi_path)
    assert "Pearson -1.000" in text and "Spearman -1.000" in text  # NDCG = 0.5 - |cos| exactly
    assert "ABXI peer (3 ep, ABXI-selected ep 2)" in text
    for png in ("cos_vs_ndcg.png", "ndcg_vs_params.png", "curves.png"):
        assert (out / png).stat().st_size > 1000
