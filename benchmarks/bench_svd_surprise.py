"""svd vs Surprise SVD on one exported MovieLens-100k split: the same-size validation grid for each, 1 thread each.

    .venv/bin/python benchmarks/bench_svd_surprise.py --peer-python /work/peer-venv/bin/python \
        [--split-seed 2026] [--seeds 0,1,2] [--repeats 5] [--out bench_results/fair_svd_2026.json]

The split is made once by attnrec (random 80/10/10, ``--split-seed``) and exported to CSV with the original ids;
both libraries read those files. Each library runs in its own long-lived worker process (Surprise in a separate
venv, ``--peer-python``; see ``fair_common.py``) at one thread, and the driver sends them requests in turn
(ours, peer, ours, peer, ...). For every model seed: each library fits every point of its own 27-point grid
(``GRIDS``: three values of each of three knobs, 50 factors for both) on ``train.csv``, scored on ``valid.csv``;
the point with the lowest validation RMSE is scored on ``test.csv`` once. Each library's defaults are also fitted
and scored on test (no choice made). Then ``--repeats`` timed fits of the chosen points and of the defaults,
interleaved, fit only (data already in memory) and, labelled as such, file loading + fit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fair_common import Worker, fmt_pm, grid_points, machine_state, record_header, serve, write_json

#: the validation grids, the same size for both: ours over the knobs its defaults were tuned on (docs/models/svd.md:
#: factor λ, damped bias λ_b, ALS sweeps with early stopping), Surprise's over its own (reg_all, lr_all, n_epochs)
GRIDS: dict[str, dict[str, list[Any]]] = {
    "ours": {"reg": [0.08, 0.12, 0.2], "reg_bias": [1.0, 3.0, 10.0], "iterations": [4, 8, 16]},
    "surprise": {"reg_all": [0.05, 0.1, 0.2], "lr_all": [0.0025, 0.005, 0.01], "n_epochs": [20, 40, 80]},
}
FIXED: dict[str, dict[str, Any]] = {"ours": {"factors": 50}, "surprise": {"n_factors": 50}}
PEER_VENV = "/work/peer-venv/bin/python"
LABEL = {"ours": "attnrec svd (ALS)", "surprise": "Surprise SVD"}


# ------------------------------------------------------------------------------------------------ workers
class _Keeper:
    """Keeps, per series key, the fitted model with the lowest validation RMSE seen so far (test is read only from it)."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[float, dict[str, Any], Any]] = {}

    def offer(self, key: str, valid_rmse: float, params: dict[str, Any], model: Any) -> None:
        if key not in self.best or valid_rmse < self.best[key][0]:
            self.best[key] = (valid_rmse, params, model)

    def take(self, key: str) -> tuple[float, dict[str, Any], Any]:
        return self.best.pop(key)  # once: a second test request for the key fails


def serve_ours(split_dir: Path) -> None:
    """attnrec's side: train/valid/test from the exported CSVs; ops ``fit``, ``test``, ``time``."""
    import torch

    from attnrec.evaluation.evaluators import evaluate_rating
    from attnrec.experiments.run import RunConfig, prepare_data
    from attnrec.models.rating.svd import SVD
    from attnrec.training.trainer import TrainerConfig

    torch.set_num_threads(1)
    files = {p: split_dir / f"{p}.csv" for p in ("train", "valid", "test")}

    def load() -> Any:
        cfg = RunConfig(model="svd", train=files["train"], valid=files["valid"], test=files["test"])
        return prepare_data(cfg, implicit=False, progress=False)

    data = load()
    keeper = _Keeper()

    def fit(params: dict[str, Any], seed: int, d: Any = data) -> tuple[Any, float]:
        model = SVD(**params, seed=seed)
        t0 = time.perf_counter()
        model.fit(d.train, d.valid, trainer=TrainerConfig(progress=False, device="cpu"))
        return model, time.perf_counter() - t0

    def score(model: Any, part: Any) -> dict[str, float]:
        m = evaluate_rating(model.predict, part.users, part.items, part.ratings)
        return {"rmse": float(m["rmse"]), "mae": float(m["mae"]), "n": len(part)}

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        if req["op"] == "fit":
            model, fit_s = fit(req["params"], req["seed"])
            valid = score(model, data.valid)
            keeper.offer(req["key"], valid["rmse"], req["params"], model)
            return {"valid": valid, "fit_s": fit_s}
        if req["op"] == "test":
            valid_rmse, params, model = keeper.take(req["key"])
            return {"params": params, "valid_rmse": valid_rmse, "test": score(model, data.test)}
        if req["op"] == "time":
            t0 = time.perf_counter()
            d = load() if req["with_load"] else data
            _, fit_s = fit(req["params"], req["seed"], d)
            return {"seconds": time.perf_counter() - t0 if req["with_load"] else fit_s}
        raise ValueError(f"unknown op {req['op']!r}")

    serve(handle)


def serve_surprise(split_dir: Path) -> None:
    """Surprise's side, in its own venv: the same CSVs through ``surprise.Dataset.load_from_file``."""
    import numpy as np
    import surprise

    reader = surprise.Reader(
        line_format="user item rating timestamp", sep=",", skip_lines=1, rating_scale=(1, 5)
    )

    def load() -> tuple[Any, list[tuple[str, str, float]], list[tuple[str, str, float]]]:
        parts = {
            p: surprise.Dataset.load_from_file(str(split_dir / f"{p}.csv"), reader)
            for p in ("train", "valid", "test")
        }
        rows = {p: [(u, i, r) for (u, i, r, _t) in parts[p].raw_ratings] for p in ("valid", "test")}
        return parts["train"].build_full_trainset(), rows["valid"], rows["test"]

    trainset, validset, testset = load()
    keeper = _Keeper()

    def fit(params: dict[str, Any], seed: int, ts: Any = trainset) -> tuple[Any, float]:
        algo = surprise.SVD(random_state=seed, **params)
        t0 = time.perf_counter()
        algo.fit(ts)
        return algo, time.perf_counter() - t0

    def score(algo: Any, rows: list[tuple[str, str, float]]) -> dict[str, float]:
        err = np.array([p.r_ui - p.est for p in algo.test(rows)])
        return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "n": len(err)}

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        if req["op"] == "fit":
            algo, fit_s = fit(req["params"], req["seed"])
            valid = score(algo, validset)
            keeper.offer(req["key"], valid["rmse"], req["params"], algo)
            return {"valid": valid, "fit_s": fit_s, "version": surprise.__version__}
        if req["op"] == "test":
            valid_rmse, params, algo = keeper.take(req["key"])
            return {"params": params, "valid_rmse": valid_rmse, "test": score(algo, testset)}
        if req["op"] == "time":
            t0 = time.perf_counter()
            ts = load()[0] if req["with_load"] else trainset
            _, fit_s = fit(req["params"], req["seed"], ts)
            return {"seconds": time.perf_counter() - t0 if req["with_load"] else fit_s}
        raise ValueError(f"unknown op {req['op']!r}")

    serve(handle)


# ------------------------------------------------------------------------------------------------ driver
def export(split_seed: int, split_dir: Path) -> dict[str, int]:
    """Random 80/10/10 split of ML-100k with ``split_seed``, written as train/valid/test.csv; returns the sizes."""
    from attnrec.data.registry import load_dataset
    from attnrec.data.splits import export_split, random_split

    split = random_split(load_dataset("ml-100k", progress=False), ratios=(0.8, 0.1, 0.1), seed=split_seed)
    export_split(split, split_dir)
    return {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)}


def run(args: argparse.Namespace) -> None:
    split_dir = args.split_dir or Path("bench_results") / f"fair-split-{args.split_seed}"
    record: dict[str, Any] = {
        **record_header("fair/svd_vs_surprise"),
        "split": {
            "seed": args.split_seed,
            "dir": str(split_dir),
            "sizes": export(args.split_seed, split_dir),
        },
        "seeds": args.seeds,
        "grids": GRIDS,
        "fixed": FIXED,
    }
    here = Path(__file__)
    logs = Path(args.out or "bench_results/fair_svd.json").with_suffix("")
    workers = {
        "ours": Worker(
            "ours",
            sys.executable,
            here,
            ["--serve", "ours", "--split-dir", str(split_dir)],
            Path(f"{logs}.ours.log"),
        ),
        "surprise": Worker(
            "surprise",
            args.peer_python,
            here,
            ["--serve", "surprise", "--split-dir", str(split_dir)],
            Path(f"{logs}.surprise.log"),
        ),
    }
    points = {lib: [{**FIXED[lib], **p} for p in grid_points(GRIDS[lib])] for lib in workers}
    grid_rows: list[dict[str, Any]] = []
    tests: dict[str, list[dict[str, Any]]] = {
        f"{lib}/{kind}": [] for lib in workers for kind in ("tuned", "default")
    }
    for seed in args.seeds:
        for i in range(len(points["ours"])):  # the two grids have the same size: one point of each in turn
            for lib, w in workers.items():
                reply = w.call(op="fit", key=f"tuned/{seed}", params=points[lib][i], seed=seed)
                grid_rows.append({"lib": lib, "seed": seed, "params": points[lib][i], **reply})
        for w in workers.values():
            w.call(op="fit", key=f"default/{seed}", params={}, seed=seed)
        for lib, w in workers.items():
            for kind in ("tuned", "default"):
                tests[f"{lib}/{kind}"].append({"seed": seed, **w.call(op="test", key=f"{kind}/{seed}")})
        record.update(grid=grid_rows, tests=tests)
        write_json(record, args.out)

    # speed: the point chosen most often (ties: the first seed's) and the defaults, interleaved, 1 thread each
    chosen = {}
    for lib in workers:
        counts = Counter(str(t["params"]) for t in tests[f"{lib}/tuned"])
        chosen[lib] = next(
            t["params"] for t in tests[f"{lib}/tuned"] if counts[str(t["params"])] == max(counts.values())
        )
    timings: dict[str, list[float]] = {}
    for _ in range(args.repeats + 1):  # the first round is a warm-up and is dropped
        for with_load in (False, True):
            for kind in ("tuned", "default"):
                for lib, w in workers.items():
                    params = chosen[lib] if kind == "tuned" else {}
                    secs = w.call(op="time", params=params, seed=args.seeds[0], with_load=with_load)[
                        "seconds"
                    ]
                    timings.setdefault(f"{lib}/{kind}/{'load+fit' if with_load else 'fit'}", []).append(secs)
    timings = {k: v[1:] for k, v in timings.items()}
    record.update(chosen_for_timing=chosen, timings=timings, end=machine_state())
    for w in workers.values():
        w.close()
    write_json(record, args.out)
    print_tables(record)


def print_tables(record: dict[str, Any]) -> None:
    """The accuracy table (mean ± std over seeds) and the speed table (medians, ratios ours / Surprise)."""
    print("\n| model | chosen on validation (per seed) | valid RMSE | test RMSE | test MAE |")
    print("|---|---|---|---|---|")
    for key, rows in record["tests"].items():
        lib, kind = key.split("/")
        what = "defaults" if kind == "default" else f"{len(grid_points(GRIDS[lib]))}-point grid"
        chosen = "; ".join(
            ", ".join(f"{k}={v}" for k, v in r["params"].items() if k not in FIXED[lib]) or "-" for r in rows
        )
        print(
            f"| {LABEL[lib]}, {what} | {chosen} | {fmt_pm([r['valid_rmse'] for r in rows])} "
            f"| {fmt_pm([r['test']['rmse'] for r in rows])} | {fmt_pm([r['test']['mae'] for r in rows])} |"
        )
    t = record["timings"]
    print("\n| fitted model | timed | attnrec s (median) | Surprise s (median) | attnrec / Surprise |")
    print("|---|---|---|---|---|")
    for kind in ("tuned", "default"):
        for what in ("fit", "load+fit"):
            ours, peer = (statistics.median(t[f"{lib}/{kind}/{what}"]) for lib in ("ours", "surprise"))
            print(f"| {kind} | {what} | {ours:.3f} | {peer:.3f} | {ours / peer:.2f} |")
    print("\nload average (1, 5, 15 min):", record["start"]["loadavg"], "->", record["end"]["loadavg"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", choices=["ours", "surprise"], default=None, help="(internal) run as a worker")
    ap.add_argument(
        "--split-dir", type=Path, default=None, help="where the split's CSVs go (default bench_results/)"
    )
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument(
        "--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2], help="model seeds"
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed fits per row (median reported)")
    ap.add_argument(
        "--peer-python",
        default=PEER_VENV if Path(PEER_VENV).exists() else sys.executable,
        help="a Python with scikit-surprise (default: /work/peer-venv's, else this one: `pip install .[bench]`)",
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON record here")
    args = ap.parse_args()
    if args.serve == "ours":
        serve_ours(args.split_dir)
    elif args.serve == "surprise":
        serve_surprise(args.split_dir)
    else:
        run(args)


if __name__ == "__main__":
    main()
