"""A bounded HTTP load generator for ``attnrec serve``: sends only to 127.0.0.1 and stops by itself.

Two modes, both printing one JSON object (latencies in ms):

* ``--rate R --duration S`` (open loop): request ``i`` is due at ``start + i / R``, whether or not earlier ones have
  come back, so a slow server cannot slow the offered load down; each latency is measured **from the due time** (no
  coordinated omission: time a request waited in this client because the server was behind counts). At most
  ``--max-inflight`` requests are outstanding; a request due when that many are is counted in ``skipped``.
* ``--concurrency C --duration S`` (closed loop): ``C`` workers each send the next request as soon as the last one
  came back; the completed requests per second is the throughput at that concurrency.

Requests: ``POST /recommend`` with ``{"user_id": u, "k": K}`` for known users (ids from ``GET /users``, cycled in a
shuffled order), or with ``{"query": text, "k": K}`` (``--text``: distinct generated queries, so no cache is hit).
An error is any response that is not 200, or a failed or timed-out request.

    python benchmarks/load_client.py --url http://127.0.0.1:8000 --rate 200 --duration 60
    python benchmarks/load_client.py --url http://127.0.0.1:8000 --concurrency 8 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

ADJ = [
    "funny",
    "dark",
    "romantic",
    "scary",
    "quiet",
    "epic",
    "silly",
    "sad",
    "clever",
    "violent",
    "gentle",
    "odd",
]
KIND = [
    "comedy",
    "thriller",
    "western",
    "cartoon",
    "drama",
    "war film",
    "musical",
    "documentary",
    "mystery",
    "heist",
]
ABOUT = ["space", "a family", "the sea", "a detective", "robots", "high school", "a small town", "wartime", "a dog",
         "revenge", "first love", "a road trip"]  # fmt: skip


def text_queries(seed: int = 0) -> list[str]:
    """1,440 distinct short queries ("a funny comedy about space"), shuffled with ``seed``."""
    qs = [f"a {a} {k} about {b}" for a, k, b in itertools.product(ADJ, KIND, ABOUT)]
    random.Random(seed).shuffle(qs)
    return qs


def check_local(url: str) -> str:
    """``url`` without a trailing slash; refuses anything but http://127.0.0.1 (this tool loads only this machine)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise SystemExit(f"--url {url}: only http://127.0.0.1:PORT is allowed (loopback load only)")
    return url.rstrip("/")


def summary(
    lat_s: list[float], errors: int, skipped: int, elapsed: float, extra: dict[str, Any]
) -> dict[str, Any]:
    """Counts and latency percentiles (ms) of the completed requests."""
    a = np.asarray(lat_s, dtype=np.float64) * 1e3
    pct = {f"p{p}_ms": float(np.percentile(a, p)) if a.size else None for p in (50, 90, 99)}
    return {
        **extra,
        "sent": len(lat_s) + errors,
        "ok": len(lat_s),
        "errors": errors,
        "skipped": skipped,
        "elapsed_s": elapsed,
        "throughput_rps": len(lat_s) / elapsed if elapsed > 0 else 0.0,
        **pct,
        "max_ms": float(a.max()) if a.size else None,
        "mean_ms": float(a.mean()) if a.size else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = check_local(args.url)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.max_inflight, max_keepalive_connections=args.max_inflight)
    timeout = httpx.Timeout(args.timeout)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=timeout) as client:
        bodies: Iterator[dict[str, Any]]
        if args.text:
            bodies = itertools.cycle([{"query": q, "k": args.k} for q in text_queries(args.seed)])
        else:
            r = await client.get(f"{args.prefix}/users", params={"limit": args.users})
            r.raise_for_status()
            users = list(r.json())
            if not users:
                raise SystemExit("the model has no known users")
            random.Random(args.seed).shuffle(users)
            bodies = itertools.cycle([{"user_id": u, "k": args.k} for u in users])
        path = f"{args.prefix}/recommend"
        # a few requests first: connections opened, server paths warm
        for _ in range(args.warmup):
            await client.post(path, json=next(bodies))

        lat: list[float] = []
        errors = skipped = 0
        error_kinds: dict[str, int] = {}

        async def one(body: dict[str, Any], t_ref: float) -> None:
            nonlocal errors
            try:
                resp = await client.post(path, json=body)
                ok = resp.status_code == 200
                kind = str(resp.status_code)
            except httpx.HTTPError as exc:
                ok, kind = False, type(exc).__name__
            if ok:
                lat.append(time.perf_counter() - t_ref)
            else:
                errors += 1
                error_kinds[kind] = error_kinds.get(kind, 0) + 1

        start, cpu0 = time.perf_counter(), time.process_time()
        end = start + args.duration
        if args.concurrency:

            async def worker() -> None:
                while time.perf_counter() < end:
                    await one(next(bodies), time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            mode: dict[str, Any] = {"mode": "closed", "concurrency": args.concurrency}
        else:
            pending: set[asyncio.Task[None]] = set()
            for i in itertools.count():
                due = start + i / args.rate
                if due >= end:
                    break
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                if len(pending) >= args.max_inflight:
                    skipped += 1
                    continue
                task = asyncio.create_task(one(next(bodies), due))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=args.timeout)
            mode = {"mode": "open", "rate_rps": args.rate}
        elapsed = time.perf_counter() - start
        cpu_ms = 1e3 * (time.process_time() - cpu0) / max(len(lat) + errors, 1)
        return summary(
            lat,
            errors,
            skipped,
            elapsed,
            {
                **mode,
                "duration_s": args.duration,
                "text": args.text,
                "k": args.k,
                "error_kinds": error_kinds,
                "client_cpu_ms_per_req": cpu_ms,
            },
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT (nothing else is accepted)")
    ap.add_argument("--prefix", default="", help="route prefix, e.g. /models/NAME")
    ap.add_argument("--rate", type=float, default=200.0, help="open loop: requests per second")
    ap.add_argument(
        "--concurrency", type=int, default=0, help="closed loop with this many workers (0: open loop)"
    )
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (at most 600)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--text", action="store_true", help="text queries instead of known users")
    ap.add_argument("--users", type=int, default=1000, help="how many known user ids to cycle through")
    ap.add_argument("--warmup", type=int, default=50, help="requests sent (and not timed) first")
    ap.add_argument("--max-inflight", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600:
        raise SystemExit("--duration must be in (0, 600] seconds")
    if args.rate <= 0:
        raise SystemExit("--rate must be > 0")
    check_local(args.url)
    result = asyncio.run(asyncio.wait_for(run(args), timeout=args.duration + 60 + args.timeout))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
