"""Streaming ingest (attnrec data ingest) on generated Amazon dumps of Electronics' size: seconds and peak RSS.

    .venv/bin/python benchmarks/bench_ingest.py --scales 0.1,1 --workdir /tmp/ingest --out bench_results/ingest.json

At scale 1 the generated file has Electronics 5-core's counts (1,689,188 reviews, 192,403 users, 63,001 items) in
the 2014 JSON format (reviewerID, asin, reviewerName, helpful, reviewText, overall, summary, unixReviewTime,
reviewTime), gzip level 1. Review text is drawn from a Zipf vocabulary with lognormal lengths (median 350
characters, mean about 525, a long tail to 20,000); summaries 1-8 words. Users and items follow power laws, so
the 5-core filter has work to do. Each scale is generated (not timed), then ingested with ``--user-k 5 --item-k 5``
in a fresh process with one Polars thread; the record holds its wall and CPU seconds, per stage, its peak RSS
(``ru_maxrss``), rows read and kept, users, items and the sizes on disk. Generated files and outputs are deleted
after each scale (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from fair_common import machine_state, write_json

ELECTRONICS = {"reviews": 1_689_188, "users": 192_403, "items": 63_001}
CHUNK_ROWS = 200_000

_INGEST = """
import json, resource, sys, time
from attnrec.data.ingest import ingest_amazon
t = time.perf_counter()
report = ingest_amazon([sys.argv[1]], sys.argv[2], user_k=5, item_k=5, block_bytes=int(sys.argv[3]))
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": use.ru_utime + use.ru_stime,
                  "peak_rss_mb": use.ru_maxrss / 1024, "report": report.as_dict()}))
"""


def _power_law(rng: np.random.Generator, n_ids: int, size: int, exponent: float) -> np.ndarray:
    """``size`` draws of ids ``0..n_ids-1`` with P(rank r) ∝ (r + 10)^-exponent, ranks shuffled over ids."""
    weights = (np.arange(n_ids) + 10.0) ** -exponent
    draws = rng.choice(n_ids, size=size, p=weights / weights.sum())
    return rng.permutation(n_ids)[draws]


def generate(path: Path, scale: float, seed: int = 0) -> dict[str, int]:
    """Write a 2014-format gzip JSON-lines dump of ``scale`` × Electronics; returns its row and id counts."""
    rng = np.random.default_rng(seed)
    n = int(ELECTRONICS["reviews"] * scale)
    n_users = max(10, int(ELECTRONICS["users"] * scale))
    n_items = max(10, int(ELECTRONICS["items"] * scale))
    vocab = np.array([f"w{k:x}" for k in range(5000)])
    zipf = (np.arange(5000) + 1.0) ** -1.1
    blob = " ".join(rng.choice(vocab, size=4_000_000, p=zipf / zipf.sum()))
    written = 0
    with gzip.open(path, "wb", compresslevel=1) as fh:
        for start in range(0, n, CHUNK_ROWS):
            m = min(CHUNK_ROWS, n - start)
            users = _power_law(rng, n_users, m, 0.55)
            items = _power_law(rng, n_items, m, 0.8)
            lengths = np.minimum(rng.lognormal(np.log(350), 0.9, m).astype(np.int64) + 1, 20_000)
            offsets = rng.integers(0, len(blob) - 20_001, m)
            words = rng.integers(1, 9, m)
            s_off = rng.integers(0, len(blob) - 100, m)
            ts = rng.integers(946_684_800, 1_406_073_600, m)
            frame = pl.DataFrame(
                {
                    "reviewerID": [f"A{u:012X}" for u in users],
                    "asin": [f"B{i:09d}" for i in items],
                    "reviewerName": [f"name {u}" for u in users],
                    "helpful": [
                        [int(a), int(a + b)]
                        for a, b in zip(rng.integers(0, 5, m), rng.integers(0, 5, m), strict=True)
                    ],
                    "reviewText": [blob[o : o + k] for o, k in zip(offsets, lengths, strict=True)],
                    "overall": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], m, p=[0.07, 0.05, 0.09, 0.2, 0.59]),
                    "summary": [
                        " ".join(blob[o : o + 60].split()[:w]) for o, w in zip(s_off, words, strict=True)
                    ],
                    "unixReviewTime": ts,
                    "reviewTime": [time.strftime("%m %d, %Y", time.gmtime(int(t))) for t in ts],
                }
            )
            buf = io.BytesIO()
            frame.write_ndjson(buf)
            fh.write(buf.getvalue())
            written += m
    return {"reviews": written, "users_drawn_from": n_users, "items_drawn_from": n_items}


def measure(path: Path, out: Path, block_bytes: int) -> dict[str, object]:
    """Ingest ``path`` into ``out`` in a fresh process (one Polars thread): its wall time, peak RSS and report."""
    env = {**os.environ, "POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _INGEST, str(path), str(out), str(block_bytes)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", default="0.1,1", help="sizes as multiples of Electronics, comma-separated")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/attnrec-ingest-bench"))
    ap.add_argument("--block-mb", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the generated files and outputs")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    record: dict[str, object] = {
        "bench": "ingest",
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "start": machine_state(),
        "threads": 1,
        "block_mb": args.block_mb,
        "runs": [],
    }
    for scale in (float(s) for s in args.scales.split(",")):
        src = args.workdir / f"reviews_electronics_x{scale:g}.json.gz"
        out = args.workdir / f"out_x{scale:g}"
        t = time.perf_counter()
        counts = generate(src, scale)
        gen_s = time.perf_counter() - t
        free = shutil.disk_usage(args.workdir).free / 2**30
        result = measure(src, out, args.block_mb << 20)
        rep = result["report"]
        assert isinstance(rep, dict)
        run = {
            "scale": scale,
            "generated": counts,
            "generate_s": round(gen_s, 1),
            "input_gz_mb": _size_mb(src),
            "wall_s": round(float(result["wall_s"]), 1),  # type: ignore[arg-type]
            "cpu_s": round(float(result["cpu_s"]), 1),  # type: ignore[arg-type]
            "stages_s": {k: round(v, 1) for k, v in rep["seconds"].items()},
            "peak_rss_mb": round(float(result["peak_rss_mb"]), 0),  # type: ignore[arg-type]
            "rows_read": rep["rows_read"],
            "rows_kept": rep["rows_kept"],
            "users": rep["users"],
            "items": rep["items"],
            "kcore_rounds": rep["kcore"]["rounds"],
            "users_before": rep["kcore"]["users_before"],
            "items_before": rep["kcore"]["items_before"],
            "parquet_mb": {k: _size_mb(Path(v)) for k, v in rep["files"].items() if k != "manifest"},
            "disk_free_gb_before": round(free, 1),
            "load": list(os.getloadavg()),
        }
        record["runs"].append(run)  # type: ignore[attr-defined]
        write_json(record, args.out)
        if not args.keep:
            src.unlink()
            shutil.rmtree(out)
    record["end"] = machine_state()
    write_json(record, args.out)


if __name__ == "__main__":
    main()
