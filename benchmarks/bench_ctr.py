"""CTR benchmark: nine attnrec models and DeepCTR-Torch's DeepFM/xDeepFM on identical splits and features.

    .venv/bin/pip install -e ".[bench]" deepctr-torch requests
    .venv/bin/python benchmarks/bench_ctr.py --datasets movielens,criteo,avazu --seeds 0,1,2 --out bench_results/ctr.json

* MovieLens-100k as CTR (label = rating >= 4; fields user, item, age, gender, occupation, zip prefix, genres (multi),
  year): one random 80/10/10 split (seed 2026) fixed for all models; model seeds vary.
* Criteo and Avazu samples in ../shared/data/ctr-criteo-avazu-8k: their own train/dev/test files.
Vocabularies are fitted on train only. Every model: embedding dim 16, Adam lr 1e-3, batch 256, no weight decay, early
stopping on validation AUC (patience 3, at most --epochs), best epoch restored, test scored once. The DeepCTR peer gets
the same integer-encoded columns and vocabulary sizes, the same embedding dim, MLP sizes, dropout, CIN sizes, optimiser,
batch size and early-stopping rule; seconds per epoch is the training pass only for both (median over epochs run).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from attnrec.data.ctr import CTRData, FeatureEncoder
from attnrec.data.readers.ctr import movielens_ctr, read_avazu, read_criteo
from attnrec.evaluation.metrics import auc, logloss
from attnrec.models.base import get_model_class
from attnrec.training.trainer import TrainerConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ctr-criteo-avazu-8k"
MODELS = ["lr", "fm", "nfm", "afm", "deepfm", "xdeepfm", "dcn", "autoint", "secn"]
HIDDEN, DROPOUT, CIN = [64, 32], 0.1, [16, 16]


def load(name: str) -> tuple[CTRData, CTRData, CTRData]:
    if name == "movielens":
        import polars as pl

        from attnrec.data.registry import load_dataset

        table = movielens_ctr(load_dataset("ml-100k", progress=False))
        df = table.frame
        order = np.random.default_rng(2026).permutation(df.height)
        cut1, cut2 = int(0.8 * df.height), int(0.9 * df.height)
        parts = [df[order[:cut1]], df[order[cut1:cut2]], df[order[cut2:]]]
        schema = table.schema
        del pl
    else:
        reader = read_criteo if name == "criteo" else read_avazu
        tables = [reader(SHARED / name / f"{p}.csv") for p in ("train", "dev", "test")]
        parts, schema = [t.frame for t in tables], tables[0].schema
    enc = FeatureEncoder(schema).fit(parts[0])
    return tuple(enc.transform(p) for p in parts)  # type: ignore[return-value]


def run_ours(name: str, tr: CTRData, va: CTRData, te: CTRData, seed: int, epochs: int) -> dict:
    cls = get_model_class(name)
    fields = cls.config_class.model_fields
    params: dict = {"seed": seed}
    if "embedding_dim" in fields:
        params["embedding_dim"] = 16
    if "hidden" in fields:
        params["hidden"] = HIDDEN
    if "dropout" in fields:
        params["dropout"] = DROPOUT
    if "cin_layers" in fields:
        params["cin_layers"] = CIN
    model = cls(**params)
    tc = TrainerConfig(epochs=epochs, patience=3, lr=1e-3, batch_size=256, progress=False, device="cpu")
    report = model.fit(tr, va, trainer=tc)
    m = model.evaluate(te)
    secs = [h["seconds"] for h in report.history]
    return {"auc": m["auc"], "logloss": m["logloss"], "s_per_epoch": statistics.median(secs),
            "best_epoch": report.best_epoch, "epochs_run": report.epochs_run}


def deepctr_inputs(data: CTRData):
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat

    s = data.schema
    cols, x = [], {}
    for j, f in enumerate(s.categorical):
        cols.append(SparseFeat(f.name, vocabulary_size=f.vocab_size, embedding_dim=16))
        x[f.name] = data.categorical[:, j]
    for j, f in enumerate(s.numeric):
        cols.append(DenseFeat(f.name, 1))
        x[f.name] = data.numeric[:, j]
    for j, f in enumerate(s.multi):
        cols.append(VarLenSparseFeat(SparseFeat(f.name, vocabulary_size=f.vocab_size, embedding_dim=16),
                                     maxlen=data.multi.shape[2], combiner="mean"))
        x[f.name] = data.multi[:, j, :]
    return cols, x


def run_deepctr(name: str, tr: CTRData, va: CTRData, te: CTRData, seed: int, epochs: int) -> dict:
    from deepctr_torch.models import DeepFM, xDeepFM

    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - DeepCTR shuffles with NumPy's global state
    cols, xtr = deepctr_inputs(tr)
    _, xva = deepctr_inputs(va)
    _, xte = deepctr_inputs(te)
    common = dict(dnn_hidden_units=tuple(HIDDEN), dnn_dropout=DROPOUT, l2_reg_linear=0.0, l2_reg_embedding=0.0,
                  l2_reg_dnn=0.0, seed=seed, task="binary", device="cpu")
    if name == "deepfm":
        model = DeepFM(cols, cols, **common)
    else:
        model = xDeepFM(cols, cols, cin_layer_size=tuple(CIN), cin_split_half=True, cin_activation="linear",
                        l2_reg_cin=0.0, **common)
    model.compile(torch.optim.Adam(model.parameters(), lr=1e-3), "binary_crossentropy")
    best, best_state, bad, secs, best_epoch = -1.0, None, 0, [], 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.fit(xtr, tr.labels, batch_size=256, epochs=1, verbose=0, shuffle=True)
        secs.append(time.perf_counter() - t0)
        v = auc(va.labels, model.predict(xva, batch_size=4096).ravel())
        if v > best:
            best, best_state, bad, best_epoch = v, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            bad += 1
            if bad >= 3:
                break
    model.load_state_dict(best_state)
    p = model.predict(xte, batch_size=4096).ravel()
    return {"auc": auc(te.labels, p), "logloss": logloss(te.labels, p), "s_per_epoch": statistics.median(secs),
            "best_epoch": best_epoch, "epochs_run": epoch}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="movielens,criteo,avazu")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--peer", default="deepfm,xdeepfm", help="DeepCTR-Torch models to run ('' for none)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {}
    for ds in args.datasets.split(","):
        tr, va, te = load(ds)
        print(f"# {ds}: train {len(tr)}, valid {len(va)}, test {len(te)}", flush=True)
        runs = [("attnrec", m, run_ours) for m in args.models.split(",")]
        runs += [("deepctr-torch", m, run_deepctr) for m in args.peer.split(",") if m]
        for lib, name, fn in runs:
            rows = [fn(name, tr, va, te, s, args.epochs) for s in seeds]
            key = f"{ds}/{lib}/{name}"
            results[key] = {
                "runs": rows,
                "auc_mean": float(np.mean([r["auc"] for r in rows])), "auc_std": float(np.std([r["auc"] for r in rows])),
                "logloss_mean": float(np.mean([r["logloss"] for r in rows])),
                "logloss_std": float(np.std([r["logloss"] for r in rows])),
                "s_per_epoch": float(np.median([r["s_per_epoch"] for r in rows])),
            }
            r = results[key]
            print(f"{key}: AUC {r['auc_mean']:.4f}±{r['auc_std']:.4f} logloss {r['logloss_mean']:.4f}±"
                  f"{r['logloss_std']:.4f} s/epoch {r['s_per_epoch']:.3f}", flush=True)
    print("\n| dataset | library | model | test AUC (mean ± std) | test logloss (mean ± std) | s/epoch (median) |")
    print("|---|---|---|---|---|---|")
    for key, r in results.items():
        ds, lib, name = key.split("/")
        print(f"| {ds} | {lib} | {name} | {r['auc_mean']:.4f} ± {r['auc_std']:.4f} | "
              f"{r['logloss_mean']:.4f} ± {r['logloss_std']:.4f} | {r['s_per_epoch']:.3f} |")
    record = {"bench": "ctr", "command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
              "machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
              "torch": torch.__version__, "results": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
