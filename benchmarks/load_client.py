"""A bounded HTTP load generator for ``attnrec serve``: sends only to 127.0.0.1 and stops by itself.

Two modes, both printing one JSON object (latencies in ms):

* ``--rate R --duration S`` (open loop): request ``i`` is due at ``start + i / R``, whether or not earlier ones have
  come back, so a slow server cannot slow the offered load down; ``--connections`` keep-alive connections send the
  due requests in order, and each latency is measured **from the due time** (no coordinated omission: time a
  request waited in this client because the server was behind counts). At most ``--max-inflight`` requests wait; a
  request due when that many do is counted in ``skipped``.
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
import re
import sys
import time
from typing import Any
from urllib.parse import urlsplit

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


class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, written by hand: a request is a few bytes out and a header
    parse in, so the client takes little of the CPU the server shares (httpx took several times more)."""

    def __init__(self, host: str, port: int, auth: bytes) -> None:
        self.host, self.port, self.auth = host, port, auth
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: bytes, path: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one request; the connection is (re)opened when needed."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s" % (method, path, self.host.encode(), self.auth)
        if body:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + body)
        resp = await self.reader.readuntil(b"\r\n\r\n")
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", resp)
        data = await self.reader.readexactly(int(m.group(1))) if m else b""
        if re.search(rb"(?i)\r\nconnection:\s*close", resp):
            self.close()
        return int(resp[9:12]), data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = urlsplit(check_local(args.url))
    host, port = "127.0.0.1", base.port or 80
    auth = f"Authorization: Bearer {args.api_key}\r\n".encode() if args.api_key else b""
    prefix = (base.path + args.prefix).encode()
    first = Conn(host, port, auth)
    if args.text:
        bodies = [json.dumps({"query": q, "k": args.k}).encode() for q in text_queries(args.seed)]
    else:
        status, data = await first.request(b"GET", prefix + b"/users?limit=%d" % args.users)
        if status != 200:
            raise SystemExit(f"GET /users: {status} {data[:200]!r}")
        users = list(json.loads(data))
        if not users:
            raise SystemExit("the model has no known users")
        random.Random(args.seed).shuffle(users)
        bodies = [json.dumps({"user_id": u, "k": args.k}).encode() for u in users]
    first.close()
    next_body = itertools.cycle(bodies).__next__
    path = prefix + b"/recommend"
    lat: list[float] = []
    errors = skipped = 0
    error_kinds: dict[str, int] = {}

    async def one(conn: Conn, body: bytes, t_ref: float) -> None:
        nonlocal errors
        try:
            status, _ = await asyncio.wait_for(conn.request(b"POST", path, body), args.timeout)
            kind = str(status)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()  # a half-read response would desynchronise the connection
            status, kind = 0, type(exc).__name__
        if status == 200:
            lat.append(time.perf_counter() - t_ref)
        else:
            errors += 1
            error_kinds[kind] = error_kinds.get(kind, 0) + 1

    n_conn = args.concurrency or args.connections
    conns = [Conn(host, port, auth) for _ in range(n_conn)]
    for i in range(args.warmup):  # connections opened, server paths warm; not timed
        await conns[i % n_conn].request(b"POST", path, next_body())

    start, cpu0 = time.perf_counter(), time.process_time()
    end = start + args.duration
    if args.concurrency:

        async def closed(conn: Conn) -> None:
            while time.perf_counter() < end:
                await one(conn, next_body(), time.perf_counter())

        await asyncio.gather(*(closed(c) for c in conns))
        mode: dict[str, Any] = {"mode": "closed", "concurrency": args.concurrency}
    else:
        due_q: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=args.max_inflight)

        async def worker(conn: Conn) -> None:
            while True:
                due, body = await due_q.get()
                await one(conn, body, due)
                due_q.task_done()

        workers = [asyncio.create_task(worker(c)) for c in conns]
        for i in itertools.count():
            due = start + i / args.rate
            if due >= end:
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            try:
                due_q.put_nowait((due, next_body()))
            except asyncio.QueueFull:  # the server is this far behind: counted, not sent
                skipped += 1
        try:
            await asyncio.wait_for(due_q.join(), args.timeout)
        except TimeoutError:
            skipped += due_q.qsize()
        for w in workers:
            w.cancel()
        mode = {"mode": "open", "rate_rps": args.rate, "connections": n_conn}
    elapsed = time.perf_counter() - start
    cpu_ms = 1e3 * (time.process_time() - cpu0) / max(len(lat) + errors, 1)
    for c in conns:
        c.close()
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
    ap.add_argument("--connections", type=int, default=32, help="open loop: keep-alive connections")
    ap.add_argument("--max-inflight", type=int, default=1024, help="open loop: requests queued at most")
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
