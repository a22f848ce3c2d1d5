"""Sanity row for attnrec's sasrec: RecBole 1.2.1's SASRec on the same single-domain sequences (issue 16).

Two steps, two Pythons (RecBole pins old helper packages, so it lives in its own venv)::

    .venv/bin/python benchmarks/cdsr_peer_recbole.py export --data abxi-food-kitchen --dir bench_results/cdsr/recbole
    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/cdsr_peer_recbole.py run \
        --dir bench_results/cdsr/recbole --domains A,B --epochs 30 --patience 5 \
        --out bench_results/cdsr/recbole_sasrec.jsonl

``export`` reads the dataset through attnrec (the registered reader) and splits it with attnrec's own
``leave_last_out`` (per user, by timestamp with ties in file order: last item -> test, the one before -> valid), then
writes, per domain D, RecBole's pre-augmented sequential atomic files ``D.{train,valid,test}.inter``
(``user_id``, ``item_id_list`` = the previous at most ``max_len`` items of domain D, oldest first, ``item_id`` =
the target): a training row for every position after the first of the user's domain-D training items; a
validation row for each user whose validation item is in D (input: the D items of train); a test row for each
user whose test item is in D (input: the D items of train plus the validation item when it is in D). That is what
attnrec's ``sasrec`` with ``domain="D"`` reads (``Sequences.view(D)``; test input = train + validation).

``run`` trains RecBole's SASRec on each domain's files (``benchmark_filename``: RecBole does not re-split), with
RecBole's SASRec defaults (2 layers, 2 heads, hidden 64, inner 256, dropout 0.5, CE loss over all items, Adam lr
1e-3, batch 2048), early stopping on validation NDCG@10 (``stopping_step = --patience``), and evaluates with
``mode: uni999``: the target plus 999 negatives drawn uniformly from the domain's items. Differences from attnrec's
protocol (ABXI's): RecBole's sampler excludes the items that occur as TARGETS of the user's rows of the phase and
before (so the first training item of a user, never a target, can be drawn); it draws with replacement. MRR is
RecBole's MRR@1000 (= full MRR over the 1000 candidates). One JSON line per domain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

MAX_LEN = 50
TOPK = [1, 5, 10, 1000]


def export(data: str, out_dir: Path, max_len: int = MAX_LEN) -> dict[str, Any]:
    """Write the per-domain atomic files of attnrec's leave-one-out split of ``data``; returns row counts."""
    import polars as pl

    from attnrec.data.registry import load_dataset
    from attnrec.data.splits import leave_last_out

    ds = load_dataset(data)
    # "cold_start" keeps held-out rows whose item never occurs in train: ABXI evaluates every user (its item
    # table is the whole item map), and so does attnrec's CDSR run path
    parts = leave_last_out(ds.interactions, protocol="cold_start").parts()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {"data": data, "max_len": max_len}

    def ordered(df: pl.DataFrame) -> pl.DataFrame:
        # the split keeps input order; a stable sort by (user, timestamp) keeps file order within equal timestamps
        return df.with_row_index("_row").sort(["user_id", "timestamp", "_row"])

    train = ordered(parts["train"])
    valid = {r["user_id"]: (r["item_id"], r["domain"]) for r in parts["valid"].iter_rows(named=True)}
    test = {r["user_id"]: (r["item_id"], r["domain"]) for r in parts["test"].iter_rows(named=True)}
    domains = sorted(train["domain"].unique().to_list())
    for dom in domains:
        hist: dict[str, list[str]] = {
            u: g["item_id"].to_list()
            for (u,), g in train.filter(pl.col("domain") == dom).group_by("user_id", maintain_order=True)
        }
        rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
        for u, items in hist.items():
            for t in range(1, len(items)):
                rows["train"].append(f"{u}\t{' '.join(items[max(0, t - max_len) : t])}\t{items[t]}")
        for u, (item, d) in valid.items():
            if d == dom and hist.get(u):
                rows["valid"].append(f"{u}\t{' '.join(hist[u][-max_len:])}\t{item}")
        for u, (item, d) in test.items():
            if d != dom:
                continue
            seq = list(hist.get(u, []))
            v_item, v_dom = valid.get(u, (None, None))
            if v_dom == dom:
                seq.append(v_item)
            if seq:
                rows["test"].append(f"{u}\t{' '.join(seq[-max_len:])}\t{item}")
        folder = out_dir / dom
        folder.mkdir(exist_ok=True)
        for part, lines in rows.items():
            text = "user_id:token\titem_id_list:token_seq\titem_id:token\n" + "\n".join(lines) + "\n"
            (folder / f"{dom}.{part}.inter").write_text(text)
        counts[dom] = {part: len(lines) for part, lines in rows.items()}
    (out_dir / "export.json").write_text(json.dumps(counts, indent=2))
    return counts


def run_domain(folder: Path, epochs: int, patience: int, seed: int) -> dict[str, Any]:
    """RecBole SASRec on one domain's exported files; best-validation weights, then test once."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer

    dom = folder.name
    config_dict: dict[str, Any] = {
        "data_path": str(folder.parent),
        "dataset": dom,
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        "eval_args": {"order": "TO", "mode": "uni999", "group_by": "user"},
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": TOPK,
        "valid_metric": "NDCG@10",
        "epochs": epochs,
        "stopping_step": patience,
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "seed": seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "checkpoint_dir": str(folder / "saved"),
        "log_wandb": False,
    }
    t0 = time.perf_counter()
    config = Config(model="SASRec", config_dict=config_dict)
    from recbole.utils import init_seed

    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    load_s = time.perf_counter() - t0
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    epoch_seconds: list[float] = []
    inner = trainer._train_epoch

    def timed_epoch(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = inner(*a, **kw)
        epoch_seconds.append(time.perf_counter() - t)
        return out

    trainer._train_epoch = timed_epoch
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.perf_counter() - t0
    # RecBole's own reload uses torch.load's new weights_only default, which rejects its checkpoint; the file was
    # written by this run a moment ago
    ckpt = torch.load(trainer.saved_model_file, map_location=trainer.device, weights_only=False)
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(ckpt.get("other_parameter"))
    Path(trainer.saved_model_file).unlink()
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)

    def rename(m: dict[str, Any]) -> dict[str, float]:
        out = {k.replace("hit@", "hr@"): float(v) for k, v in m.items()}
        out["mrr"] = out.pop("mrr@1000")
        return out

    return {
        "peer": "RecBole SASRec",
        "domain": dom,
        "recbole": _version("recbole"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "n_items": int(dataset.item_num - 1),
        "n_params": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "rows": {
            "train": len(train_data._dataset),
            "valid": len(valid_data._dataset),
            "test": len(test_data._dataset),
        },
        "valid": rename(best_valid),
        "test": rename(test),
        "epochs_run": len(epoch_seconds),
        "best_epoch": len(epoch_seconds) - int(trainer.cur_step),
        "s_per_epoch": statistics.median(epoch_seconds) if epoch_seconds else None,
        "fit_s": fit_s,
        "load_s": load_s,
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            k: config[k]
            for k in (
                "hidden_size",
                "n_layers",
                "n_heads",
                "inner_size",
                "hidden_dropout_prob",
                "attn_dropout_prob",
                "learning_rate",
                "train_batch_size",
                "loss_type",
                "MAX_ITEM_LIST_LENGTH",
            )
        },
    }


def _version(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> None:
    """``export`` (attnrec's venv) or ``run`` (RecBole's venv)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--data", default="abxi-food-kitchen")
    e.add_argument("--dir", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--dir", type=Path, required=True)
    r.add_argument("--domains", default="A,B")
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--patience", type=int, default=5)
    r.add_argument("--seed", type=int, default=2020)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "export":
        print(json.dumps(export(a.data, a.dir), indent=2))
        return
    import torch

    torch.set_num_threads(a.threads)
    for dom in a.domains.split(","):
        rec = run_domain(a.dir / dom, a.epochs, a.patience, a.seed)
        rec["command"] = " ".join([sys.executable, *sys.argv])
        rec["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with a.out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(
            json.dumps({k: rec[k] for k in ("domain", "valid", "test", "epochs_run", "s_per_epoch")}),
            flush=True,
        )


if __name__ == "__main__":
    main()
