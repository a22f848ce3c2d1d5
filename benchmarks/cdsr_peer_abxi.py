"""Peer runner: ABXI's own code (DiMarzioBian/ABXI) on the ABXI Food-Kitchen files, with per-epoch curves.

Run it in the peer venv (ABXI needs only torch, numpy and tqdm; it never imports attnrec)::

    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/cdsr_peer_abxi.py \
        --abxi /work/peers/ABXI --data /work/shared/data/cdsr-abxi-food-kitchen \
        --out bench_results/cdsr/abxi_afk_s3407.jsonl --epochs 20

ABXI's code is used unchanged: its data building (``models/data/dataloader.py:get_dataset``), model, loss
(``ABXI.cal_rec_loss``), ranking (``ABXI.cal_rank``), optimiser and schedulers (``trainer.py``). This script replaces
only ``main.py``'s loop, so that it can (1) time the training pass of every epoch apart from evaluation, (2) evaluate
validation AND test after every epoch (ABXI reads test only when the summed validation MRR improves; the row its
rule would report is flagged ``abxi_selected``), including the warm-up epochs ABXI skips, and (3) derive HR@1/5/10,
NDCG@1/5/10, MRR and AUC from ABXI's ranks (ABXI's own ``cal_metrics`` gives HR@5, HR@10, NDCG@10, MRR; both are
written, and they agree). The learning-rate warm-up, ReduceLROnPlateau and early-stopping logic copy
``main.py:96-136``.

Output: a JSON-lines file. The first line (``"kind": "header"``) has the command, ABXI's commit, the settings,
torch's version, thread count and parameter count; then one ``"kind": "epoch"`` line per epoch with the wall time
of the training pass, losses, learning rate, the load average, and per-domain validation and test metrics.

Caveat kept from ABXI: its negative sampler uses an unseeded ``np.random.default_rng()`` (dataloader.py:13), so
evaluation negatives differ between epochs and runs whatever ``--seed`` is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _record import git_commit

ABXI_DEFAULTS: dict[str, Any] = {
    # main.py defaults, overridden by demo.sh's afk line (lr 1e-4, l2 3, rd 16, ri 64, bs 256)
    "len_max": 50,
    "n_neg": 128,
    "n_mtc": 999,
    "d_embed": 256,
    "n_attn": 1,
    "n_head": 2,
    "dropout": 0.5,
    "temp": 0.75,
    "rd": 16,
    "ri": 64,
    "bs": 256,
    "n_warmup": 1,
    "lr": 1e-4,
    "l2": 3.0,
    "lr_g": 0.3162,
    "lr_p": 30,
}


def rank_metrics(ranks: np.ndarray, n_negatives: int) -> dict[str, float]:
    """Sampled-ranking metrics from 1-based ranks of the target among itself + ``n_negatives`` negatives.

    ``ranks``: (N,) int, 1 = best (ABXI counts negatives scored strictly above the target, plus one). AUC is the
    fraction of negatives ranked below the target, averaged over users.
    """
    r = ranks.astype(np.float64)
    out = {"n": int(r.size)}
    for k in (1, 5, 10):
        hit = r <= k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 1.0), 0.0).mean())
    out["mrr"] = float((1.0 / r).mean())
    out["auc"] = float(((n_negatives - (r - 1.0)) / n_negatives).mean())
    return out


def _git_commit(path: Path) -> str:
    marker = path / "COMMIT"
    if marker.exists():
        return marker.read_text().strip()
    commit = git_commit(path)
    if commit is None:
        raise SystemExit(f"{path}: no COMMIT file and not a git checkout, so the peer's commit is unknown")
    return commit


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _evaluate(trainer: Any, loader: Any, cal_metrics: Any, n_mtc: int) -> dict[str, Any]:
    """Run ABXI's ``evaluate_batch`` over ``loader``; metrics per target domain (A, B)."""
    import torch

    trainer.model.eval()
    ranks_a: list[int] = []
    ranks_b: list[int] = []
    with torch.no_grad():
        for batch in loader:
            ra, rb = trainer.evaluate_batch(batch)
            ranks_a += ra
            ranks_b += rb
    res: dict[str, Any] = {}
    for name, ranks in (("A", ranks_a), ("B", ranks_b)):
        m = rank_metrics(np.asarray(ranks), n_mtc)
        hr5, hr10, ndcg10, mrr = cal_metrics(ranks)
        m["abxi_cal_metrics"] = {"hr@5": hr5, "hr@10": hr10, "ndcg@10": ndcg10, "mrr": mrr}
        res[name] = m
    return res


def build_args(ns: argparse.Namespace) -> argparse.Namespace:
    """ABXI's ``args`` namespace as ``main.py:52-90`` derives it, pointed at ``ns.data`` and a cache folder."""
    import torch

    a = argparse.Namespace(
        name="ABXI (WWW'25)",
        ver="v1.0",
        data=ns.data_name,
        raw=True,
        cuda="cpu",
        seed=ns.seed,
        n_worker=0,
        n_epoch=ns.max_epochs,
    )
    for key, default in ABXI_DEFAULTS.items():
        setattr(a, key, getattr(ns, key, default))
    a.n_warmup = min(max(0, a.n_epoch - 1), max(a.n_warmup, 1))
    a.device = torch.device("cpu")
    a.len_trim = a.len_max - 3
    a.es_p = (a.lr_p + 1) * 2 - 1
    a.bse = a.bs * 4
    cache = Path(ns.abxi) / "cache"
    cache.mkdir(exist_ok=True)
    a.path_root = str(ns.abxi)
    a.path_data = str(Path(ns.data))
    a.path_log = str(Path(ns.abxi) / "log")
    Path(a.path_log).mkdir(exist_ok=True)
    a.f_raw = str(Path(ns.data) / f"{a.data}_{a.len_max}_preprocessed.txt")
    a.f_data = str(cache / f"{a.data}_{a.len_max}_seq.pkl")
    return a


def main(argv: list[str] | None = None) -> None:
    """Parse options, train ABXI epoch by epoch and append one JSON line per epoch to ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--abxi", type=Path, default=Path("/work/peers/ABXI"), help="ABXI checkout (outside the repo)"
    )
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/cdsr-abxi-food-kitchen"))
    p.add_argument(
        "--data-name", default="afk", help="ABXI's data prefix: the file is <name>_<len_max>_preprocessed.txt"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=20, help="stop after this many epochs (CPU budget)")
    p.add_argument(
        "--max-epochs", type=int, default=500, help="ABXI's --n_epoch (only used to clip the warm-up)"
    )
    p.add_argument("--seed", type=int, default=3407)
    p.add_argument("--threads", type=int, default=1)
    for key, default in ABXI_DEFAULTS.items():
        p.add_argument(f"--{key}", type=type(default), default=default)
    ns = p.parse_args(argv)

    import torch

    torch.set_num_threads(ns.threads)
    sys.path.insert(0, str(ns.abxi))
    from models.data.evaluation import cal_metrics  # ABXI's, imported from its checkout
    from noter import Noter
    from trainer import Trainer

    args = build_args(ns)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - ABXI's main.py:89 seeds the legacy global state; kept identical
    os.environ["PYTHONHASHSEED"] = str(args.seed)

    t_setup = time.time()
    noter = Noter(args)
    trainer = Trainer(args, noter)
    setup_s = time.time() - t_setup
    n_param = sum(q.numel() for q in trainer.model.parameters() if q.requires_grad)

    ns.out.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "kind": "header",
        "peer": "ABXI",
        "repo": "https://github.com/DiMarzioBian/ABXI",
        "commit": _git_commit(ns.abxi),
        "command": shlex.join([sys.executable, *sys.argv]),
        "settings": {k: getattr(args, k) for k in ABXI_DEFAULTS}
        | {"seed": args.seed, "n_warmup": args.n_warmup},
        "n_user": int(args.n_user),
        "n_item_a": int(args.n_item_a),
        "n_item_b": int(args.n_item_b),
        "n_params": int(n_param),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "setup_s": round(setup_s, 2),
        "loadavg": _loadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with ns.out.open("w") as f:
        f.write(json.dumps(header) + "\n")

    cnt_es, mrr_log = 0, 0.0
    for epoch in range(1, ns.epochs + 1):
        lr_cur = trainer.optimizer.param_groups[0]["lr"]
        load_before = _loadavg()
        trainer.model.train()
        loss_a = loss_b = 0.0
        t0 = time.time()
        for batch in trainer.train_loader:  # trainer.py:50-57, without tqdm
            trainer.optimizer.zero_grad()
            la, lb = trainer.train_batch(batch)
            n_seq = batch[0].size(0)
            loss_a += la * n_seq / trainer.n_user
            loss_b += lb * n_seq / trainer.n_user
        train_s = time.time() - t0
        t1 = time.time()
        val = _evaluate(trainer, trainer.val_loader, cal_metrics, args.n_mtc)
        val_s = time.time() - t1
        t2 = time.time()
        test = _evaluate(trainer, trainer.test_loader, cal_metrics, args.n_mtc)
        test_s = time.time() - t2

        selected = False
        if epoch <= args.n_warmup:  # main.py:103-106: no validation decision during warm-up
            trainer.scheduler_warmup.step()
        else:
            mrr_val = val["A"]["abxi_cal_metrics"]["mrr"] + val["B"]["abxi_cal_metrics"]["mrr"]
            if mrr_val >= mrr_log:  # main.py:112-122
                mrr_log, cnt_es, selected = mrr_val, 0, True
                trainer.scheduler.step(epoch)
            else:
                cnt_es += 1
                trainer.scheduler.step(0)
        row = {
            "kind": "epoch",
            "epoch": epoch,
            "lr": lr_cur,
            "loss_a": loss_a,
            "loss_b": loss_b,
            "train_s": round(train_s, 2),
            "val_s": round(val_s, 2),
            "test_s": round(test_s, 2),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
            "abxi_selected": selected,
            "val": val,
            "test": test,
        }
        with ns.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"epoch {epoch} train {train_s:.1f}s val NDCG@10 A {val['A']['ndcg@10']:.4f} B {val['B']['ndcg@10']:.4f}"
            f" test A {test['A']['ndcg@10']:.4f} B {test['B']['ndcg@10']:.4f} load {load_before}",
            flush=True,
        )
        if cnt_es > args.es_p:
            break


if __name__ == "__main__":
    main()
