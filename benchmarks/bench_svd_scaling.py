"""svd's ALS fit time against Surprise's SVD as the catalogue grows (1.6k to 60k items), at one thread each.

    .venv/bin/python benchmarks/bench_svd_scaling.py --peer-python /work/peer-venv/bin/python \
        --sizes 1600,8000,20000,60000 --repeats 3 --out bench_results/svd_scaling.json

For each catalogue size a rating set is generated with Amazon Electronics' shape (users = 3 × items, 27 ratings
per item and 9 per user on average; users and items drawn from power laws, ratings 1-5 rounded from μ + b_u + b_i + p_uᵀq_i (8 latent factors) + N(0, 0.8²)
noise), split 80/10/10 at random (seed 0) and written as CSV. Each library then fits in its own fresh process
at one thread, interleaved (ours, Surprise, ours, ...), ``--repeats`` times: attnrec svd with its defaults (ALS,
validation for early stopping) and Surprise's SVD with its defaults (100 factors, 20 epochs). Recorded: fit
seconds (data already in memory), test RMSE (ours: the best validation sweep; Surprise: its last epoch).
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
d = sys.argv[1]
tr, va, te = (pl.read_csv(f"{d}/{n}.csv", schema_overrides={"user_id": pl.String, "item_id": pl.String})
              for n in ("train", "valid", "test"))
uv, iv = Vocabulary.from_ids(tr["user_id"], kind="user"), Vocabulary.from_ids(tr["item_id"], kind="item")
tr = Interactions.encode(tr, uv, iv)[0]
va, te = (Interactions.encode(x, uv, iv, unknown="drop")[0] for x in (va, te))
t = time.perf_counter()
model = SVD(seed=0)
report = model.fit(tr, va)
fit = time.perf_counter() - t
print(json.dumps({"fit_s": fit, "test_rmse": evaluate(model, te, Rating())["rmse"], "sweeps": report.epochs_run}))
"""

PEER = """
import json, sys, time
import pandas as pd
from surprise import SVD, Dataset, Reader, accuracy
d = sys.argv[1]
reader = Reader(rating_scale=(1, 5))
tr = pd.read_csv(f"{d}/train.csv", dtype={"user_id": str, "item_id": str})
te = pd.read_csv(f"{d}/test.csv", dtype={"user_id": str, "item_id": str})
trainset = Dataset.load_from_df(tr[["user_id", "item_id", "rating"]], reader).build_full_trainset()
known_u, known_i = set(tr["user_id"]), set(tr["item_id"])
te = te[te["user_id"].isin(known_u) & te["item_id"].isin(known_i)]
t = time.perf_counter()
algo = SVD(random_state=0)
algo.fit(trainset)
fit = time.perf_counter() - t
pred = algo.test(list(te[["user_id", "item_id", "rating"]].itertuples(index=False, name=None)))
print(json.dumps({"fit_s": fit, "test_rmse": accuracy.rmse(pred, verbose=False)}))
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


def fit(python: str, code: str, folder: Path) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [python, "-c", code, str(folder)], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    ap.add_argument("--sizes", default="1600,8000,20000,60000")
    ap.add_argument("--repeats", type=int, default=3)
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
    for n_items in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            data = generate(n_items, folder)
            runs: dict[str, list[dict[str, float]]] = {"ours": [], "surprise": []}
            for _ in range(args.repeats):
                runs["ours"].append(fit(sys.executable, OURS, folder))
                runs["surprise"].append(fit(args.peer_python, PEER, folder))
        med = {k: statistics.median(r["fit_s"] for r in v) for k, v in runs.items()}
        record["sizes"].append(  # type: ignore[attr-defined]
            {
                "items_generated": n_items,
                "data": data,
                "runs": runs,
                "median_fit_s": med,
                "ratio_ours_over_surprise": med["ours"] / med["surprise"],
                "test_rmse": {k: v[0]["test_rmse"] for k, v in runs.items()},
                "load": list(os.getloadavg()),
            }
        )
        write_json(record, args.out)
    record["end"] = machine_state()
    write_json(record, args.out)


if __name__ == "__main__":
    main()
