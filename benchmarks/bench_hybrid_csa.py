"""hybrid_csa benchmarks (issue 4): rating accuracy with ablations, Amazon leakage measurement, cold start, latency.

    .venv/bin/python benchmarks/bench_hybrid_csa.py --part movielens --seeds 0,1,2
    .venv/bin/python benchmarks/bench_hybrid_csa.py --part amazon --seeds 0,1,2
    .venv/bin/python benchmarks/bench_hybrid_csa.py --part coldstart
    (latency: benchmarks/bench_hybrid_latency.py)

* movielens: ML-100k, one random 80/10/10 split (seed 2026) for every model; item text = "Title (year). Genres: ...";
  svd (50 factors), text-only, concat-MLP and hybrid_csa (attention); test RMSE mean ± std over model seeds.
* amazon: Amazon 2014 Musical Instruments 5-core; global mean, Surprise SVD (same exported split), svd, hybrid_csa
  with leakage-free text (item text from *training* reviews), and, labelled leaky, the paper-literal mode (each row's
  own review as the text token).
* coldstart: ML-100k with 10% of items held out entirely (their ratings only in test); their items get SVD vectors
  from text; RMSE on their test ratings vs user-mean and global-mean baselines.
Embeddings are cached under $ATTNREC_HOME/embeddings, so a second run encodes nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnrec.data.registry import load_dataset
from attnrec.data.splits import export_split, random_split
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.rating.svd import SVD
from attnrec.training.trainer import TrainerConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AMAZON = SHARED / "amazon2014-musical-instruments-5core"
SPLIT_SEED = 2026
TRAINER = {
    "epochs": 15,
    "patience": 3,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "batch_size": 64,
    "lr_schedule": "cosine_warm_restarts",
    "restart_period": 5,
    "progress": False,
}


def encode_split(split):
    uv = Vocabulary.from_ids(split.train["user_id"], kind="user")
    iv = Vocabulary.from_ids(split.train["item_id"], kind="item")
    tr, _ = Interactions.encode(split.train, uv, iv)
    va, _ = Interactions.encode(split.valid, uv, iv, unknown="drop")
    te, _ = Interactions.encode(split.test, uv, iv, unknown="drop")
    return tr, va, te


def mean_std(xs):
    return float(np.mean(xs)), float(np.std(xs))


def hybrid(**kw):
    from attnrec.models.rating.hybrid_csa import HybridCSA

    return HybridCSA(**kw)


def part_movielens(seeds, epochs):
    ds = load_dataset("ml-100k", progress=False)
    split = random_split(ds, (0.8, 0.1, 0.1), seed=2026)
    tr, va, te = encode_split(split)
    res = {}
    svd_rmse = []
    for s in seeds:
        m = SVD(factors=50, seed=s)
        m.fit(tr, va)
        svd_rmse.append(m.evaluate(te)["rmse"])
    res["svd (50 factors)"] = svd_rmse
    for fusion in ("text_only", "concat_mlp", "attention"):
        vals = []
        for s in seeds:
            m = hybrid(fusion=fusion, seed=s)
            m.fit(tr, va, trainer=TrainerConfig(**{**TRAINER, "epochs": epochs}), items=ds.items)
            vals.append(m.evaluate(te)["rmse"])
            print(json.dumps({"part": "movielens", "model": fusion, "seed": s, "rmse": vals[-1]}), flush=True)
        res[f"hybrid_csa fusion={fusion}"] = vals
    return {k: {"rmse_mean": mean_std(v)[0], "rmse_std": mean_std(v)[1], "runs": v} for k, v in res.items()}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std (population std over the runs) of test RMSE / MAE and the median fit seconds."""
    out: dict[str, Any] = {"n": len(runs)}
    for key in ("rmse", "mae"):
        out[f"{key}_mean"], out[f"{key}_std"] = mean_std([r[key] for r in runs])
    fit = [r["fit_s"] for r in runs if r.get("fit_s") is not None]
    out["fit_s_median"] = statistics.median(fit) if fit else None
    out["runs"] = runs
    return out


def errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "n": int(len(err))}


def timed_fit(model: Any, *args: Any, **kw: Any) -> float:
    t0 = time.perf_counter()
    model.fit(*args, **kw)
    return time.perf_counter() - t0


def emit(part: str, model: str, seed: int | None, run: dict[str, Any]) -> None:
    print(json.dumps({"part": part, "model": model, "seed": seed, **run}), flush=True)


class _RatingRows:
    """What Surprise's ``Dataset.load_from_df`` reads from a pandas frame (``itertuples``), over a Polars frame
    (pandas is not a dependency)."""

    def __init__(self, df: Any) -> None:
        self.df = df.select("user_id", "item_id", "rating")

    def itertuples(self, index: bool = False) -> Any:
        return self.df.iter_rows()


def surprise_runs(split, seeds) -> list[dict[str, Any]]:
    """Surprise SVD (default parameters) trained on the exported ``train.csv``, tested on ``test.csv``."""
    import surprise

    from attnrec.data.splits import read_interactions_file

    with tempfile.TemporaryDirectory(prefix="amazon-split-") as d:
        export_split(split, d)
        train_df = read_interactions_file(Path(d) / "train.csv")
        test_df = read_interactions_file(Path(d) / "test.csv")
    reader = surprise.Reader(rating_scale=(1, 5))
    trainset = surprise.Dataset.load_from_df(_RatingRows(train_df), reader).build_full_trainset()
    testset = list(_RatingRows(test_df).df.iter_rows())
    runs = []
    for s in seeds:
        algo = surprise.SVD(random_state=s)
        t0 = time.perf_counter()
        algo.fit(trainset)
        fit_s = time.perf_counter() - t0
        preds = algo.test(testset)
        runs.append({"seed": s, **errors([p.est for p in preds], [p.r_ui for p in preds]), "fit_s": fit_s})
        emit("amazon", "surprise_svd", s, runs[-1])
    return runs


def part_amazon(seeds, epochs):
    if not AMAZON.is_dir():
        print(f"skipping --part amazon: {AMAZON} not found", file=sys.stderr)
        return {"skipped": f"{AMAZON} not found"}
    ds = load_dataset(AMAZON, progress=False)
    split = random_split(ds, (0.8, 0.1, 0.1), seed=SPLIT_SEED)
    tr, va, te = encode_split(split)
    trainer = TrainerConfig(**{**TRAINER, "epochs": epochs})
    res: dict[str, Any] = {
        "data": {
            "dataset": ds.name,
            "split_seed": SPLIT_SEED,
            "train": len(tr),
            "valid": len(va),
            "test": len(te),
            "users": tr.n_users,
            "items": tr.n_items,
        }
    }
    mu = float(tr.ratings.mean())
    gm = {"seed": None, **errors(np.full(len(te), mu), te.ratings), "fit_s": None}
    emit("amazon", "global_mean", None, gm)
    res["global mean (train)"] = summarize([gm])
    res["Surprise SVD (defaults)"] = summarize(surprise_runs(split, seeds))

    runs = []
    for s in seeds:
        m = SVD(factors=50, seed=s)
        fit_s = timed_fit(m, tr, va)
        runs.append({"seed": s, **m.evaluate(te), "fit_s": fit_s})
        emit("amazon", "svd", s, runs[-1])
    res["attnrec svd (50 factors)"] = summarize(runs)

    variants: list[tuple[str, dict[str, Any], list[int]]] = [
        ("hybrid_csa (item text from training reviews)", {}, seeds),
        ('hybrid_csa text_source="item+user"', {"text_source": "item+user"}, seeds),
        ("hybrid_csa freeze_svd=False (fine-tuned SVD)", {"freeze_svd": False}, seeds[:1]),
        ("LEAKY hybrid_csa target_review_leakage=True", {"target_review_leakage": True}, seeds),
    ]
    for label, kw, model_seeds in variants:
        runs = []
        for s in model_seeds:
            m = hybrid(seed=s, **kw)
            report = m.fit(tr, va, trainer=trainer, items=None)
            metrics = m.evaluate(te)
            runs.append(
                {
                    "seed": s,
                    "rmse": metrics["rmse"],
                    "mae": metrics["mae"],
                    "n": int(metrics["n"]),
                    "fit_s": report.seconds,
                    "best_epoch": report.best_epoch,
                    "epochs_run": report.epochs_run,
                    "valid_rmse": report.best_valid.get("rmse"),
                    **({"leaky": True} if metrics.get("leaky") else {}),
                }
            )
            emit("amazon", label, s, runs[-1])
        res[label] = summarize(runs)
    return res


def part_coldstart(seeds, epochs):
    ds = load_dataset("ml-100k", progress=False)
    inter = ds.interactions
    all_items = np.sort(inter["item_id"].unique().to_numpy())
    rng = np.random.default_rng(SPLIT_SEED)
    cold = set(rng.choice(all_items, size=round(0.1 * len(all_items)), replace=False).tolist())
    is_cold = inter["item_id"].is_in(list(cold))
    split = random_split(inter.filter(~is_cold), (0.8, 0.1, 0.1), seed=SPLIT_SEED)
    tr, va, te = encode_split(split)
    cold_rows = inter.filter(is_cold)
    known_user = cold_rows["user_id"].is_in(split.train["user_id"].unique().to_list())
    cold_rows = cold_rows.filter(known_user)
    truth = cold_rows["rating"].to_numpy().astype(np.float64)
    users = tr.user_vocab.lookup(cold_rows["user_id"])
    res: dict[str, Any] = {
        "data": {
            "split_seed": SPLIT_SEED,
            "cold_items": len(cold),
            "cold_test_ratings": int(is_cold.sum()),
            "cold_ratings_dropped_unknown_user": int((~known_user).sum()),
            "cold_ratings_scored": len(truth),
            "train": len(tr),
            "valid": len(va),
            "warm_test": len(te),
        }
    }

    mu = float(tr.ratings.mean())
    gm = {"seed": None, **errors(np.full(len(truth), mu), truth), "fit_s": None}
    emit("coldstart", "global_mean", None, gm)
    res["global mean (train)"] = summarize([gm])
    sums = np.bincount(tr.users, weights=tr.ratings, minlength=tr.n_users)
    counts = np.bincount(tr.users, minlength=tr.n_users)
    um = {"seed": None, **errors((sums / counts)[users], truth), "fit_s": None}
    emit("coldstart", "user_mean", None, um)
    res["user mean (train)"] = summarize([um])

    runs = []
    for s in seeds:
        m = SVD(factors=50, seed=s)
        fit_s = timed_fit(m, tr, va)
        pred = np.clip(m.global_mean + m.user_biases[users], *tr_range(tr))
        runs.append({"seed": s, **errors(pred, truth), "fit_s": fit_s})
        emit("coldstart", "svd mu+b_u", s, runs[-1])
    res["svd μ + b_u (cold item: no factor, b_i = 0)"] = summarize(runs)

    trainer = TrainerConfig(**{**TRAINER, "epochs": epochs})
    cold_meta = ds.items.filter(ds.items["item_id"].is_in(list(cold)))
    cold_runs, warm_runs = [], []
    for s in seeds:
        m = hybrid(seed=s)
        report = m.fit(tr, va, trainer=trainer, items=ds.items)
        warm = m.evaluate(te)
        added = m.add_items_from_frame(cold_meta)
        cold_data, dropped = Interactions.encode(cold_rows, m.user_vocab, m.item_vocab, unknown="drop")
        assert dropped == 0 and len(added) == len(cold), (dropped, len(added))
        metrics = m.evaluate(cold_data)
        extra = {"fit_s": report.seconds, "best_epoch": report.best_epoch, "epochs_run": report.epochs_run}
        cold_runs.append(
            {"seed": s, "rmse": metrics["rmse"], "mae": metrics["mae"], "n": int(metrics["n"]), **extra}
        )
        warm_runs.append({"seed": s, "rmse": warm["rmse"], "mae": warm["mae"], "n": int(warm["n"]), **extra})
        emit("coldstart", "hybrid_csa cold", s, cold_runs[-1])
        emit("coldstart", "hybrid_csa warm", s, warm_runs[-1])
    res["hybrid_csa (cold items via add_items_from_frame)"] = summarize(cold_runs)
    res["hybrid_csa warm test (reference)"] = summarize(warm_runs)
    return res


def tr_range(tr: Interactions) -> tuple[float, float]:
    return float(tr.ratings.min()), float(tr.ratings.max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", required=True, choices=["movielens", "amazon", "coldstart"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = {"movielens": part_movielens, "amazon": part_amazon, "coldstart": part_coldstart}
    fn = parts[args.part]
    result = fn(seeds, args.epochs)
    record = {
        "bench": f"hybrid_csa/{args.part}",
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "result": result,
    }
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
