"""``attnrec demo``: MovieLens-100k end to end — fetch, one split, svd (ratings) and lightgcn (top-K), a metrics
table and one user's top-10 with titles. Meant to finish in well under five minutes on two CPU cores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from attnrec.experiments.run import RunConfig, run_experiment

DEMO_SPLIT = {"method": "random", "ratios": (0.8, 0.1, 0.1), "seed": 2026}
DEMO_RUNS: dict[str, dict[str, Any]] = {
    "svd": {"model": "svd", "model_params": {}, "trainer": {}},
    "lightgcn": {"model": "lightgcn", "model_params": {}, "trainer": {"epochs": 40, "patience": 5}},
}


def run_demo(
    out: Path,
    *,
    user: str,
    console: Console,
    progress: bool,
    print_frame: Callable[[Any, str], None],
    metrics_table: Callable[[str, dict[str, dict[str, float]]], Any],
) -> dict[str, Any]:
    """Run the demo's two models and print their tables; returns each run's metrics record."""
    results = {}
    for name, spec in DEMO_RUNS.items():
        console.print(f"[bold]training {name} on ml-100k[/]")
        cfg = RunConfig.parse(
            {"data": "ml-100k", "split": DEMO_SPLIT, "out": out / name, **spec}, source="demo"
        )
        results[name] = run_experiment(cfg, progress=progress)
    m_svd, m_gcn = results["svd"].metrics, results["lightgcn"].metrics
    console.print(
        metrics_table(
            "MovieLens-100k, test split (80/10/10, seed 2026)",
            {
                "svd (rating)": {k: m_svd["test"][k] for k in ("rmse", "mae")},
                "lightgcn (top-K)": {
                    k: v for k, v in m_gcn["test"].items() if k.split("@")[0] in ("recall", "ndcg")
                },
            },
        )
    )
    gcn = results["lightgcn"]
    recs = gcn.model.recommend([user], k=10)
    ds = gcn.data.dataset
    if ds is not None and ds.items is not None and "title" in ds.items.columns:
        recs = recs.join(ds.items.select("item_id", "title"), on="item_id", how="left", maintain_order="left")
    print_frame(
        recs.select([c for c in ("rank", "item_id", "title", "score") if c in recs.columns]),
        f"lightgcn top-10 for user {user} (items they rated are excluded)",
    )
    for name, r in results.items():
        t = r.metrics["timings"]
        console.print(
            f"{name}: fit {t['fit_s']:.1f}s, evaluation {t['eval_s']:.1f}s; record in {out / name / 'metrics.json'}"
        )
    return {k: v.metrics for k, v in results.items()}
