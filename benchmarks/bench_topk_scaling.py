"""Seconds per training epoch of attnrec's bpr and lightgcn against RecBole's BPR and LightGCN as users, items and
interactions grow (issue 19), one thread each.

    .venv/bin/python benchmarks/bench_topk_scaling.py --peer-python /work/peer-venv/bin/python \
        [--sizes 10000,100000,1000000] [--models bpr,lightgcn] [--epochs 3] [--libs ours,unfused,recbole] \
        [--out bench_results/topk_scaling.json]

For each size N a power-law implicit set is generated (users = N / 10, items = N / 20, so 10 interactions per user
and 20 per item on average, before duplicates are dropped; Zipf-like user and item popularity) and split 80/10/10 at
random; only the training part is trained on. Each (size, model) runs both libraries in fresh processes at one
thread, interleaved (ours, then RecBole's), each for ``--epochs`` epochs with no validation: the same embedding
size (64), batch (2048), one uniform negative per positive, λ 1e-4 (RecBole's ``reg_weight = 2λ``,
``require_pow=True``: the same term, see topk_recbole_peer.py), Adam lr 1e-3, LightGCN 3 layers. Both libraries
propagate the whole graph for every LightGCN batch (the reference implementation). Recorded: every epoch's seconds
(ours: the Trainer's per-epoch ``seconds``; RecBole: its ``_train_epoch`` timed by topk_recbole_peer's
:func:`build_recbole`), the median, and the load average beside each run. The summary gives ours / RecBole per size
and how each library's epoch time grows from one size to the next against the growth of the interactions.
``--libs`` may add ``unfused``: ours with torch's default single-tensor Adam instead of the Trainer's fused one (the
state before the Trainer's Adam was fused, issue 19), for a before/after in the same interleaved run.
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
from typing import Any

import numpy as np
from fair_common import machine_state, write_json

LR, REG, DIM, BATCH, LAYERS = 1e-3, 1e-4, 64, 2048, 3


def generate(n: int, folder: Path, seed: int = 0) -> dict[str, int]:
    """Write train/valid/test CSVs (user_id, item_id) of a generated implicit set of about ``n`` interactions
    (users n/10, items n/20, power-law popularity, duplicate pairs dropped); returns its sizes."""
    import polars as pl  # here: the RecBole worker's environment has no Polars

    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // 10, 10), max(n // 20, 10)
    wu = (np.arange(n_users) + 10.0) ** -0.6
    wi = (np.arange(n_items) + 10.0) ** -0.8
    u = rng.choice(n_users, n, p=wu / wu.sum())
    i = rng.choice(n_items, n, p=wi / wi.sum())
    pairs = np.unique(u.astype(np.int64) * n_items + i)
    rng.shuffle(pairs)
    u, i = pairs // n_items, pairs % n_items
    frame = pl.DataFrame({"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i]})
    part = rng.random(len(pairs))
    folder.mkdir(parents=True, exist_ok=True)
    for name, mask in (("train", part < 0.8), ("valid", (part >= 0.8) & (part < 0.9)), ("test", part >= 0.9)):
        frame.filter(pl.Series(mask)).write_csv(folder / f"{name}.csv")
    train = frame.filter(pl.Series(part < 0.8))
    return {
        "interactions": len(pairs),
        "train": train.height,
        "users": train["user_id"].n_unique(),
        "items": train["item_id"].n_unique(),
    }


def run_ours(folder: Path, model: str, epochs: int, fused: bool = True) -> list[float]:
    """attnrec ``model`` trained ``epochs`` epochs on ``folder``/train.csv: each epoch's training seconds
    (``fused=False``: with torch's default single-tensor Adam, the Trainer's optimiser before issue 19)."""
    import polars as pl
    import torch

    import attnrec.training.trainer as trainer_mod
    from attnrec.data.table import Interactions
    from attnrec.data.vocab import Vocabulary
    from attnrec.models.base import get_model_class
    from attnrec.training.trainer import TrainerConfig

    torch.set_num_threads(1)
    if not fused:
        trainer_mod.fused_adam = lambda params: None
    tr = pl.read_csv(folder / "train.csv", schema_overrides={"user_id": pl.String, "item_id": pl.String})
    uv, iv = Vocabulary.from_ids(tr["user_id"], kind="user"), Vocabulary.from_ids(tr["item_id"], kind="item")
    train = Interactions.encode(tr, uv, iv)[0]
    params: dict[str, Any] = {"dim": DIM, "reg": REG, "seed": 0}
    if model == "lightgcn":
        params["n_layers"] = LAYERS
    trainer = TrainerConfig(epochs=epochs, batch_size=BATCH, lr=LR, device="cpu", progress=False)
    report = get_model_class(model)(**params).fit(train, trainer=trainer)
    return [float(h["seconds"]) for h in report.history]


def run_recbole(folder: Path, model: str, epochs: int) -> list[float]:
    """RecBole's BPR (with LightGCN's penalty, ``BPRL2``) or LightGCN trained ``epochs`` epochs on the same
    training file, no validation: each epoch's training seconds."""
    import torch
    from topk_recbole_peer import NAME, build_recbole, write_atomic

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="recbole-scaling-"))
    write_atomic(folder, tmp / NAME, NAME)
    name = {"bpr": "BPR", "lightgcn": "LightGCN"}[model]
    built = build_recbole(
        name, tmp, LR, REG, 0, epochs, epochs, train_batch_size=BATCH, embedding_size=DIM, n_layers=LAYERS
    )
    trainer = built["trainer"]
    trainer.model.train()
    for epoch in range(epochs):
        trainer._train_epoch(built["train_data"], epoch, show_progress=False)
    return [float(s) for s in built["epoch_seconds"]]


def worker(python: str, lib: str, folder: Path, model: str, epochs: int) -> dict[str, Any]:
    """One library's run in a fresh process at one thread: its epoch seconds and the load beside it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    args = [
        python,
        __file__,
        "--worker",
        lib,
        "--data",
        str(folder),
        "--models",
        model,
        "--epochs",
        str(epochs),
    ]
    done = subprocess.run(
        args, env=env, check=True, capture_output=True, text=True, cwd=Path(__file__).parent
    )
    secs = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "epoch_s": secs,
        "median_s": statistics.median(secs),
        "load_before": load,
        "load_after": os.getloadavg()[0],
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: ours / RecBole at every size, and each library's epoch-time growth between consecutive sizes
    next to the growth of the training interactions."""
    out: dict[str, Any] = {}
    for model in sorted({r["model"] for r in rows}):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["data"]["train"])
        entry: dict[str, Any] = {"ratio_ours_over_recbole": {}, "growth": []}
        mine = [r for r in mine if "ours" in r and "recbole" in r]  # a run without both has no ratio
        for r in mine:
            entry["ratio_ours_over_recbole"][r["size"]] = r["ours"]["median_s"] / r["recbole"]["median_s"]
            if "unfused" in r:
                entry.setdefault("ratio_unfused_over_recbole", {})[r["size"]] = (
                    r["unfused"]["median_s"] / r["recbole"]["median_s"]
                )
        for a, b in zip(mine, mine[1:], strict=False):
            entry["growth"].append(
                {
                    "from": a["size"],
                    "to": b["size"],
                    "interactions_x": b["data"]["train"] / a["data"]["train"],
                    "ours_x": b["ours"]["median_s"] / a["ours"]["median_s"],
                    "recbole_x": b["recbole"]["median_s"] / a["recbole"]["median_s"],
                }
            )
        out[model] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--models", default="bpr,lightgcn")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--libs", default="ours,recbole", help="comma list of ours, unfused, recbole (run in this order)"
    )
    ap.add_argument(
        "--worker", choices=["ours", "unfused", "recbole"], default=None, help="(internal) one library's run"
    )
    ap.add_argument("--data", type=Path, default=None, help="(internal) the worker's data folder")
    args = ap.parse_args()
    if args.worker is not None:
        if args.worker == "recbole":
            print(json.dumps(run_recbole(args.data, args.models, args.epochs)))
        else:
            print(json.dumps(run_ours(args.data, args.models, args.epochs, fused=args.worker == "ours")))
        return
    record: dict[str, Any] = {
        "bench": "topk_scaling",
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "start": machine_state(),
        "threads": 1,
        "settings": {
            "lr": LR,
            "reg": REG,
            "dim": DIM,
            "batch": BATCH,
            "layers": LAYERS,
            "epochs": args.epochs,
        },
        "rows": [],
    }
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            data = generate(n, folder)
            for model in args.models.split(","):
                row: dict[str, Any] = {"size": n, "model": model, "data": data}
                for lib in args.libs.split(","):
                    python = args.peer_python if lib == "recbole" else sys.executable
                    row[lib] = worker(python, lib, folder, model, args.epochs)
                record["rows"].append(row)
                record["summary"] = summary(record["rows"])
                write_json(record, args.out)
    record["end"] = machine_state()
    write_json(record, args.out)


if __name__ == "__main__":
    main()
