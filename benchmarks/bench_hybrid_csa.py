"""hybrid_csa benchmarks (issue 4): rating accuracy with ablations, Amazon leakage measurement, cold start, latency.

    .venv/bin/python benchmarks/bench_hybrid_csa.py --part movielens --seeds 0,1,2
    .venv/bin/python benchmarks/bench_hybrid_csa.py --part amazon --seeds 0,1,2
    .venv/bin/python benchmarks/bench_hybrid_csa.py --part coldstart
    .venv/bin/python benchmarks/bench_hybrid_csa.py --part select --seeds 0 \
        --variants "svd_residual=true svd_crossfit=10; svd_residual=true svd_crossfit=10 trainer.restart_period=10"
    (latency: benchmarks/bench_hybrid_latency.py)

* movielens: ML-100k, one random 80/10/10 split (seed 2026, or ``--split-seed``) for every model; item text = "Title (year). Genres: ...";
  svd (50 factors), text-only, concat-MLP and hybrid_csa (attention); test RMSE mean ± std over model seeds.
* amazon: Amazon 2014 Musical Instruments 5-core; global mean, Surprise SVD (same exported split), svd, hybrid_csa
  with leakage-free text (item text from *training* reviews), and, labelled leaky, the paper-literal mode (each row's
  own review as the text token).
* select: ML-100k, the movielens split; fits each ``--variants`` entry (``;``-separated, each ``key=value`` settings
  of HybridCSAConfig or ``trainer.key=value``) and reports its best *validation* RMSE only: the test split is never
  scored, so settings the paper leaves open are chosen without looking at test.
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
from _compat import evaluate, side
from _record import write_record

from attnrec.data.registry import load_dataset
from attnrec.data.splits import export_split, random_split
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.rating.svd import SVD
from attnrec.training.trainer import TrainerConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AMAZON = SHARED / "amazon2014-musical-instruments-5core"
SPLIT_SEED = 2026
ONLY: list[str] = []  # --only
VARIANTS: list[str] = []  # --variants (part select)
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


def svd_runs(part, label, seeds, tr, va, te, **kw):
    """svd(factors=50, **kw) fitted once per seed; test metrics and fit seconds per run (and the models)."""
    runs, models = [], []
    for s in seeds:
        m = SVD(factors=50, seed=s, **kw)
        fit_s = timed_fit(m, tr, va)
        runs.append({"seed": s, **evaluate(m, te), "fit_s": fit_s, "valid_rmse": evaluate(m, va)["rmse"]})
        models.append(m)
        emit(part, label, s, runs[-1])
    return runs, models


def fit_hybrid_runs(part, label, kw, seeds, tr, va, te, trainer, items):
    """Fit hybrid_csa(**kw) once per seed; test RMSE / MAE, fit seconds, best epoch per run (and the models)."""
    runs, models = [], []
    for s in seeds:
        m = hybrid(seed=s, **kw)
        report = m.fit(tr, va, trainer=trainer, **side(items))
        metrics = evaluate(m, te)
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
        models.append(m)
        emit(part, label, s, runs[-1])
    return runs, models


def attention_by_history(models, te, tr) -> list[dict[str, Any]]:
    """attention_report per model, averaged over the models (seeds) bucket by bucket."""
    frames = [m.attention_report(te, tr) for m in models]
    cols = [c for c in frames[0].columns if c.startswith("share_") or c == "rmse"]
    out = []
    for row in range(frames[0].height):
        rec: dict[str, Any] = {"bucket": frames[0]["bucket"][row], "n": int(frames[0]["n"][row])}
        for c in cols:
            rec[c] = float(np.mean([f[c][row] for f in frames]))
        out.append(rec)
    return out


def part_movielens(seeds, epochs):
    ds = load_dataset("ml-100k", progress=False)
    split = random_split(ds, (0.8, 0.1, 0.1), seed=SPLIT_SEED)
    tr, va, te = encode_split(split)
    trainer = TrainerConfig(**{**TRAINER, "epochs": epochs})
    res: dict[str, Any] = {
        "data": {"split_seed": SPLIT_SEED, "train": len(tr), "valid": len(va), "test": len(te)},
    }
    res["svd (50 factors)"] = summarize(svd_runs("movielens", "svd", seeds, tr, va, te)[0])
    variants: list[tuple[str, dict[str, Any]]] = [
        ("text-only (no u/i tokens)", {"fusion": "text_only"}),
        ("concat-MLP (no attention)", {"fusion": "concat_mlp"}),
        ("hybrid_csa (paper: attention, frozen SVD)", {}),
        ("hybrid_csa freeze_svd=False (fine-tuned SVD)", {"freeze_svd": False}),
        ("concat-MLP svd_residual=True", {"fusion": "concat_mlp", "svd_residual": True}),
        ("hybrid_csa svd_residual=True", {"svd_residual": True}),
        ("hybrid_csa svd_residual=True freeze_svd=False", {"svd_residual": True, "freeze_svd": False}),
        ("hybrid_csa svd_crossfit=10", {"svd_crossfit": 10}),
        (
            "concat-MLP svd_residual=True svd_crossfit=10",
            {"fusion": "concat_mlp", "svd_residual": True, "svd_crossfit": 10},
        ),
        ("hybrid_csa svd_residual=True svd_crossfit=10", {"svd_residual": True, "svd_crossfit": 10}),
        (
            "hybrid_csa svd_residual=True svd_crossfit=10 pooling=concat attn_residual=True",
            {"svd_residual": True, "svd_crossfit": 10, "pooling": "concat", "attn_residual": True},
        ),
    ]
    for label, kw in variants:
        if ONLY and not any(o in label for o in ONLY):
            continue
        runs, models = fit_hybrid_runs("movielens", label, kw, seeds, tr, va, te, trainer, ds.items)
        res[label] = summarize(runs)
        if kw.get("fusion", "attention") == "attention":
            res[label]["attention_by_history"] = attention_by_history(models, te, tr)
    return res


def parse_variant(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``"a=1 b=true trainer.c=2"`` -> (model settings, trainer settings), parsed as the CLI's ``--set``."""
    from attnrec.cli import _parse_sets

    settings = _parse_sets(text.split(), "--variants")
    model = {k: v for k, v in settings.items() if not k.startswith("trainer.")}
    trainer = {k.removeprefix("trainer."): v for k, v in settings.items() if k.startswith("trainer.")}
    return model, trainer


def part_select(seeds, epochs):
    """Validation RMSE of each ``--variants`` entry on the movielens split; the test split is not scored."""
    ds = load_dataset("ml-100k", progress=False)
    split = random_split(ds, (0.8, 0.1, 0.1), seed=SPLIT_SEED)
    tr, va, _ = encode_split(split)
    res: dict[str, Any] = {"data": {"split_seed": SPLIT_SEED, "train": len(tr), "valid": len(va)}}
    for text in VARIANTS:
        kw, tkw = parse_variant(text)
        trainer = TrainerConfig(**{**TRAINER, "epochs": epochs, **tkw})
        runs = []
        for s in seeds:
            report = hybrid(seed=s, **kw).fit(tr, va, trainer=trainer, **side(ds.items))
            runs.append(
                {
                    "seed": s,
                    "valid_rmse": report.best_valid.get("rmse"),
                    "best_epoch": report.best_epoch,
                    "epochs_run": report.epochs_run,
                    "fit_s": report.seconds,
                }
            )
            emit("select", text, s, runs[-1])
        res[text] = {"valid_rmse_mean": float(np.mean([r["valid_rmse"] for r in runs])), "runs": runs}
    return res


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


def search_svd_reg(
    source: str, tr: Interactions, va: Interactions, *, seed: int, trials: int = 8
) -> tuple[float, dict[str, Any]]:
    """svd's factor penalty (50 factors) searched on the validation split only, by attnrec tune's search (TPE,
    ``trials`` trials over [0.05, 2] on a log scale; the test split is not passed). Returns the chosen value rounded
    to 3 significant digits, and what the search tried."""
    from attnrec.experiments.config import RunConfig
    from attnrec.experiments.tune import SearchData, SearchSpace, search

    space = SearchSpace.parse(
        {
            "study": {"seed": seed, "pruner": "none", "startup_trials": 4},
            "model": {"reg": {"type": "float", "low": 0.05, "high": 2.0, "log": True}},
        }
    )
    cfg = RunConfig(model="svd", data=source, model_params={"factors": 50, "seed": seed})
    study = search(cfg, SearchData(tr, va), space, n_trials=trials)
    reg = float(f"{study.best_params['model.reg']:.3g}")
    tried = {f"{t.params['model.reg']:.4g}": t.value for t in study.trials}
    return reg, {
        "search": f"attnrec tune, TPE seed {seed}, {trials} trials, reg in [0.05, 2] log",
        "valid_rmse": tried,
        "chosen": reg,
    }


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

    res["attnrec svd (50 factors, defaults)"] = summarize(svd_runs("amazon", "svd", seeds, tr, va, te)[0])
    # the svd defaults were chosen on ML-100k; here the factor penalty is searched on this data's validation split
    reg, res["svd reg chosen on validation"] = search_svd_reg(str(AMAZON), tr, va, seed=seeds[0])
    runs, _ = svd_runs("amazon", f"svd reg={reg}", seeds, tr, va, te, reg=reg)
    res[f"attnrec svd (50 factors, reg={reg} chosen on validation)"] = summarize(runs)

    tuned = {"svd_reg": reg}
    variants: list[tuple[str, dict[str, Any], list[int]]] = [
        ("hybrid_csa (item text from training reviews)", {}, seeds),
        (f"hybrid_csa svd_reg={reg}", tuned, seeds),
        (f"hybrid_csa svd_reg={reg} svd_residual=True", {**tuned, "svd_residual": True}, seeds),
        (f"hybrid_csa svd_reg={reg} svd_crossfit=10", {**tuned, "svd_crossfit": 10}, seeds),
        (
            f"hybrid_csa svd_reg={reg} svd_residual=True svd_crossfit=10",
            {**tuned, "svd_residual": True, "svd_crossfit": 10},
            seeds,
        ),
        (
            f"hybrid_csa svd_reg={reg} svd_residual=True svd_crossfit=10 pooling=concat attn_residual=True",
            {**tuned, "svd_residual": True, "svd_crossfit": 10, "pooling": "concat", "attn_residual": True},
            seeds,
        ),
        (f'hybrid_csa svd_reg={reg} text_source="item+user"', {**tuned, "text_source": "item+user"}, seeds),
        (f"hybrid_csa svd_reg={reg} freeze_svd=False", {**tuned, "freeze_svd": False}, seeds),
        ("LEAKY hybrid_csa target_review_leakage=True", {"target_review_leakage": True}, seeds),
        (
            f"LEAKY hybrid_csa svd_reg={reg} target_review_leakage=True",
            {**tuned, "target_review_leakage": True},
            seeds,
        ),
    ]
    for label, kw, model_seeds in variants:
        if ONLY and not any(o in label for o in ONLY):
            continue
        runs, _ = fit_hybrid_runs("amazon", label, kw, model_seeds, tr, va, te, trainer, None)
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
    variants: list[tuple[str, dict[str, Any]]] = [
        ("hybrid_csa", {}),
        ("hybrid_csa cold_item_rate=0.2", {"cold_item_rate": 0.2}),
        ("hybrid_csa svd_residual=True cold_item_rate=0.2", {"svd_residual": True, "cold_item_rate": 0.2}),
        (
            "hybrid_csa svd_residual=True svd_crossfit=10 cold_item_rate=0.2",
            {"svd_residual": True, "svd_crossfit": 10, "cold_item_rate": 0.2},
        ),
        (
            "hybrid_csa svd_residual=True svd_crossfit=10 pooling=concat attn_residual=True cold_item_rate=0.2",
            {
                "svd_residual": True,
                "svd_crossfit": 10,
                "pooling": "concat",
                "attn_residual": True,
                "cold_item_rate": 0.2,
            },
        ),
    ]
    for label, kw in variants:
        if ONLY and not any(o in label for o in ONLY):
            continue
        cold_runs, warm_runs = [], []
        for s in seeds:
            m = hybrid(seed=s, **kw)
            report = m.fit(tr, va, trainer=trainer, **side(ds.items))
            warm = evaluate(m, te)
            added = m.add_items_from_frame(cold_meta)
            cold_data, dropped = Interactions.encode(cold_rows, m.user_vocab, m.item_vocab, unknown="drop")
            assert dropped == 0 and len(added) == len(cold), (dropped, len(added))
            metrics = evaluate(m, cold_data)
            extra = {
                "fit_s": report.seconds,
                "best_epoch": report.best_epoch,
                "epochs_run": report.epochs_run,
            }
            cold_runs.append(
                {"seed": s, "rmse": metrics["rmse"], "mae": metrics["mae"], "n": int(metrics["n"]), **extra}
            )
            warm_runs.append(
                {"seed": s, "rmse": warm["rmse"], "mae": warm["mae"], "n": int(warm["n"]), **extra}
            )
            emit("coldstart", f"{label} cold", s, cold_runs[-1])
            emit("coldstart", f"{label} warm", s, warm_runs[-1])
        res[f"{label}: cold items"] = summarize(cold_runs)
        res[f"{label}: warm test (reference)"] = summarize(warm_runs)
    return res


def tr_range(tr: Interactions) -> tuple[float, float]:
    return float(tr.ratings.min()), float(tr.ratings.max())


def main() -> None:
    global SPLIT_SEED  # read by every part; set once from --split-seed
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", required=True, choices=["movielens", "amazon", "coldstart", "select"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument(
        "--patience",
        type=int,
        default=3,
        help="early-stopping patience in epochs (5 = one warm-restart cycle, so a restart's lr spike cannot end training)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the 2026-11-23 rows used 2)")
    ap.add_argument(
        "--split-seed",
        type=int,
        default=SPLIT_SEED,
        help="seed of the random 80/10/10 split (and of coldstart's held-out items); 2026 for the 2026-11-23 rows",
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--only",
        default="",
        help="run only the hybrid_csa variants whose label contains one of these (baselines always run)",
    )
    ap.add_argument(
        "--variants",
        default="",
        help='part select: ";"-separated settings, e.g. "svd_residual=true svd_crossfit=10 trainer.restart_period=10"',
    )
    args = ap.parse_args()
    SPLIT_SEED = args.split_seed
    VARIANTS.extend(v.strip() for v in args.variants.split(";") if v.strip())
    ONLY.extend(o for o in args.only.split(",") if o)
    TRAINER["patience"] = args.patience
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = {
        "movielens": part_movielens,
        "amazon": part_amazon,
        "coldstart": part_coldstart,
        "select": part_select,
    }
    fn = parts[args.part]
    result = fn(seeds, args.epochs)
    write_record(f"hybrid_csa/{args.part}", result, args.out, split_seed=SPLIT_SEED, threads=args.threads)


if __name__ == "__main__":
    main()
