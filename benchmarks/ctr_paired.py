"""Is a CTR model's test logloss really above or below LR's? A paired bootstrap over the test rows.

    .venv/bin/python benchmarks/ctr_paired.py --datasets criteo,avazu --seeds 0,1,2 \\
        --models deepfm,xdeepfm:embedding_reg=0.01 --out bench_results/ctr_paired.json

Each model (a bench_ctr.py spec: a name with optional ``:key=value`` overrides, e.g. the L2 weight the validation
grid chose) and the baseline (``--baseline``, default ``lr``) is fitted exactly as in ``benchmarks/bench_ctr.py``
(same data, settings, early stopping, temperature scaling on valid; CPU training is deterministic per seed, so the
runs are the table's runs) and its calibrated and raw test probabilities are kept. Per test row, the logloss is
averaged over the seeds; the difference model − baseline is resampled over rows (``--boot`` times, the same row
draws for every model). Reported: the mean difference, its 95% interval, and P(difference < 0) — an interval that
straddles 0 means the test set cannot tell the two apart, whatever the seed std says.

``--record bench_results/ctr.json`` bootstraps the runs of a ``bench_ctr.py`` record instead: every attnrec model
in it against its baseline, from the per-row test probabilities the record keeps. Runs without them (records
before commit fa91580, 2026-12-06 08:40, or runs reused from one) are refitted from their spec and L2 weight under
the record's settings — only when the record was made under this checkout's model defaults and Adam kernel and
names every setting (the rule ``--reuse`` applies); otherwise the script refuses, naming the record and the
settings, since a refit would bootstrap other models than the record's table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ctr import (  # noqa: E402
    ADDED_SETTINGS,
    DEFAULT_DATA_DIR,
    BenchSettings,
    fit_attnrec,
    load_splits,
    machine,
)


def row_logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Per-row binary cross-entropy (N,) of probabilities ``p`` against 0/1 labels ``y`` (clipped as
    :func:`attnrec.evaluation.metrics.logloss` does)."""
    q = np.clip(p.astype(np.float64), eps, 1 - eps)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def paired_bootstrap(diff: np.ndarray, n_boot: int, seed: int = 0) -> dict[str, float]:
    """Mean of ``diff`` (N,) and, over ``n_boot`` resamples of its rows (fixed ``seed``: every model sees the same
    draws), the 2.5/97.5 percentiles of the resampled mean and the share of resamples below 0."""
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    n = len(diff)
    for b in range(n_boot):
        means[b] = diff[rng.integers(0, n, n)].mean()
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {
        "mean": float(diff.mean()),
        "lo": float(lo),
        "hi": float(hi),
        "p_below_0": float((means < 0).mean()),
    }


def _record_run_sets(path: Path, record: dict[str, Any], models: str, baseline: str) -> dict[str, Any]:
    """``{"<dataset>/attnrec/<spec>": result}`` of record ``path`` for the baseline and the specs ``models``
    (comma-separated; empty: every attnrec spec in it) on each of its datasets; a spec it lacks raises SystemExit."""
    used: dict[str, Any] = {}
    for ds in record["datasets"]:
        ours = [k.split("/", 2)[2] for k in record["results"] if k.startswith(f"{ds}/attnrec/")]
        for spec in [baseline, *([m for m in models.split(",") if m] or [k for k in ours if k != baseline])]:
            key = f"{ds}/attnrec/{spec}"
            if key not in record["results"]:
                raise SystemExit(
                    f"--record {path}: no results for {key!r} (it has {sorted(record['results'])})"
                )
            used[key] = record["results"][key]
    return used


def seed_mean_losses(spec: str, splits: Any, seeds: Sequence[int], s: BenchSettings) -> dict[str, np.ndarray]:
    """Per-row test logloss (N,) of model ``spec``, calibrated (``cal``) and raw (``raw``), mean over ``seeds``."""
    y = splits[2].labels.astype(np.float64)
    cal, raw = [], []
    for seed in seeds:
        model, _ = fit_attnrec(spec, splits, seed, s)
        cal.append(row_logloss(y, model.predict_proba(splits[2])))
        raw.append(row_logloss(y, model.predict_proba(splits[2], calibrated=False)))
    return {"cal": np.mean(cal, axis=0), "raw": np.mean(raw, axis=0)}


def record_losses(run_set: dict[str, Any], spec: str, splits: Any, s: BenchSettings) -> dict[str, np.ndarray]:
    """:func:`seed_mean_losses` of a ``bench_ctr`` result (``run_set``: its ``runs`` and ``embedding_reg``) from the
    runs' stored test probabilities, or by refitting ``spec`` at that L2 when a run lacks them."""
    runs = run_set["runs"]
    if not all("test_p" in r and "test_p_raw" in r for r in runs):
        reg = float(run_set.get("embedding_reg", 0.0))
        return seed_mean_losses(spec, splits, [int(r["seed"]) for r in runs], replace(s, embedding_reg=reg))
    y = splits[2].labels.astype(np.float64)
    return {
        kind: np.mean([row_logloss(y, np.asarray(r[field])) for r in runs], axis=0)
        for kind, field in (("cal", "test_p"), ("raw", "test_p_raw"))
    }


#: settings that name the code rather than the run: a refit today runs this checkout's values of them
_CODE_STAMPS = ("adam_kernel", "model_defaults")


def check_refit(path: Path, settings: dict[str, Any], lacking: Sequence[str]) -> None:
    """Raise SystemExit unless the runs ``lacking`` stored test probabilities (keys of record ``path``) can be
    refitted as they ran: the record's ``settings`` must name every :class:`BenchSettings` field and carry this
    checkout's :data:`_CODE_STAMPS` (a record without them ran under older model defaults or Adam kernel); a
    setting of ``ADDED_SETTINGS`` may be absent (such a record ran under its listed value)."""
    if not lacking:
        return
    today = asdict(BenchSettings())
    missing = [k for k in today if k not in settings and k not in ADDED_SETTINGS]
    stale = [
        f"{k} {settings[k]!r} (this code: {today[k]!r})"
        for k in _CODE_STAMPS
        if k in settings and settings[k] != today[k]
    ]
    if missing or stale:
        why = "; ".join([*([f"it lacks the settings {missing}"] if missing else []), *stale])
        raise SystemExit(
            f"--record {path}: {sorted(lacking)} have no stored test probabilities (test_p), and a refit would not "
            f"be the record's runs: {why}. Rerun bench_ctr.py for a record that stores them."
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit, bootstrap, print the markdown table and write the JSON record (``--out``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--datasets", default="criteo,avazu")
    ap.add_argument(
        "--models", default="", help="comma-separated bench_ctr specs (required without --record)"
    )
    ap.add_argument(
        "--record", type=Path, default=None, help="a bench_ctr.py --out record: bootstrap its runs"
    )
    ap.add_argument("--baseline", default="lr", help="a bench_ctr spec")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument(
        "--resplit", action="store_true", help="criteo/avazu: redraw the split (bench_ctr --resplit)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.models and args.record is None:
        ap.error("give --models or --record")
    torch.set_num_threads(args.threads)
    s = BenchSettings(split_seed=args.split_seed, resplit=args.resplit)
    record_in = json.loads(args.record.read_text()) if args.record else None
    seeds = [int(x) for x in args.seeds.split(",")]
    if record_in is not None:
        used = _record_run_sets(args.record, record_in, args.models, args.baseline)
        lacking = [
            k for k, r in used.items() if not all("test_p" in x and "test_p_raw" in x for x in r["runs"])
        ]
        check_refit(args.record, record_in["settings"], lacking)
        s = BenchSettings(**record_in["settings"])
        args.datasets = ",".join(record_in["datasets"])
        seeds = sorted({int(x["seed"]) for r in used.values() for x in r["runs"]})
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    lines = [
        f"| dataset | model | Δ calibrated logloss vs {args.baseline} [95% CI] | P(Δ < 0) | Δ raw [95% CI] | test rows |",
        "|---|---|---|---|---|---|",
    ]
    for ds in (d for d in args.datasets.split(",") if d):
        splits, _ = load_splits(ds, args.data_dir, s.split_seed, s.resplit)
        if record_in is not None:
            ours = {
                k.split("/", 2)[2]: v
                for k, v in record_in["results"].items()
                if k.startswith(f"{ds}/attnrec/")
            }
            wanted = [m for m in args.models.split(",") if m] or [k for k in ours if k != args.baseline]
            base = record_losses(ours[args.baseline], args.baseline, splits, s)
        else:
            wanted = [m for m in args.models.split(",") if m]
            base = seed_mean_losses(args.baseline, splits, seeds, s)
        for spec in wanted:
            mine = (
                record_losses(ours[spec], spec, splits, s)
                if record_in
                else seed_mean_losses(spec, splits, seeds, s)
            )
            r = {kind: paired_bootstrap(mine[kind] - base[kind], args.boot) for kind in ("cal", "raw")}
            results[f"{ds}/{spec}"] = r
            c, w = r["cal"], r["raw"]
            lines.append(
                f"| {ds} | {spec} | {c['mean']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}] | {c['p_below_0']:.2f} | "
                f"{w['mean']:+.4f} [{w['lo']:+.4f}, {w['hi']:+.4f}] | {len(base['cal'])} |"
            )
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    record = {
        "bench": "ctr_paired",
        "command": shlex.join(
            [".venv/bin/python", "benchmarks/ctr_paired.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "seeds": seeds,
        "results": results,
        "table": table,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
