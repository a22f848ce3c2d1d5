"""bpr and lightgcn vs RecBole BPR / LightGCN on MovieLens-100k full ranking: the same λ × lr grid, 1 thread each.

    .venv/bin/python benchmarks/fair_topk.py --peer-python /work/peer-venv/bin/python \
        [--models bpr,lightgcn] [--split-seed 2026] [--seeds 0,1,2] [--chosen-from RECORD] \
        [--out bench_results/fair_topk_2026.json]

Two long-lived workers (``fair_common.py``), each at one thread: attnrec (``bench_topk.py --serve``, which makes the
random 80/10/10 split of ``--split-seed`` and exports it) and RecBole (``topk_recbole_peer.py --serve``, in its own
venv, reading the exported files). Requests alternate: ours, peer, ours, peer. For each model: both libraries fit
every point of the same grid (``GRIDS[--grid]``: lr × λ, λ being the same penalty in both, see topk_recbole_peer.py) with the
first model seed, early stopping on validation NDCG@20 (patience 10, at most 300 epochs); each library's point with
the best validation NDCG@20 is tested once; then that point is refitted with each further seed and tested once.
Test metrics are each library's own full-ranking evaluator (train + valid masked). ``--chosen-from`` takes the
chosen points from an earlier record instead of a grid (for a re-check on a fresh split: no choice is made there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from fair_common import Worker, fmt_pm, grid_points, machine_state, record_header, write_json

#: the validation grids, the same for both libraries. lightgcn leaves out lr 2e-3 (bench_topk.py's "small" grid has
#: it): at 1 thread RecBole's LightGCN needs about 2 s an epoch here and that lr runs the longest.
GRIDS: dict[str, dict[str, dict[str, list[float]]]] = {
    "default": {
        "bpr": {"lr": [1e-3, 5e-3, 2e-2], "reg": [1e-5, 1e-4, 1e-3]},
        "lightgcn": {"lr": [5e-3, 1e-2], "reg": [1e-5, 1e-4, 1e-3]},
    },
    # both libraries chose the corner lr 1e-3, λ 1e-3 of the default bpr grid: this one is centred on it
    "wide": {"bpr": {"lr": [5e-4, 1e-3, 2e-3], "reg": [1e-3, 3e-3, 1e-2]}},
}
LIBS = ("ours", "recbole")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="bpr,lightgcn")
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument(
        "--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2], help="model seeds"
    )
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--grid", choices=sorted(GRIDS), default="default", help="which GRIDS entry")
    ap.add_argument(
        "--ours-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an attnrec model setting for every fit of ours (a diagnostic, e.g. init=xavier; VALUE parsed as JSON "
        "when it parses, else a string)",
    )
    ap.add_argument("--chosen-from", type=Path, default=None, help="reuse the chosen points of this record")
    ap.add_argument(
        "--peer-python", default="/work/peer-venv/bin/python", help="a Python with recbole==1.2.1"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    split_dir = Path("bench_results") / f"fair-split-{args.split_seed}"
    logs = Path(args.out or "bench_results/fair_topk.json").with_suffix("")
    here = Path(__file__).parent
    ours = Worker(
        "ours",
        sys.executable,
        here / "bench_topk.py",
        ["--serve", "--seed", str(args.split_seed), "--split-dir", str(split_dir)],
        Path(f"{logs}.ours.log"),
    )
    info = ours.call(op="info")  # the split is exported before the peer reads it
    peer = Worker(
        "recbole",
        args.peer_python,
        here / "topk_recbole_peer.py",
        ["--serve", "--split-dir", str(split_dir)],
        Path(f"{logs}.recbole.log"),
    )
    workers = {"ours": ours, "recbole": peer}
    earlier = json.loads(args.chosen_from.read_text())["chosen"] if args.chosen_from else None
    record: dict[str, Any] = {
        **record_header("fair/topk_vs_recbole"),
        "split": {"seed": args.split_seed, "dir": str(split_dir), **info},
        "seeds": args.seeds,
        "grids": {m: GRIDS[args.grid][m] for m in args.models.split(",")} if earlier is None else None,
        "chosen_from": str(args.chosen_from) if args.chosen_from else None,
        "fits": [],
        "tests": {},
        "chosen": {},
    }
    base = {"epochs": args.epochs, "patience": args.patience}
    ours_set = dict(parse_setting(kv) for kv in args.ours_set)
    record["ours_set"] = ours_set
    extra = {"ours": {"set": ours_set} if ours_set else {}, "recbole": {}}
    for model in args.models.split(","):
        first = args.seeds[0]
        if earlier is None:
            for point in grid_points(GRIDS[args.grid][model]):
                for lib, w in workers.items():
                    reply = w.call(
                        op="fit",
                        model=model,
                        key=f"{model}/{first}",
                        seed=first,
                        **point,
                        **base,
                        **extra[lib],
                    )
                    record["fits"].append({"lib": lib, "model": model, "seed": first, "grid": True, **reply})
                    write_json(record, args.out)
            seeds_left = args.seeds[1:]
        else:
            seeds_left = args.seeds
        chosen: dict[str, dict[str, float]] = {}
        for lib, w in workers.items():
            if earlier is None:
                t = {"seed": first, **w.call(op="test", key=f"{model}/{first}")}
                record["tests"].setdefault(f"{lib}/{model}", []).append(t)
                c = t["chosen"]
                chosen[lib] = {
                    "lr": c["trainer"]["lr"] if lib == "ours" else c["lr"],
                    "reg": c["params"]["reg"] if lib == "ours" else c["reg"],
                }
            else:
                chosen[lib] = earlier[model][lib]
        record["chosen"][model] = chosen
        for seed in seeds_left:  # the chosen point with each further seed: fit, then test once, interleaved
            for lib, w in workers.items():
                reply = w.call(
                    op="fit",
                    model=model,
                    key=f"{model}/{seed}",
                    seed=seed,
                    **chosen[lib],
                    **base,
                    **extra[lib],
                )
                record["fits"].append({"lib": lib, "model": model, "seed": seed, "grid": False, **reply})
                t = {"seed": seed, **w.call(op="test", key=f"{model}/{seed}")}
                record["tests"].setdefault(f"{lib}/{model}", []).append(t)
                write_json(record, args.out)
    record["end"] = machine_state()
    for w in workers.values():
        w.close()
    write_json(record, args.out)
    print_table(record)


def parse_setting(kv: str) -> tuple[str, Any]:
    """``"init=xavier"`` -> ("init", "xavier"); ``"dim=32"`` -> ("dim", 32): the value as JSON when it parses."""
    key, sep, raw = kv.partition("=")
    if not sep or not key:
        raise SystemExit(f"--ours-set {kv!r}: expected KEY=VALUE")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def print_table(record: dict[str, Any]) -> None:
    """Test metrics (mean ± std over seeds) of each library's chosen point, with validation NDCG@20 and s/epoch."""
    print(
        "\n| model | library | chosen (lr, λ) | "
        + " | ".join(m.capitalize() for m in METRICS)
        + " | valid NDCG@20 | best epoch / run | s/epoch (median of seeds' medians) |"
    )
    print("|---|---|---|" + "---|" * (len(METRICS) + 3))
    for key, rows in record["tests"].items():
        lib, model = key.split("/")
        c = record["chosen"][model][lib]
        infos = [r["chosen"] for r in rows]
        valid = [i["valid_ndcg@20"] if lib == "ours" else i["valid"]["ndcg@20"] for i in infos]
        spe = statistics.median(i["s_per_epoch"] for i in infos)
        epochs = ", ".join(f"{i['best_epoch']}/{i['epochs_run']}" for i in infos)
        cells = " | ".join(fmt_pm([r["test"][m] for r in rows]) for m in METRICS)
        print(
            f"| {model} | {lib} | {c['lr']:g}, {c['reg']:g} | {cells} | {fmt_pm(valid)} | {epochs} | {spe:.2f} |"
        )
    print("\nload average (1, 5, 15 min):", record["start"]["loadavg"], "->", record["end"]["loadavg"])


if __name__ == "__main__":
    main()
