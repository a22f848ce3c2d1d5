"""Is a CTR model's test logloss really above or below LR's? A paired bootstrap over the test rows.

    .venv/bin/python benchmarks/ctr_paired.py --datasets criteo,avazu --seeds 0,1,2 \\
        --models deepfm,xdeepfm:embedding_reg=0.01 --out bench_results/ctr_paired.json

Each model (a bench_ctr.py spec: a name with optional ``:key=value`` overrides, e.g. the L2 weight the validation
grid chose) and the baseline (``--baseline``, default ``lr``) is fitted exactly as in ``benchmarks/bench_ctr.py``
(same data, settings, early stopping — LR under its own cap ``--baseline-max-epochs`` as there —, temperature
scaling on valid; CPU training is deterministic per seed, so the runs are the table's runs) and its calibrated and raw test probabilities are kept. Per test row, the logloss is
averaged over the seeds; the difference model − baseline is resampled over rows (``--boot`` times, the same row
draws for every model). Reported: the mean difference, its 95% interval, and P(difference < 0) — an interval that
straddles 0 means the test set cannot tell the two apart, whatever the seed std says.

``--record bench_results/ctr.json`` bootstraps the runs of a ``bench_ctr.py`` record instead: every attnrec model
in it against its baseline, from the per-row test probabilities the record keeps. Runs without them (records
before commit fa91580, 2026-12-06 08:40, or runs reused from one) are refitted from their spec and L2 weight under
the record's settings — only when the record was made under this checkout's model defaults and Adam kernel and
names every setting (the rule ``--reuse`` applies); otherwise the script refuses, naming the record and the
settings, since a refit would bootstrap other models than the record's table.

``--pool-with other.json[,...]`` (with ``--record``): records of the same models on other splits (e.g. fresh
``--resplit`` draws). Per model (matched by name, whatever dropout each split chose) the pooled verdict: rows are
resampled within each split (stratified), and the statistic is the mean difference over all their test rows
(:func:`stratified_bootstrap`; conditional on the fitted seeds: test-row noise only). ``--models`` picks the other
records' specs by model name; a model some split lacks (or has twice) gets no verdict and is named in
``pooled_skipped``. ``--ece-boot N``: each model's ECE (the per-seed mean, as the table's) against the noise floor of a perfectly
calibrated model on as many rows, and its row bootstrap (:func:`ece_bootstrap`: on a few hundred rows not a
trustworthy interval, kept to show why).
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

from _record import git_state  # noqa: E402
from bench_ctr import (  # noqa: E402
    ADDED_SETTINGS,
    BASELINE_MAX_EPOCHS,
    DEFAULT_DATA_DIR,
    BenchSettings,
    fit_attnrec,
    load_splits,
    machine,
)

from attnrec.errors import ConfigError  # noqa: E402


def row_logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Per-row binary cross-entropy (N,) of probabilities ``p`` against 0/1 labels ``y`` (clipped as
    :func:`attnrec.evaluation.metrics.logloss` does)."""
    q = np.clip(p.astype(np.float64), eps, 1 - eps)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def paired_bootstrap(diff: np.ndarray, n_boot: int, seed: int = 0) -> dict[str, float]:
    """Mean of ``diff`` (N,) and, over ``n_boot`` resamples of its rows (fixed ``seed``: every model sees the same
    draws), the 2.5/97.5 percentiles of the resampled mean and the share of resamples below 0 — the one-split case
    of :func:`stratified_bootstrap`."""
    return stratified_bootstrap([diff], n_boot, seed)


def stratified_bootstrap(diffs: Sequence[np.ndarray], n_boot: int, seed: int = 0) -> dict[str, float]:
    """The pooled mean of per-row differences from several test splits (``diffs``: one (N_k,) array per split) and
    its bootstrap: each resample draws N_k rows with replacement *within* split k (stratified: every split keeps
    its size), and its statistic is the mean over all drawn rows (each split weighted by its row count). Returns
    ``mean``, ``lo``/``hi`` (2.5/97.5 percentiles of the resampled means) and ``p_below_0``; one split gives
    exactly :func:`paired_bootstrap`'s draws."""
    parts = [np.asarray(d, dtype=np.float64) for d in diffs]
    if not parts or any(len(d) == 0 for d in parts):
        empty = [k for k, d in enumerate(parts) if len(d) == 0]
        raise ConfigError(
            f"stratified_bootstrap needs at least one split and rows in every split: split(s) {empty} are empty "
            f"(sizes {[len(d) for d in parts]})"
        )
    rng = np.random.default_rng(seed)
    total = sum(len(d) for d in parts)
    means = np.empty(n_boot)
    for b in range(n_boot):
        means[b] = sum(d[rng.integers(0, len(d), len(d))].sum() for d in parts) / total
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {
        "mean": float(np.concatenate(parts).mean()),
        "lo": float(lo),
        "hi": float(hi),
        "p_below_0": float((means < 0).mean()),
    }


def ece_bootstrap(
    y: np.ndarray, probs: np.ndarray, n_boot: int, seed: int = 0, floor_draws: int = 500
) -> dict[str, float]:
    """The table's ECE statistic — equal-mass ECE (:data:`~attnrec.evaluation.calibration.DEFAULT_BINS` bins) per
    seed, averaged over seeds — for labels ``y`` (N,) and probabilities ``probs`` (S seeds, N): its row bootstrap
    and its noise floor.

    Row bootstrap (``n_boot`` resamples, the same rows for every seed): ECE on a finite sample is biased upward by
    label noise, and a resample (about 63% distinct rows) is noisier still, so the resampled values sit above the
    estimate (``boot_mean``) and neither the percentile range (``pct_lo``/``pct_hi``) nor the basic interval
    (``lo``/``hi`` = ``2·ece − q97.5, 2·ece − q2.5``) is a trustworthy interval on a few hundred rows; they are
    kept to show that. The noise floor is the comparison that holds: the same statistic when every seed is
    perfectly calibrated (labels drawn as Bernoulli of each seed's probabilities from one uniform per row shared
    by all seeds, so that their label noise is common as in the measured statistic; ``floor_draws`` times, from
    generator ``seed + 1``):
    ``floor_mean``, ``floor_q95``, and ``floor_p``, the share of those draws at or above the measured ECE (small:
    the miscalibration is more than noise). ``n_boot`` 0: the floor only (no ``lo``/``hi``/``boot_mean``/``pct_*``)."""
    from attnrec.evaluation.calibration import expected_calibration_error

    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    rng = np.random.default_rng(seed)
    n = len(y)

    def stat(rows: np.ndarray) -> float:
        return float(np.mean([expected_calibration_error(y[rows], p[rows]) for p in probs]))

    if n_boot < 0:
        raise ConfigError(f"ece_bootstrap: n_boot {n_boot} must be >= 0 (0: the noise floor only)")
    point = stat(np.arange(n))
    boots = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
    # one uniform per row and draw, shared by every seed: each seed's labels are Bernoulli of its own probabilities
    # (perfectly calibrated), but their noise is common, as the measured statistic's one label vector is —
    # independent draws per seed would average label noise away and narrow the floor. Its own generator, so the
    # floor does not shift with n_boot.
    floor_rng = np.random.default_rng(seed + 1)
    floor = np.empty(floor_draws)
    for d in range(floor_draws):
        u = floor_rng.random(n)
        floor[d] = np.mean([expected_calibration_error(u < p, p) for p in probs])
    out = {
        "mean": point,
        "floor_mean": float(floor.mean()),
        "floor_q95": float(np.quantile(floor, 0.95)),
        "floor_p": float((floor >= point).mean()),
    }
    if n_boot:
        q_lo, q_hi = np.percentile(boots, [2.5, 97.5])
        out.update(
            lo=float(2 * point - q_hi),
            hi=float(2 * point - q_lo),
            boot_mean=float(boots.mean()),
            pct_lo=float(q_lo),
            pct_hi=float(q_hi),
        )
    return out


def _record_run_sets(
    path: Path, record: dict[str, Any], models: str, baseline: str, by_name: bool = False
) -> dict[str, Any]:
    """``{"<dataset>/attnrec/<spec>": result}`` of record ``path`` for the baseline and the specs ``models``
    (comma-separated; empty: every attnrec spec in it) on each of its datasets; a spec it lacks raises SystemExit.
    With ``by_name`` (another split's record, whose grid may have chosen other overrides), ``models`` selects every
    spec of the same :func:`model_name`, and a model the record lacks is left to :func:`pooled_rows` to report."""
    used: dict[str, Any] = {}
    for ds in record["datasets"]:
        ours = [k.split("/", 2)[2] for k in record["results"] if k.startswith(f"{ds}/attnrec/")]
        wanted = [m for m in models.split(",") if m]
        if by_name and wanted:
            names = {model_name(m) for m in wanted}
            wanted = [k for k in ours if k != baseline and model_name(k) in names]
        for spec in [baseline, *(wanted or [k for k in ours if k != baseline])]:
            key = f"{ds}/attnrec/{spec}"
            if key not in record["results"]:
                raise SystemExit(
                    f"--record {path}: no results for {key!r} (it has {sorted(record['results'])})"
                )
            used[key] = record["results"][key]
    return used


def seed_probs(spec: str, splits: Any, seeds: Sequence[int], s: BenchSettings) -> dict[str, np.ndarray]:
    """Test probabilities (S seeds, N rows) of model ``spec`` fitted at each of ``seeds``, calibrated (``cal``) and
    raw (``raw``)."""
    cal, raw = [], []
    for seed in seeds:
        model, _ = fit_attnrec(spec, splits, seed, s)
        cal.append(model.predict_proba(splits[2]))
        raw.append(model.predict_proba(splits[2], calibrated=False))
    return {"cal": np.asarray(cal, dtype=np.float64), "raw": np.asarray(raw, dtype=np.float64)}


def seed_mean_loss(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-row logloss (N,) of probabilities ``probs`` (S seeds, N) against labels ``y`` (N,), mean over seeds."""
    return np.mean([row_logloss(y, p) for p in probs], axis=0)


def mean_losses(y: np.ndarray, probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`seed_mean_loss` of each kind (``cal``/``raw``) of ``probs``."""
    return {kind: seed_mean_loss(y, ps) for kind, ps in probs.items()}


def record_probs(run_set: dict[str, Any], spec: str, splits: Any, s: BenchSettings) -> dict[str, np.ndarray]:
    """:func:`seed_probs` of a ``bench_ctr`` result (``run_set``: its ``runs`` and ``embedding_reg``) from the
    runs' stored test probabilities, or by refitting ``spec`` at that L2 when a run lacks them."""
    runs = run_set["runs"]
    if not all("test_p" in r and "test_p_raw" in r for r in runs):
        reg = float(run_set.get("embedding_reg", 0.0))
        return seed_probs(spec, splits, [int(r["seed"]) for r in runs], replace(s, embedding_reg=reg))
    return {
        kind: np.asarray([r[field] for r in runs], dtype=np.float64)
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


#: per dataset: the test labels (N,) and each spec's test probabilities ``{"cal"|"raw": (S seeds, N)}``
DatasetProbs = dict[str, tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]]


def load_record(
    path: Path, models: str, baseline: str, data_dir: Path, by_name: bool = False
) -> tuple[list[int], DatasetProbs]:
    """``(seeds, {dataset: (labels, {spec: probabilities})})`` of the ``bench_ctr`` record at ``path``: its baseline
    and its specs ``models`` (comma-separated; empty: every attnrec spec; ``by_name``: matched by model name, see
    :func:`_record_run_sets`) on each of its datasets, baseline first, on the record's own split (its settings) —
    refitted only where :func:`check_refit` allows."""
    record = json.loads(path.read_text())
    used = _record_run_sets(path, record, models, baseline, by_name)
    lacking = [k for k, r in used.items() if not all("test_p" in x and "test_p_raw" in x for x in r["runs"])]
    check_refit(path, record["settings"], lacking)
    s = BenchSettings(**record["settings"])
    out: DatasetProbs = {}
    for ds in record["datasets"]:
        splits, _ = load_splits(ds, data_dir, s.split_seed, s.resplit)
        prefix = f"{ds}/attnrec/"
        specs = {k[len(prefix) :]: r for k, r in used.items() if k.startswith(prefix)}
        probs = {spec: record_probs(r, spec, splits, s) for spec, r in specs.items()}
        out[ds] = (splits[2].labels.astype(np.float64), probs)
    return sorted({int(x["seed"]) for r in used.values() for x in r["runs"]}), out


def model_name(spec: str) -> str:
    """The model of a bench_ctr spec: ``"nfm:dropout=0.7:bi_dropout=0.7"`` -> ``"nfm"``."""
    return spec.split(":", 1)[0]


def pooled_rows(
    sets: Sequence[DatasetProbs], baseline: str, n_boot: int
) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """The pooled verdict over several splits (``sets``: one :func:`load_record` result each): per dataset in the
    first and per model (by :func:`model_name`, whatever spec each split chose) in every split, the
    :func:`stratified_bootstrap` of the per-row difference of seed-mean logloss minus the baseline's, calibrated and
    raw. Returns ``({"<dataset>/<model>": {"cal", "raw", "specs", "rows"}}, markdown table lines, skipped)``:
    ``skipped`` names each dataset/model with no pooled verdict — ``specs_per_split`` (split 0 is the first set)
    shows the split that lacks it (``[]``) or has it more than once; each is also printed."""
    results: dict[str, Any] = {}
    skipped: list[dict[str, Any]] = []
    lines = [
        f"| dataset | model | specs per split | Δ calibrated logloss vs {baseline}, pooled [95% CI] | P(Δ < 0) | "
        "Δ raw, pooled [95% CI] | test rows per split |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds in dict.fromkeys(d for one in sets for d in one):  # the first set's datasets first
        names = dict.fromkeys(model_name(x) for one in sets if ds in one for x in one[ds][1] if x != baseline)
        for name in names:
            chosen = [[x for x in one[ds][1] if model_name(x) == name] if ds in one else [] for one in sets]
            if any(len(c) != 1 for c in chosen):
                skipped.append({"dataset": ds, "model": name, "specs_per_split": chosen})
                print(f"pooled: no verdict for {ds}/{name}: specs per split {chosen}", flush=True)
                continue
            specs = [c[0] for c in chosen]
            diffs = {
                kind: [
                    seed_mean_loss(y, probs[spec][kind]) - seed_mean_loss(y, probs[baseline][kind])
                    for (y, probs), spec in zip((one[ds] for one in sets), specs, strict=True)
                ]
                for kind in ("cal", "raw")
            }
            r = {kind: stratified_bootstrap(d, n_boot) for kind, d in diffs.items()}
            rows = [len(d) for d in diffs["cal"]]
            results[f"{ds}/{name}"] = {**r, "specs": specs, "rows": rows}
            c, w = r["cal"], r["raw"]
            lines.append(
                f"| {ds} | {name} | {', '.join(specs)} | {c['mean']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}] | "
                f"{c['p_below_0']:.2f} | {w['mean']:+.4f} [{w['lo']:+.4f}, {w['hi']:+.4f}] | "
                f"{', '.join(map(str, rows))} |"
            )
    return results, lines, skipped


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit, bootstrap, print the markdown tables and write the JSON record (``--out``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--datasets", default="criteo,avazu")
    ap.add_argument(
        "--models", default="", help="comma-separated bench_ctr specs (required without --record)"
    )
    ap.add_argument(
        "--record", type=Path, default=None, help="a bench_ctr.py --out record: bootstrap its runs"
    )
    ap.add_argument(
        "--pool-with",
        default="",
        help="with --record: comma-separated bench_ctr records of other splits; adds the pooled verdict per model",
    )
    ap.add_argument("--baseline", default="lr", help="a bench_ctr spec")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument(
        "--ece-boot", type=int, default=0, help="row resamples of each model's ECE interval (0: none)"
    )
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument(
        "--resplit", action="store_true", help="criteo/avazu: redraw the split (bench_ctr --resplit)"
    )
    ap.add_argument(
        "--baseline-max-epochs",
        type=int,
        default=BASELINE_MAX_EPOCHS,
        help="without --record: LR's epoch cap (bench_ctr --baseline-max-epochs; the others: 30)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.models and args.record is None:
        ap.error("give --models or --record")
    if args.pool_with and args.record is None:
        ap.error("--pool-with pools records: give --record too")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.record is not None:
        seeds, sets = load_record(args.record, args.models, args.baseline, args.data_dir)
    else:
        s = BenchSettings(
            split_seed=args.split_seed, resplit=args.resplit, baseline_max_epochs=args.baseline_max_epochs
        )
        seeds = [int(x) for x in args.seeds.split(",")]
        sets = {}
        for ds in (d for d in args.datasets.split(",") if d):
            splits, _ = load_splits(ds, args.data_dir, s.split_seed, s.resplit)
            specs = [args.baseline, *(m for m in args.models.split(",") if m)]
            probs = {spec: seed_probs(spec, splits, seeds, s) for spec in specs}
            sets[ds] = (splits[2].labels.astype(np.float64), probs)
    results: dict[str, Any] = {}
    ece: dict[str, Any] = {}
    lines = [
        f"| dataset | model | Δ calibrated logloss vs {args.baseline} [95% CI] | P(Δ < 0) | Δ raw [95% CI] | test rows |",
        "|---|---|---|---|---|---|",
    ]
    for ds, (y, probs) in sets.items():
        base = mean_losses(y, probs[args.baseline])
        for spec, p in probs.items():
            if args.ece_boot:
                ece[f"{ds}/{spec}"] = {
                    kind: ece_bootstrap(y, p[kind], args.ece_boot) for kind in ("cal", "raw")
                }
            if spec == args.baseline:
                continue
            mine = mean_losses(y, p)
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
    extra: dict[str, Any] = {}
    if ece:
        extra["ece"] = ece
        ece_lines = [
            "| dataset | model | calibrated ECE (seed mean) | raw ECE | calibrated ECE of a perfectly calibrated "
            "model: mean, 95th pct | P(≥ measured) | row resamples: mean [2.5, 97.5 pct] |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, e in ece.items():
            ds, spec = key.split("/", 1)
            c, w = e["cal"], e["raw"]
            ece_lines.append(
                f"| {ds} | {spec} | {c['mean']:.4f} | {w['mean']:.4f} | {c['floor_mean']:.4f}, {c['floor_q95']:.4f} | "
                f"{c['floor_p']:.2f} | {c['boot_mean']:.4f} [{c['pct_lo']:.4f}, {c['pct_hi']:.4f}] |"
            )
        extra["ece_table"] = "\n".join(ece_lines)
        print("\n" + extra["ece_table"])
    if args.pool_with:
        others = [
            load_record(Path(x), args.models, args.baseline, args.data_dir, by_name=True)[1]
            for x in args.pool_with.split(",")
            if x
        ]
        pooled, pooled_lines, skipped = pooled_rows([sets, *others], args.baseline, args.boot)
        extra.update(pooled=pooled, pooled_table="\n".join(pooled_lines), pooled_skipped=skipped)
        print("\n" + extra["pooled_table"])
    record = {
        "bench": "ctr_paired",
        "command": shlex.join(
            [".venv/bin/python", "benchmarks/ctr_paired.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        # HEAD, "+dirty" when src/ or benchmarks/ differ from it (the tree is shared)
        "commit": git_state(Path(__file__).resolve().parent),
        "wall_s": round(time.perf_counter() - t0, 1),
        "seeds": seeds,
        "results": results,
        "table": table,
        **extra,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
