"""svd vs Surprise SVD on one exported MovieLens-100k split, in the same run.

    .venv/bin/python benchmarks/bench_svd_surprise.py [--seed 2026] [--repeats 3] [--out bench_results/svd.json]

The split is made once by attnrec (random 80/10/10, seeded), exported to CSV with the original ids, and both
libraries read those files: Surprise trains on train.csv and is scored on test.csv; attnrec trains on train.csv
(+ valid.csv for early stopping) and is scored on test.csv. Fit times are medians over ``--repeats`` fits.
Needs the `bench` extra (scikit-surprise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from attnrec.data.registry import load_dataset
from attnrec.data.splits import export_split, random_split
from attnrec.experiments.run import RunConfig, prepare_data
from attnrec.models.rating.svd import SVD


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        import surprise
    except ImportError:
        sys.exit("needs scikit-surprise: pip install 'attnrec[bench]'")

    split_dir = Path(tempfile.mkdtemp(prefix="ml100k-split-"))
    export_split(random_split(load_dataset("ml-100k"), (0.8, 0.1, 0.1), seed=args.seed), split_dir)
    data = prepare_data(
        RunConfig(
            model="svd",
            train=split_dir / "train.csv",
            valid=split_dir / "valid.csv",
            test=split_dir / "test.csv",
        ),
        implicit=False,
        progress=False,
    )

    rows = []
    # --- Surprise on the exported files
    reader = surprise.Reader(
        line_format="user item rating timestamp", sep=",", skip_lines=1, rating_scale=(1, 5)
    )
    trainset = surprise.Dataset.load_from_file(str(split_dir / "train.csv"), reader).build_full_trainset()
    testset = [
        tuple(x) for x in surprise.Dataset.load_from_file(str(split_dir / "test.csv"), reader).raw_ratings
    ]
    testset = [(u, i, r) for (u, i, r, _t) in testset]
    for label, kw in [
        ("Surprise SVD (defaults: 100 factors, 20 epochs)", {}),
        ("Surprise SVD (50 factors)", {"n_factors": 50}),
    ]:

        def fit_s(kw=kw):
            algo = surprise.SVD(random_state=0, **kw)
            algo.fit(trainset)
            return algo

        secs, algo = timed(fit_s, args.repeats)
        preds = algo.test(testset)
        err = np.array([p.r_ui - p.est for p in preds])
        rows.append(
            {
                "model": label,
                "rmse": float(np.sqrt(np.mean(err**2))),
                "mae": float(np.mean(np.abs(err))),
                "fit_s": secs,
                "n_test": len(err),
            }
        )
    # --- attnrec svd on the same files
    for label, kw in [
        ("attnrec svd (defaults: ALS, 32 factors)", {}),
        ("attnrec svd (ALS, 50 factors)", {"factors": 50}),
    ]:

        def fit_a(kw=kw):
            m = SVD(**kw)
            m.fit(data.train, data.valid)
            return m

        secs, model = timed(fit_a, args.repeats)
        m = model.evaluate(data.test)
        rows.append(
            {"model": label, "rmse": m["rmse"], "mae": m["mae"], "fit_s": secs, "n_test": int(m["n"])}
        )

    base = rows[0]["fit_s"]
    for r in rows:
        r["fit_ratio_vs_surprise_default"] = r["fit_s"] / base
    print("| model | test RMSE | test MAE | fit s (median) | fit time / Surprise default |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['rmse']:.4f} | {r['mae']:.4f} | {r['fit_s']:.3f} | {r['fit_ratio_vs_surprise_default']:.2f} |"
        )
    record = {
        "bench": "svd_vs_surprise",
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        "torch": torch.__version__,
        "surprise": surprise.__version__,
        "split": {
            "seed": args.seed,
            "dir": str(split_dir),
            "train": len(data.train),
            "valid": len(data.valid),
            "test": len(data.test),
        },
        "rows": rows,
    }
    print(json.dumps(record))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
