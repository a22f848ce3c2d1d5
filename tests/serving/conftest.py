"""Bundles for the serving tests, each produced by a real run (``run_experiment``, what ``attnrec train`` calls) on
tiny generated files: svd (ratings, histories), bpr (top-K, histories), pop, lr (CTR rows) and hybrid_csa (text
queries, attention shares; the packaged all-MiniLM-L6-v2). Built once per session (about 15 s on 2 cores).

Skipped, with the reason shown, when the ``serve`` extra (fastapi, httpx, prometheus-client) is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from attnrec.experiments.run import RunConfig, run_experiment

SERVE_EXTRA = [
    m for m in ("fastapi", "httpx", "prometheus_client", "uvicorn") if importlib.util.find_spec(m) is None
]
needs_serve = pytest.mark.skipif(
    bool(SERVE_EXTRA),
    reason=f"the serve extra is not installed (missing {SERVE_EXTRA}): pip install 'attnrec[serve]'",
)
FAST = {"progress": False, "device": "cpu"}


def write_movielens(d: Path) -> Path:
    """A MovieLens-100k folder: 60 users x 40 items, two planted taste groups (odd/even ids), titles in u.item
    ("Comedy film 3" for odd items, "Space drama 4" for even ones)."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rows = []
    for u in range(1, 61):
        for i in range(1, 41):
            if rng.random() < 0.4:
                r = 5 if (u % 2) == (i % 2) else 1
                rows.append(f"{u}\t{i}\t{r}\t{880000000 + len(rows)}")
    (d / "u.data").write_text("\n".join(rows) + "\n")
    genres = "|".join(["0"] * 19)
    items = [
        f"{i}|{'Comedy film' if i % 2 else 'Space drama'} {i} (1995)|01-Jan-1995||http://x/{i}|{genres}"
        for i in range(1, 41)
    ]
    (d / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    return d


def write_ctr_csv(d: Path) -> dict[str, Path]:
    """CTR CSV parts (``label,site,hour``): clicks planted on site in {a, b}."""
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part, n in (("train", 800), ("valid", 200), ("test", 200)):
        sites = rng.choice(list("abcdef"), n)
        labels = (rng.random(n) < np.where(np.isin(sites, ["a", "b"]), 0.9, 0.1)).astype(int)
        hours = rng.integers(0, 24, n)
        lines = ["label,site,hour"] + [f"{y},{s},{h}" for y, s, h in zip(labels, sites, hours, strict=True)]
        paths[part] = d / f"{part}.csv"
        paths[part].write_text("\n".join(lines) + "\n")
    return paths


def train(out: Path, **cfg: object) -> Path:
    run_experiment(RunConfig.parse({"out": str(out), **cfg}), progress=False)
    return out / "model"


@pytest.fixture(scope="session")
def serve_bundles(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> dict[str, Path]:
    """name -> bundle folder (RUN/model, with RUN/metrics.json beside it)."""
    root = tmp_path_factory.mktemp("serve-bundles")
    # the text encoder's embedding cache goes to a temporary ATTNREC_HOME, not the user's
    mp = pytest.MonkeyPatch()
    mp.setenv("ATTNREC_HOME", str(root / "home"))
    request.addfinalizer(mp.undo)
    ml = str(write_movielens(root / "ml"))
    ctr = write_ctr_csv(root / "ctr")
    return {
        "svd": train(root / "svd", model="svd", data=ml, model_params={"factors": 4, "iterations": 4}),
        "bpr": train(
            root / "bpr",
            model="bpr",
            data=ml,
            model_params={"dim": 8},
            trainer={**FAST, "epochs": 5, "lr": 0.05},
        ),
        "pop": train(root / "pop", model="pop", data=ml),
        "lr": train(
            root / "lr",
            model="lr",
            **{k: str(v) for k, v in ctr.items()},
            ctr={"format": "csv"},
            trainer={**FAST, "epochs": 3, "lr": 0.05, "batch_size": 64},
        ),
        "hybrid": train(
            root / "hybrid",
            model="hybrid_csa",
            data=ml,
            model_params={"svd_factors": 8, "svd_iterations": 4, "d_model": 16, "heads": 2, "mlp_hidden": 8},
            trainer={**FAST, "epochs": 2, "lr": 0.01, "batch_size": 64},
        ),
    }
