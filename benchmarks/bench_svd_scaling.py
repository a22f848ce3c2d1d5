"""svd's ALS fit time against Surprise's SVD as the catalogue grows (1.6k to 60k items), at one thread each.

    .venv/bin/python benchmarks/bench_svd_scaling.py --peer-python /work/peer-venv/bin/python \
        --sizes 1600,8000,20000,60000 --seeds 0,1,2 [--repeats 1] [--peer-set reg_all=0.05] \
        --out bench_results/svd_scaling.json

For each catalogue size a rating set is generated with Amazon Electronics' shape (users = 3 × items, 27 ratings
per item and 9 per user on average; users and items drawn from power laws, ratings 1-5 rounded from μ + b_u + b_i + p_uᵀq_i (8 latent factors) + N(0, 0.8²)
noise), split 80/10/10 at random and written as CSV, once per ``--seeds`` entry (the seed draws the set, the split
and both models' initialisations). Each library then fits in its own fresh process at one thread, interleaved
(ours, Surprise, ours, ...), ``--repeats`` times per seed: attnrec svd with its defaults (ALS, validation for early
stopping) and Surprise's SVD with its defaults (100 factors, 20 epochs; ``--peer-set`` overrides some, e.g. a
setting chosen on validation). Recorded: fit seconds (data already in memory), test RMSE (ours: the best validation
sweep; Surprise: its last epoch), validation RMSE of both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from fair_common import machine_state, write_json

OURS = """
import json, sys, time, torch
torch.set_num_threads(1)
import polars as pl
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.evaluation.protocols import Rating, evaluate
from attnrec.models.rating.svd import SVD
d, seed = sys.argv[1], int(sys.argv[2])
tr, va, te = (pl.read_csv(f"{d}/{n}.csv", schema_overrides={"user_id": pl.String, "item_id": pl.String})
              for n in ("train", "valid", "test"))
uv, iv = Vocabulary.from_ids(tr["user_id"], kind="user"), Vocabulary.from_ids(tr["item_id"], kind="item")
tr = Interactions.encode(tr, uv, iv)[0]
va, te = (Interactions.encode(x, uv, iv, unknown="drop")[0] for x in (va, te))
t = time.perf_counter()
model = SVD(seed=seed)
report = model.fit(tr, va)
fit = time.perf_counter() - t
print(json.dumps({"fit_s": fit, "test_rmse": evaluate(model, te, Rating())["rmse"],
                  "valid_rmse": evaluate(model, va, Rating())["rmse"], "sweeps": report.epochs_run}))
"""

PEER = """
import json, sys, time
import pandas as pd
from surprise import SVD, Dataset, Reader, accuracy
d, seed, params = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
reader = Reader(rating_scale=(1, 5))
tr = pd.read_csv(f"{d}/train.csv", dtype={"user_id": str, "item_id": str})
trainset = Dataset.load_from_df(tr[["user_id", "item_id", "rating"]], reader).build_full_trainset()
known_u, known_i = set(tr["user_id"]), set(tr["item_id"])
def held(name):
    x = pd.read_csv(f"{d}/{name}.csv", dtype={"user_id": str, "item_id": str})
    x = x[x["user_id"].isin(known_u) & x["item_id"].isin(known_i)]
    return list(x[["user_id", "item_id", "rating"]].itertuples(index=False, name=None))
t = time.perf_counter()
algo = SVD(random_state=seed, **params)
algo.fit(trainset)
fit = time.perf_counter() - t
rmse = {n: accuracy.rmse(algo.test(held(n)), verbose=False) for n in ("test", "valid")}
print(json.dumps({"fit_s": fit, "test_rmse": rmse["test"], "valid_rmse": rmse["valid"], "params": params}))
"""


def generate(n_items: int, folder: Path, seed: int = 0) -> dict[str, int]:
    """Write train/valid/test CSVs of a generated rating set with ``n_items`` items; returns its sizes."""
    rng = np.random.default_rng(seed)
    n_users = 3 * n_items
    n = 27 * n_items
    wu = (np.arange(n_users) + 10.0) ** -0.6
    wi = (np.arange(n_items) + 10.0) ** -0.8
    u = rng.choice(n_users, n, p=wu / wu.sum())
    i = rng.choice(n_items, n, p=wi / wi.sum())
    p, q = rng.normal(0, 0.5, (n_users, 8)), rng.normal(0, 0.5, (n_items, 8))
    bu, bi = rng.normal(0, 0.4, n_users), rng.normal(0, 0.4, n_items)
    r = np.clip(np.rint(3.6 + bu[u] + bi[i] + (p[u] * q[i]).sum(1) + rng.normal(0, 0.8, n)), 1, 5)
    frame = pl.DataFrame({"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i], "rating": r})
    part = rng.random(n)
    folder.mkdir(parents=True, exist_ok=True)
    for name, mask in (("train", part < 0.8), ("valid", (part >= 0.8) & (part < 0.9)), ("test", part >= 0.9)):
        frame.filter(pl.Series(mask)).write_csv(folder / f"{name}.csv")
    train = frame.filter(pl.Series(part < 0.8))
    return {
        "ratings": n,
        "train": train.height,
        "users": train["user_id"].n_unique(),
        "items": train["item_id"].n_unique(),
    }


def fit(python: str, code: str, folder: Path, *extra: str) -> dict[str, float]:
    """Run ``code`` with ``python`` on the set in ``folder`` (plus ``extra`` arguments) at one thread; its JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [python, "-c", code, str(folder), *extra], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    ap.add_argument("--sizes", default="1600,8000,20000,60000")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved fits per seed and library")
    ap.add_argument("--seeds", default="0", help="comma list: one generated set (and model seed) each")
    ap.add_argument(
        "--peer-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Surprise SVD setting (JSON value)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    record: dict[str, object] = {
        "bench": "svd_scaling",
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "start": machine_state(),
        "threads": 1,
        "sizes": [],
    }
    peer_params = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.peer_set)}
    record["peer_params"] = peer_params
    for n_items in (int(s) for s in args.sizes.split(",")):
        runs: dict[str, list[dict[str, float]]] = {"ours": [], "surprise": []}
        data: dict[int, dict[str, int]] = {}
        for seed in (int(x) for x in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                data[seed] = generate(n_items, folder, seed)
                for _ in range(args.repeats):
                    load = os.getloadavg()[0]
                    runs["ours"].append(
                        {**fit(sys.executable, OURS, folder, str(seed)), "seed": seed, "load": load}
                    )
                    load = os.getloadavg()[0]
                    runs["surprise"].append(
                        {
                            **fit(args.peer_python, PEER, folder, str(seed), json.dumps(peer_params)),
                            "seed": seed,
                            "load": load,
                        }
                    )
        med = {k: statistics.median(r["fit_s"] for r in v) for k, v in runs.items()}
        # one test RMSE per seed (the repeats of a seed are the same fit), paired by seed
        rmse = {k: {r["seed"]: r["test_rmse"] for r in v} for k, v in runs.items()}
        diff = [rmse["ours"][s] - rmse["surprise"][s] for s in rmse["ours"]]
        record["sizes"].append(  # type: ignore[attr-defined]
            {
                "items_generated": n_items,
                "data": data,
                "runs": runs,
                "median_fit_s": med,
                "ratio_ours_over_surprise": med["ours"] / med["surprise"],
                "test_rmse_mean": {k: statistics.fmean(v.values()) for k, v in rmse.items()},
                "test_rmse_diff_ours_minus_surprise": diff,
                "load": list(os.getloadavg()),
            }
        )
        write_json(record, args.out)
    record["end"] = machine_state()
    write_json(record, args.out)


if __name__ == "__main__":
    main()
