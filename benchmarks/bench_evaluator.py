"""Benchmark of full-ranking evaluation: users per second and peak resident memory.

Synthetic data: ``--users`` x ``--items`` with a random sparse truth (~``--truth-per-user`` items per user), a
random exclusion set (~``--exclude-per-user`` per user) and scores from a random low-rank factor model
computed per batch, ``score_fn = lambda u: U[u] @ V.T`` with ``U`` (users x dim) and ``V`` (items x dim)
float32 torch tensors.

Run: ``.venv/bin/python benchmarks/bench_evaluator.py --users 200000 --items 50000``

Prints one JSON line: the timings, the peak RSS of the process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``;
tracemalloc does not see torch's allocations), the RSS before evaluation (data + factors), and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from attnrec.evaluation.evaluators import evaluate_full_ranking


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _random_csr(rng: np.random.Generator, n_users: int, n_items: int, per_user: float) -> sp.csr_matrix:
    """~``per_user`` distinct random items per user (Poisson counts), built without a dense matrix."""
    counts = rng.poisson(per_user, n_users)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    cols = rng.integers(0, n_items, rows.size)
    m = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    m.sum_duplicates()
    return m


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--truth-per-user", type=float, default=5.0)
    ap.add_argument("--exclude-per-user", type=float, default=20.0)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    truth = _random_csr(rng, args.users, args.items, args.truth_per_user)
    exclude = _random_csr(rng, args.users, args.items, args.exclude_per_user)
    exclude = (exclude - exclude.multiply(truth)).tocsr()  # train and test are disjoint
    exclude.eliminate_zeros()
    gen = torch.Generator().manual_seed(args.seed)
    U = torch.randn(args.users, args.dim, generator=gen) / args.dim**0.5
    V = torch.randn(args.items, args.dim, generator=gen)
    setup_s = time.perf_counter() - t0
    rss_before = _peak_rss_mb()

    def score_fn(u: np.ndarray) -> torch.Tensor:
        return U[torch.from_numpy(u)] @ V.T

    t1 = time.perf_counter()
    out = evaluate_full_ranking(score_fn, truth, exclude, ks=tuple(args.ks), batch_size=args.batch_size)
    eval_s = time.perf_counter() - t1
    record: dict[str, object] = {
        "bench": "evaluate_full_ranking",
        "users": args.users,
        "items": args.items,
        "dim": args.dim,
        "truth_nnz": int(truth.nnz),
        "exclude_nnz": int(exclude.nnz),
        "batch_size": args.batch_size,
        "ks": args.ks,
        "torch_threads": torch.get_num_threads(),
        "n_users_evaluated": int(out["n_users"]),
        "setup_s": round(setup_s, 2),
        "eval_s": round(eval_s, 2),
        "users_per_s": round(out["n_users"] / eval_s, 1),
        "rss_before_eval_mb": round(rss_before, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "recall@20": round(out.get(f"recall@{max(args.ks)}", float("nan")), 6),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),  # >= cores means other work competed for the CPU
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "command": shlex.join([".venv/bin/python", "benchmarks/bench_evaluator.py", *sys.argv[1:]]),
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
