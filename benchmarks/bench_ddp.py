"""Data-parallel training throughput (issue 19): 1 process against ``--nproc`` gloo processes on this machine.

For each model (lightgcn on generated interactions, deepfm on generated CTR rows) the same fit runs on one process
and on ``N`` ranks (``torch.multiprocessing`` spawn, a gloo group on 127.0.0.1, one torch thread per rank, the
same global ``--batch-size`` and seed): training samples per second over ``--epochs`` epochs without validation
(``samples = epochs x training rows``; the epochs' own seconds, slowest rank; process start, data generation and
building the model are not counted), and the final training loss of each (which agree within the tests' tolerance). Runs are interleaved
(1, N, 1, N...) ``--repeats`` times; the load average is printed beside every row, since the machine is shared.

What to expect on a 2-core CPU: two ranks do half the rows each but every rank also builds the whole global batch
(the epoch's permutation and negatives), lightgcn propagates the whole graph on every rank for every batch (the
graph is replicated, only the BPR terms are split), and each step adds a gradient all-reduce over loopback. A
speed-up appears only where the per-row work dominates (deepfm's MLP on large batches) and both cores are free.

    OMP_NUM_THREADS=1 python benchmarks/bench_ddp.py --nproc 2 --repeats 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.base import get_model_class
from attnrec.testing.data import planted_ctr
from attnrec.testing.serve import free_port
from attnrec.training.trainer import TrainerConfig


def interactions(n_users: int, n_items: int, per_user: int, seed: int = 0) -> Interactions:
    """Generated implicit feedback: each user picks ``per_user`` items, popularity ~ Zipf (a long tail)."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.choice(n_items, size=len(users), p=pop)
    df = pl.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str)}).unique(
        ["user_id", "item_id"], maintain_order=True
    )
    uv = Vocabulary.from_ids(df["user_id"], kind="user")
    iv = Vocabulary.from_ids(df["item_id"], kind="item")
    return Interactions.encode(df, uv, iv)[0]


def workload(name: str, args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(model, train, trainer fields) of one benchmark row."""
    if name == "lightgcn":
        train = interactions(args.users, args.items, args.per_user)
        model = get_model_class("lightgcn")(dim=64, n_layers=3)
    else:
        train = planted_ctr(args.ctr_rows)[0]
        model = get_model_class("deepfm")(embedding_dim=16, dropout=0.0)
    return model, train, {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 1e-3}


def fit_seconds(name: str, args: argparse.Namespace) -> dict[str, float]:
    """One fit of ``name`` (in this process, which may be a rank): seconds, rows, final loss."""
    torch.set_num_threads(1)
    model, train, trainer = workload(name, args)
    torch.manual_seed(0)
    if dist.is_initialized():
        dist.barrier()  # ranks start together: a rank slow to start is not counted as training time
    report = model.fit(train, None, trainer=TrainerConfig(progress=False, device="cpu", **trainer))
    # the epochs' own seconds: the steps, their all-reduces and the loss reduction (not building the model)
    seconds = sum(float(row["seconds"]) for row in report.history)
    return {"seconds": seconds, "rows": float(len(train)), "loss": float(report.history[-1]["loss"])}


def _rank(rank: int, world: int, port: int, name: str, args: argparse.Namespace, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=600))
    try:
        Path(out, f"{rank}.json").write_text(json.dumps(fit_seconds(name, args)))
    finally:
        dist.destroy_process_group()


def on_ranks(name: str, args: argparse.Namespace) -> dict[str, float]:
    """``fit_seconds`` on ``args.nproc`` gloo ranks: the slowest rank's seconds, rank 0's loss."""
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            _rank, args=(args.nproc, free_port(), name, args, out), nprocs=args.nproc, start_method="spawn"
        )
        rows = [json.loads(Path(out, f"{r}.json").read_text()) for r in range(args.nproc)]
    return {"seconds": max(r["seconds"] for r in rows), "rows": rows[0]["rows"], "loss": rows[0]["loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--models", default="lightgcn,deepfm")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--per-user", type=int, default=20)
    p.add_argument("--ctr-rows", type=int, default=200_000)
    p.add_argument("--json", type=Path, default=None, help="write every run here")
    args = p.parse_args()
    runs: list[dict[str, Any]] = []
    for name in args.models.split(","):
        for rep in range(args.repeats):
            for procs in (1, args.nproc):
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                r = fit_seconds(name, args) if procs == 1 else on_ranks(name, args)
                wall = time.perf_counter() - t0
                row = {
                    "model": name,
                    "procs": procs,
                    "repeat": rep,
                    "samples_per_s": args.epochs * r["rows"] / r["seconds"],
                    "fit_s": r["seconds"],
                    "wall_s": wall,
                    "final_loss": r["loss"],
                    "rows": r["rows"],
                    "load_before": load,
                    "load_after": os.getloadavg()[0],
                }
                runs.append(row)
                print(json.dumps(row), flush=True)
    print("\n| model | procs | samples/s (each repeat) | fit s | final loss | load 1-min |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for procs in (1, args.nproc):
            rs = [r for r in runs if r["model"] == name and r["procs"] == procs]
            rate = ", ".join(f"{r['samples_per_s']:,.0f}" for r in rs)
            fit = ", ".join(f"{r['fit_s']:.1f}" for r in rs)
            load = ", ".join(f"{r['load_before']:.1f}" for r in rs)
            print(f"| {name} | {procs} | {rate} | {fit} | {rs[-1]['final_loss']:.5f} | {load} |")
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
