"""Why CTR probabilities drift: per-epoch validation/test AUC, logloss and ECE of every CTR model, run past the
AUC-best epoch, with the distribution of predicted probabilities and the output-logit scale at every epoch.

    .venv/bin/python benchmarks/ctr_calibration.py --datasets criteo,avazu,movielens --seeds 0 --epochs 15 \\
        --out bench_results/ctr_calibration.json

Same data, encoders and model settings as ``benchmarks/bench_ctr.py`` (``load_splits``, ``model_params``); the Trainer
runs every epoch (no early stopping) and after each one the test rows are scored too — *for this diagnosis only*:
nothing here selects a model, and the benchmark (bench_ctr.py) still reads test once per run.

Per epoch: train loss; valid/test AUC, logloss, ECE (15 equal-mass bins); test probability quantiles
(1, 5, 25, 50, 75, 95, 99 %), a 20-bin histogram on [0, 1], the mean probability against the positive rate, the
standard deviation of the test logits, and the temperature that temperature scaling would fit on valid at that
epoch (T > 1: the model is over-confident). The summary names, per run, the AUC-best and the logloss-best epochs
(validation) and what test looks like at each.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ctr import (  # noqa: E402 - the benchmark folder is not a package
    DATASETS,
    DEFAULT_DATA_DIR,
    MODELS,
    BenchSettings,
    load_splits,
    machine,
    model_class,
    model_params,
)

from attnrec.evaluation.calibration import expected_calibration_error, fit_calibrator  # noqa: E402
from attnrec.evaluation.metrics import auc, logloss  # noqa: E402
from attnrec.training.trainer import Trainer, TrainerConfig  # noqa: E402

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, logloss and 15-bin equal-mass ECE of probabilities ``p`` (N,) against 0/1 labels ``y`` (N,)."""
    return {
        "auc": float(auc(y, p)),
        "logloss": float(logloss(y, p)),
        "ece": float(expected_calibration_error(y, p)),
    }


def distribution(p: np.ndarray, z: np.ndarray) -> dict[str, Any]:
    """Quantiles and a 20-bin histogram of probabilities ``p`` (N,), mean ``p`` and the std of logits ``z`` (N,)."""
    hist, _ = np.histogram(p, bins=20, range=(0.0, 1.0))
    return {
        "quantiles": {f"{q:g}": float(np.quantile(p, q)) for q in QUANTILES},
        "hist20": hist.tolist(),
        "mean_p": float(p.mean()),
        "logit_std": float(z.std()),
        "logit_absmax": float(np.abs(z).max()),
    }


def run_curves(name: str, splits: Any, seed: int, s: BenchSettings, epochs: int) -> dict[str, Any]:
    """Train model ``name`` for ``epochs`` epochs without early stopping; return the per-epoch record."""
    train, valid, test = splits
    model = model_class(name)(**model_params(name, seed, s))
    model.schema = train.schema
    torch.manual_seed(model.config.seed)
    module = model.build_ctr_module(train.schema)
    model.module = module
    cfg = TrainerConfig(
        epochs=epochs,
        patience=None,
        lr=s.lr,
        batch_size=s.batch_size,
        optimizer="adam",
        progress=False,
        device="cpu",
        restore_best=False,
    )
    trainer = Trainer(cfg, valid_metric="auc", mode="max")
    model.device = trainer.device
    yv, yt = valid.labels.astype(np.float64), test.labels.astype(np.float64)
    rows: list[dict[str, Any]] = []

    def on_epoch_end(epoch: int, row: dict[str, float]) -> None:
        pv = model.predict_proba(valid).astype(np.float64)
        zt = model.predict_logits(test).astype(np.float64)
        pt = 1.0 / (1.0 + np.exp(-zt))
        cal = fit_calibrator(yv, pv, "temperature")
        rows.append(
            {
                "epoch": epoch,
                "train_loss": row["loss"],
                "seconds": row["seconds"],
                "valid": scores(yv, pv),
                "test": scores(yt, pt),
                "test_temperature_scaled": scores(yt, cal.apply(pt)),
                "temperature": cal.temperature,
                "test_dist": distribution(pt, zt),
            }
        )

    trainer.fit(
        module,
        lambda epoch, gen: model.train_batches(train, epoch, gen, s.batch_size),
        validate=model.validator(valid),
        seed=model.config.seed,
        on_epoch_end=on_epoch_end,
    )
    auc_best = max(rows, key=lambda r: r["valid"]["auc"])
    ll_best = min(rows, key=lambda r: r["valid"]["logloss"])
    return {
        "model": name,
        "seed": seed,
        "epochs": rows,
        "auc_best_epoch": auc_best["epoch"],
        "logloss_best_epoch": ll_best["epoch"],
        "positive_rate_test": float(yt.mean()),
    }


def summary_table(runs: list[dict[str, Any]]) -> str:
    """One row per (dataset, model, seed): the AUC-best and logloss-best validation epochs and test at each."""
    lines = [
        "| dataset | model | seed | AUC-best ep | test AUC / logloss / ECE there | logit std | T | "
        "logloss-best ep | test AUC / logloss / ECE there | logit std | last ep: test logloss / ECE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        by = {e["epoch"]: e for e in r["epochs"]}
        a, b, last = by[r["auc_best_epoch"]], by[r["logloss_best_epoch"]], r["epochs"][-1]

        def trio(e: dict[str, Any]) -> str:
            t = e["test"]
            return f"{t['auc']:.4f} / {t['logloss']:.4f} / {t['ece']:.4f}"

        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['seed']} | {a['epoch']} | {trio(a)} | "
            f"{a['test_dist']['logit_std']:.2f} | {a['temperature']:.2f} | {b['epoch']} | {trio(b)} | "
            f"{b['test_dist']['logit_std']:.2f} | {last['test']['logloss']:.4f} / {last['test']['ece']:.4f} |"
        )
    return "\n".join(lines)


def noise_floor(
    datasets: Sequence[str], models: Sequence[str], data_dir: Path, draws: int = 500
) -> list[dict[str, Any]]:
    """The ECE a perfectly calibrated model would show on each test set: fit ``models`` (seed 0, the library's
    default trainer and temperature scaling), take their test probabilities ``p`` and draw labels Bernoulli(p)
    (:func:`~attnrec.evaluation.calibration.ece_noise_floor`); also the measured ECE for comparison."""
    from attnrec.evaluation.calibration import ece_noise_floor

    s, rows = BenchSettings(), []
    for ds in datasets:
        (train, valid, test), _ = load_splits(ds, data_dir, s.split_seed)
        for name in models:
            model = model_class(name)(**model_params(name, 0, s))
            cfg = model.make_trainer_config(None).model_copy(update={"progress": False, "device": "cpu"})
            model.fit(train, valid, trainer=cfg)
            p = model.predict_proba(test).astype(np.float64)
            mean, q95 = ece_noise_floor(p, draws=draws)
            rows.append(
                {
                    "dataset": ds,
                    "model": name,
                    "test_rows": len(test),
                    "floor_mean": mean,
                    "floor_q95": q95,
                    "measured_ece": float(expected_calibration_error(test.labels, p)),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run every (dataset, model, seed), write the JSON record (``--out``) after each run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--noise-floor",
        action="store_true",
        help="instead of the curves: the ECE noise floor of each test set (models fitted with their defaults)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    s = BenchSettings()
    argv_used = list(sys.argv[1:] if argv is None else argv)
    datasets, models = [d for d in args.datasets.split(",") if d], [m for m in args.models.split(",") if m]
    if args.noise_floor:
        floors = {"command": shlex.join([".venv/bin/python", "benchmarks/ctr_calibration.py", *argv_used])}
        floors["rows"] = noise_floor(datasets, models, args.data_dir)  # type: ignore[assignment]
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(floors, indent=1))
        return floors
    record: dict[str, Any] = {
        "bench": "ctr_calibration",
        "command": shlex.join([".venv/bin/python", "benchmarks/ctr_calibration.py", *argv_used]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "runs": [],
        "datasets": {},
    }
    for ds in datasets:
        splits, record["datasets"][ds] = load_splits(ds, args.data_dir, s.split_seed)
        for seed in [int(x) for x in args.seeds.split(",")]:
            for name in models:
                t0 = time.perf_counter()
                run = {"dataset": ds, **run_curves(name, splits, seed, s, args.epochs)}
                run["wall_s"] = round(time.perf_counter() - t0, 1)
                record["runs"].append(run)
                print(summary_table([run]).splitlines()[-1], flush=True)
                if args.out:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(record, indent=1))
    record["table"] = summary_table(record["runs"])
    print("\n" + record["table"])
    if args.out:
        args.out.write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
