"""Training seconds per epoch of sasrec and gca on ABXI Food-Kitchen (issue 16's goal: <= 30 s on this CPU).

Reads ../shared/data/cdsr-abxi-food-kitchen, splits leave-one-out (last -> test, previous -> valid), and fits each
model for ``--epochs`` epochs on the training split without validation (only the training loop is timed: the
Trainer's own per-epoch wall ``seconds``, and this process's CPU seconds per epoch). Prints one JSON line per model with the config, parameter count and every
epoch's seconds and loss. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/seq_epoch_time.py --threads 1 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from attnrec.data.readers.cdsr import read_abxi
from attnrec.data.side import SideInputs
from attnrec.data.splits import leave_last_out
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.base import get_model_class
from attnrec.training.trainer import TrainerConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cdsr-abxi-food-kitchen"

#: (model, config) rows timed by default: the defaults, the stacked GCA, and ABXI's width
RUNS: list[tuple[str, dict[str, object]]] = [
    ("sasrec", {}),
    ("gca", {}),
    ("gca", {"positions": [0, 1, 2]}),
    ("gca", {"positions": [0, 1, 2], "gate_form": "ffn"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--set", action="append", default=[], help="extra config KEY=JSON for every run")
    parser.add_argument("--only", default=None, help="time only this model name")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    ds = read_abxi(args.data)
    split = leave_last_out(ds)
    assert ds.items is not None
    users = Vocabulary(split.train["user_id"].unique(maintain_order=True).to_list(), kind="user")
    items = Vocabulary(ds.items["item_id"].to_list(), kind="item")
    train, _ = Interactions.encode(split.train, users, items)
    side = SideInputs(items=ds.items)
    load = os.getloadavg()
    for name, cfg in RUNS:
        if args.only and name != args.only:
            continue
        model = get_model_class(name)(**{**cfg, **extra})
        t0, c0 = time.perf_counter(), time.process_time()
        report = model.fit(
            train,
            side=side,
            trainer=TrainerConfig(
                epochs=args.epochs, batch_size=args.batch_size, progress=False, device="cpu", patience=None
            ),
        )
        n_params = sum(p.numel() for p in model.module.parameters())  # type: ignore[union-attr]
        row = {
            "model": name,
            "config": {**cfg, **extra},
            "params": n_params,
            "users": train.n_users,
            "train_rows": len(train),
            "threads": args.threads,
            "batch_size": args.batch_size,
            "epoch_seconds": [round(r["seconds"], 2) for r in report.history],
            "loss": [round(r["loss"], 4) for r in report.history],
            "fit_seconds": round(time.perf_counter() - t0, 2),
            # CPU seconds of this process per epoch: less sensitive than wall time to other jobs on a shared machine
            "cpu_seconds_per_epoch": round((time.process_time() - c0) / args.epochs, 2),
            "load_before": [round(x, 2) for x in load],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
