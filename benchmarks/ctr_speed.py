"""CTR speed rows: seconds per training epoch of attnrec against DeepCTR-Torch and FuxiCTR, 1 thread, interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ctr_speed.py --datasets movielens,criteo,avazu \\
        --peer-path ../ctr-peers-lib --fuxictr-zoo ../fuxictr-zoo/model_zoo --out bench_results/ctr_speed.json

Pairs (``--pairs``): DeepFM in all three libraries, xDeepFM against DeepCTR-Torch's, DCN against FuxiCTR's DCNv2.
Same data, encoders and model settings as ``benchmarks/bench_ctr.py`` (``load_splits``, ``model_params`` and the peer
runners' ``build_model``), L2 ``--embedding-reg`` everywhere (it adds one term to the loss; 0 by default).

Interleaving: ``--rounds`` rounds; in each, every (library, model) builds a fresh model (seed = round) and trains
``--epochs`` epochs, one library after another, so load that drifts during the run falls on every library alike.
An epoch's seconds are its training pass only (no validation, no model construction): attnrec's Trainer
``seconds``; DeepCTR-Torch's ``fit(epochs=1)`` call (its per-call DataLoader set-up included, as in bench_ctr.py);
FuxiCTR's ``train_step`` loop with batch assembly. Reported: the median over every timed epoch (rounds × epochs,
the first epoch of each run dropped with ``--drop-first``) and each peer's ratio peer / attnrec. Record ``uptime``
beside the numbers: ratios measured interleaved in one job stay fair under moderate load, absolute seconds do not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ctr import (  # noqa: E402 - the benchmark folder is not a package
    DEFAULT_DATA_DIR,
    BenchSettings,
    Splits,
    load_splits,
    machine,
    model_class,
    model_params,
    peer_module,
)

from attnrec.training.trainer import TrainerConfig  # noqa: E402

#: model -> libraries timed for it (attnrec first: the ratios divide by it)
PAIRS: dict[str, tuple[str, ...]] = {
    "deepfm": ("attnrec", "deepctr-torch", "fuxictr"),
    "xdeepfm": ("attnrec", "deepctr-torch"),
    "dcn": ("attnrec", "fuxictr"),
}
#: one run: (model, splits, seed, settings, epochs) -> seconds of each epoch's training pass
EpochTimer = Callable[[str, Splits, int, BenchSettings, int], list[float]]


def attnrec_epochs(name: str, splits: Splits, seed: int, s: BenchSettings, epochs: int) -> list[float]:
    """attnrec's ``name`` fitted ``epochs`` epochs through its own ``fit`` (no validation): the Trainer's seconds."""
    model = model_class(name)(**model_params(name, seed, s))
    tc = TrainerConfig(
        epochs=epochs,
        patience=None,
        lr=s.lr,
        batch_size=s.batch_size,
        optimizer="adam",
        progress=False,
        device="cpu",
    )
    report = model.fit(splits[0], None, trainer=tc)
    return [float(h["seconds"]) for h in report.history]


def deepctr_epochs(name: str, splits: Splits, seed: int, s: BenchSettings, epochs: int) -> list[float]:
    """DeepCTR-Torch's ``name``, ``fit(epochs=1)`` per epoch as bench_ctr.py's peer runner calls it."""
    peer = peer_module()
    train = splits[0]
    torch.manual_seed(seed)
    multi_len = train.multi.shape[2] if train.schema.multi else 0
    model = peer.build_model(
        name,
        train.schema,
        multi_len,
        seed=seed,
        embedding_dim=s.embedding_dim,
        hidden=list(s.hidden),
        dropout=s.dropout,
        cin_layers=list(s.cin_layers),
        embedding_reg=s.embedding_reg,
    )
    model.compile(torch.optim.Adam(model.parameters(), lr=s.lr), "binary_crossentropy")
    x, y = peer.model_inputs(train), np.ascontiguousarray(train.labels, dtype=np.float32)
    secs = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            model.fit(dict(x), y, batch_size=s.batch_size, epochs=1, verbose=0, shuffle=True)
        secs.append(time.perf_counter() - t0)
    return secs


def fuxictr_epochs(name: str, splits: Splits, seed: int, s: BenchSettings, epochs: int) -> list[float]:
    """FuxiCTR's ``name`` (deepfm / dcn = DCNv2), its ``train_step`` over shuffled batches, as the peer runner."""
    peer = peer_module("ctr_fuxictr_peer")
    peer._import_fuxictr()
    train = splits[0]
    model = peer.build_model(
        name,
        train,
        Path(s.fuxictr_zoo),
        seed=seed,
        embedding_dim=s.embedding_dim,
        hidden=list(s.hidden),
        dropout=s.dropout,
        lr=s.lr,
        embedding_reg=s.embedding_reg,
    )
    cols = peer.columns(train)
    secs = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        for batch in peer._batches(cols, s.batch_size, order):
            model.train_step(batch)
        secs.append(time.perf_counter() - t0)
    return secs


TIMERS: dict[str, EpochTimer] = {
    "attnrec": attnrec_epochs,
    "deepctr-torch": deepctr_epochs,
    "fuxictr": fuxictr_epochs,
}


def time_dataset(
    ds: str,
    pairs: dict[str, tuple[str, ...]],
    s: BenchSettings,
    rounds: int,
    epochs: int,
    drop_first: bool,
    data_dir: Path = DEFAULT_DATA_DIR,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time every (library, model) of ``pairs`` on dataset ``ds``, interleaved by round; ``{"<lib>/<model>":
    {"epochs": [...], "median_s": m}, ..., "ratios": {"<peer>/<model>": peer median / attnrec median}}``."""
    splits, _ = load_splits(ds, data_dir, s.split_seed)
    secs: dict[str, list[float]] = {f"{lib}/{m}": [] for m, libs in pairs.items() for lib in libs}
    for r in range(rounds):
        for m, libs in pairs.items():
            for lib in libs:
                got = TIMERS[lib](m, splits, r, s, epochs)
                secs[f"{lib}/{m}"] += got[1:] if drop_first and len(got) > 1 else got
                log(f"{ds} round {r} {lib}/{m}: " + ", ".join(f"{x:.3f}" for x in got) + " s")
    out: dict[str, Any] = {k: {"epochs": v, "median_s": float(statistics.median(v))} for k, v in secs.items()}
    out["ratios"] = {
        f"{lib}/{m}": out[f"{lib}/{m}"]["median_s"] / out[f"attnrec/{m}"]["median_s"]
        for m, libs in pairs.items()
        for lib in libs
        if lib != "attnrec"
    }
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: dataset, model, attnrec s/epoch, each peer's s/epoch and its ratio peer / attnrec."""
    lines = [
        "| dataset | model | attnrec s/epoch | peer | peer s/epoch | peer / attnrec | timed epochs |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds, r in results.items():
        for key, ratio in r["ratios"].items():
            lib, m = key.split("/")
            ours, theirs = r[f"attnrec/{m}"], r[key]
            lines.append(
                f"| {ds} | {m} | {ours['median_s']:.3f} | {lib} | {theirs['median_s']:.3f} | {ratio:.2f}× | "
                f"{len(theirs['epochs'])} |"
            )
    return "\n".join(lines)


def load_average() -> str:
    """The 1/5/15-minute load averages (``/proc/loadavg``), or '' where there is none."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, time every dataset, print the table and write the JSON record (``--out``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--datasets", default="movielens,criteo,avazu")
    ap.add_argument("--pairs", default=",".join(PAIRS), help=f"models among {list(PAIRS)}")
    ap.add_argument("--libraries", default="attnrec,deepctr-torch,fuxictr", help="libraries timed")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run (fresh model per round)")
    ap.add_argument(
        "--drop-first", action="store_true", help="leave each run's first epoch out of the median"
    )
    ap.add_argument("--embedding-reg", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--peer-path", default="", help="a folder appended to sys.path where the peers are installed"
    )
    ap.add_argument("--fuxictr-zoo", default="", help="FuxiCTR's model_zoo folder")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peer_path:
        sys.path.append(str(Path(args.peer_path).resolve()))
    libs = {x for x in args.libraries.split(",") if x} | {"attnrec"}
    if "fuxictr" in libs and not args.fuxictr_zoo:
        libs.discard("fuxictr")
    pairs = {m: tuple(lib for lib in PAIRS[m] if lib in libs) for m in args.pairs.split(",") if m}
    s = BenchSettings(embedding_reg=args.embedding_reg, fuxictr_zoo=args.fuxictr_zoo)
    t0 = time.perf_counter()
    load_start = load_average()
    results = {
        ds: time_dataset(
            ds,
            pairs,
            s,
            args.rounds,
            args.epochs,
            args.drop_first,
            args.data_dir,
            lambda m: print(m, flush=True),
        )
        for ds in args.datasets.split(",")
        if ds
    }
    md = table(results)
    print("\n" + md)
    versions: dict[str, Any] = {"torch": torch.__version__, "numpy": np.__version__}
    if "deepctr-torch" in libs:
        versions["deepctr-torch"] = peer_module().deepctr_version()
    if "fuxictr" in libs:
        versions["fuxictr"] = peer_module("ctr_fuxictr_peer").fuxictr_version()
    record = {
        "bench": "ctr_speed",
        "command": shlex.join(
            [".venv/bin/python", "benchmarks/ctr_speed.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "load_average": {"start": load_start, "end": load_average()},
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        "wall_s": round(time.perf_counter() - t0, 1),
        "results": results,
        "table": md,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
