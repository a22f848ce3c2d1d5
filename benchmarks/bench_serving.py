"""Serving benchmarks (issue 17): HTTP latency under a fixed load, maximum throughput, text queries, and the ANN index
against exact top-k at a million items.

``http``: starts ``attnrec serve BUNDLE`` (one uvicorn worker, one torch thread, 127.0.0.1, warmed up) and runs
``benchmarks/load_client.py`` against it **as a separate process**: first the open-loop fixed rate (``--rate`` for
``--duration`` s), then closed loops at each ``--concurrency`` (``--max-duration`` s each) for the throughput; the
server is stopped at the end. ``--text``: text queries (hybrid_csa bundles). ``--stacks h11,httptools``: the same
plan on uvicorn's pure-Python parser + asyncio, then on httptools + uvloop (an A/B of the server stack; ``cli``, the
default, is ``attnrec serve`` as a user runs it). Each run also reports the server's and the client's CPU time per
request, which the machine's load does not inflate the way it does latencies. Prints each run's JSON and a table.

``ann``: ``--items`` generated item vectors (``--dim``, Gaussian clusters) and ``--queries`` query vectors; exact top-10
(:func:`attnrec.serving.ann.exact_top_k`, one query at a time and all at once) against FAISS IVF-Flat at several
``nprobe`` (and HNSW with ``--hnsw``): build time, per-query latency, recall@10 against exact. FAISS and torch at
``--threads``.

    OMP_NUM_THREADS=1 python benchmarks/bench_serving.py http --bundle /tmp/b10k/model --rate 200 --duration 60
    OMP_NUM_THREADS=1 python benchmarks/bench_serving.py ann --items 1000000 --dim 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnrec.models.base import Recommender
from attnrec.models.query import Query
from attnrec.serving.ann import FaissIndex, ModelIndex, exact_top_k, recall_at_k
from attnrec.serving.bundle import load_bundle
from attnrec.testing.serve import free_port, serve_process

HERE = Path(__file__).parent


def load() -> str:
    """The 1/5/15-minute load averages (this machine is shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(url: str, args: list[str], timeout: float, server_pid: int) -> dict[str, Any]:
    """``load_client.py --url URL ARGS`` in its own process; its JSON result, with the server's CPU time per
    completed request (``server_cpu_ms_per_req``: the cost of a request whatever the machine's load; it includes the
    client's warm-up requests, a few dozen out of thousands)."""
    cmd = [sys.executable, str(HERE / "load_client.py"), "--url", url, *args]
    before = cpu_seconds(server_pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["server_cpu_ms_per_req"] = 1e3 * (cpu_seconds(server_pid) - before) / max(result["ok"], 1)
    result["load_after"] = load()
    return result


#: how ``--stacks`` names a server: ``cli`` is ``attnrec serve`` (uvicorn picks httptools + uvloop when installed,
#: else h11 + asyncio); the others run the same app under uvicorn with the HTTP parser and event loop forced
STACKS = {"cli": None, "h11": ("h11", "asyncio"), "httptools": ("httptools", "uvloop")}
LAUNCH = """
import sys, torch, uvicorn
from attnrec.serving.app import create_app
torch.set_num_threads(1)
uvicorn.run(create_app({"default": sys.argv[1]}), host="127.0.0.1", port=int(sys.argv[2]), http=sys.argv[3],
            loop=sys.argv[4], access_log=False, log_level="warning")
"""


@contextmanager
def server(bundle: Path, stack: str, log: Path) -> Iterator[tuple[str, int]]:
    """A server for ``bundle`` on the ``stack`` (see :data:`STACKS`), ready (``/ready`` 200): (url, pid)."""
    spec = STACKS[stack]
    if spec is None:
        with serve_process([str(bundle), "--threads", "1"], log=log) as srv:
            yield srv.url, srv.proc.pid
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        cmd = [sys.executable, "-c", LAUNCH, str(bundle), str(port), *spec]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http(a: argparse.Namespace) -> None:
    runs: list[dict[str, Any]] = []
    common = ["--k", "10"] + (["--text"] if a.text else [])
    for stack in a.stacks:
        with (
            tempfile.TemporaryDirectory() as tmp,
            server(a.bundle, stack, Path(tmp) / "serve.log") as (url, pid),
        ):
            print(f"server ({stack}) {url} pid {pid}; load {load()}", flush=True)
            plan = [["--rate", str(a.rate), "--duration", str(a.duration)]] if a.rate > 0 else []
            plan += [["--concurrency", str(c), "--duration", str(a.max_duration)] for c in a.concurrency]
            for extra in plan:
                r = run_client(url, [*common, *extra], float(extra[-1]) + 120, pid)
                r["stack"] = stack
                runs.append(r)
                print(json.dumps(r), flush=True)
    print(f"\n{a.bundle} ({'text queries' if a.text else 'known users'}, k=10), load after: {load()}\n")
    print(
        "| server | load | requests | errors + not sent | throughput req/s | p50 ms | p90 ms | p99 ms | max ms "
        "| server CPU ms / req | client CPU ms / req |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        what = (
            f"open loop {r['rate_rps']:.0f} req/s"
            if r["mode"] == "open"
            else f"closed, {r['concurrency']} workers"
        )
        print(
            f"| {r['stack']} | {what} | {r['sent']} | {r['errors'] + r['skipped']} | {r['throughput_rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
            f"{r['server_cpu_ms_per_req']:.2f} | {r['client_cpu_ms_per_req']:.2f} |"
        )


def clustered_vectors(n: int, d: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` item vectors around 1,000 Gaussian centres (spread 0.5 of a unit-variance centre) and ``n_queries``
    query vectors drawn the same way from the same centres: what trained embeddings look like, roughly."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, d)).astype(np.float32)
    items = centres[rng.integers(0, 1000, n)]
    items += 0.5 * rng.normal(size=(n, d)).astype(np.float32)
    queries = centres[rng.integers(0, 1000, n_queries)] + 0.5 * rng.normal(size=(n_queries, d)).astype(
        np.float32
    )
    return items, queries.astype(np.float32)


def timed_single(search: Any, queries: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Each query alone (a request's shape): the top-10 and p50/p99 ms."""
    out, times = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(search(q[None, :])[1][0])
        times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1e3
    return np.stack(out), {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def ann(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    t = time.perf_counter()
    items, queries = clustered_vectors(a.items, a.dim, a.queries, a.seed)
    print(
        f"{a.items} x {a.dim} items, {a.queries} queries generated in {time.perf_counter() - t:.1f} s; load {load()}"
    )
    rows: list[tuple[str, str, dict[str, float], float]] = []
    exact, ex_t = timed_single(lambda q: exact_top_k(items, q, 10), queries)
    t = time.perf_counter()
    batch = exact_top_k(items, queries, 10)[1]
    all_ms = (time.perf_counter() - t) * 1e3
    assert (batch == exact).mean() > 0.999  # the same exact answer either way (ties aside)
    rows.append(("exact (chunked matmul)", "-", ex_t, 1.0))
    print(f"exact: {ex_t}; all {a.queries} at once {all_ms:.0f} ms; load {load()}", flush=True)
    t = time.perf_counter()
    ivf = FaissIndex(items, kind="ivf_flat", threads=a.threads, seed=a.seed)
    build = time.perf_counter() - t
    for nprobe in a.nprobe:
        ivf.index.nprobe = nprobe
        got, tt = timed_single(lambda q: ivf.search(q, 10), queries)
        rec = recall_at_k(exact, got, 10)
        rows.append((f"FAISS IVF-Flat, nlist {ivf.nlist}, nprobe {nprobe}", f"{build:.1f}", tt, rec))
        print(f"ivf nprobe={nprobe}: {tt} recall@10 {rec:.4f}; load {load()}", flush=True)
    if a.hnsw:
        t = time.perf_counter()
        hnsw = FaissIndex(items, kind="hnsw", threads=a.threads)
        build = time.perf_counter() - t
        for ef in a.ef_search:
            hnsw.index.hnsw.efSearch = ef
            got, tt = timed_single(lambda q: hnsw.search(q, 10), queries)
            rec = recall_at_k(exact, got, 10)
            rows.append((f"FAISS HNSW, M 32, efSearch {ef}", f"{build:.1f}", tt, rec))
            print(f"hnsw ef={ef}: {tt} recall@10 {rec:.4f}; load {load()}", flush=True)
    print(
        f"\n{a.items} items x {a.dim} d, {a.queries} single queries, k=10, {a.threads} thread(s); load {load()}\n"
    )
    print("| index | build s | p50 ms / query | p99 ms / query | recall@10 vs exact |")
    print("|---|---|---|---|---|")
    for name, b, tt, rec in rows:
        print(f"| {name} | {b} | {tt['p50_ms']:.2f} | {tt['p99_ms']:.2f} | {rec:.4f} |")


def index(a: argparse.Namespace) -> None:
    """A bundle's known users through :class:`ModelIndex`: exact against FAISS IVF-Flat, the users' training items
    excluded, one user a request (the service's shape), k=10."""
    torch.set_num_threads(a.threads)
    model = load_bundle(a.bundle)
    assert isinstance(model, Recommender)
    users = np.random.default_rng(a.seed).choice(model.n_users, min(a.queries, model.n_users), replace=False)
    seen = model.exclusion(Query(users=users))
    assert seen is not None  # a bundle's recommender stores its training items
    rows = []
    exact_index = ModelIndex.for_model(model, ann=False)
    assert exact_index is not None
    for label, idx in (
        [("exact (chunked matmul)", exact_index)]
        + [
            (
                f"FAISS IVF-Flat, nprobe {p}",
                ModelIndex.for_model(model, ann=True, threads=a.threads, nprobe=p),
            )
            for p in a.nprobe
        ]
        + [
            (
                f"FAISS HNSW, M 32, efSearch {ef}",
                ModelIndex.for_model(model, ann=True, kind="hnsw", ef_search=ef),
            )
            for ef in a.ef_search
        ]
    ):
        assert idx is not None
        out, times = [], []
        for r, u in enumerate(users):
            t = time.perf_counter()
            out.append(idx.top_k(np.array([u]), 10, exclude=seen[r])[1][0])
            times.append(time.perf_counter() - t)
        ms = np.asarray(times) * 1e3
        rows.append((label, np.stack(out), float(np.percentile(ms, 50)), float(np.percentile(ms, 99))))
    exact = rows[0][1]
    print(
        f"\n{a.bundle}: {model.name}, {model.n_items} items, {len(users)} users one at a time, k=10; load {load()}\n"
    )
    print("| index | p50 ms / user | p99 ms / user | recall@10 vs exact |")
    print("|---|---|---|---|")
    for label, got, p50, p99 in rows:
        print(f"| {label} | {p50:.3f} | {p99:.3f} | {recall_at_k(exact, got, 10):.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("http", help="HTTP load against attnrec serve")
    h.add_argument("--bundle", type=Path, required=True)
    h.add_argument("--rate", type=float, default=200.0, help="open-loop rate (0: skip)")
    h.add_argument("--duration", type=float, default=60.0)
    h.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 4, 16])
    h.add_argument("--max-duration", type=float, default=20.0)
    h.add_argument("--text", action="store_true")
    h.add_argument(
        "--stacks",
        type=lambda s: [x for x in s.split(",") if x],
        default=["cli"],
        help=f"servers to run in turn, each the whole plan: {', '.join(STACKS)} (e.g. h11,httptools,httptools,h11)",
    )
    n = sub.add_parser("ann", help="FAISS vs exact top-k on generated vectors")
    n.add_argument("--items", type=int, default=1_000_000)
    n.add_argument("--dim", type=int, default=64)
    n.add_argument("--queries", type=int, default=200)
    n.add_argument("--nprobe", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32, 64])
    n.add_argument("--hnsw", action="store_true")
    n.add_argument("--ef-search", type=lambda s: [int(x) for x in s.split(",")], default=[64, 128])
    n.add_argument("--threads", type=int, default=1)
    n.add_argument("--seed", type=int, default=0)
    x = sub.add_parser("index", help="a bundle's known users: ModelIndex exact vs FAISS")
    x.add_argument("--bundle", type=Path, required=True)
    x.add_argument("--queries", type=int, default=500)
    x.add_argument("--nprobe", type=lambda s: [int(v) for v in s.split(",")], default=[8, 32])
    x.add_argument("--ef-search", type=lambda s: [int(v) for v in s.split(",") if v], default=[])
    x.add_argument("--threads", type=int, default=1)
    x.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    {"http": http, "ann": ann, "index": index}[a.cmd](a)


if __name__ == "__main__":
    main()
