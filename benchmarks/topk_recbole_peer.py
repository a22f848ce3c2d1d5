"""RecBole's BPR and LightGCN on the split that ``bench_topk.py --split-dir DIR`` exported (the peer of issues 2, 12).

    python benchmarks/topk_recbole_peer.py --split-dir bench_results/ml100k-split --lr 0.005 --reg 1e-4 \
        [--epochs 300] [--patience 10] [--models BPR,LightGCN] [--out bench_results/topk_recbole.json]
    python benchmarks/topk_recbole_peer.py --serve --split-dir DIR      # a worker of benchmarks/fair_topk.py

Run it with a Python that has ``recbole==1.2.1`` (a separate environment: RecBole pins old helper packages, so it
is not part of any attnrec extra). The exported ``train.csv`` / ``valid.csv`` / ``test.csv`` become RecBole atomic
files read through ``benchmark_filename`` (RecBole does not re-split them); evaluation is RecBole's full ranking
(train items masked for validation, train + valid for test), Recall / NDCG at 10 and 20, early stopping on
validation NDCG@20 with ``stopping_step = --patience``. Same fixed settings as ``bench_topk.py``: embedding 64,
batch 2048, LightGCN 3 layers, one uniform negative per positive; each library keeps its own initialisation.

The same λ as attnrec: attnrec's penalty is λ Σ‖e‖² / B over the batch's ego embeddings (user, positive,
negative). RecBole's ``EmbLoss(require_pow=True)`` is Σ‖e‖² / B / 2, so ``require_pow=True`` with
``reg_weight = 2λ`` is the same term (RecBole's default, ``require_pow=False``, penalises Σ‖e‖ unsquared). RecBole's
BPR has no penalty at all; ``BPRL2`` below adds exactly LightGCN's term to it, so that both libraries' BPR are tuned
over the same λ. Seconds per epoch: median of RecBole's training epochs (validation excluded), timed around
``Trainer._train_epoch``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "attnrec_split"
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def write_atomic(split_dir: Path, data_dir: Path, name: str) -> None:
    """``{train,valid,test}.csv`` (user_id,item_id,rating,timestamp) -> ``name.{train,valid,test}.inter``."""
    data_dir.mkdir(parents=True)
    for part in ("train", "valid", "test"):
        with (
            open(split_dir / f"{part}.csv", newline="") as src,
            open(data_dir / f"{name}.{part}.inter", "w") as dst,
        ):
            reader = csv.DictReader(src)
            dst.write("user_id:token\titem_id:token\n")
            for row in reader:
                dst.write(f"{row['user_id']}\t{row['item_id']}\n")


def bpr_l2_class() -> type:
    """RecBole's BPR plus ``reg_weight`` × EmbLoss(user, positive, negative), the penalty RecBole's LightGCN uses."""
    from recbole.model.general_recommender import BPR
    from recbole.model.loss import EmbLoss

    class BPRL2(BPR):  # type: ignore[misc]
        def __init__(self, config: Any, dataset: Any) -> None:
            super().__init__(config, dataset)
            self.reg_weight = config["reg_weight"]
            self.require_pow = config["require_pow"]
            self.reg_loss = EmbLoss()

        def calculate_loss(self, interaction: Any) -> Any:
            u = self.user_embedding(interaction[self.USER_ID])
            p = self.item_embedding(interaction[self.ITEM_ID])
            n = self.item_embedding(interaction[self.NEG_ITEM_ID])
            loss = self.loss((u * p).sum(-1), (u * n).sum(-1))
            return loss + self.reg_weight * self.reg_loss(u, p, n, require_pow=self.require_pow)

    # RecBole pickles its config, which holds the model class, into every checkpoint: the class must be found
    # by name at module level (it is built here so that importing this module does not need RecBole)
    BPRL2.__qualname__ = "BPRL2"
    BPRL2.__module__ = __name__
    globals()["BPRL2"] = BPRL2
    return BPRL2


def build_recbole(
    model_name: str,
    data_path: Path,
    lr: float,
    reg: float | None,
    seed: int,
    epochs: int,
    patience: int,
    **overrides: Any,
) -> dict[str, Any]:
    """RecBole's config, data loaders, model and trainer for ``model_name`` (``BPR`` or ``LightGCN``) on the atomic
    files in ``data_path`` (:func:`write_atomic`), nothing fitted yet. ``reg`` is attnrec's λ (None: RecBole's own
    default penalty); ``overrides`` replace config entries (e.g. ``train_batch_size``, ``embedding_size``). The
    trainer's ``_train_epoch`` is wrapped so that every training epoch's seconds go to ``epoch_seconds``."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config_dict: dict[str, Any] = {
        "data_path": str(data_path),
        "dataset": NAME,
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "eval_args": {"mode": "full", "order": "RO", "group_by": "user"},
        "metrics": ["Recall", "NDCG"],
        "topk": [10, 20],
        "valid_metric": "NDCG@20",
        "epochs": epochs,
        "stopping_step": patience,
        "train_batch_size": 2048,
        "eval_batch_size": 409600,
        "learning_rate": lr,
        "embedding_size": 64,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        "seed": seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "checkpoint_dir": str(data_path / "saved"),
        "log_wandb": False,
    }
    if model_name == "LightGCN":
        config_dict["n_layers"] = 3
    model_ref: Any = model_name
    if reg is not None:
        config_dict.update(reg_weight=2 * reg, require_pow=True)  # = λ Σ‖e‖² / B, attnrec's term
        if model_name == "BPR":
            model_ref = bpr_l2_class()
    config_dict.update(overrides)
    t0 = time.perf_counter()
    config = Config(model=model_ref, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    load_s = time.perf_counter() - t0
    model_cls = model_ref if not isinstance(model_ref, str) else get_model(config["model"])
    model = model_cls(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    epoch_seconds: list[float] = []
    inner = trainer._train_epoch

    def timed_epoch(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = inner(*a, **kw)
        epoch_seconds.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch = timed_epoch
    return {
        "config": config,
        "train_data": train_data,
        "valid_data": valid_data,
        "test_data": test_data,
        "model": model,
        "trainer": trainer,
        "epoch_seconds": epoch_seconds,
        "load_s": load_s,
    }


def fit_recbole(
    model_name: str, data_path: Path, lr: float, reg: float | None, seed: int, epochs: int, patience: int
) -> dict[str, Any]:
    """Fit ``model_name`` (``BPR`` or ``LightGCN``) with early stopping on validation NDCG@20 and the best epoch's
    weights restored. ``reg`` is attnrec's λ (None: RecBole's own default penalty). Returns the info dict plus the
    objects needed to score test later (``_trainer``, ``_test_data``), test not yet read."""
    import torch

    built = build_recbole(model_name, data_path, lr, reg, seed, epochs, patience)
    config, model, trainer = built["config"], built["model"], built["trainer"]
    epoch_seconds: list[float] = built["epoch_seconds"]
    t0 = time.perf_counter()
    _, best_valid = trainer.fit(built["train_data"], built["valid_data"], saved=True, show_progress=False)
    fit_s = time.perf_counter() - t0
    # RecBole's own reload calls torch.load with the new weights_only default, which rejects its checkpoint;
    # the file was written by this run a moment ago, so it is loaded here with weights_only=False
    checkpoint = torch.load(trainer.saved_model_file, map_location=trainer.device, weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    Path(trainer.saved_model_file).unlink()
    return {
        "model": model_name,
        "lr": lr,
        "reg": reg,
        "seed": seed,
        "valid": {k: float(v) for k, v in best_valid.items()},
        "epochs_run": len(epoch_seconds),
        "best_epoch": len(epoch_seconds) - int(trainer.cur_step),
        "s_per_epoch": statistics.median(epoch_seconds) if epoch_seconds else None,
        "fit_s": fit_s,
        "load_s": built["load_s"],
        "config": {
            k: config[k]
            for k in ("learning_rate", "embedding_size", "train_batch_size", "reg_weight", "require_pow")
            if k in config
        },
        "_trainer": trainer,
        "_test_data": built["test_data"],
    }


def test_metrics(info: dict[str, Any]) -> dict[str, float]:
    """RecBole's full-ranking test metrics of a fitted model (train + valid masked)."""
    test = info["_trainer"].evaluate(info["_test_data"], load_best_model=False, show_progress=False)
    return {k: float(v) for k, v in test.items()}


def public(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` without the live objects (JSON-able)."""
    return {k: v for k, v in info.items() if not k.startswith("_")}


def serve_worker(split_dir: Path) -> None:
    """Worker of ``fair_topk.py``: ops ``fit`` (keeps the best validation NDCG@20 per key) and ``test`` (once per key)."""
    import recbole
    import torch
    from fair_common import serve

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="recbole-"))
    write_atomic(split_dir, tmp / NAME, NAME)
    best: dict[str, dict[str, Any]] = {}

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        if req["op"] == "fit":
            model_name = {"bpr": "BPR", "lightgcn": "LightGCN"}[req["model"]]
            info = fit_recbole(
                model_name, tmp, req["lr"], req["reg"], req["seed"], req["epochs"], req["patience"]
            )
            key = req["key"]
            if key not in best or info["valid"]["ndcg@20"] > best[key]["valid"]["ndcg@20"]:
                best[key] = info
            return {**public(info), "version": recbole.__version__}
        if req["op"] == "test":
            info = best.pop(req["key"])  # once: a second test request for the key fails
            return {"chosen": public(info), "test": test_metrics(info)}
        raise ValueError(f"unknown op {req['op']!r}")

    serve(handle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split-dir", type=Path, required=True)
    ap.add_argument("--serve", action="store_true", help="(internal) run as a fair_topk.py worker")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--reg", type=float, default=None, help="attnrec's λ (default: RecBole's own penalty)")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="BPR,LightGCN")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.serve:
        serve_worker(args.split_dir)
        return
    import recbole
    import torch
    from _record import write_record

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="recbole-") as tmp:
        write_atomic(args.split_dir, Path(tmp) / NAME, NAME)
        for model_name in args.models.split(","):
            info = fit_recbole(
                model_name, Path(tmp), args.lr, args.reg, args.seed, args.epochs, args.patience
            )
            results.append({**public(info), "test": test_metrics(info)})
            print(json.dumps(results[-1]), flush=True)
    write_record("topk/recbole_peer", results, args.out, recbole=recbole.__version__, threads=args.threads)


if __name__ == "__main__":
    main()
