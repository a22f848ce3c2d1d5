"""K-fold cross-fitting of the CTR benchmark on the Criteo/Avazu samples: every row is a test row exactly once.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/ctr_crossfit.py run --dataset criteo --folds 10 \\
        --perm-seed 19 --seeds 0,1,2 --l2-grid 0,1e-1 --grid-seeds 0 --stop both --out-dir bench_results/ctr_crossfit
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/ctr_crossfit.py report --dataset criteo --boot 2000 \\
        --floor-draws 500 --ece-boot 200 --out bench_results/ctr_crossfit_criteo_report.json

(the recorded run's commands, BENCHMARKS.md "CTR cross-fitted"; the permutation seed 19 is the default.
``--linear-reg 0`` gives the first-order weights of every model with a first-order term except LR their own L2
weight (``linear_reg``, here 0: only the embeddings are penalised), and ``--grid-for lr=0,1e-1`` gives a model its
own L2 grid; ``--linear-init lr`` starts the first-order term of the same models (not LR's) from an LR that each
such fit first fits itself on the fold's training rows with early stopping on its validation rows (the same
trainer, seed and L2 on the first-order weights as the model: ``linear_reg`` when set, else the grid's
``embedding_reg``; ``CTRRecommender.initial_module``), so no test row reaches it. All three are part of the protocol,
so folds of other values are never mixed. ``--validate-start`` validates every fit's starting point as epoch 0
(``TrainerConfig.validate_start``), so a model that no epoch improves restores where it started; also part of the
protocol. A model's config options go in ``--models`` as a spec, ``dcn:use_linear=true`` (``bench_ctr.parse_spec``;
the spec is the model's name in the records and the report), so they are recorded as the protocol's models. Seed 18
was a timing probe's, whose fold-0 test scores were printed: those 800 rows are test rows again under seed 19, as
every row is. The probe's scores informed no choice except the grid's cut to {0, 1e-1}, made for the budget after
they were printed.)

Why: a sample's own test file has ~400 rows, too few to tell a model's logloss from LR's or to read an ECE of 0.02
(the ECE of a perfectly calibrated model on ~400 rows is ~0.055). Cross-fitting predicts each of the ~8k rows once,
by models that never saw it in training, validation or selection.

Protocol: the rows of a sample's three files (:func:`ctr_splits.sample_frames`) are pooled, permuted with
``--perm-seed`` and cut into ``--folds`` K folds (:func:`fold_indices`). Fold k: test = fold k, validation = fold
(k+1) mod K, training = the other K−2 folds (:func:`fold_roles`); the vocabularies (Criteo's bucket vocabulary
included; the log2 bucketing itself is a fixed per-row transform) are fitted on that fold's training rows only
(:func:`ctr_splits.encode_parts`, the benchmark's own split path). Per fold, each model's L2 weight is chosen on the fold's validation logloss (``ctr_grid.select_l2``, test unread); the test seeds
then run at the chosen value (the grid's fit of a test seed at that value *is* that seed's run — same train and
valid — so it is kept, not refitted), each scored on the fold's test rows raw and after temperature scaling fitted
on the fold's validation. One JSON file per fold (``<out-dir>/<dataset>/fold_<k>.json``), written when the fold is
done: a rerun with the same protocol skips finished folds.

``report`` assembles the out-of-fold probabilities (:func:`assemble_oof`: each fold's test predictions at its rows)
and reports per model, on all rows: AUC, logloss, ECE (15 equal-mass bins), calibrated logloss/ECE, mean ± std
over seeds; the mean per-fold AUC beside the pooled one (the pooled AUC ranks rows scored by K different models, so
it also pays for their offsets); Δ calibrated logloss vs LR with a paired bootstrap over rows stratified by fold
(:func:`fold_delta`); the ECE floor of a perfectly calibrated model with these probabilities
(``ctr_paired.ece_bootstrap``) and the verdicts (:func:`logloss_verdict`, :func:`ece_verdict`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import git_state  # noqa: E402
from bench_ctr import MODELS, BenchSettings, fit_attnrec, machine  # noqa: E402 - the folder is not a package
from ctr_calibration import scores  # noqa: E402
from ctr_grid import ADDED_SETTINGS, check_grid_seeds, select_l2  # noqa: E402
from ctr_paired import ece_bootstrap, seed_mean_loss, stratified_bootstrap  # noqa: E402
from ctr_splits import DEFAULT_DATA_DIR, Splits, encode_parts, sample_frames  # noqa: E402

from attnrec.errors import ConfigError  # noqa: E402

ECE_GOAL = 0.02
BASELINE = "lr"


def fold_indices(n_rows: int, n_folds: int, seed: int) -> list[np.ndarray]:
    """``n_folds`` disjoint row-index arrays covering ``range(n_rows)``: a permutation with ``seed`` cut into
    near-equal parts (sizes differ by at most one)."""
    if n_folds < 3 or n_folds > n_rows:
        raise ConfigError(
            f"--folds {n_folds}: cross-fitting needs 3 <= K <= rows ({n_rows}) (test, valid, train)"
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    return [np.asarray(f, dtype=np.int64) for f in np.array_split(order, n_folds)]


def fold_roles(folds: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, valid, test)`` row indices of fold ``k``: test = fold k, valid = fold (k+1) mod K, train = the rest."""
    n = len(folds)
    if not 0 <= k < n:
        raise ConfigError(f"fold {k} is not in 0..{n - 1}")
    v = (k + 1) % n
    train = np.concatenate([folds[j] for j in range(n) if j not in (k, v)])
    return train, folds[v], folds[k]


def fold_splits(frame: Any, schema: Any, folds: Sequence[np.ndarray], k: int) -> Splits:
    """Fold ``k``'s ``(train, valid, test)`` of the pooled raw polars ``frame``, encoded by a FeatureEncoder fitted
    on its training rows only (:func:`ctr_splits.encode_parts`): an id seen only outside training maps to OOV 0."""
    return encode_parts([frame[idx] for idx in fold_roles(folds, k)], schema)


def pooled_frame(dataset: str, data_dir: Path) -> tuple[Any, Any, list[str]]:
    """``(frame, schema, files)``: the raw rows of the sample's train, dev and test files, in that order."""
    import polars as pl

    if dataset not in ("criteo", "avazu"):
        raise ConfigError(f"--dataset {dataset!r}: cross-fitting is for the criteo/avazu samples")
    frames, schema, files = sample_frames(dataset, data_dir)
    return pl.concat(frames, how="vertical"), schema, files


def assemble_oof(n_rows: int, test_idx: Sequence[np.ndarray], parts: Sequence[np.ndarray]) -> np.ndarray:
    """Out-of-fold array (..., n_rows): ``parts[k]`` (..., len(test_idx[k])) put at rows ``test_idx[k]``. Every row
    must be filled exactly once (else ConfigError naming the rows)."""
    lead = np.asarray(parts[0]).shape[:-1]
    out = np.full((*lead, n_rows), np.nan)
    hits = np.zeros(n_rows, dtype=np.int64)
    for idx, part in zip(test_idx, parts, strict=True):
        out[..., idx] = part
        np.add.at(hits, idx, 1)
    bad = np.flatnonzero(hits != 1)
    if bad.size:
        raise ConfigError(
            f"out-of-fold rows filled {hits[bad[:5]].tolist()} times: rows {bad[:5].tolist()}..."
        )
    return out


def fold_delta(
    y_folds: Sequence[np.ndarray],
    model_folds: Sequence[np.ndarray],
    base_folds: Sequence[np.ndarray],
    n_boot: int,
    seed: int = 0,
) -> dict[str, float]:
    """Δ logloss model − baseline over all rows: per fold, the per-row difference of seed-mean logloss (model
    probabilities (S, n_k) against the baseline's), bootstrapped with rows resampled within each fold
    (``ctr_paired.stratified_bootstrap``: every fold keeps its size)."""
    diffs = [
        seed_mean_loss(y, m) - seed_mean_loss(y, b)
        for y, m, b in zip(y_folds, model_folds, base_folds, strict=True)
    ]
    return stratified_bootstrap(diffs, n_boot, seed)


def logloss_verdict(lo: float, hi: float) -> str:
    """The declared rule for "logloss ≤ LR's": met if the 95% interval of Δ is below 0, missed if above 0."""
    return "met" if hi < 0 else "missed" if lo > 0 else "too close to call"


def ece_verdict(ece: float, floor_p: float) -> str:
    """The declared rule for "ECE ≤ 0.02" (seed-mean calibrated ECE on all rows): met if ≤ 0.02; "missed" if above it
    and a perfectly calibrated model reaches it in under 5% of draws (``floor_p`` < 0.05); else too close to call.

    "missed" thus rejects *perfect calibration* (true ECE 0), not "true ECE ≤ 0.02"; and the measured ECE is biased
    upward by label noise of about the floor's mean, on "met" as on "missed" (the rule as declared, kept)."""
    return "met" if ece <= ECE_GOAL else "missed" if floor_p < 0.05 else "too close to call"


def _fit_scores(report: Any) -> dict[str, Any]:
    """The grid's view of a fit report: the restored epoch's validation scores, the epochs run, and with
    ``--validate-start`` the starting point's validation logloss (``start_valid_logloss``, epoch 0; else None)."""
    history = getattr(report, "history", None) or [{}]
    start = history[0] if history[0].get("epoch") == 0 else {}
    return {
        "valid_logloss": float(report.best_valid.get("logloss", float("nan"))),
        "valid_auc": float(report.best_valid.get("auc", float("nan"))),
        "best_epoch": report.best_epoch,
        "epochs_run": report.epochs_run,
        "start_valid_logloss": start.get("valid_logloss"),
    }


def run_fold(
    ds: str,
    splits: Splits,
    models: Sequence[str],
    seeds: Sequence[int],
    s: BenchSettings,
    l2_grid: Sequence[float],
    grid_seeds: tuple[int, ...],
    log: Callable[[str], None] = print,
    model_grids: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """One fold: each model's L2 chosen on the fold's validation (``l2_grid``, or the model's own grid in
    ``model_grids``; empty: ``s.embedding_reg``), then every seed at it, scored on the fold's test rows. Returns
    ``{"chosen_l2", "l2_grid", "runs": {model: [run per seed]}}``; a run holds raw/calibrated
    ``auc``/``logloss``/``ece``, ``temperature``, epochs, the ``linear_reg`` and ``linear_init`` the model ran with
    (``s.linear_reg``/``s.linear_init`` where ``bench_ctr.with_linear_reg``/``with_linear_init`` apply them, else
    None/"zero"), with ``linear_init`` "lr" the warm start's LR (``first_order``: its validation scores and epochs),
    and the test probabilities ``test_p`` (calibrated) and ``test_p_raw`` (7 decimals)."""
    kept: dict[tuple[str, float, int], tuple[Any, Any]] = {}

    def grid_fit(spec: str, parts: Splits, seed: int, st: BenchSettings) -> dict[str, Any]:
        model, report = fit_attnrec(spec, parts, seed, st)
        if seed in seeds:  # the same train/valid as the test run of this seed: keep it instead of refitting
            kept[(spec, float(st.embedding_reg), seed)] = (model, report)
        return _fit_scores(report)

    chosen = {f"{ds}/attnrec/{m}": float(s.embedding_reg) for m in models}
    grid: dict[str, Any] = {}
    own = model_grids or {}
    groups: dict[tuple[float, ...], list[str]] = {}  # models by grid, in --models order
    for m in models:
        groups.setdefault(tuple(own.get(m, l2_grid)), []).append(m)
    for values, group in groups.items():
        if values:
            got, scores_ = select_l2(
                ds, [("attnrec", m, grid_fit) for m in group], splits, values, grid_seeds, s, log
            )
            chosen.update(got)
            grid.update(scores_)
    test = splits[2]
    y = test.labels.astype(np.float64)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for seed in seeds:
        for m in models:
            reg = chosen[f"{ds}/attnrec/{m}"]
            t0 = time.perf_counter()
            hit = kept.pop((m, reg, seed), None)
            model, report = (
                hit if hit is not None else fit_attnrec(m, splits, seed, replace(s, embedding_reg=reg))
            )
            p_cal = model.predict_proba(test).astype(np.float64)
            p_raw = model.predict_proba(test, calibrated=False).astype(np.float64)
            run = {
                "seed": seed,
                "embedding_reg": reg,
                **scores(y, p_raw),
                **{f"cal_{k}": v for k, v in scores(y, p_cal).items()},
                "temperature": model.calibrator.temperature if model.calibrator is not None else 1.0,
                "linear_reg": model.config.linear_reg,
                "linear_init": model.config.linear_init,
                # the LR the first-order term started from (linear_init "lr"; fitted on train/valid only)
                "first_order": None
                if model.first_order_report is None
                else _fit_scores(model.first_order_report),
                **_fit_scores(report),
                "from_grid": hit is not None,
                "wall_s": round(time.perf_counter() - t0, 2),
                "test_p": np.round(p_cal, 7).tolist(),
                "test_p_raw": np.round(p_raw, 7).tolist(),
            }
            runs[m].append(run)
            log(
                f"{ds}/{m} L2 {reg:g} seed {seed}: AUC {run['auc']:.4f} logloss {run['logloss']:.4f} calibrated "
                f"logloss {run['cal_logloss']:.4f} ECE {run['cal_ece']:.4f} epochs {run['epochs_run']} "
                f"(best {run['best_epoch']}){' [grid fit]' if hit is not None else ''}"
            )
    return {"chosen_l2": {k.rsplit("/", 1)[1]: v for k, v in chosen.items()}, "l2_grid": grid, "runs": runs}


def protocol_of(args: argparse.Namespace, s: BenchSettings) -> dict[str, Any]:
    """What a fold file must share with this run to be reused: dataset, folds, permutation seed, models, seeds,
    grid, per-model grids, grid seeds and every benchmark setting (``linear_reg``, ``linear_init`` and the epoch cap
    included)."""
    return {
        "dataset": args.dataset,
        "folds": args.folds,
        "perm_seed": args.perm_seed,
        "models": list(args.models),
        "seeds": list(args.seeds),
        "l2_grid": list(args.l2_grid),
        "model_grids": {m: list(v) for m, v in sorted(args.model_grids.items())},
        "grid_seeds": list(args.grid_seeds),
        "settings": asdict(s),
    }


#: protocol keys added after fold files were written, with the value every file without them ran under
ADDED_PROTOCOL: dict[str, Any] = {"model_grids": {}}


def same_protocol(theirs: dict[str, Any], mine: dict[str, Any]) -> bool:
    """Whether a fold file's protocol ``theirs`` is ``mine``, reading a key it lacks (one added later: in
    :data:`ADDED_PROTOCOL`, or a setting in ``ctr_grid.ADDED_SETTINGS``) as the value it ran under. Any other
    difference — ``linear_reg``, ``linear_init``, the grids, the epoch cap — is another protocol: such folds are
    never mixed."""

    def filled(p: dict[str, Any]) -> dict[str, Any]:
        settings = {**ADDED_SETTINGS, **p.get("settings", {})}
        return {**ADDED_PROTOCOL, **p, "settings": settings}

    return filled(theirs) == filled(mine)


def run(args: argparse.Namespace) -> None:
    """Run every fold (or ``--only-folds``) not already in ``--out-dir`` with this protocol; one file per fold."""
    torch.set_num_threads(args.threads)
    s = BenchSettings(
        stop=args.stop,
        max_epochs=args.max_epochs,
        patience=args.patience,
        linear_reg=args.linear_reg,
        linear_init=args.linear_init,
        validate_start=args.validate_start,
    )
    proto = protocol_of(args, s)
    frame, schema, files = pooled_frame(args.dataset, args.data_dir)
    folds = fold_indices(frame.height, args.folds, args.perm_seed)
    out_dir = args.out_dir / args.dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = args.only_folds if args.only_folds else list(range(args.folds))
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    for k in todo:
        path = out_dir / f"fold_{k}.json"
        if path.exists():
            done = json.loads(path.read_text())
            if not same_protocol(done["protocol"], proto):
                raise SystemExit(f"{path} was made under another protocol; use another --out-dir")
            log(f"# fold {k}: done already ({path})")
            continue
        t0, load0 = time.perf_counter(), os.getloadavg()
        splits = fold_splits(frame, schema, folds, k)
        tr_idx, va_idx, te_idx = fold_roles(folds, k)
        log(f"# {args.dataset} fold {k}: rows {[len(x) for x in splits]}, load {load0[0]:.2f}")
        result = run_fold(
            args.dataset,
            splits,
            args.models,
            args.seeds,
            s,
            args.l2_grid,
            args.grid_seeds,
            log,
            args.model_grids,
        )
        record = {
            "bench": "ctr_crossfit",
            "fold": k,
            "protocol": proto,
            "command": shlex.join([".venv/bin/python", "benchmarks/ctr_crossfit.py", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "commit": git_state(Path(__file__).resolve().parent),
            "machine": machine(),
            "torch_threads": torch.get_num_threads(),
            "files": files,
            "rows": {"train": len(tr_idx), "valid": len(va_idx), "test": len(te_idx)},
            "positive_rate": {
                p: round(d.positive_rate, 4) for p, d in zip(("train", "valid", "test"), splits, strict=True)
            },
            "valid_fold": (k + 1) % args.folds,
            "test_idx": te_idx.tolist(),
            "test_y": splits[2].labels.astype(int).tolist(),
            "load_start": load0,
            "load_end": os.getloadavg(),
            "wall_s": round(time.perf_counter() - t0, 1),
            **result,
        }
        path.write_text(json.dumps(record))
        log(f"# fold {k} done: {record['wall_s']} s, load {load0[0]:.2f} -> {record['load_end'][0]:.2f}")


def load_folds(folder: Path) -> list[dict[str, Any]]:
    """The fold files of one dataset's run, in fold order; every fold of the protocol must be there, under one
    protocol, and their test rows must partition the pooled rows (checked by :func:`assemble_oof`)."""
    paths = sorted(folder.glob("fold_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    if not paths:
        raise SystemExit(f"{folder}: no fold files")
    folds = []
    for p in paths:
        try:
            folds.append(json.loads(p.read_text()))
        except json.JSONDecodeError as err:
            raise SystemExit(f"{p}: not a fold record ({err}); rerun that fold (--only-folds)") from None
    proto = folds[0]["protocol"]
    other = [str(p) for p, f in zip(paths, folds, strict=True) if not same_protocol(f["protocol"], proto)]
    if other:
        raise SystemExit(f"{other}: made under another protocol than {paths[0]}; one run per folder")
    missing = sorted(set(range(proto["folds"])) - {f["fold"] for f in folds})
    if missing:
        raise SystemExit(
            f"{folder}: fold(s) {missing} of {proto['folds']} missing; run them first (--only-folds)"
        )
    return folds


def _ms(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std())}


def report(folds: list[dict[str, Any]], n_boot: int, floor_draws: int, ece_boot: int) -> dict[str, Any]:
    """Per model, on all out-of-fold rows: scores per seed (mean ± population std), mean per-fold AUC, Δ calibrated
    (and raw) logloss vs LR stratified by fold with its verdict, the calibrated ECE against its floor and its
    verdict. Returns ``{"models": {model: ...}, "rows", "positive_rate", "table"}``."""
    test_idx = [np.asarray(f["test_idx"]) for f in folds]
    n = sum(len(i) for i in test_idx)
    y_folds = [np.asarray(f["test_y"], dtype=np.float64) for f in folds]
    y = assemble_oof(n, test_idx, y_folds)
    models = folds[0]["protocol"]["models"]

    def probs(m: str, field: str) -> list[np.ndarray]:  # per fold: (S seeds, n_k)
        return [np.asarray([r[field] for r in f["runs"][m]], dtype=np.float64) for f in folds]

    out: dict[str, Any] = {}
    base = {kind: probs(BASELINE, field) for kind, field in (("cal", "test_p"), ("raw", "test_p_raw"))}
    for m in models:
        row: dict[str, Any] = {"chosen_l2": [f["chosen_l2"][m] for f in folds]}
        # the first-order weights' own L2 (None: shared with embedding_reg; records before it: None)
        lin = {r.get("linear_reg") for f in folds for r in f["runs"][m]}
        row["linear_reg"] = lin.pop() if len(lin) == 1 else sorted(lin, key=str)
        # how the first-order term started (records before the option: "zero")
        init = {r.get("linear_init", "zero") for f in folds for r in f["runs"][m]}
        row["linear_init"] = init.pop() if len(init) == 1 else sorted(init)
        for kind, field in (("cal", "test_p"), ("raw", "test_p_raw")):
            per_fold = probs(m, field)
            oof = assemble_oof(n, test_idx, per_fold)  # (S, n)
            per_seed = [scores(y, p) for p in oof]
            prefix = "cal_" if kind == "cal" else ""
            for k in ("auc", "logloss", "ece"):
                row[prefix + k] = _ms([x[k] for x in per_seed])
            row[prefix + "fold_auc"] = float(
                np.mean([np.mean([r[prefix + "auc"] for r in f["runs"][m]]) for f in folds])
            )
            if m != BASELINE:
                row[f"delta_{kind}"] = fold_delta(y_folds, per_fold, base[kind], n_boot)
            if kind == "cal":
                row["ece_floor"] = ece_bootstrap(y, oof, ece_boot, floor_draws=floor_draws)
        row["temperature"] = _ms([r["temperature"] for f in folds for r in f["runs"][m]])
        row["epochs_run"] = _ms([r["epochs_run"] for f in folds for r in f["runs"][m]])
        restored = [r.get("best_epoch") for f in folds for r in f["runs"][m]]
        if restored and None not in restored:  # the restored (best validation) epoch
            row["best_epoch"] = _ms(restored)
            # how many test runs kept their starting point (epoch 0: only with --validate-start)
            row["restored_start"] = {"runs": sum(e == 0 for e in restored), "of": len(restored)}
        e = row["ece_floor"]
        row["ece_verdict"] = ece_verdict(row["cal_ece"]["mean"], e["floor_p"])
        if m != BASELINE:
            d = row["delta_cal"]
            row["logloss_verdict"] = logloss_verdict(d["lo"], d["hi"])
        out[m] = row
    return {"models": out, "rows": n, "positive_rate": float(y.mean()), "table": markdown(out)}


def markdown(rows: dict[str, Any]) -> str:
    """The report's table: one line per model."""

    def ms(x: dict[str, float]) -> str:
        return f"{x['mean']:.4f} ± {x['std']:.4f}"

    lines = [
        "| model | L2 chosen per fold | pooled AUC | mean per-fold AUC | logloss | ECE | calibrated logloss | "
        "calibrated ECE | ECE floor: mean, 95th pct | P(≥ measured) | ECE ≤ 0.02 | T | Δ calibrated logloss vs LR "
        "[95% CI] | P(Δ < 0) | logloss ≤ LR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in rows.items():
        e = r["ece_floor"]
        d = r.get("delta_cal")
        delta = f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] | {d['p_below_0']:.2f}" if d else "— | —"
        l2 = ",".join(f"{v:g}" for v in r["chosen_l2"])
        marks = [f"linear_reg {r['linear_reg']}"] if r.get("linear_reg") is not None else []
        if r.get("linear_init", "zero") != "zero":
            marks.append(f"linear_init {r['linear_init']}")
        name = f"{m} ({', '.join(marks)})" if marks else m
        lines.append(
            f"| {name} | {l2} | {ms(r['auc'])} | {r['fold_auc']:.4f} | {ms(r['logloss'])} | {ms(r['ece'])} | "
            f"{ms(r['cal_logloss'])} | {ms(r['cal_ece'])} | {e['floor_mean']:.4f}, {e['floor_q95']:.4f} | "
            f"{e['floor_p']:.3f} | {r['ece_verdict']} | {r['temperature']['mean']:.2f} | {delta} | "
            f"{r.get('logloss_verdict', 'baseline')} |"
        )
    return "\n".join(lines)


def parse_grid_for(items: Sequence[str], models: Sequence[str]) -> dict[str, list[float]]:
    """``["lr=0,0.1"]`` -> ``{"lr": [0.0, 0.1]}``; a model not in ``models``, one given twice, or a malformed item
    raises SystemExit naming it."""
    out: dict[str, list[float]] = {}
    for item in items:
        m, sep, values = item.partition("=")
        try:
            grid = [float(x) for x in values.split(",") if x]
        except ValueError:
            grid = []
        if not sep or not grid or min(grid) < 0:
            raise SystemExit(f"--grid-for {item!r}: expected MODEL=V1,V2 (numbers >= 0)")
        if m not in models or m in out:
            why = "given twice" if m in out else f"not in --models {','.join(models)}"
            raise SystemExit(f"--grid-for {item!r}: model {m!r} {why}")
        out[m] = grid
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """``run`` (fit the folds) or ``report`` (assemble and score them)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="fit every fold not yet in --out-dir")
    r.add_argument("--folds", type=int, default=10)
    r.add_argument("--perm-seed", type=int, default=19, help="the recorded run's (18 was the probe's)")
    r.add_argument("--models", default=",".join(MODELS))
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--l2-grid", default="", help="L2 weights chosen per fold and model on validation logloss")
    r.add_argument(
        "--grid-for",
        action="append",
        default=[],
        metavar="MODEL=V1,V2",
        help="a model's own L2 grid instead of --l2-grid (repeatable)",
    )
    r.add_argument(
        "--linear-reg",
        type=float,
        default=None,
        help="the first-order weights' own L2 weight (linear_reg) for every model with a first-order term "
        "except the baseline LR (bench_ctr.with_linear_reg); unset: they share embedding_reg",
    )
    r.add_argument(
        "--linear-init",
        choices=("zero", "lr"),
        default="zero",
        help="how the first-order term starts (linear_init) in every model with one except the baseline LR "
        "(bench_ctr.with_linear_init): zero, or lr (from an LR each fit first fits on the fold's train/valid)",
    )
    r.add_argument(
        "--validate-start",
        action="store_true",
        help="validate every model (LR included) as it starts, before epoch 1 (TrainerConfig.validate_start): "
        "epoch 0 is a candidate for the restored state",
    )
    r.add_argument("--grid-seeds", default="0")
    r.add_argument("--stop", default="both")
    r.add_argument("--max-epochs", type=int, default=30)
    r.add_argument("--patience", type=int, default=3)
    r.add_argument("--only-folds", default="", help="comma-separated folds (default: all)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p = sub.add_parser("report", help="assemble the out-of-fold predictions and score them")
    p.add_argument("--boot", type=int, default=2000)
    p.add_argument("--floor-draws", type=int, default=500)
    p.add_argument(
        "--ece-boot", type=int, default=0, help="row resamples of ECE (0: none; not a trustworthy interval)"
    )
    p.add_argument("--out", type=Path, default=None)
    for q in (r, p):
        q.add_argument("--dataset", required=True)
        q.add_argument("--out-dir", type=Path, default=Path("bench_results/ctr_crossfit"))
    args = ap.parse_args(argv)
    if args.cmd == "run":
        args.models = [m for m in args.models.split(",") if m]
        if BASELINE not in args.models:
            raise SystemExit(f"--models must include the baseline {BASELINE!r} (it runs in the same folds)")
        args.seeds = [int(x) for x in args.seeds.split(",") if x]
        args.l2_grid = [float(x) for x in args.l2_grid.split(",") if x]
        args.model_grids = parse_grid_for(args.grid_for, args.models)
        if args.linear_reg is not None and not args.linear_reg >= 0:
            raise SystemExit(f"--linear-reg {args.linear_reg}: must be >= 0")
        args.grid_seeds = check_grid_seeds([int(x) for x in args.grid_seeds.split(",") if x])
        args.only_folds = [int(x) for x in args.only_folds.split(",") if x]
        t0, load0 = time.perf_counter(), os.getloadavg()
        run(args)
        print(
            f"# run: {time.perf_counter() - t0:.0f} s wall, load {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}"
        )
        return
    t0 = time.perf_counter()
    folds = load_folds(args.out_dir / args.dataset)
    rec = report(folds, args.boot, args.floor_draws, args.ece_boot)
    print(rec["table"])
    if folds[0]["protocol"]["settings"].get("validate_start"):
        kept = {m: r["restored_start"] for m, r in rec["models"].items() if "restored_start" in r}
        print(
            "restored epoch 0 (test runs): "
            + ", ".join(f"{m} {k['runs']}/{k['of']}" for m, k in kept.items())
        )
    rec = {
        "bench": "ctr_crossfit_report",
        "command": shlex.join(
            [".venv/bin/python", "benchmarks/ctr_crossfit.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_state(Path(__file__).resolve().parent),
        "protocol": folds[0]["protocol"],
        "fold_commits": sorted({str(f["commit"]) for f in folds}),
        "fold_wall_s": [f["wall_s"] for f in folds],
        "fold_load": [[f["load_start"][0], f["load_end"][0]] for f in folds],
        "report_wall_s": round(time.perf_counter() - t0, 1),
        **rec,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
