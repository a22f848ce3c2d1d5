"""The validation-only choice of svd's factor prior n₀ (``reg_prior``) and, with the same budget, of Surprise's
``reg_all`` (issue 19): one 5-point grid each, on the same three validation splits, one rule.

    .venv/bin/python benchmarks/svd_prior_selection.py --peer-python /work/peer-venv/bin/python \
        [--out bench_results/svd_prior_selection.json]

Sets: MovieLens-100k (random 80/10/10, seed 2026) and bench_svd_scaling's generated 1.6k- and 8k-item sets (seed 0).
Ours: svd's defaults with ``reg_prior`` ∈ ``OURS_GRID`` (reg fixed at its ML-100k value 0.12). Surprise: SVD's
defaults with ``reg_all`` ∈ ``PEER_GRID`` (its default 0.02 included). Each library's point with the lowest mean
validation RMSE over the three sets is its choice; test RMSE is printed for every point but chooses nothing.
One thread; ours in this process, Surprise in a fresh one per fit (bench_svd_scaling's ``PEER`` code).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from bench_svd_scaling import PEER, fit, generate
from fair_common import machine_state, write_json

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.evaluation.protocols import Rating, evaluate
from attnrec.models.rating.svd import SVD

OURS_GRID = [0.0, 10.0, 25.0, 50.0, 100.0]
PEER_GRID = [0.02, 0.05, 0.1, 0.2, 0.4]


def write_ml100k(folder: Path, seed: int = 2026) -> None:
    """MovieLens-100k as train/valid/test CSVs (user_id, item_id, rating), random 80/10/10 with ``seed``."""
    from attnrec.data.registry import load_dataset

    frame = load_dataset("ml-100k").interactions.select(
        pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), "rating"
    )
    part = np.random.default_rng(seed).random(frame.height)
    folder.mkdir(parents=True, exist_ok=True)
    for name, mask in (("train", part < 0.8), ("valid", (part >= 0.8) & (part < 0.9)), ("test", part >= 0.9)):
        frame.filter(pl.Series(mask)).write_csv(folder / f"{name}.csv")


def ours(folder: Path, prior: float) -> dict[str, float]:
    """svd (defaults, ``reg_prior=prior``, seed 0) on ``folder``'s CSVs: fit seconds, valid and test RMSE."""
    tr, va, te = (
        pl.read_csv(folder / f"{n}.csv", schema_overrides={"user_id": pl.String, "item_id": pl.String})
        for n in ("train", "valid", "test")
    )
    uv, iv = Vocabulary.from_ids(tr["user_id"], kind="user"), Vocabulary.from_ids(tr["item_id"], kind="item")
    train = Interactions.encode(tr, uv, iv)[0]
    valid, test = (Interactions.encode(x, uv, iv, unknown="drop")[0] for x in (va, te))
    t = time.perf_counter()
    model = SVD(seed=0, reg_prior=prior)
    model.fit(train, valid)
    return {
        "fit_s": time.perf_counter() - t,
        "valid_rmse": evaluate(model, valid, Rating())["rmse"],
        "test_rmse": evaluate(model, test, Rating())["rmse"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    record: dict[str, object] = {
        "bench": "svd_prior_selection",
        "command": "python " + " ".join(sys.argv),
        "start": machine_state(),
        "threads": 1,
        "grids": {"ours.reg_prior": OURS_GRID, "surprise.reg_all": PEER_GRID},
        "sets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folders = {
            "ml-100k": Path(tmp) / "ml100k",
            "gen-1.6k": Path(tmp) / "g1600",
            "gen-8k": Path(tmp) / "g8000",
        }
        write_ml100k(folders["ml-100k"])
        generate(1600, folders["gen-1.6k"], 0)
        generate(8000, folders["gen-8k"], 0)
        for name, folder in folders.items():
            rows: dict[str, dict[str, dict[str, float]]] = {"ours": {}, "surprise": {}}
            for prior, reg_all in zip(OURS_GRID, PEER_GRID, strict=True):  # interleaved
                rows["ours"][str(prior)] = ours(folder, prior)
                rows["surprise"][str(reg_all)] = fit(
                    args.peer_python, PEER, folder, "0", json.dumps({"reg_all": reg_all})
                )
            record["sets"][name] = {"rows": rows, "load": list(__import__("os").getloadavg())}  # type: ignore[index]
            write_json(record, args.out)
    sets = record["sets"]
    chosen = {}
    for lib in ("ours", "surprise"):
        points = list(sets["ml-100k"]["rows"][lib])  # type: ignore[index]
        mean_valid = {
            p: statistics.fmean(s["rows"][lib][p]["valid_rmse"] for s in sets.values()) for p in points
        }  # type: ignore[attr-defined]
        chosen[lib] = {"point": min(mean_valid, key=mean_valid.__getitem__), "mean_valid_rmse": mean_valid}
    record["chosen"] = chosen
    record["end"] = machine_state()
    write_json(record, args.out)


if __name__ == "__main__":
    main()
