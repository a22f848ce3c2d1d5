"""Sanity row for attnrec's sasrec: RecBole 1.2.1's SASRec on the same single-domain sequences (issue 16).

Two steps, two Pythons (RecBole pins old helper packages, so it lives in its own venv)::

    .venv/bin/python benchmarks/cdsr_peer_recbole.py export --data abxi-food-kitchen --dir bench_results/cdsr/recbole
    OMP_NUM_THREADS=1 /work/peer-venv-recbole/bin/python benchmarks/cdsr_peer_recbole.py run \
        --dir bench_results/cdsr/recbole --domains A,B --epochs 80 --patience 5 --seed 0 \
        --out bench_results/cdsr/recbole_sasrec.jsonl

``export`` reads the dataset through attnrec (the registered reader) and splits it with attnrec's own
``leave_last_out`` (per user, by timestamp with ties in file order: last item -> test, the one before -> valid), then
writes, per domain D, RecBole's pre-augmented sequential atomic files ``D.{train,valid,test}.inter``
(``user_id``, ``item_id_list`` = the previous at most ``max_len`` items of domain D, oldest first, ``item_id`` =
the target): a training row for every position after the first of the user's domain-D training items; a
validation row for each user whose validation item is in D (input: the D items of train); a test row for each
user whose test item is in D (input: the D items of train plus the validation item when it is in D). That is what
attnrec's ``sasrec`` with ``domain="D"`` reads (``Sequences.view(D)``; test input = train + validation).

``export`` also writes ``D/D.test.cands``: attnrec's own test candidate lists (target + 999 negatives per test row
of domain D, seed 0, captured from ``evaluate_sequential``; see :func:`write_candidates`).

``run`` trains RecBole's SASRec on each domain's files (``benchmark_filename``: RecBole does not re-split): 2
layers, 2 heads, hidden 64, CE loss over all items, Adam lr 1e-3, batch 2048 rows (RecBole's SASRec defaults), and,
set to attnrec's sasrec defaults, inner size 64 and dropout 0.2 (:data:`MATCHED`; ``--recbole-defaults``: RecBole's
inner 256 and dropout 0.5). Early stopping on RecBole's validation NDCG@10 (``stopping_step = --patience``) under
its ``mode: uni999`` (the target plus 999 negatives drawn uniformly from the domain's items; its sampler excludes
only the items that occur as TARGETS of the user's rows of the phase and before, and draws with replacement). At
the best epoch the test is read twice: ``test`` = attnrec's protocol, the model scoring attnrec's candidate lists
(:func:`score_candidates`; rank = 1 + #(negatives scored strictly above the target)), and
``test_recbole_uni999`` = RecBole's own sampled evaluation (MRR there is MRR@1000 = full MRR over the 1000
candidates). One JSON line per domain.
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
    counts["candidates"] = write_candidates(data, out_dir)
    (out_dir / "export.json").write_text(json.dumps(counts, indent=2))
    return counts


def write_candidates(data: str, out_dir: Path) -> dict[str, int]:
    """Write ``D/D.test.cands`` per domain D: one line per test row whose target is in D, ``user<TAB>target<TAB>``
    then its 999 negatives (item ids, space-separated) — exactly the lists attnrec's test evaluation of any
    sequential model on ``data`` ranks (the run path's split, vocabulary and test protocol, seed 0; the negatives
    are the split's, not the model's, so a stand-in model that scores nothing is enough to capture them from
    :func:`attnrec.evaluation.sequential.draw_negatives`). Returns the row count per domain."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    from attnrec.evaluation import sequential as ev
    from attnrec.experiments.config import RunConfig, SplitSpec
    from attnrec.experiments.seq_run import prepare_sequences, sequential_protocols

    cfg = RunConfig(model="sasrec", data=data, split=SplitSpec(method="leave_last_out"), save_model=False)
    prep = prepare_sequences(cfg, progress=False)
    train, valid, test = prep["train"], prep["valid"], prep["test"]
    _, protocol = sequential_protocols(train, valid, prep["items"])
    seen = train.csr() + (valid.csr() if len(valid) else sp.csr_matrix(train.csr().shape))  # as run.py

    class StandIn:  # the ItemScorer surface evaluate_sequential reads
        n_items = train.n_items

        def score(self, query: Any) -> torch.Tensor:
            return torch.zeros(len(query.users), self.n_items)

    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    real = ev.draw_negatives

    def recording(excl: Any, targets: np.ndarray, pool: np.ndarray, n: int, rng: Any) -> np.ndarray:
        neg = real(excl, targets, pool, n, rng)
        drawn.append((targets.copy(), neg))
        return neg

    ev.draw_negatives = recording  # type: ignore[assignment]
    try:
        ev.evaluate_sequential(StandIn(), test, replace_full(protocol), exclude=seen)  # type: ignore[arg-type]
    finally:
        ev.draw_negatives = real  # type: ignore[assignment]
    assert protocol.item_domains is not None
    doms = np.asarray(protocol.item_domains)
    row_dom = doms[test.items]
    users, items = test.user_vocab.ids, test.item_vocab.ids
    out: dict[str, int] = {}
    k = 0
    for d in np.unique(row_dom):  # evaluate_sequential's order: domain by domain, chunk by chunk
        sel = np.flatnonzero(row_dom == d)
        n_chunks = -(-len(sel) // ev.SAMPLE_CHUNK)
        tg = np.concatenate([t for t, _ in drawn[k : k + n_chunks]])
        ng = np.concatenate([n for _, n in drawn[k : k + n_chunks]])
        k += n_chunks
        if not np.array_equal(tg, test.items[sel]):
            raise RuntimeError("captured negatives are not in the evaluation's row order")
        name = protocol.domain_names[int(d)]
        lines = [
            f"{users[u]}\t{items[t]}\t{' '.join(items[ng[j]])}"
            for j, (u, t) in enumerate(zip(test.users[sel], test.items[sel], strict=True))
        ]
        (out_dir / name).mkdir(exist_ok=True)
        (out_dir / name / f"{name}.test.cands").write_text("\n".join(lines) + "\n")
        out[name] = len(lines)
    return out


def replace_full(protocol: Any) -> Any:
    """The protocol without the full ranking (not needed to capture the sampled candidates)."""
    from dataclasses import replace

    return replace(protocol, full=False)


#: RecBole settings set to attnrec's sasrec defaults (the rest are RecBole's SASRec defaults: hidden 64, 2 layers,
#: 2 heads, lr 1e-3, batch 2048 rows, CE over all items, post-LayerNorm)
MATCHED = {"inner_size": 64, "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2}


def run_domain(
    folder: Path, epochs: int, patience: int, seed: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """RecBole SASRec on one domain's exported files (``overrides``: RecBole settings, e.g. :data:`MATCHED`);
    best-validation weights, then test once."""
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
        **(overrides or {}),
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
    cands = folder / f"{dom}.test.cands"
    ours = score_candidates(model, test_data._dataset, cands, config["device"]) if cands.exists() else None

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
        "test_recbole_uni999": rename(test),
        # attnrec's protocol: the same candidate lists as attnrec's test evaluation (export's D.test.cands)
        "test": ours,
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


def rank_metrics(ranks: list[int], ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """attnrec's sampled metrics from 1-based ranks among the candidates: ``hr@k``, ``ndcg@k``
    (``1 / log2(rank + 1)`` when ``rank <= k``), ``mrr`` (``1 / rank``, not cut)."""
    import math

    n = len(ranks)
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = sum(r <= k for r in ranks) / n
        out[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k) / n
    out["mrr"] = sum(1.0 / r for r in ranks) / n
    return out


def score_candidates(model: Any, dataset: Any, cands: Path, device: Any, batch: int = 256) -> dict[str, Any]:
    """The RecBole model's test metrics on attnrec's candidate lists (``cands``: ``user<TAB>target<TAB>negatives``):
    each test row of ``dataset`` (RecBole's test split, one row per user) is scored over all items with
    ``full_sort_predict`` and ranked as attnrec ranks: ``1 + #(negatives scored strictly above the target)``.
    A candidate RecBole never saw (not in any of its files) has no score: counted, and ranked below the target."""
    import torch

    inter = dataset.inter_feat
    tokens = dataset.field2token_id["item_id"]
    row_of = {str(u): i for i, u in enumerate(dataset.id2token("user_id", inter["user_id"].numpy()))}
    ranks: list[int] = []
    missing_rows = unknown = 0
    model.eval()
    lines = [ln.split("\t") for ln in cands.read_text().splitlines() if ln]
    for start in range(0, len(lines), batch):
        part = [(u, t, negs.split()) for u, t, negs in lines[start : start + batch]]
        keep = [(row_of[u], t, n) for u, t, n in part if u in row_of]
        missing_rows += len(part) - len(keep)
        if not keep:
            continue
        rows = torch.tensor([r for r, _, _ in keep])
        with torch.no_grad():
            scores = model.full_sort_predict(inter[rows].to(device)).cpu()
        for b, (_, t, negs) in enumerate(keep):
            ids = [tokens.get(x, -1) for x in negs]
            unknown += sum(i < 0 for i in ids)
            known = torch.tensor([i for i in ids if i >= 0], dtype=torch.long)
            target = scores[b, tokens[t]]
            ranks.append(1 + int((scores[b, known] > target).sum()))
    return {
        **rank_metrics(ranks),
        "n_rows": len(ranks),
        "rows_without_a_peer_test_row": missing_rows,
        "unknown_candidates": unknown,
        "n_candidates": 1 + len(lines[0][2].split()) if lines else 0,
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
    r.add_argument(
        "--recbole-defaults",
        action="store_true",
        help="RecBole's own SASRec defaults (inner 256, dropout 0.5) instead of attnrec's (inner 64, dropout 0.2)",
    )
    a = p.parse_args(argv)
    if a.cmd == "export":
        print(json.dumps(export(a.data, a.dir), indent=2))
        return
    import torch

    torch.set_num_threads(a.threads)
    for dom in a.domains.split(","):
        rec = run_domain(a.dir / dom, a.epochs, a.patience, a.seed, None if a.recbole_defaults else MATCHED)
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
