"""hybrid_csa text-query latency in process, model loaded (issue 4), with the default and the fast encoders.

    .venv/bin/python benchmarks/bench_hybrid_latency.py [--threads 2] [--epochs 2] [--rows all|headline] \
        [--out bench_results/hybrid_latency.json]

hybrid_csa is fitted on ML-100k (random 80/10/10, seed 2026; latency does not depend on how long it trained, so
``--epochs`` is small). Then, for each way of encoding queries — the default all-MiniLM-L6-v2 at fp32 through
sentence-transformers' ``encode()``, through PyTorch on the lean path (``query_backend="torch"``) and through the
default ``query_backend="auto"`` (ONNX Runtime fp32 where attnrec[fast] is installed), all on the same weights;
and the ``attnrec.text.fast`` int8 approximations:

* one query: ``recommend_by_text(q, k=10)`` for 200 distinct queries (none repeats, so the query LRU never hits;
  10 warm-up queries first), p50 / p99 in ms, encoding included;
* a batch of 64: ``recommend_by_texts(64 distinct queries, k=10)``, median of 8 batches, ms;
* a repeated query (LRU hit: retrieval, scoring and the result frame, no encoding): p50 ms;
* the encoder alone on 200 other distinct queries (``encode_query``): p50 ms;
* the full catalogue (``candidates=None``, every item scored by the model): p50 ms.

The ONNX Runtime paths (the default and onnx-int8) are also timed with PyTorch, which runs the model side, on
``--threads`` and on one thread in alternating blocks (ONNX Runtime keeps ``--threads``). The fp32 query paths are
also timed against each other in rotation (``interleaved``), end to end and encoder
alone: on a shared machine, numbers taken minutes apart drift more than the difference between them.

Where ONNX Runtime is installed, the model side (retrieval, scoring, attention) also as one ONNX Runtime graph
(``query_scorer="onnx"``): with the default encoder and with onnx-int8 (the fast path), one row each, and the
four combinations {default, onnx-int8} x {torch, onnx} scorer in rotation.

``--rows headline`` times only the two headline paths, each with its ONNX Runtime sessions on ``--threads``: the
default (fp32 encoder in ONNX Runtime, PyTorch scorer) and the fast path (onnx-int8 + ``query_scorer="onnx"``), one
row each and then the two in rotation (the issue-12 check that they reproduce after the platform move).

For each fast backend also: the cosine agreement of its query embeddings with the fp32 model's, and the test RMSE
of hybrid_csa fitted end to end with that encoder against the fp32 fit (same seed, same epochs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _compat import evaluate, side
from _record import write_record

from attnrec.data.registry import load_dataset
from attnrec.data.splits import random_split
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.rating.hybrid_csa import PAPER_TRAINER, HybridCSA
from attnrec.text.encoder import DEFAULT_MODEL, SentenceEncoder
from attnrec.training.trainer import TrainerConfig

ADJ = ["funny", "scary", "romantic", "animated", "thoughtful", "violent", "classic", "quiet", "epic", "sad"]
KIND = ["movie", "film", "comedy", "thriller", "drama", "documentary", "western", "musical"]
FOR = [
    "for kids",
    "for a rainy evening",
    "about space",
    "set in New York",
    "with a twist ending",
    "about war",
    "about music",
    "for a date",
    "with robots",
    "from the seventies",
    "about a family",
    "in black and white",
]


def queries(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct short queries (e.g. "a funny western for kids"), deterministic."""
    out = [f"a {a} {k} {f}" for f in FOR for k in KIND for a in ADJ]
    if offset + n > len(out):
        raise ValueError(f"only {len(out)} distinct queries")
    return out[offset : offset + n]


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def time_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def measure(model: HybridCSA) -> dict[str, float]:
    qs = queries(200 + 10 + 8 * 64)
    for q in qs[:10]:
        model.recommend_by_text(q, k=10)
    single = [time_ms(lambda q=q: model.recommend_by_text(q, k=10)) for q in qs[10:210]]
    batches = [
        time_ms(lambda b=b: model.recommend_by_texts(qs[210 + 64 * b : 274 + 64 * b], k=10)) for b in range(8)
    ]
    hit = [time_ms(lambda: model.recommend_by_text(qs[20], k=10)) for _ in range(100)]
    fresh = queries(200, offset=len(qs))  # not in the LRU yet
    encoder = [time_ms(lambda q=q: model.encoder.encode_query(q)) for q in fresh]
    full = [time_ms(lambda q=q: model.recommend_by_text(q, k=10, candidates=None)) for q in qs[10:60]]
    return {
        "query_p50_ms": percentile(single, 50),
        "query_p99_ms": percentile(single, 99),
        "batch64_median_ms": statistics.median(batches),
        "repeated_query_p50_ms": percentile(hit, 50),
        "encoder_alone_query_p50_ms": percentile(encoder, 50),
        "full_catalogue_query_p50_ms": percentile(full, 50),
    }


def torch_threads_ab(model: HybridCSA, threads: int) -> dict[str, float]:
    """``recommend_by_text`` p50 with PyTorch on ``threads`` and on 1 thread, in alternating blocks of 20 distinct
    queries (12 blocks each, order swapped every turn), so that drift hits both alike."""
    qs = queries(960)
    times: dict[int, list[float]] = {threads: [], 1: []}
    i = 0
    for turn in range(24):
        n = threads if turn % 4 in (0, 3) else 1
        torch.set_num_threads(n)
        try:
            block = [time_ms(lambda q=q: model.recommend_by_text(q, k=10)) for q in qs[i : i + 20]]
        finally:
            torch.set_num_threads(threads)
        times[n] += block[2:]
        i += 20
    many, one = statistics.median(times[threads]), statistics.median(times[1])
    return {
        f"torch_{threads}_threads_query_p50_ms": many,
        "torch_1_thread_query_p50_ms": one,
        "ratio": one / many,
    }


def interleaved(model: HybridCSA, paths: dict[str, tuple[SentenceEncoder, str]]) -> dict[str, float]:
    """Query paths (``paths``: name -> (encoder, query_scorer)) timed in rotation, query by query and batch by
    batch, so that drift of a shared machine hits all alike: end to end (``recommend_by_text(s)``, k=10, 100
    candidates) and encoder alone, with no LRU (``query_cache_size=0``); 300 single queries and 12 batches of
    64, the order rotated every turn. Medians, and ratios to the first."""
    names = list(paths)
    qs = queries(900)

    def use(name: str) -> SentenceEncoder:
        enc, scorer = paths[name]
        model.set_encoder(enc)
        model.config.query_scorer = scorer  # type: ignore[assignment]
        return enc

    for q in qs[:20]:
        for name in names:
            use(name)
            model.recommend_by_text(q, k=10)
    times: dict[str, list[float]] = {}

    def turn(i: int, key: str, call) -> None:
        for name in names[i % len(names) :] + names[: i % len(names)]:
            enc = use(name)
            times.setdefault(f"{name}_{key}", []).append(time_ms(lambda enc=enc: call(enc)))

    for i, q in enumerate(qs[20:320]):
        turn(i, "query", lambda enc, q=q: model.recommend_by_text(q, k=10))
        turn(i, "encode", lambda enc, q=q: enc.encode_query(q))
    for j in range(12):
        batch = qs[320 + 40 * j : 384 + 40 * j]
        turn(j, "batch64", lambda enc, b=batch: model.recommend_by_texts(b, k=10))
        turn(j, "encode64", lambda enc, b=batch: enc.encode_queries(b))
    out: dict[str, float] = {}
    for what in ("query", "batch64", "encode", "encode64"):
        first = statistics.median(times[f"{names[0]}_{what}"])
        for name in names:
            ms = statistics.median(times[f"{name}_{what}"])
            out[f"{name}_{what}_median_ms"] = ms
            if name != names[0]:
                out[f"{name}_over_{names[0]}_{what}"] = ms / first
    return out


def headline(model: HybridCSA, threads: int) -> dict[str, dict[str, float]]:
    """The two headline query paths, ONNX Runtime and PyTorch both on ``threads``: the default encoder (fp32 in
    ONNX Runtime, PyTorch scorer) and the fast path (onnx-int8 encoder, ``query_scorer="onnx"``); one
    :func:`measure` row each on fresh encoders (empty LRU), then the two in rotation with no LRU."""
    from attnrec.text.fast import FastTextModel, fast_encoder

    def default(**kw) -> SentenceEncoder:  # the default query_backend="auto" path, its ONNX threads pinned
        query_model = FastTextModel(backend="onnx", threads=threads)
        return SentenceEncoder(DEFAULT_MODEL, progress=False, query_model=query_model, **kw)

    paths = {
        "default": (default(), default(query_cache_size=0), "torch"),
        "fast path (onnx-int8 + query_scorer='onnx')": (
            fast_encoder(backend="onnx-int8", threads=threads),
            fast_encoder(backend="onnx-int8", threads=threads, query_cache_size=0),
            "onnx",
        ),
    }
    rows: dict[str, dict[str, float]] = {}
    for label, (enc, _, scorer) in paths.items():
        model.set_encoder(enc)
        model.config.query_scorer = scorer  # type: ignore[assignment]
        rows[label] = measure(model)
        print(json.dumps({"encoder": label, **rows[label]}), flush=True)
    rows["in rotation"] = interleaved(model, {k: (v[1], v[2]) for k, v in paths.items()})
    print(json.dumps({"encoder": "rotation", **rows["in rotation"]}), flush=True)
    model.config.query_scorer = "torch"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--backends", default="int8,onnx-int8")
    ap.add_argument(
        "--rows",
        choices=["all", "headline"],
        default="all",
        help="headline: only the default path and the fast path (one row each, then the two in rotation)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from attnrec.text.fast import FastTextModel, fast_encoder

    ds = load_dataset("ml-100k", progress=False)
    split = random_split(ds, (0.8, 0.1, 0.1), seed=2026)
    uv = Vocabulary.from_ids(split.train["user_id"], kind="user")
    iv = Vocabulary.from_ids(split.train["item_id"], kind="item")
    tr, _ = Interactions.encode(split.train, uv, iv)
    va, _ = Interactions.encode(split.valid, uv, iv, unknown="drop")
    te, _ = Interactions.encode(split.test, uv, iv, unknown="drop")
    trainer = TrainerConfig(**{**PAPER_TRAINER, "epochs": args.epochs, "progress": False})

    def fit(encoder: SentenceEncoder | None) -> HybridCSA:
        m = HybridCSA(seed=0)
        m.fit(tr, va, trainer=trainer, encoder=encoder, **side(ds.items))
        return m

    model = fit(None)
    fp32_rmse = evaluate(model, te)["rmse"]
    if args.rows == "headline":
        rows = headline(model, args.threads)
        rows["test_rmse_fp32_fit"] = {"rmse": fp32_rmse}
        write_record("hybrid_csa/latency", rows, args.out, threads=args.threads, rows="headline")
        return
    default_encoder = model.encoder  # query_backend="auto": ONNX Runtime fp32 with attnrec[fast], else torch
    default_backend = getattr(default_encoder.query_model, "backend", "sentence-transformers")
    plain = SentenceEncoder(DEFAULT_MODEL, cache=default_encoder.cache, progress=False)
    lean = SentenceEncoder(
        DEFAULT_MODEL, cache=default_encoder.cache, progress=False, query_model=FastTextModel(backend="torch")
    )
    fp32_paths = {
        "sentence-transformers encode() (query_backend='sentence-transformers')": plain,
        "PyTorch lean path (query_backend='torch')": lean,
        f"default (query_backend='auto': {default_backend})": default_encoder,
    }
    if default_backend == "torch":  # no ONNX Runtime here: the default is the lean path
        del fp32_paths["PyTorch lean path (query_backend='torch')"]
    rows: dict[str, dict[str, float]] = {}
    probe = queries(200, offset=100)
    # the reference vectors from an encoder of their own: encoding them through `plain` would put half of the
    # timed queries into its LRU
    ref = SentenceEncoder(DEFAULT_MODEL, progress=False, query_cache_size=0).encode_queries(probe)
    for label, enc in fp32_paths.items():
        model.set_encoder(enc)
        rows[f"fp32, {label}"] = row = measure(model)
        row["query_cosine_to_fp32_min"] = float(np.sum(enc.encode_queries(probe) * ref, axis=1).min())
        print(json.dumps({"encoder": label, **row}), flush=True)
    for backend in [b for b in args.backends.split(",") if b]:
        enc = fast_encoder(backend=backend, threads=args.threads)  # type: ignore[arg-type]
        model.set_encoder(enc)
        row = measure(model)
        cos = np.sum(enc.encode_queries(probe) * ref, axis=1)  # both L2-normalised
        row["query_cosine_to_fp32_mean"] = float(cos.mean())
        row["query_cosine_to_fp32_min"] = float(cos.min())
        refit = fit(fast_encoder(backend=backend, threads=args.threads))
        row["test_rmse"] = evaluate(refit, te)["rmse"]
        row["test_rmse_fp32_fit"] = fp32_rmse
        rows[f"attnrec.text.fast {backend}"] = row
        print(json.dumps({"encoder": backend, **row}), flush=True)
    # the ONNX paths with PyTorch (the model side: retrieval, scoring, frame) on args.threads vs one thread,
    # alternating blocks of 20 distinct queries (no LRU), ONNX Runtime unchanged
    onnx_paths = {"onnx-int8": "onnx-int8"}
    if default_backend == "onnx":
        onnx_paths = {"default (onnx fp32)": "onnx", **onnx_paths}
    for label, backend in onnx_paths.items():
        enc = SentenceEncoder(
            DEFAULT_MODEL,
            progress=False,
            query_cache_size=0,
            query_model=FastTextModel(backend=backend, threads=args.threads),  # type: ignore[arg-type]
        )
        model.set_encoder(enc)
        rows[f"{label}: PyTorch {args.threads} vs 1 thread"] = row = torch_threads_ab(model, args.threads)
        print(json.dumps({"encoder": f"{label} torch threads", **row}), flush=True)
    rotation = {
        "st": SentenceEncoder(DEFAULT_MODEL, progress=False, query_cache_size=0),
        "torch": SentenceEncoder(
            DEFAULT_MODEL, progress=False, query_cache_size=0, query_model=FastTextModel(backend="torch")
        ),
    }
    if default_backend == "onnx":
        rotation["onnx"] = SentenceEncoder(
            DEFAULT_MODEL,
            progress=False,
            query_cache_size=0,
            query_model=FastTextModel(backend="onnx", threads=args.threads),
        )
    rows["fp32 query paths timed in rotation"] = interleaved(
        model, {k: (v, "torch") for k, v in rotation.items()}
    )
    print(json.dumps({"encoder": "rotation", **rows["fp32 query paths timed in rotation"]}), flush=True)
    # the model side in ONNX Runtime (query_scorer="onnx"): with the default encoder and as the fast path
    # (onnx-int8 encoder), one row each, then the four combinations in rotation
    if default_backend == "onnx":
        combos = {  # new encoders: an empty LRU (the rows above filled the default encoder's with these queries)
            "default": SentenceEncoder(
                DEFAULT_MODEL,
                progress=False,
                query_model=FastTextModel(backend="onnx", threads=args.threads),
            ),
            "fast path (onnx-int8)": fast_encoder(backend="onnx-int8", threads=args.threads),
        }
        for label, enc in combos.items():
            model.set_encoder(enc)
            model.config.query_scorer = "onnx"
            rows[f"{label} encoder + query_scorer='onnx'"] = row = measure(model)
            print(json.dumps({"encoder": f"{label} + onnx scorer", **row}), flush=True)
        model.config.query_scorer = "torch"
        unlru = {
            "default": SentenceEncoder(
                DEFAULT_MODEL,
                progress=False,
                query_cache_size=0,
                query_model=FastTextModel(backend="onnx", threads=args.threads),
            ),
            "onnx-int8": fast_encoder(backend="onnx-int8", threads=args.threads, query_cache_size=0),
        }
        paths = {f"{e}+{s}": (enc, s) for e, enc in unlru.items() for s in ("torch", "onnx")}
        rows["query scorers timed in rotation"] = interleaved(model, paths)
        print(
            json.dumps({"encoder": "scorer rotation", **rows["query scorers timed in rotation"]}), flush=True
        )
        model.config.query_scorer = "torch"
    model.set_encoder(default_encoder)
    write_record("hybrid_csa/latency", rows, args.out, threads=args.threads)


if __name__ == "__main__":
    main()
