"""Fast sentence-encoder backends against the default fp32 encoder: single-query latency, batch-of-64 latency,
cosine agreement with fp32.

    .venv/bin/python benchmarks/bench_fast_encoder.py [--threads 2] [--queries 200] [--agree 500]
        [--backends fp32,torch,int8,onnx,onnx-int8] [--home DIR]

``fp32`` is the default :class:`SentenceEncoder` (sentence-transformers ``encode``); the others are
:class:`attnrec.text.fast.FastTextModel` backends inside a ``SentenceEncoder`` (``torch`` is fp32 on the lean
path). Single-query latency is ``encode_query`` on ``--queries`` distinct short queries (first 8 words of reviews,
LRU misses) after 20 warm-up queries; batch latency is the median of 10 ``encode`` calls on 64 short queries (3 on
64 reviews; no cache). Agreement is the cosine to fp32 on ``--agree`` real reviews of
/work/shared/data/amazon2014-musical-instruments-5core (synthetic texts when absent) plus their 8-word prefixes.
Torch and ONNX Runtime threads are set to ``--threads``. The 1-minute load average is printed with each row:
on a shared 2-core machine other processes change the numbers. Prints a markdown table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_text_encoder import load_texts  # noqa: E402


def _lat_ms(fn, items) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return np.array(out) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--agree", type=int, default=500)
    parser.add_argument("--backends", default="fp32,torch,int8,onnx,onnx-int8")
    parser.add_argument("--home", default=None, help="ONNX export cache (default: a temporary folder)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from attnrec.text import SentenceEncoder
    from attnrec.text.fast import FastTextModel, int8_full_range

    torch.set_num_threads(args.threads)
    texts, source = load_texts(max(2000, args.agree))
    queries = list(dict.fromkeys(" ".join(t.split()[:8]) for t in texts))
    warm, queries = queries[:20], queries[20 : 20 + args.queries]
    agree = texts[: args.agree]
    agree = agree + [" ".join(t.split()[:8]) for t in agree]
    batch_q, batch_r = queries[:64], texts[-64:]

    tmp = tempfile.TemporaryDirectory()
    home = args.home or tmp.name
    fp32 = SentenceEncoder(device="cpu", progress=False, query_cache_size=0)
    reference = fp32.encode(agree)
    rows = []
    for backend in args.backends.split(","):
        t = time.perf_counter()
        if backend == "fp32":
            enc = SentenceEncoder(device="cpu", progress=False, query_cache_size=0, batch_size=64)
            enc.model  # noqa: B018 - load now, outside the timings
        else:
            model = FastTextModel(backend=backend, threads=args.threads, home=home)  # type: ignore[arg-type]
            model.load()
            enc = SentenceEncoder(model, progress=False, query_cache_size=0, batch_size=64)
        load_s = time.perf_counter() - t
        vecs = enc.encode(agree)
        cos = (vecs * reference).sum(1)
        n = len(agree) // 2
        for q in warm:
            enc.encode_query(q)
        lat = _lat_ms(enc.encode_query, queries)
        enc.encode(batch_q)
        b_q = _lat_ms(enc.encode, [batch_q] * 10)
        b_r = _lat_ms(enc.encode, [batch_r] * 3)
        rows.append(
            {
                "backend": backend,
                "load_s": round(load_s, 2),
                "query_p50_ms": round(float(np.percentile(lat, 50)), 2),
                "query_p99_ms": round(float(np.percentile(lat, 99)), 2),
                "batch64_queries_ms": round(float(np.median(b_q)), 1),
                "batch64_reviews_ms": round(float(np.median(b_r)), 1),
                "cos_mean": round(float(cos.mean()), 4),
                "cos_min": round(float(cos.min()), 4),
                "cos_reviews_min": round(float(cos[:n].min()), 4),
                "cos_short_min": round(float(cos[n:].min()), 4),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    tmp.cleanup()

    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(
        json.dumps(
            {
                "bench": "fast_encoder",
                "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                "threads": args.threads,
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "int8_full_range": int8_full_range(),
                "source": source,
                "agree_texts": len(agree),
                "queries": len(queries),
                "torch": torch.__version__,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
