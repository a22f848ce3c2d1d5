"""``attnrec demo``: MovieLens-100k end to end — fetch, one split, svd (ratings) and lightgcn (top-K), a metrics
table and one user's top-10 with titles; then, when the ``text`` extra is installed, hybrid_csa (SVD + title/genre
embeddings fused by attention) and a text query. Meant to finish in well under five minutes on two CPU cores."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from attnrec.experiments.run import PreparedData, RunConfig, run_experiment
from attnrec.models.base import Recommender
from attnrec.models.rating.hybrid_csa import HybridCSA

DEMO_SPLIT = {"method": "random", "ratios": (0.8, 0.1, 0.1), "seed": 2026}
DEMO_RUNS: dict[str, dict[str, Any]] = {
    "svd": {"model": "svd", "model_params": {}, "trainer": {}},
    "lightgcn": {"model": "lightgcn", "model_params": {}, "trainer": {"epochs": 40, "patience": 5}},
}
#: the text step: the residual form (see docs/models/hybrid_csa.md), the paper's trainer settings
DEMO_TEXT_RUN: dict[str, Any] = {"model": "hybrid_csa", "model_params": {"svd_residual": True}, "trainer": {}}
DEMO_QUERY = "a funny animated movie for kids"


def run_demo(
    out: Path,
    *,
    user: str,
    console: Console,
    progress: bool,
    print_frame: Callable[[Any, str], None],
    metrics_table: Callable[[str, dict[str, dict[str, float]]], Any],
) -> dict[str, Any]:
    """Run the demo's models and print their tables; returns each run's metrics record."""
    runs = dict(DEMO_RUNS)
    if importlib.util.find_spec("sentence_transformers") is not None:
        runs["hybrid_csa"] = DEMO_TEXT_RUN
    else:
        console.print(
            "[yellow]the text step (hybrid_csa) needs the text extra: pip install 'attnrec[text]'[/]"
        )
    results = {}
    for name, spec in runs.items():
        console.print(f"[bold]training {name} on ml-100k[/]")
        cfg = RunConfig.parse(
            # MovieLens' 1-5 stars, declared: every rating is checked and nothing is inferred
            {"data": "ml-100k", "split": DEMO_SPLIT, "rating_range": [1, 5], "out": out / name, **spec},
            source="demo",
        )
        results[name] = run_experiment(cfg, progress=progress)
    m_svd, m_gcn = results["svd"].metrics, results["lightgcn"].metrics
    console.print(
        metrics_table(
            "MovieLens-100k, test split (80/10/10, seed 2026)",
            {
                "svd (rating)": {k: m_svd["test"][k] for k in ("rmse", "mae")},
                **(
                    {
                        "hybrid_csa, svd_residual (rating)": {
                            k: results["hybrid_csa"].metrics["test"][k] for k in ("rmse", "mae")
                        }
                    }
                    if "hybrid_csa" in results
                    else {}
                ),
                "lightgcn (top-K)": {
                    k: v for k, v in m_gcn["test"].items() if k.split("@")[0] in ("recall", "ndcg")
                },
            },
        )
    )
    gcn = results["lightgcn"]
    assert isinstance(gcn.model, Recommender)
    recs = gcn.model.recommend([user], k=10)
    items = gcn.data.items if isinstance(gcn.data, PreparedData) else None
    if items is not None and "title" in items.columns:
        recs = recs.join(items.select("item_id", "title"), on="item_id", how="left", maintain_order="left")
    print_frame(
        recs.select([c for c in ("rank", "item_id", "title", "score") if c in recs.columns]),
        f"lightgcn top-10 for user {user} (items they rated are excluded)",
    )
    hybrid = results["hybrid_csa"].model if "hybrid_csa" in results else None
    if isinstance(hybrid, HybridCSA):
        by_text = hybrid.recommend_by_text(DEMO_QUERY, k=5)
        print_frame(
            by_text.select("item_id", "title", "predicted_rating", "share_user", "share_item", "share_text"),
            f"hybrid_csa for a new user asking {DEMO_QUERY!r}",
        )
    for name, r in results.items():
        t = r.metrics["timings"]
        console.print(
            f"{name}: fit {t['fit_s']:.1f}s, evaluation {t['eval_s']:.1f}s; record in {out / name / 'metrics.json'}",
            markup=False,  # a path is never markup
        )
    return {k: v.metrics for k, v in results.items()}
