"""RecBole's BPR and LightGCN on the split that ``bench_topk.py --split-dir DIR`` exported (peer for issue 2).

    python benchmarks/topk_recbole_peer.py --split-dir bench_results/ml100k-split --lr 0.005 \
        [--epochs 300] [--patience 10] [--out bench_results/topk_recbole.json]

Run it with a Python that has ``recbole==1.2.1`` (a separate environment: RecBole pins old helper packages, so it
is not part of any attnrec extra). The exported ``train.csv`` / ``valid.csv`` / ``test.csv`` become RecBole atomic
files read through ``benchmark_filename`` (RecBole does not re-split them); evaluation is RecBole's full ranking
(train items masked for validation, train + valid for test), Recall / NDCG at 10 and 20, early stopping on
validation NDCG@20 with ``stopping_step = --patience``. Same fixed settings as ``bench_topk.py``: embedding 64,
batch 2048, LightGCN 3 layers, one uniform negative per positive. Seconds per epoch: median of RecBole's training
epochs (validation excluded), timed around ``Trainer._train_epoch``.
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


def run_model(model_name: str, data_path: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config_dict: dict[str, Any] = {
        "data_path": str(data_path),
        "dataset": name,
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "eval_args": {"mode": "full", "order": "RO", "group_by": "user"},
        "metrics": ["Recall", "NDCG"],
        "topk": [10, 20],
        "valid_metric": "NDCG@20",
        "epochs": args.epochs,
        "stopping_step": args.patience,
        "train_batch_size": 2048,
        "eval_batch_size": 409600,
        "learning_rate": args.lr,
        "embedding_size": 64,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "checkpoint_dir": str(data_path / "saved"),
        "log_wandb": False,
    }
    if model_name == "LightGCN":
        config_dict["n_layers"] = 3
    config = Config(model=model_name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    epoch_seconds: list[float] = []
    inner = trainer._train_epoch

    def timed_epoch(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = inner(*a, **kw)
        epoch_seconds.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch = timed_epoch
    t0 = time.perf_counter()
    _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.perf_counter() - t0
    # RecBole's own reload calls torch.load with the new weights_only default, which rejects its checkpoint;
    # the file was written by this run a moment ago, so it is loaded here with weights_only=False
    import torch

    checkpoint = torch.load(trainer.saved_model_file, map_location=trainer.device, weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return {
        "model": model_name,
        "valid": {k: float(v) for k, v in best_valid.items()},
        "test": {k: float(v) for k, v in test.items()},
        "epochs_run": len(epoch_seconds),
        "best_epoch": len(epoch_seconds) - int(trainer.cur_step),
        "s_per_epoch_median": statistics.median(epoch_seconds) if epoch_seconds else None,
        "fit_s": fit_s,
        "config": {
            k: config[k]
            for k in ("learning_rate", "embedding_size", "train_batch_size", "reg_weight")
            if k in config
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split-dir", type=Path, required=True)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="BPR,LightGCN")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import recbole
    import torch
    from _record import write_record

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="recbole-") as tmp:
        name = "attnrec_split"
        write_atomic(args.split_dir, Path(tmp) / name, name)
        for model_name in args.models.split(","):
            results.append(run_model(model_name, Path(tmp), name, args))
            print(json.dumps(results[-1]), flush=True)
    write_record("topk/recbole_peer", results, args.out, recbole=recbole.__version__, threads=args.threads)


if __name__ == "__main__":
    main()
