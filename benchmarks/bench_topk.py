"""pop, bpr and lightgcn on MovieLens-100k (every rating an implicit interaction), full ranking, one random split.

    .venv/bin/python benchmarks/bench_topk.py [--seed 2026] [--grid small|none] [--epochs 300] [--patience 10]
        [--threads 1] [--device cpu] [--split-dir DIR] [--out bench_results/topk.json]

The straight line: ``load_dataset("ml-100k")`` → ``random_split(ratios=(0.8, 0.1, 0.1), seed)`` (the split the svd
benchmark uses) → vocabularies from train → for each model and each grid point, fit on train with early stopping on
validation NDCG@20 → pick the grid point with the best validation NDCG@20 → evaluate that one model on test, once.
Test metrics rank all items with train + valid masked; validation ranks all items with train masked. Seconds per
epoch are the median over the epochs run (training only, validation excluded). The test split is never read before
the choice is made. Prints the grid (validation only), a markdown table of test metrics and one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from attnrec.data.registry import load_dataset
from attnrec.data.splits import export_split, random_split
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.evaluation.evaluators import evaluate_full_ranking
from attnrec.models.base import Recommender, get_model_class
from attnrec.training.trainer import TrainerConfig

KS = (10, 20)
#: fixed settings (paper defaults where the paper gives them: d = 64, batch 2048, K = 3 layers)
BASE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "bpr": ({"dim": 64}, {"batch_size": 2048}),
    "lightgcn": ({"dim": 64, "n_layers": 3}, {"batch_size": 2048}),
}
#: the validation grid: learning rate × λ
GRIDS: dict[str, dict[str, dict[str, list[Any]]]] = {
    "small": {
        "bpr": {"lr": [1e-3, 5e-3, 2e-2], "reg": [1e-5, 1e-4, 1e-3]},
        "lightgcn": {"lr": [2e-3, 5e-3, 1e-2], "reg": [1e-5, 1e-4, 1e-3]},
    },
    "none": {"bpr": {"lr": [5e-3], "reg": [1e-4]}, "lightgcn": {"lr": [5e-3], "reg": [1e-4]}},
}
TRAINER_KEYS = {"lr", "batch_size", "optimizer", "weight_decay"}


def encode(split: Any) -> tuple[Interactions, Interactions, Interactions, dict[str, int]]:
    """Vocabularies from train only; valid/test rows with an id unseen in train are dropped (and counted)."""
    uv = Vocabulary.from_ids(split.train["user_id"], kind="user")
    iv = Vocabulary.from_ids(split.train["item_id"], kind="item")
    train, _ = Interactions.encode(split.train, uv, iv)
    valid, dv = Interactions.encode(split.valid, uv, iv, unknown="drop")
    test, dt = Interactions.encode(split.test, uv, iv, unknown="drop")
    return train, valid, test, {"valid": dv, "test": dt}


def ranking_metrics(model: Recommender, truth: Interactions, exclude: Any) -> dict[str, float]:
    """Full-ranking metrics at ``KS`` of ``model`` against ``truth``, items in ``exclude`` (a CSR matrix) masked."""
    return evaluate_full_ranking(model.score_users, truth.csr(), exclude, ks=KS)


def fit_one(
    name: str, params: dict[str, Any], trainer: dict[str, Any], train: Interactions, valid: Interactions
) -> tuple[Recommender, dict[str, Any]]:
    cls = get_model_class(name)
    model = cls(**params)
    kw = {"trainer": TrainerConfig(**trainer)} if trainer else {}
    t0 = time.perf_counter()
    report = model.fit(train, valid, **kw)
    fit_s = time.perf_counter() - t0
    secs = [h["seconds"] for h in report.history]
    valid_m = report.best_valid or ranking_metrics(model, valid, train.csr())
    return model, {
        "params": params,
        "trainer": {k: v for k, v in trainer.items() if k in TRAINER_KEYS},
        "valid_ndcg@20": valid_m["ndcg@20"],
        "valid_recall@20": valid_m["recall@20"],
        "best_epoch": report.best_epoch,
        "epochs_run": report.epochs_run,
        "fit_s": fit_s,
        "s_per_epoch": statistics.median(secs) if secs else None,
    }


def serve_worker(split_seed: int, split_dir: Path | None) -> None:
    """Worker of ``fair_topk.py`` (one thread): the split of ``split_seed`` (exported to ``split_dir`` for the peer);
    ops ``info``, ``fit`` (keeps the best validation NDCG@20 per key) and ``test`` (once per key)."""
    from fair_common import serve

    torch.set_num_threads(1)
    split = random_split(load_dataset("ml-100k", progress=False), (0.8, 0.1, 0.1), seed=split_seed)
    if split_dir is not None:
        export_split(split, split_dir)
    train, valid, test, dropped = encode(split)
    seen_train_valid = (train.csr() + valid.csr()).tocsr()
    best: dict[str, tuple[Recommender, dict[str, Any]]] = {}

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        if req["op"] == "info":
            sizes = {"train": len(train), "valid": len(valid), "test": len(test)}
            return {"sizes": sizes, "dropped": dropped, "users": train.n_users, "items": train.n_items}
        if req["op"] == "fit":
            params, trainer = BASE[req["model"]]
            trainer = {
                **trainer,
                "epochs": req["epochs"],
                "patience": req["patience"],
                "progress": False,
                "device": "cpu",
                "lr": req["lr"],
            }
            model, info = fit_one(
                req["model"],
                {**params, "reg": req["reg"], "seed": req["seed"], **req.get("set", {})},
                trainer,
                train,
                valid,
            )
            key = req["key"]
            if key not in best or info["valid_ndcg@20"] > best[key][1]["valid_ndcg@20"]:
                best[key] = (model, info)
            return info
        if req["op"] == "test":
            model, info = best.pop(req["key"])  # once: a second test request for the key fails
            return {"chosen": info, "test": ranking_metrics(model, test, seen_train_valid)}
        raise ValueError(f"unknown op {req['op']!r}")

    serve(handle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026, help="split seed (the svd benchmark uses 2026)")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="small")
    ap.add_argument("--models", default="pop,bpr,lightgcn")
    ap.add_argument("--epochs", type=int, default=300, help="at most this many epochs per fit")
    ap.add_argument(
        "--patience", type=int, default=10, help="epochs without a better valid NDCG@20 before stopping"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared machine)"
    )
    ap.add_argument("--device", default="cpu", help="trainer device: cpu | cuda | auto")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (propagation stays fp32)")
    ap.add_argument(
        "--split-dir", type=Path, default=None, help="also export the split here (for a peer library)"
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--serve", action="store_true", help="(internal) run as a fair_topk.py worker")
    args = ap.parse_args()
    if args.serve:
        serve_worker(args.seed, args.split_dir)
        return
    torch.set_num_threads(args.threads)

    split = random_split(load_dataset("ml-100k", progress=False), (0.8, 0.1, 0.1), seed=args.seed)
    if args.split_dir is not None:
        export_split(split, args.split_dir)
    train, valid, test, dropped = encode(split)
    seen_train = train.csr()
    seen_train_valid = (seen_train + valid.csr()).tocsr()
    trainer_base = {
        "epochs": args.epochs,
        "patience": args.patience,
        "progress": False,
        "device": args.device,
        "amp": args.amp,
    }

    grid_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        if name == "pop":
            candidates = [({}, {})]
        else:
            params, trainer = BASE[name]
            grid = GRIDS[args.grid][name]
            keys = sorted(grid)
            candidates = []
            for values in itertools.product(*(grid[k] for k in keys)):
                point = dict(zip(keys, values, strict=True))
                p = {**params, **{k: v for k, v in point.items() if k not in TRAINER_KEYS}}
                t = {**trainer_base, **trainer, **{k: v for k, v in point.items() if k in TRAINER_KEYS}}
                candidates.append((p, t))
        best: tuple[Recommender, dict[str, Any]] | None = None
        for p, t in candidates:
            model, info = fit_one(name, p, t, train, valid)
            info["model"] = name
            grid_rows.append(info)
            print(json.dumps({"grid": info}), flush=True)
            if best is None or info["valid_ndcg@20"] > best[1]["valid_ndcg@20"]:
                best = (model, info)
        assert best is not None
        model, info = best
        test_m = ranking_metrics(model, test, seen_train_valid)  # once, for the chosen point only
        rows.append(
            {
                **info,
                **{k: test_m[k] for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")},
                "grid_size": len(candidates),
            }
        )

    print()
    print(
        "| model | chosen on valid | Recall@10 | Recall@20 | NDCG@10 | NDCG@20 | valid NDCG@20 | best epoch / run | s/epoch (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        chosen = ", ".join(f"{k}={v}" for k, v in {**r["params"], **r["trainer"]}.items()) or "-"
        spe = f"{r['s_per_epoch']:.2f}" if r["s_per_epoch"] else "-"
        ep = f"{r['best_epoch']} / {r['epochs_run']}" if r["best_epoch"] else "-"
        print(
            f"| {r['model']} | {chosen} | {r['recall@10']:.4f} | {r['recall@20']:.4f} | {r['ndcg@10']:.4f} "
            f"| {r['ndcg@20']:.4f} | {r['valid_ndcg@20']:.4f} | {ep} | {spe} |"
        )
    record = {
        "bench": "topk_ml100k",
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        "torch": torch.__version__,
        "threads": args.threads,
        "device": args.device,
        "split": {
            "seed": args.seed,
            "ratios": [0.8, 0.1, 0.1],
            "sizes": {"train": len(train), "valid": len(valid), "test": len(test)},
            "dropped_unknown_ids": dropped,
            "users": train.n_users,
            "items": train.n_items,
        },
        "grid": args.grid,
        "grid_rows": grid_rows,
        "rows": rows,
    }
    print(json.dumps(record))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
