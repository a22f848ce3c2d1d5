"""svd vs Surprise SVD on one exported MovieLens-100k split, in the same run.

    .venv/bin/python benchmarks/bench_svd_surprise.py [--seed 2026] [--repeats 3] [--threads N] [--out FILE]

The split is made once by attnrec (random 80/10/10, seeded), exported to CSV with the original ids, and both
libraries read those files: Surprise trains on ``train.csv`` and is scored on ``test.csv``; attnrec trains on
``train.csv`` (``valid.csv`` drives early stopping only) and is scored on the same ``test.csv``. Test is read once,
after fitting; no setting is chosen on it.

Rows: Surprise SVD with its defaults (100 factors, 20 epochs) and with ``n_factors=50``; attnrec svd with its
defaults (ALS, 50 factors, 2 sweeps), with 3 sweeps, and with ``solver="sgd"``. Each model is fitted once untimed (first-call imports,
allocator warm-up), then ``--repeats`` timed fits run interleaved across models so that machine load hits all of
them alike; fit seconds are medians. Prints a markdown table and one JSON line. Needs scikit-surprise
(``pip install 'attnrec[bench]'``).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnrec.data.registry import load_dataset
from attnrec.data.splits import export_split, random_split
from attnrec.experiments.run import RunConfig, prepare_data
from attnrec.models.rating.svd import SVD
from attnrec.training.trainer import TrainerConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=2026, help="split seed")
    ap.add_argument("--repeats", type=int, default=3, help="timed fits per model (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON record here")
    args = ap.parse_args()
    try:
        import surprise
    except ImportError:
        sys.exit("needs scikit-surprise: pip install 'attnrec[bench]'")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    split_dir = Path(tempfile.mkdtemp(prefix="ml100k-split-"))
    export_split(random_split(load_dataset("ml-100k"), ratios=(0.8, 0.1, 0.1), seed=args.seed), split_dir)
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

    # --- Surprise reads the same exported files
    reader = surprise.Reader(
        line_format="user item rating timestamp", sep=",", skip_lines=1, rating_scale=(1, 5)
    )
    trainset = surprise.Dataset.load_from_file(str(split_dir / "train.csv"), reader).build_full_trainset()
    test_raw = surprise.Dataset.load_from_file(str(split_dir / "test.csv"), reader).raw_ratings
    testset = [(u, i, r) for (u, i, r, _t) in test_raw]

    def surprise_fit(**kw: Any) -> Callable[[], Any]:
        def fit() -> Any:
            algo = surprise.SVD(random_state=0, **kw)
            algo.fit(trainset)
            return algo

        return fit

    def surprise_score(algo: Any) -> dict[str, float]:
        err = np.array([p.r_ui - p.est for p in algo.test(testset)])
        return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "n": len(err)}

    def ours_fit(**kw: Any) -> Callable[[], Any]:
        def fit() -> Any:
            model = SVD(**kw)
            report = model.fit(data.train, data.valid, trainer=TrainerConfig(progress=False, device="cpu"))
            return model, report

        return fit

    def ours_score(fitted: Any) -> dict[str, float]:
        model, report = fitted
        m = model.evaluate(data.test)
        return {
            "rmse": m["rmse"],
            "mae": m["mae"],
            "n": int(m["n"]),
            "valid_rmse": report.best_valid.get("rmse"),
            "best_epoch": report.best_epoch,
            "epochs_run": report.epochs_run,
        }

    sv = surprise.__version__
    models: list[tuple[str, Callable[[], Any], Callable[[Any], dict[str, float]]]] = [
        (f"Surprise {sv} SVD (defaults: 100 factors, 20 epochs)", surprise_fit(), surprise_score),
        (f"Surprise {sv} SVD (n_factors=50)", surprise_fit(n_factors=50), surprise_score),
        ("attnrec svd (defaults: ALS, 50 factors)", ours_fit(), ours_score),
        ("attnrec svd (ALS, 50 factors, iterations=3)", ours_fit(iterations=3), ours_score),
        ("attnrec svd (solver=sgd, 50 factors)", ours_fit(solver="sgd"), ours_score),
    ]
    times: dict[str, list[float]] = {label: [] for label, _, _ in models}
    fitted: dict[str, Any] = {}
    for label, fit, _ in models:  # untimed warm-up
        fitted[label] = fit()
    for _ in range(args.repeats):
        for label, fit, _ in models:
            t0 = time.perf_counter()
            fitted[label] = fit()
            times[label].append(time.perf_counter() - t0)

    rows = []
    for label, _, score in models:
        rows.append(
            {
                "model": label,
                **score(fitted[label]),
                "fit_s": statistics.median(times[label]),
                "fit_s_all": times[label],
            }
        )
    base_default, base_50 = rows[0]["fit_s"], rows[1]["fit_s"]
    for r in rows:
        r["fit_ratio_vs_surprise_default"] = r["fit_s"] / base_default
        r["fit_ratio_vs_surprise_50"] = r["fit_s"] / base_50

    print("| model | test RMSE | test MAE | fit s (median) | fit / Surprise default | fit / Surprise 50 f. |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['rmse']:.4f} | {r['mae']:.4f} | {r['fit_s']:.3f} | "
            f"{r['fit_ratio_vs_surprise_default']:.2f} | {r['fit_ratio_vs_surprise_50']:.2f} |"
        )
    record = {
        "bench": "svd_vs_surprise",
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "torch": torch.__version__,
        "surprise": sv,
        "split": {
            "seed": args.seed,
            "dir": str(split_dir),
            "train": len(data.train),
            "valid": len(data.valid),
            "test": len(data.test),
        },
        "repeats": args.repeats,
        "rows": rows,
    }
    print(json.dumps(record))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
