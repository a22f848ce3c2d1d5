"""In-process latency of the service's recommend path (known user, k=10), no HTTP: the goal is p50 < 1 ms on a
10k-item catalogue.

Three timings per request, interleaved over the same shuffled users (one call of each per user, order rotated):

* ``service`` — ``ModelSlot.recommend(RecommendRequest(user_id=u, k=10))``: id lookup, score, exclusion of the
  user's training items, top-k, the response object with titles;
* ``service+json`` — the same from a JSON-like dict to the JSON bytes (request validation and response
  serialisation, as the HTTP route does them, without the HTTP layer);
* ``model.recommend`` — the library's own ``Recommender.recommend([u], k=10)`` (a Polars frame), for reference.

    OMP_NUM_THREADS=1 python benchmarks/bench_serving_inproc.py --items 10000 --requests 3000
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from attnrec.serving.schemas import RecommendRequest
from attnrec.serving.service import ModelSlot


def percentiles(times: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean of ``times`` (seconds), in microseconds."""
    a = np.asarray(times) * 1e6
    return {
        "p50_us": float(np.percentile(a, 50)),
        "p90_us": float(np.percentile(a, 90)),
        "p99_us": float(np.percentile(a, 99)),
        "mean_us": float(a.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="an existing bundle (default: generate one)")
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--model", default="bpr")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    bundle = a.bundle
    if bundle is None:
        from serving_bundles import build_bundle  # benchmarks/ is the script's folder

        bundle = build_bundle(
            Path(tempfile.mkdtemp(prefix="attnrec-serve-bench-")),
            n_items=a.items,
            n_users=a.users,
            model=a.model,
        )
    slot = ModelSlot("bench", bundle)
    slot.warmup()
    rec = slot.recommender
    assert rec is not None
    rng = np.random.default_rng(a.seed)
    users = [str(u) for u in rec.user_vocab.ids[rng.integers(0, rec.n_users, a.warmup + a.requests)]]

    def service(u: str) -> object:
        return slot.recommend(RecommendRequest(user_id=u, k=10))

    def service_json(u: str) -> object:
        return slot.recommend(RecommendRequest.model_validate({"user_id": u, "k": 10})).model_dump_json()

    def library(u: str) -> object:
        return rec.recommend([u], k=10)

    paths = {"service": service, "service+json": service_json, "model.recommend": library}
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for n, u in enumerate(users):
        for j in range(len(names)):  # rotate the order so no path always runs first (cache effects)
            name = names[(n + j) % len(names)]
            t0 = time.perf_counter()
            paths[name](u)
            dt = time.perf_counter() - t0
            if n >= a.warmup:
                times[name].append(dt)
    # the service answers what the library answers
    for u in users[:50]:
        assert [i.item_id for i in service(u).items] == rec.recommend([u], k=10)["item_id"].to_list()  # type: ignore[attr-defined]
    load = os.getloadavg()
    print(
        f"# {rec.name}, {rec.n_items} items, {rec.n_users} users, k=10, {a.requests} requests (+{a.warmup} warm-up), "
        f"torch threads {torch.get_num_threads()}, python {platform.python_version()}, torch {torch.__version__}, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print("| path | p50 µs | p90 µs | p99 µs | mean µs |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        p = percentiles(ts)
        print(f"| {name} | {p['p50_us']:.0f} | {p['p90_us']:.0f} | {p['p99_us']:.0f} | {p['mean_us']:.0f} |")


if __name__ == "__main__":
    main()
