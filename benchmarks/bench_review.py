"""Review-text rating models (issue 14) against rating baselines and Cornac's HFT, one exported split per dataset.

    .venv/bin/python benchmarks/bench_review.py --part split
    .venv/bin/python benchmarks/bench_review.py --part run --datasets musical --models baselines --seeds 0,1,2
    .venv/bin/python benchmarks/bench_review.py --part table

* split: a random 80/10/10 split (``--split-seed``, default 2026) of each dataset in ``DATASETS``, made once by
  attnrec and exported (``train/valid/test.csv`` with the review text, ``split.json`` with the splitter's report)
  under ``<--split-root>/<dataset>/`` (default root ``bench_results/review-splits``; a split of another seed there
  is refused); every model and peer reads those files. All Beauty comes twice: ``beauty-dedup`` keeps one row
  per (user, item) pair (``filters.deduplicate``, the latest) and ``beauty-dups`` keeps every row; which
  duplicate policy the splitter applied is read back from its report and printed.
* run: every library in its own long-lived worker process at one thread (``fair_common``): attnrec here,
  Surprise in ``--surprise-python``'s venv, Cornac in ``--cornac-python``'s (``review_peer_cornac.py``). The
  models with a grid (``MODELS``) fit each grid point with seed 0 and are scored on validation only, the points
  of the different models taken in turn; each model's point with the lowest validation MSE is then fitted with
  every model seed and scored on test once, the models again in turn within a seed. Review text reaches a model
  only from the training split (documents, HFT's item documents, hybrid_csa's item text); validation and test
  rows carry none. Every fit appends one JSON line to ``--results`` (keyed by dataset, model, seed or grid
  point), and a rerun skips what is there, so late models only add their rows. Each line names the split's seed
  (``split_seed``; lines without it are of split 2026) and the commit (``+dirty`` when src/ or benchmarks/
  differed); a cached line of another split, or a grid line of another model seed, is refused, never reused.
  ``--grid-only`` stops after the grids and prints the choices (no test is read), so a grid whose edge wins can
  be extended first.
* table: the markdown tables and the issue's goals from the results file.

Metrics, computed here for every library from its predictions (clipped to the rating range 1..5, the same for
all): MSE, RMSE, MAE on test, and NDCG@10 per user over that user's test rows ranked by prediction with the
true rating as graded relevance (``attnrec.evaluation.metrics.graded_ndcg_at_k``, SAFMR's eq. 16), averaged over
the users with at least two test rows (one row always scores 1) — ``ndcg10_all`` keeps them. Fit seconds are
the worker's wall clock around ``fit`` alone, with the 1-minute load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _record import git_state
from fair_common import Worker, grid_points, mean_std, serve
from review_rows import GROUPS, LABELS, MODELS, TRAINER_KEYS

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
SPLITS = Path("bench_results") / "review-splits"
RESULTS = Path("bench_results") / "review_results.jsonl"
PEER_VENV = "/work/peer-venv/bin/python"
CORNAC_VENV = "/work/cornac-venv/bin/python"
RATING_RANGE = (1.0, 5.0)
#: the row attnrec's worker computes itself (the training split's mean rating), not a registered model
GLOBAL_MEAN = "global_mean"

#: dataset -> (folder under shared/data, duplicate handling before the split: None keeps every row)
DATASETS: dict[str, tuple[str, str | None]] = {
    "musical": ("amazon2014-musical-instruments-5core", None),
    "giftcards": ("amazon2018-gift-cards-5core", None),
    "beauty-dedup": ("amazon2018-all-beauty-5core", "last"),
    "beauty-dups": ("amazon2018-all-beauty-5core", None),
}


# ------------------------------------------------------------------------------------------------ split
def export_splits(names: list[str], split_seed: int, root: Path = SPLITS) -> None:
    """Write each dataset's split under ``root/<name>`` and print its sizes and duplicate policy; a split of
    another seed already there is refused (every cached result row was scored on it)."""
    from attnrec.data.filters import deduplicate
    from attnrec.data.registry import load_dataset
    from attnrec.data.splits import export_split, random_split

    for name in names:
        old = root / name / "split.json"
        if old.exists() and json.loads(old.read_text()).get("seed") != split_seed:
            raise SystemExit(f"{old}: a split of another seed is there; give another --split-root")
        folder, dedup = DATASETS[name]
        ds = load_dataset(SHARED / folder, progress=False)
        table: Any = ds
        extra: dict[str, Any] = {"dataset": name, "source": folder, "dedup_before_split": dedup}
        if dedup is not None:
            table, rep = deduplicate(ds.interactions, dedup)
            extra["dedup_rows"] = {"before": rep.rows_before, "after": rep.rows_after}
        result = random_split(table, (0.8, 0.1, 0.1), seed=split_seed)
        out = export_split(result, root / name)
        report = json.loads((out / "split.json").read_text())
        report.update(extra, duplicate_policy=duplicate_policy(report))
        (out / "split.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(name, report["sizes"], report["duplicate_policy"], flush=True)


def duplicate_policy(report: dict[str, Any]) -> str:
    """What the splitter did with repeated (user, item) pairs, read from its report (the default was changing
    while these benchmarks were written: older splitters cut rows, newer ones cut pairs)."""
    dups = report.get("duplicates")
    if dups is None:
        return "rows cut independently (copies of a pair may fall in different parts)"
    shared = dups.get("shared_pairs", {})
    return (
        f"pairs cut as units: {dups['rows']} rows repeat {dups['pairs']} pairs, every copy in one part "
        f"(pairs shared across parts: {sum(shared.values())})"
    )


# ------------------------------------------------------------------------------------------------ workers
def serve_ours(split_root: Path) -> None:
    """attnrec's side: ops ``fit`` (returns valid/test predictions in file row order) for its models."""
    import numpy as np
    import torch

    from attnrec.data.side import ReviewCorpus, SideInputs, strip_text
    from attnrec.experiments.run import RunConfig, prepare_data
    from attnrec.models.base import get_model_class
    from attnrec.models.review.base import ReviewModule, ReviewRatingModel
    from attnrec.training.trainer import TrainerConfig

    sys.path.insert(0, str(HERE))
    from bench_hybrid_csa import TRAINER as HYBRID_TRAINER

    torch.set_num_threads(1)
    cache: dict[str, Any] = {}

    def data(name: str) -> Any:
        if name not in cache:
            files = {p: split_root / name / f"{p}.csv" for p in ("train", "valid", "test")}
            cfg = RunConfig(model="svd", train=files["train"], valid=files["valid"], test=files["test"])
            cache[name] = prepare_data(cfg, implicit=False, progress=False)
        return cache[name]

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        d = data(req["dataset"])
        parts = {p: getattr(d, p) for p in req["parts"]}
        if req["model"] == GLOBAL_MEAN:
            mu = float(np.mean(d.train.ratings))
            return {"fit_s": 0.0, "pred": {p: [mu] * len(x) for p, x in parts.items()}, "info": {}}
        cls = get_model_class(req["model"])
        model = cls(seed=req["seed"], **req["params"])
        trainer = TrainerConfig(
            **{**cls.default_trainer, **req.get("trainer", {}), "progress": False, "device": "cpu"}
        )
        if req["model"] == "hybrid_csa":
            trainer = TrainerConfig(**{**HYBRID_TRAINER, "epochs": 20, "patience": 5, "device": "cpu"})
        side = SideInputs(reviews=ReviewCorpus.from_split(d.train) if "reviews" in cls.side_inputs else None)
        t0 = time.perf_counter()
        report = model.fit(d.train, strip_text(d.valid), side=side, trainer=trainer)
        fit_s = time.perf_counter() - t0
        pred = {
            p: np.asarray(model.predict(x.users, x.items), dtype=float).tolist() for p, x in parts.items()
        }
        info: dict[str, Any] = {"best_epoch": report.best_epoch, "epochs_run": report.epochs_run}
        module = model.module if isinstance(model, ReviewRatingModel) else None
        if isinstance(module, ReviewModule) and module.biases is not None:  # how far the offsets moved
            for who, table in (("user", module.biases.user), ("item", module.biases.item)):
                w = table.weight.detach()[:, 0]
                info[f"{who}_bias_rms"], info[f"{who}_bias_maxabs"] = (
                    w.square().mean().sqrt().item(),
                    w.abs().max().item(),
                )
        return {"fit_s": fit_s, "pred": pred, "info": info}

    serve(handle)


def serve_surprise(split_root: Path) -> None:
    """Surprise's side, in its own venv: BaselineOnly and SVD on the same CSVs."""
    import pandas as pd
    import surprise

    cache: dict[str, Any] = {}

    def data(name: str) -> Any:
        if name not in cache:
            frames = {
                p: pd.read_csv(
                    split_root / name / f"{p}.csv", usecols=["user_id", "item_id", "rating"], dtype=str
                )
                for p in ("train", "valid", "test")
            }
            for f in frames.values():
                f["rating"] = f["rating"].astype(float)
            reader = surprise.Reader(rating_scale=RATING_RANGE)
            trainset = surprise.Dataset.load_from_df(frames["train"], reader).build_full_trainset()
            cache[name] = (trainset, frames)
        return cache[name]

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        trainset, frames = data(req["dataset"])
        if req["model"] == "BaselineOnly":
            algo = surprise.BaselineOnly(bsl_options=dict(req["params"]), verbose=False)
        else:
            algo = surprise.SVD(random_state=req["seed"], **req["params"])
        t0 = time.perf_counter()
        algo.fit(trainset)
        fit_s = time.perf_counter() - t0
        pred = {
            p: [
                algo.predict(u, i).est
                for u, i in zip(frames[p]["user_id"], frames[p]["item_id"], strict=True)
            ]
            for p in req["parts"]
        }
        return {"fit_s": fit_s, "pred": pred, "info": {"version": surprise.__version__}}

    serve(handle)


# ------------------------------------------------------------------------------------------------ driver
def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """Every result line of ``path`` by its key (the last line wins)."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["key"]: r for r in rows}


def append_result(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "valid_pred"}), flush=True)


class Truth:
    """The valid/test rows of one exported split, and the metrics of predictions for them."""

    def __init__(self, split_dir: Path) -> None:
        import polars as pl

        self.parts = {
            p: pl.read_csv(
                split_dir / f"{p}.csv", columns=["user_id", "item_id", "rating"], infer_schema=False
            )
            for p in ("valid", "test")
        }

    def metrics(self, part: str, pred: list[float]) -> dict[str, float]:
        import numpy as np

        from attnrec.evaluation.metrics import graded_ndcg_at_k, rating_metrics

        frame = self.parts[part]
        truth = frame["rating"].cast(float).to_numpy()
        if len(pred) != len(truth):
            raise RuntimeError(f"{part}: {len(pred)} predictions for {len(truth)} rows")
        raw = np.asarray(pred, dtype=float)
        est = np.clip(raw, *RATING_RANGE)
        users = frame["user_id"].to_numpy().astype(str)
        _, codes, counts = np.unique(users, return_inverse=True, return_counts=True)
        _, ndcg = graded_ndcg_at_k(codes, truth, est, 10)  # one value per code 0..n-1, as counts
        multi = counts >= 2
        return {
            **rating_metrics(truth, est),
            "ndcg10": float(ndcg[multi].mean()),
            "ndcg10_all": float(ndcg.mean()),
            "ndcg_users": int(multi.sum()),
            # share of predictions at or past the top of the scale: a model that collapses to the median (L1) sits
            # there, and its ties rank like the global mean's
            "at_top": float(np.mean(raw >= RATING_RANGE[1])),
        }


#: the optimizer kernel attnrec's Trainer uses (fused Adam since bfe1bbf, 2026-12-06 06:38 UTC): part of every row's
#: stamp; bump it when the Trainer's update changes
ADAM_KERNEL = "fused"


def row_stamp(label: str, with_grid: bool = True) -> str:
    """A hash of what decides ``label``'s fits besides dataset, seed and grid point: the row's worker, model, fixed
    settings and grid, and for attnrec's model rows (not :data:`GLOBAL_MEAN`) the model's default config and
    :data:`ADAM_KERNEL`. Stored in each
    result row; a cached row with another stamp is refused (:func:`check_stamp`), never reused. Grid rows use
    ``with_grid=False``: one point's fit does not depend on the other points, so a widened grid keeps them."""
    from attnrec.training.types import config_digest

    spec = MODELS[label]
    keys = ("worker", "model", "fixed", "grid") if with_grid else ("worker", "model", "fixed")
    state: dict[str, Any] = {k: spec[k] for k in keys}
    if spec["worker"] == "ours" and spec["model"] != GLOBAL_MEAN:  # the mean has no config and no optimizer
        from attnrec.models.base import get_model_class
        from attnrec.training.types import without_legacy

        # config fields added later (``bundle_legacy``) at their legacy value leave the stamp as it was
        config_class = get_model_class(spec["model"]).config_class
        state["defaults"] = without_legacy(config_class().to_dict(), config_class.bundle_legacy)
        state["adam_kernel"] = ADAM_KERNEL
    return config_digest(state)[:12]


def check_stamp(path: Path, row: dict[str, Any], stamp: str) -> None:
    """Refuse a cached result ``row`` of ``path`` made under another stamp (or before stamps were recorded)."""
    if row.get("stamp") != stamp:
        raise SystemExit(
            f"{path}: cached row {row['key']!r} has stamp {row.get('stamp')!r} (commit {row.get('commit')!r}), "
            f"this checkout's is {stamp!r}: the row's settings, the model's defaults or the optimizer kernel "
            "differ (or the row predates stamps), so it is not reused; write to another --results file or "
            "remove that line"
        )


#: the split seed of rows written before rows recorded theirs: split 2026 was the only split then
LEGACY_SPLIT_SEED = 2026


def split_seed(split_dir: Path) -> int:
    """The seed the split in ``split_dir`` was drawn with, read from its ``split.json``."""
    report = split_dir / "split.json"
    seed = json.loads(report.read_text()).get("seed")
    if not isinstance(seed, int):
        raise SystemExit(f"{report}: field 'seed' is {seed!r}, expected the split's integer seed")
    return seed


def check_split(path: Path, row: dict[str, Any], seed: int) -> None:
    """Refuse a result ``row`` of ``path`` fitted on another split than the one of ``seed`` (rows without
    ``split_seed`` count as :data:`LEGACY_SPLIT_SEED`): its scores are of other valid/test rows."""
    got = row.get("split_seed", LEGACY_SPLIT_SEED)
    if got != seed:
        raise SystemExit(
            f"{path}: row {row['key']!r} was fitted on the split of seed {got}, the split here has seed {seed}; "
            "write to another --results file (rows without split_seed count as split 2026)"
        )


def check_grid_seed(path: Path, row: dict[str, Any], seed: int) -> None:
    """Refuse a cached grid ``row`` of ``path`` fitted with another model seed than ``seed`` (the grid seed is the
    first of ``--seeds``; grid keys do not name it, so a rerun with other seeds would take it for its own)."""
    if row["seed"] != seed:
        raise SystemExit(
            f"{path}: grid row {row['key']!r} was fitted with model seed {row['seed']}, this run's grid seed "
            f"(first of --seeds) is {seed}; put seed {row['seed']} first or write to another --results file"
        )


def grid_label(label: str) -> str:
    """The row whose grid fits ``label`` shares (``grid_of``; itself by default), after checking that both rows
    fit the same thing: worker, model and fixed settings."""
    of = MODELS[label].get("grid_of", label)
    if any(MODELS[of][k] != MODELS[label][k] for k in ("worker", "model", "fixed")):
        raise SystemExit(f"row {label!r}: grid_of {of!r} has another worker, model or fixed settings")
    return str(of)


def model_request(label: str, params: dict[str, Any], chosen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = MODELS[label]
    merged = {**spec["fixed"], **params}
    params = {k: v for k, v in merged.items() if k not in TRAINER_KEYS}
    trainer = {k: v for k, v in merged.items() if k in TRAINER_KEYS}
    if trainer and spec["worker"] != "ours":  # only attnrec's worker reads trainer settings: never drop one
        raise SystemExit(
            f"row {label!r} ({spec['worker']}) sets trainer key(s) {sorted(trainer)}: attnrec only"
        )
    if "svd_reg_from" in spec:  # hybrid_csa reuses the svd row's validation choice of the factor penalty
        params["svd_reg"] = chosen[spec["svd_reg_from"]]["reg"]
    req: dict[str, Any] = {"model": spec["model"], "params": params}
    if trainer:  # only attnrec's worker reads it; older rows had none
        req["trainer"] = trainer
    return req


def run(args: argparse.Namespace) -> None:
    labels = [m for g in args.models.split(",") for m in GROUPS.get(g, [g])]
    unknown = [m for m in labels if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {sorted(MODELS)} and groups {sorted(GROUPS)}")
    if "hybrid_csa" in labels and "svd" not in labels:
        labels.insert(0, "svd")  # its grid choice feeds hybrid_csa's svd_reg
    pythons = {"ours": sys.executable, "surprise": args.surprise_python, "cornac": args.cornac_python}
    scripts = {"ours": HERE / "bench_review.py", "surprise": HERE / "bench_review.py"}
    scripts["cornac"] = HERE / "review_peer_cornac.py"
    needed = sorted({MODELS[m]["worker"] for m in labels})
    logs = args.results.with_suffix("")
    workers = {
        w: Worker(
            w,
            pythons[w],
            scripts[w],
            ["--serve", w, "--split-root", str(args.split_root)],
            Path(f"{logs}.{w}.log"),
        )
        for w in needed
    }
    try:
        for dataset in args.datasets.split(","):
            run_dataset(dataset, labels, args, workers)
    finally:
        for w in workers.values():
            w.close()


def _measure(
    workers: dict[str, Worker],
    truth: Truth,
    dataset: str,
    label: str,
    req: dict[str, Any],
    seed: int,
    parts: list[str],
) -> dict[str, Any]:
    """One fit of ``label`` by its worker: the metrics of each part in ``parts``, fit seconds, load before/after."""
    load = os.getloadavg()[0]
    reply = workers[MODELS[label]["worker"]].call(op="fit", dataset=dataset, seed=seed, parts=parts, **req)
    return {
        "dataset": dataset,
        "model": label,
        "seed": seed,
        **{p: truth.metrics(p, reply["pred"][p]) for p in parts},
        "fit_s": reply["fit_s"],
        "load": [load, os.getloadavg()[0]],
        "info": reply["info"],
        "utc": time.strftime("%H:%M:%S", time.gmtime()),
    }


def run_dataset(
    dataset: str, labels: list[str], args: argparse.Namespace, workers: dict[str, Worker]
) -> None:
    """Grid phase (seed 0, validation only, models in turn), then the chosen points with every seed on test."""
    truth = Truth(args.split_root / dataset)
    done = load_results(args.results)
    stamps = {m: row_stamp(m) for m in labels}
    grid_stamps = {m: row_stamp(m, with_grid=False) for m in labels}
    # recorded beside the stamp, for the reader ("+dirty": src/ or benchmarks/ differ from the commit)
    commit = git_state(HERE)
    split = split_seed(args.split_root / dataset)

    def cached(key: str, stamp: str, grid_seed: int | None = None) -> bool:
        if key not in done:
            return False
        check_stamp(args.results, done[key], stamp)
        check_split(args.results, done[key], split)
        if grid_seed is not None:
            check_grid_seed(args.results, done[key], grid_seed)
        return True

    tuned = [m for m in labels if MODELS[m]["grid"]]
    points = {m: grid_points(MODELS[m]["grid"]) for m in tuned}
    for i in range(max((len(p) for p in points.values()), default=0)):
        for label in tuned:
            if i >= len(points[label]):
                continue
            of = grid_label(label)  # a widened grid's points are recorded (and reused) under the narrower row
            key = f"{dataset}|{of}|grid|{json.dumps(points[label][i], sort_keys=True)}"
            if cached(key, grid_stamps[label], args.seeds[0]):
                continue
            req = model_request(label, points[label][i], {})
            measured = _measure(workers, truth, dataset, of, req, args.seeds[0], ["valid"])
            row = {"key": key, "kind": "grid", "point": points[label][i], "stamp": grid_stamps[label]}
            row.update(measured, commit=commit, split_seed=split)
            append_result(args.results, row)
            done[key] = row
    chosen = {m: choose(done, dataset, m) for m in tuned}
    if args.grid_only:  # e.g. to extend a grid whose edge won before any test is read
        print(json.dumps({"dataset": dataset, "chosen": chosen}), flush=True)
        return
    for seed in args.seeds:
        for label in labels:
            key = f"{dataset}|{label}|{seed}"
            if cached(key, stamps[label]):
                continue
            req = model_request(label, chosen.get(label, {}), chosen)
            measured = _measure(workers, truth, dataset, label, req, seed, ["valid", "test"])
            row = {
                "key": key,
                "kind": "test",
                "params": req["params"],
                "trainer": req.get("trainer", {}),
                "chosen": chosen.get(label),
                "stamp": stamps[label],
                "commit": commit,
                "split_seed": split,
                **measured,
            }
            append_result(args.results, row)
            done[key] = row


def choose(done: dict[str, dict[str, Any]], dataset: str, label: str) -> dict[str, Any]:
    """The point of ``label``'s current grid on ``dataset`` with the lowest validation MSE (grid rows of points no
    longer in the grid are left out)."""
    current, of = grid_points(MODELS[label]["grid"]), grid_label(label)
    rows = [
        r
        for r in done.values()
        if r["kind"] == "grid" and r["dataset"] == dataset and r["model"] == of and r["point"] in current
    ]
    if not rows:
        raise RuntimeError(f"no grid results for {label} on {dataset}")
    best: dict[str, Any] = min(rows, key=lambda r: r["valid"]["mse"])["point"]
    return best


# ------------------------------------------------------------------------------------------------ table
def _pm(values: list[float], digits: int = 4) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _test_rows(done: dict[str, dict[str, Any]], dataset: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    models = list(
        dict.fromkeys(r["model"] for r in done.values() if r["kind"] == "test" and r["dataset"] == dataset)
    )
    order = [m for m in MODELS if m in models] + [m for m in models if m not in MODELS]
    for m in order:
        rows = sorted(
            (r for r in done.values() if r["kind"] == "test" and r["dataset"] == dataset and r["model"] == m),
            key=lambda r: r["seed"],
        )
        yield m, rows


def print_tables(path: Path, split_root: Path) -> None:
    """One markdown table per dataset (mean ± sample std over the seeds present), then the goals."""
    done = load_results(path)
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in done.values())]
    for dataset in datasets:
        split = json.loads((split_root / dataset / "split.json").read_text())
        seed = split_seed(split_root / dataset)  # the sizes printed must be those of the rows' split
        for r in done.values():
            if r["dataset"] == dataset:
                check_split(path, r, seed)
        print(f"\n`{dataset}` ({split['sizes']['train']:,} / {split['sizes']['test']:,} train / test rows)\n")
        print(
            "| model | chosen on validation | seeds | valid MSE | test MSE | test RMSE | test MAE | NDCG@10 "
            "| best epoch / run | fit s (median) | load |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for m, rows in _test_rows(done, dataset):
            chosen = rows[0].get("chosen") or {}
            what = ", ".join(f"{k}={v}" for k, v in chosen.items()) or "–"
            fit = statistics.median(r["fit_s"] for r in rows)
            load = statistics.median(r["load"][0] for r in rows)
            epochs = ", ".join(
                f"{r['info']['best_epoch']}/{r['info']['epochs_run']}"
                for r in rows
                if "best_epoch" in r["info"]
            )
            print(
                f"| {LABELS.get(m, m)} | {what} | {','.join(str(r['seed']) for r in rows)} "
                f"| {_pm([r['valid']['mse'] for r in rows])} | {_pm([r['test']['mse'] for r in rows])} "
                f"| {_pm([r['test']['rmse'] for r in rows])} | {_pm([r['test']['mae'] for r in rows])} "
                f"| {_pm([r['test']['ndcg10'] for r in rows])} | {epochs or '–'} | {fit:.1f} | {load:.1f} |"
            )
    print()
    print_goals(done)


def print_goals(done: dict[str, dict[str, Any]]) -> None:
    """The issue's goals on Musical Instruments, from whatever rows exist."""
    mse = {m: mean_std([r["test"]["mse"] for r in rows])[0] for m, rows in _test_rows(done, "musical")}
    review = {m: v for m, v in mse.items() if m in ("deepconn", "transnet", "safmr")}
    if review:
        best = min(review, key=lambda m: review[m])
        for ref in ("svd", "hft"):
            if ref in mse:
                gain = 1 - review[best] / mse[ref]
                print(f"best review model {best} vs {ref}: {100 * gain:+.2f}% MSE (goal >= +2%)")
    if "safmr" in review:
        for other in ("deepconn", "transnet"):
            if other in review:
                print(f"safmr {review['safmr']:.4f} vs {other} {review[other]:.4f} (goal: safmr lower)")
        fits = [r["fit_s"] for m, rows in _test_rows(done, "musical") if m == "safmr" for r in rows]
        print(f"safmr fit seconds on musical: {fits} (goal <= 180 s at 1 thread)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["split", "run", "table"], default=None)
    ap.add_argument("--serve", choices=["ours", "surprise"], default=None, help="(internal) run as a worker")
    ap.add_argument("--split-root", type=Path, default=SPLITS)
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument(
        "--models", default="baselines", help=f"labels or groups {sorted(GROUPS)}, comma-separated"
    )
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    ap.add_argument(
        "--grid-only", action="store_true", help="fit the grids (validation), print the choices, read no test"
    )
    ap.add_argument(
        "--results", type=Path, default=RESULTS, help="JSON lines, appended; rerun skips what is there"
    )
    ap.add_argument("--surprise-python", default=PEER_VENV if Path(PEER_VENV).exists() else sys.executable)
    ap.add_argument("--cornac-python", default=CORNAC_VENV, help="a Python with cornac==3.0.1")
    args = ap.parse_args()
    if args.serve == "ours":
        serve_ours(args.split_root)
    elif args.serve == "surprise":
        serve_surprise(args.split_root)
    elif args.part == "split":
        export_splits(args.datasets.split(","), args.split_seed, args.split_root)
    elif args.part == "run":
        run(args)
    elif args.part == "table":
        print_tables(args.results, args.split_root)
    else:
        ap.error("give --part split|run|table")


if __name__ == "__main__":
    main()
