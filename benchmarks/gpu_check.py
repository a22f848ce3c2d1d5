"""One short check for a machine with a GPU (issue 19): the CUDA path, mixed precision, timings, CPU-vs-GPU agreement.

Fits lightgcn (generated interactions, full-ranking NDCG@20 on a held-out 10%) and deepfm (planted CTR rows, AUC on
validation) three ways with the same seed and global batch: on the CPU, on ``--device`` in float32, and on
``--device`` with mixed precision (``TrainerConfig(amp=True)``: bfloat16 autocast). For each it reports training
samples per second (the epochs' own seconds) and the validation metric, then the agreement: the GPU float32
metric minus the CPU one (float sums run in another order, so a small gap is expected; ``--tolerance``) and the
AMP metric minus the float32 one. It also starts a one-rank NCCL process group and all-reduces a tensor (the
backend a multi-GPU ``attnrec train --nproc N`` uses). Prints one JSON object and writes it to ``--json``.

With ``--device cpu`` every step runs on the CPU (this is how it is tested where there is no GPU: the CUDA-only
parts are reported as skipped). A GPU session runs, e.g. (about a minute on one H100)::

    python benchmarks/gpu_check.py --device cuda --json "$OUT/gpu_check.json"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ddp import interactions  # noqa: E402

from attnrec.data.table import Interactions  # noqa: E402
from attnrec.evaluation.protocols import default_protocol, evaluate  # noqa: E402
from attnrec.models.base import get_model_class  # noqa: E402
from attnrec.testing.data import planted_ctr  # noqa: E402
from attnrec.training.trainer import TrainerConfig  # noqa: E402


def topk_split(args: argparse.Namespace) -> tuple[Interactions, Interactions]:
    """Generated interactions, 90% train / 10% valid by row (valid rows of unseen users/items dropped)."""
    full = interactions(args.users, args.items, args.per_user)
    mask = np.random.default_rng(1).random(len(full)) < 0.9
    frame = full.decode()
    train = Interactions.encode(
        frame.filter(pl.Series(mask)),
        *_vocabs(frame.filter(pl.Series(mask))),
    )[0]
    valid = Interactions.encode(
        frame.filter(pl.Series(~mask)), train.user_vocab, train.item_vocab, unknown="drop"
    )[0]
    return train, valid


def _vocabs(frame: pl.DataFrame) -> tuple[Any, Any]:
    from attnrec.data.vocab import Vocabulary

    return Vocabulary.from_ids(frame["user_id"], kind="user"), Vocabulary.from_ids(
        frame["item_id"], kind="item"
    )


def one_fit(name: str, device: str, amp: bool, args: argparse.Namespace) -> dict[str, Any]:
    """Fit ``name`` on ``device`` (``amp``: bfloat16 autocast): samples/s over the epochs, the validation metric."""
    if name == "lightgcn":
        train, valid = topk_split(args)
        model = get_model_class("lightgcn")(dim=64, n_layers=3, seed=0)
        metric, exclude = "ndcg@20", train.csr()
    else:
        train, valid, _ = planted_ctr(args.ctr_rows)
        model = get_model_class("deepfm")(embedding_dim=16, dropout=0.0, seed=0)
        metric, exclude = "auc", None
    trainer = TrainerConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, device=device, amp=amp, progress=False
    )
    report = model.fit(train, None, trainer=trainer)
    seconds = sum(float(r["seconds"]) for r in report.history)
    value = evaluate(model, valid, default_protocol(model), exclude=exclude)[metric]
    return {
        "model": name,
        "device": device,
        "amp": amp,
        "samples_per_s": args.epochs * len(train) / seconds,
        "epoch_s": seconds / args.epochs,
        "final_loss": float(report.history[-1]["loss"]),
        metric: float(value),
        "metric": metric,
    }


def nccl_check() -> dict[str, Any]:
    """A one-rank NCCL group and an all-reduce on the GPU (skipped where CUDA or NCCL is missing)."""
    import torch.distributed as dist

    if not torch.cuda.is_available() or not dist.is_nccl_available():
        return {"nccl": "skipped (no CUDA or no NCCL in this build)"}
    from attnrec.testing.serve import free_port

    os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("nccl", timeout=datetime.timedelta(seconds=60))
    try:
        t = torch.ones(4, device="cuda")
        dist.all_reduce(t)
        return {"nccl": "ok" if float(t.sum()) == 4.0 else f"wrong all-reduce result {t.tolist()}"}
    finally:
        dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", default="lightgcn,deepfm")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--users", type=int, default=6000)
    p.add_argument("--items", type=int, default=4000)
    p.add_argument("--per-user", type=int, default=30)
    p.add_argument("--ctr-rows", type=int, default=300_000)
    p.add_argument("--tolerance", type=float, default=0.01, help="largest |GPU - CPU| metric gap that passes")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            "gpu_check: --device cuda but torch sees no CUDA device (use --device cpu to test the script)"
        )
    out: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "load_1min": os.getloadavg()[0],
        "runs": [],
        "agreement": [],
    }
    for name in args.models.split(","):
        t0 = time.perf_counter()
        cpu = one_fit(name, "cpu", False, args)
        gpu = one_fit(name, args.device, False, args)
        # bfloat16 autocast is the Trainer's CUDA path (amp is ignored on the CPU)
        mixed = one_fit(name, args.device, True, args) if args.device.startswith("cuda") else None
        out["runs"] += [r for r in (cpu, gpu, mixed) if r is not None]
        metric = cpu["metric"]
        gap = gpu[metric] - cpu[metric]
        out["agreement"].append(
            {
                "model": name,
                "metric": metric,
                "cpu": cpu[metric],
                "gpu_fp32": gpu[metric],
                "gpu_amp": mixed[metric] if mixed else None,
                "gpu_minus_cpu": gap,
                "amp_minus_fp32": (mixed[metric] - gpu[metric]) if mixed else None,
                "speedup_fp32": gpu["samples_per_s"] / cpu["samples_per_s"],
                "speedup_amp": (mixed["samples_per_s"] / cpu["samples_per_s"]) if mixed else None,
                "passes": abs(gap) <= args.tolerance,
                "seconds": time.perf_counter() - t0,
            }
        )
    out.update(nccl_check())
    text = json.dumps(out, indent=1)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    if not all(a["passes"] for a in out["agreement"]):
        sys.exit(f"gpu_check: a GPU metric differs from the CPU one by more than {args.tolerance}")


if __name__ == "__main__":
    main()
