"""Training cost of freedom vs mrcsaf on a generated Amazon-Sports-shaped set (issue 15's efficiency goal:
mrcsaf's seconds per epoch ≤ 1.5 × freedom's).

The set has Sports' sizes as MMRec ships it (35,598 users, 18,357 items, 296,337 interactions) and its two
modalities' widths (4096-d image CNN features, 384-d sentence embeddings); the interactions are drawn with a
popularity skew and every user has at least 5; the features carry a low-rank item structure under noise (image
features non-negative like a ReLU CNN's, text rows unit length). Only the 80 % training part is fitted (timing does
not need the held-out parts; no validation runs, so an epoch is training alone).

Every (round, model) fit runs in its own child process at 1 thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads
(1)``), so its peak RSS (``ru_maxrss``) is its own; rounds interleave the models (freedom, mrcsaf, freedom, …) so
that load drift hits both. ``uptime`` is recorded before every fit.

    python benchmarks/bench_mm_efficiency.py --epochs 2 --rounds 2 --out bench_results/mm_efficiency/sports_shape.json
    python benchmarks/bench_mm_efficiency.py --epochs 4 --rounds 1 --models freedom,mrcsaf,mrcsaf:fusion_scope=batch

(``epoch_cpu_seconds``: CPU seconds of epochs 2 … n, between the ends of consecutive epochs; the first epoch's
start is not taken, as the fit builds the module before it.) A model name ``base:variant`` or
``base:key=value+key=value`` sets options (:func:`model_spec`).

``--cpu-steps N`` measures CPU seconds (``time.process_time``) per training step instead, both models built in one
process and stepped in turn, which load on the other cores inflates far less than wall time:

    python benchmarks/bench_mm_efficiency.py --cpu-steps 20 --out bench_results/mm_efficiency/cpu_steps.json
    python benchmarks/bench_mm_efficiency.py --cpu-steps 10 --models freedom,mrcsaf,mrcsaf:selector_only,mrcsaf:csa_only

``--profile N`` (with ``--cpu-steps``) then profiles N more steps of each model and records its top operators by
self CPU time (grouped by input shapes): where a step's time goes.

``--full-attention-batches N`` also times N training steps of mrcsaf with ``attention="full"`` (softmax over all
items, the equations as printed), reported per step and extrapolated to an epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import write_record  # noqa: E402

SPORTS = {"users": 35_598, "items": 18_357, "interactions": 296_337, "image": 4096, "text": 384}


def sports_like(seed: int = 0, scale: float = 1.0) -> tuple[Any, dict[str, np.ndarray]]:
    """The training part (80 %) of a Sports-shaped implicit set and its two feature matrices (float32)."""
    import polars as pl

    from attnrec.data.table import Interactions
    from attnrec.data.vocab import Vocabulary

    rng = np.random.default_rng(seed)
    n_users, n_items = int(SPORTS["users"] * scale), int(SPORTS["items"] * scale)
    target = int(SPORTS["interactions"] * scale)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8  # item popularity, Zipf-like
    pop = rng.permutation(pop / pop.sum())
    extra = rng.multinomial(target - 5 * n_users, np.full(n_users, 1.0 / n_users))
    users = np.repeat(np.arange(n_users), 5 + extra)
    items = rng.choice(n_items, size=len(users), p=pop)
    pairs = np.unique(users.astype(np.int64) * n_items + items)  # a user-item pair once
    u, i = pairs // n_items, pairs % n_items
    train = rng.random(len(u)) < 0.8
    uvocab = Vocabulary([f"u{k}" for k in range(n_users)], kind="user")
    ivocab = Vocabulary([f"i{k}" for k in range(n_items)], kind="item")
    df = pl.DataFrame({"user_id": uvocab.ids[u[train]], "item_id": ivocab.ids[i[train]]})
    data = Interactions.encode(df, uvocab, ivocab)[0]
    latent = rng.normal(size=(n_items, 32)).astype(np.float32)
    feats = {}
    for name in ("image", "text"):
        width = SPORTS[name]
        proj = rng.normal(size=(32, width)).astype(np.float32)
        x = np.empty((n_items, width), dtype=np.float32)
        for start in range(0, n_items, 2048):  # in row blocks: no full-size temporaries in the peak RSS
            block = latent[start : start + 2048] @ proj
            block += rng.normal(scale=2.0, size=block.shape).astype(np.float32)
            x[start : start + 2048] = block
        if name == "image":
            np.maximum(x, 0, out=x)
        else:
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        feats[name] = x
    return data, feats


def child(args: argparse.Namespace) -> None:
    """One fit in this process; prints one JSON line."""
    import torch

    torch.set_num_threads(1)
    import attnrec.models.multimodal.freedom
    import attnrec.models.multimodal.mrcsaf  # noqa: F401  (registered by import, whatever the built-ins list)
    from attnrec.data.side import ItemFeatures, SideInputs
    from attnrec.models.base import get_model_class

    t0 = time.perf_counter()
    train, feats = sports_like(args.seed, args.scale)
    side = SideInputs(item_features=ItemFeatures(train.item_vocab, feats))
    t_data = time.perf_counter() - t0
    config = json.loads(args.config) if args.config else {}
    model = get_model_class(args.child)(**config)
    out: dict[str, Any] = {"model": args.child, "config": config, "train_interactions": len(train)}
    with _cache_graphs(Path(args.graph_cache)) if args.graph_cache else contextlib.nullcontext():
        _child_fit(args, model, train, side, out)
    out["data_seconds"] = t_data
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out), flush=True)


def _child_fit(args: argparse.Namespace, model: Any, train: Any, side: Any, out: dict[str, Any]) -> None:
    from attnrec.training.trainer import TrainerConfig

    if args.full_attention_batches:
        out.update(_full_attention_steps(model, train, side, args.full_attention_batches))
    else:
        from attnrec.training.trainer import epoch_callbacks

        trainer = TrainerConfig(epochs=args.epochs, batch_size=2048, lr=1e-3, progress=False, device="cpu")
        ends: list[float] = []  # CPU clock at each epoch's end: epochs 2.. are the differences
        t1 = time.perf_counter()
        with epoch_callbacks(lambda epoch, row: ends.append(time.process_time())):
            report = model.fit(train, None, side=side, trainer=trainer)
        out["fit_seconds"] = time.perf_counter() - t1
        out["epoch_seconds"] = [float(r["seconds"]) for r in report.history]
        out["epoch_cpu_seconds"] = [b - a for a, b in zip(ends, ends[1:], strict=False)]


@contextlib.contextmanager
def _cache_graphs(path: Path) -> Iterator[None]:
    """Both models build the same kNN graphs of the same features (once per fit, outside the epoch times): the
    first fit saves them, later fits load them (the graph build of 18,357 × 4096-d features dominates a short
    fit's wall time on a loaded machine and is not what is measured). The class is patched only inside the
    ``with`` block (a test that runs this in-process must not leave every later fit loading these graphs)."""
    import torch

    from attnrec.models.layers.item_graph import ItemGraph
    from attnrec.models.multimodal.base import MultimodalRecommender

    build = MultimodalRecommender.modality_graphs

    def cached(self: Any, features: dict[str, np.ndarray]) -> list[Any]:
        if path.exists():
            saved = torch.load(path, weights_only=True)
            graphs = [
                ItemGraph(saved[m]["indices"], saved[m]["values"], int(saved[m]["n"]))
                for m in self.modality_dims
            ]
            self.featureless = {m: 0 for m in self.modality_dims}
            return graphs
        graphs = build(self, features)
        torch.save(
            {
                m: {"indices": g.indices, "values": g.values, "n": g.n}
                for m, g in zip(self.modality_dims, graphs, strict=True)
            },
            path,
        )
        return graphs

    MultimodalRecommender.modality_graphs = cached  # type: ignore[method-assign]
    try:
        yield
    finally:
        MultimodalRecommender.modality_graphs = build  # type: ignore[method-assign]


def _full_attention_steps(model: Any, train: Any, side: Any, n: int) -> dict[str, Any]:
    """Time ``n`` training steps (loss, backward, Adam) of a model built as fit builds it, without the Trainer."""
    import torch

    from attnrec.data.modalities import select_modalities

    assert side.item_features is not None
    model.user_vocab, model.item_vocab, model.seen = train.user_vocab, train.item_vocab, train.csr()
    model._features = select_modalities(side.item_features, train.item_vocab, model.config.modalities)
    model.modality_dims = {m: int(x.shape[1]) for m, x in model._features.items()}
    t0 = time.perf_counter()
    module = model.build_module(train)
    build = time.perf_counter() - t0
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    batches = model.train_batches(train, 1, torch.Generator().manual_seed(0), 2048)
    steps = []
    module.train()
    for _ in range(n):
        batch = next(batches)
        t = time.perf_counter()
        opt.zero_grad()
        module.loss(batch).backward()
        opt.step()
        steps.append(time.perf_counter() - t)
    n_batches = -(-len(train) // 2048)
    return {
        "build_seconds": build,
        "step_seconds": steps,
        "epoch_seconds_extrapolated": float(np.mean(steps)) * n_batches,
    }


def cpu_steps(args: argparse.Namespace, models: list[str]) -> dict[str, Any]:
    """CPU seconds (``time.process_time``) per training step of each model, built in this one process and stepped
    in turn (model A step, model B step, ...): a measure that load on other cores does not inflate as it does wall
    time. Each step is loss, backward and an Adam update on one batch of 2,048, on the epoch's pruned graph."""
    import torch

    import attnrec.models.multimodal.freedom
    import attnrec.models.multimodal.mrcsaf  # noqa: F401  (registered by import)

    torch.set_num_threads(1)
    with _cache_graphs(Path(args.graph_dir) / f"mm_eff_graphs_seed{args.seed}_scale{args.scale}.pt"):
        return _cpu_steps(args, models)


def _cpu_steps(args: argparse.Namespace, models: list[str]) -> dict[str, Any]:
    import torch

    from attnrec.data.modalities import select_modalities
    from attnrec.data.side import ItemFeatures
    from attnrec.models.base import get_model_class

    train, feats = sports_like(args.seed, args.scale)
    side = ItemFeatures(train.item_vocab, feats)
    state: dict[str, tuple[Any, Any, list[Any], list[float]]] = {}
    for name in models:
        base, config = model_spec(name)
        model = get_model_class(base)(**config)
        model.user_vocab, model.item_vocab, model.seen = train.user_vocab, train.item_vocab, train.csr()
        model._features = select_modalities(side, train.item_vocab, model.config.modalities)
        model.modality_dims = {m: int(x.shape[1]) for m, x in model._features.items()}
        module = model.build_module(train)
        module.set_train_adj(model.epoch_graph(train, torch.Generator().manual_seed(0)))
        module.train()
        batches = list(model.train_batches(train, 1, torch.Generator().manual_seed(0), 2048))
        state[name] = (module, torch.optim.Adam(module.parameters(), lr=1e-3), batches, [])
    n_batches = len(next(iter(state.values()))[2])
    for step in range(args.cpu_steps + 1):
        for module, opt, batches, times in state.values():
            t = time.process_time()
            opt.zero_grad()
            module.loss(batches[step % n_batches]).backward()
            opt.step()
            if step:  # the first step of each model warms allocators and caches
                times.append(time.process_time() - t)
    out: dict[str, Any] = {"batches_per_epoch": n_batches, "steps": args.cpu_steps, "load_after": uptime()}
    for name, (_, _, _, times) in state.items():
        out[name] = {
            "cpu_seconds_per_step_median": float(np.median(times)),
            "cpu_seconds_per_step": times,
            "cpu_seconds_per_epoch_estimate": float(np.median(times)) * n_batches,
        }
    if args.profile:  # after the timed steps, so the profiler's overhead never enters them
        out["profile"] = {name: profile_steps(*state[name][:3], args.profile) for name in state}
    if "freedom" in out and "mrcsaf" in out:
        out["ratio_mrcsaf_over_freedom"] = (
            out["mrcsaf"]["cpu_seconds_per_step_median"] / out["freedom"]["cpu_seconds_per_step_median"]
        )
    return out


def profile_steps(module: Any, opt: Any, batches: list[Any], n: int, top: int = 15) -> dict[str, Any]:
    """``torch.profiler`` over ``n`` more training steps of ``module``: the ``top`` operators by self CPU time,
    ``"ops"`` summed over all calls of an operator and ``"by_shape"`` per operator and input shapes (a batch's
    shapes vary, so one operator can appear several times there), each with self CPU seconds and calls per step."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        for step in range(n):
            opt.zero_grad()
            module.loss(batches[step % len(batches)]).backward()
            opt.step()

    def table(events: Any, shapes: bool) -> list[dict[str, Any]]:
        ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
        return [
            {
                "op": e.key,
                **({"input_shapes": str(e.input_shapes)} if shapes else {}),
                "self_cpu_s_per_step": e.self_cpu_time_total / 1e6 / n,
                "calls_per_step": e.count / n,
            }
            for e in ranked
        ]

    return {
        "ops": table(prof.key_averages(), False),
        "by_shape": table(prof.key_averages(group_by_input_shape=True), True),
    }


def model_spec(name: str) -> tuple[str, dict[str, Any]]:
    """A model name of ``--models`` as (registered name, config): ``mrcsaf:selector_only`` is mrcsaf with
    ``variant=selector_only`` (the ablations' cost), ``mrcsaf:csa_only+fusion_scope=batch`` also sets an option."""
    base, _, rest = name.partition(":")
    config: dict[str, Any] = {}
    for part in filter(None, rest.split("+")):
        key, eq, value = part.partition("=")
        config.update({key: value} if eq else {"variant": key})
    return base, config


def uptime() -> str:
    """The load averages, as `uptime` prints them."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_child(model: str, args: argparse.Namespace, config: dict[str, Any], **flags: Any) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cache = Path(args.graph_dir) / f"mm_eff_graphs_seed{args.seed}_scale{args.scale}.pt"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        model,
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--scale",
        str(args.scale),
        "--config",
        json.dumps(config),
        "--graph-cache",
        str(cache),
    ]
    for k, v in flags.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    load = uptime()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{model} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    out["load_before"] = load
    print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--models", default="freedom,mrcsaf")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="shrink the set (tests); 1.0 is Sports' size")
    p.add_argument("--full-attention-batches", type=int, default=0)
    p.add_argument(
        "--cpu-steps",
        type=int,
        default=0,
        help="instead of timed fits: CPU seconds per training step of each model, stepped in turn in one process",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="with --cpu-steps: also profile N more steps of each model (torch.profiler), top operators recorded",
    )
    p.add_argument("--out", type=Path)
    p.add_argument("--graph-dir", default="/tmp", help="where the kNN graphs are cached between the fits")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--config", default="", help=argparse.SUPPRESS)
    p.add_argument("--graph-cache", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.cpu_steps:
        load = uptime()
        result = cpu_steps(args, models)
        result["load_before"] = load
        write_record("mm_efficiency_cpu_steps", result, args.out, threads=1, sizes=SPORTS, scale=args.scale)
        return
    runs = []
    for _ in range(args.rounds):
        for m in models:
            base, config = model_spec(m)
            runs.append({**run_child(base, args, config), "name": m})
    summary: dict[str, Any] = {}
    for m in models:
        mine = [r for r in runs if r["name"] == m]
        secs = [s for r in mine for s in r["epoch_seconds"]]
        cpu = [s for r in mine for s in r.get("epoch_cpu_seconds", [])]
        summary[m] = {
            "epoch_seconds_median": float(np.median(secs)),
            "epoch_seconds_mean": float(np.mean(secs)),
            "epoch_seconds_min": float(np.min(secs)),
            "epoch_seconds_max": float(np.max(secs)),
            "epoch_cpu_seconds_median": float(np.median(cpu)) if cpu else None,
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in mine),
        }
    for m in models:
        if m != "freedom" and "freedom" in summary:
            summary[f"ratio_{m}_over_freedom"] = (
                summary[m]["epoch_seconds_median"] / summary["freedom"]["epoch_seconds_median"]
            )
    if args.full_attention_batches:
        summary["mrcsaf_full_attention"] = run_child(
            "mrcsaf", args, {"attention": "full"}, full_attention_batches=args.full_attention_batches
        )
    write_record(
        "mm_efficiency",
        {"summary": summary, "runs": runs},
        args.out,
        threads=1,
        sizes=SPORTS,
        scale=args.scale,
        machine=os.uname().nodename,
        cpus=os.cpu_count(),
    )


if __name__ == "__main__":
    main()
