"""pop, bpr and lightgcn on MovieLens-100k (every rating an interaction), full ranking, one exported split.

    .venv/bin/python benchmarks/bench_topk.py [--seed 2026] [--epochs 60] [--out bench_results/topk.json]

Test Recall/NDCG@10/20 over all items with train + valid masked; early stopping on validation NDCG@20 (patience 5);
seconds per epoch is the median over the epochs run (training only, validation excluded). The split is exported to
``--split-dir`` so that a peer library can be run on exactly the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from attnrec.data.registry import load_dataset
from attnrec.data.splits import export_split, random_split
from attnrec.experiments.run import RunConfig, run_experiment

RUNS = {
    "pop": ({}, {}),
    "bpr": ({"dim": 64, "reg": 1e-4}, {"lr": 5e-3, "batch_size": 2048}),
    "lightgcn": ({"dim": 64, "n_layers": 3, "reg": 1e-4}, {"lr": 5e-3, "batch_size": 2048}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--split-dir", type=Path, default=Path("bench_results/ml100k-split"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--device", default="auto", help="trainer device: auto | cpu | cuda")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    export_split(random_split(load_dataset("ml-100k"), (0.8, 0.1, 0.1), seed=args.seed), args.split_dir)
    files = {p: args.split_dir / f"{p}.csv" for p in ("train", "valid", "test")}
    rows = []
    for name, (params, trainer) in RUNS.items():
        cfg = RunConfig(
            model=name,
            **files,
            model_params=params,
            save_model=False,
            trainer={
                "epochs": args.epochs,
                "patience": 5,
                "progress": False,
                "device": args.device,
                "amp": args.amp,
                **trainer,
            },
        )
        res = run_experiment(cfg, progress=False)
        hist = [h["seconds"] for h in res.metrics["fit"]["history"] if "seconds" in h]
        fit = res.metrics["fit"]
        row = {
            "model": name,
            **{k: res.metrics["test"][k] for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")},
            "valid_ndcg@20": res.metrics["valid"]["ndcg@20"],
            "best_epoch": fit["best_epoch"],
            "epochs_run": fit["epochs_run"],
            "fit_s": res.metrics["timings"]["fit_s"],
            "s_per_epoch": statistics.median(hist) if hist else None,
            "params": params,
            "trainer": trainer,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| model | Recall@10 | Recall@20 | NDCG@10 | NDCG@20 | best epoch / run | s/epoch (median) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        spe = f"{r['s_per_epoch']:.2f}" if r["s_per_epoch"] else "-"
        print(
            f"| {r['model']} | {r['recall@10']:.4f} | {r['recall@20']:.4f} | {r['ndcg@10']:.4f} | {r['ndcg@20']:.4f} "
            f"| {r['best_epoch']} / {r['epochs_run']} | {spe} |"
        )
    record = {
        "bench": "topk_ml100k",
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        "torch": torch.__version__,
        "split_dir": str(args.split_dir),
        "rows": rows,
    }
    print(json.dumps(record))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
