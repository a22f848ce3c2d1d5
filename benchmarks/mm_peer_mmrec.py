"""MMRec (enoche/MMRec, the reference code of FREEDOM, LATTICE and BM3; also its MMGCN, GRCN, SLMRec) and Cornac's
VBPR on our exported split.

    .venv/bin/python benchmarks/mm_peer_mmrec.py --folder DIR --name NAME --models FREEDOM,LATTICE \\
        [--seeds 0,1,2] [--epochs 1000] [--patience 20] [--out bench_results/multimodal/peer.jsonl] [--probe-batches 3]

MMRec lives outside this repository (``$MMREC_DIR``, default /work/peers/MMRec: a ``git archive`` of its commit,
recorded in its ``COMMIT`` file; ``mm_peer_setup.py`` rebuilds it, patches included) and runs in its own venv (``$MMREC_PYTHON``, default /work/mmrec-venv/bin/python:
torch 2.13 CPU). It reads the MMRec folder ``bench_multimodal.py`` exports with ``attnrec.data.readers.mmrec``
(``<name>.inter`` with ``x_label``, ``text_feat.npy``, ``image_feat.npy``) — exactly the ids and features our
models train on. MMGCN and GRCN need torch_geometric (pure Python from 2.3 on; 2.8.0.post1 in that venv) and
SLMRec imports torch_scatter; the peer copy's CPU patches are listed in its ``ATTNREC_PATCHES.md``. Each run is MMRec's own ``quick_start`` with a one-point grid (every grid key a one-element list,
so its "BEST" line, which MMRec picks on test, has nothing to pick), at one thread. Parsed from its log: the
training seconds of every epoch (MMRec's own timer, validation excluded), the validation Recall@20 per epoch, and
the valid/test metrics at the best validation epoch (MMRec evaluates test every epoch and keeps the one at the best
validation epoch; nothing is selected on test). Settings are :data:`MMREC_SETTINGS`: the same values our rows use.
``--probe-batches N`` times only the first N training batches (MMRec's own setup and step, :data:`_PROBE_DRIVER`)
and records an epoch estimate, for a model whose epoch does not fit on this machine (MMGCN, GRCN on Food-Kitchen).

Cornac 3.0.1's VBPR (``$CORNAC_PYTHON``, default /work/cornac-venv/bin/python) runs on the same folder through
:func:`run_cornac_vbpr`: features given as its ``ImageModality`` (the concatenated modalities), a fixed epoch count
(Cornac's VBPR has no early stopping), ranked by ``score`` with train items masked and scored by our evaluator.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

MMREC_DIR = Path(os.environ.get("MMREC_DIR", "/work/peers/MMRec"))
MMREC_PY = os.environ.get("MMREC_PYTHON", "/work/mmrec-venv/bin/python")
CORNAC_PY = os.environ.get("CORNAC_PYTHON", "/work/cornac-venv/bin/python")

#: seconds one peer subprocess (MMRec, Cornac) may run before it is stopped (bench_multimodal --peer-timeout)
PEER_TIMEOUT_S = 7200.0
#: what a failed peer fit or probe can raise here: a non-zero exit (RuntimeError), a timeout
#: (``subprocess.TimeoutExpired``), a missing interpreter or output file (OSError), output that is not the expected
#: JSON line (ValueError, IndexError)
PEER_FAILURES = (RuntimeError, OSError, ValueError, IndexError, subprocess.SubprocessError)


def fit_or_failure(library: str, model: str, seed: int, fit: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fit()``'s record, or a failure record naming the error (type and message) and the 1-minute load before and
    after: a failed peer fit is recorded and the other rows still run. A failed record counts as done in
    ``bench_multimodal.py``'s resume unless it is run with ``--retry-failed``. Anything but :data:`PEER_FAILURES`
    (an interrupt) propagates."""
    load0 = os.getloadavg()[0]
    try:
        return fit()
    except PEER_FAILURES as err:
        return {
            "library": library,
            "model": model,
            "seed": seed,
            "failed": f"{type(err).__name__}: {err}"[-1500:],
            "load": [load0, os.getloadavg()[0]],
        }


#: MMRec's settings per model, the values our rows use (``bench_multimodal.SETTINGS``); grid keys as lists
MMREC_SETTINGS: dict[str, dict[str, Any]] = {
    "FREEDOM": {
        "dropout": [0.8],
        "reg_weight": [1e-4],
        "mm_image_weight": 0.1,
        "knn_k": 10,
        "n_ui_layers": 2,
    },
    "LATTICE": {"reg_weight": [1e-4], "learning_rate": [1e-3], "knn_k": 10, "lambda_coeff": 0.9},
    "BM3": {"n_layers": [1], "reg_weight": [0.1], "dropout": [0.3], "cl_weight": 2.0},
    "VBPR": {"reg_weight": [1e-4]},
    "LightGCN": {"n_layers": [2], "reg_weight": [1e-4]},
    # the paper's other baselines MMRec implements, no model of ours beside them: the protocol's lr 1e-3 and the
    # grid value 1e-4 for the regulariser (MMGCN, GRCN: reg_weight; SLMRec: reg), MMRec's other defaults
    # (MMGCN 2 layers, GRCN 3 layers); SLMRec's SSL grid at ssl_alpha 0.1, ssl_temp 0.2 (= its fixed `temp`)
    "MMGCN": {"reg_weight": [1e-4], "learning_rate": [1e-3]},
    "GRCN": {"reg_weight": [1e-4], "learning_rate": [1e-3]},
    "SLMRec": {"reg": [1e-4], "learning_rate": [1e-3], "ssl_alpha": [0.1], "ssl_temp": [0.2]},
}

_DRIVER = """
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, '.')
from utils.quick_start import quick_start
a = json.loads(sys.argv[1])
quick_start(model=a['model'], dataset=a['dataset'], config_dict=a['config'], save_model=False)
"""

#: MMRec's own setup (as ``quick_start``: Config, RecDataset, TrainDataLoader, the model, its trainer's optimizer),
#: then the first ``batches`` training steps of epoch 0 timed one by one (``pre_epoch_processing``, then per batch
#: zero_grad, ``calculate_loss``, backward, step: the body of ``AbstractTrainer._train_epoch``); one JSON line out
_PROBE_DRIVER = """
import json, sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, '.')
from utils.configurator import Config
from utils.dataset import RecDataset
from utils.dataloader import TrainDataLoader
from utils.logger import init_logger
from utils.utils import init_seed, get_model, get_trainer
a = json.loads(sys.argv[1])
config = Config(a['model'], a['dataset'], a['config'], False)
init_logger(config)
dataset = RecDataset(config)
str(dataset)  # as quick_start's log line: sets the counts the loader reads (inter_num)
train_dataset = dataset.split()[0]
str(train_dataset)
train_data = TrainDataLoader(config, train_dataset, batch_size=config['train_batch_size'], shuffle=True)
for key in ['seed'] + [k for k in config['hyper_parameters'] if k != 'seed']:  # quick_start's one-point grid
    config[key] = (config[key] or [None])[0]
init_seed(config['seed'])
train_data.pretrain_setup()
t0 = time.perf_counter()
model = get_model(config['model'])(config, train_data).to(config['device'])
trainer = get_trainer()(config, model, False)
build_s = time.perf_counter() - t0
t0 = time.perf_counter()
model.pre_epoch_processing()
model.train()
pre_s = time.perf_counter() - t0
secs = []
for i, inter in enumerate(train_data):
    if i >= a['batches']:
        break
    t0 = time.perf_counter()
    trainer.optimizer.zero_grad()
    losses = model.calculate_loss(inter)
    loss = sum(losses) if isinstance(losses, tuple) else losses
    loss.backward()
    trainer.optimizer.step()
    secs.append(time.perf_counter() - t0)
print(json.dumps({'build_s': build_s, 'pre_epoch_s': pre_s, 'batch_seconds': secs, 'batches_per_epoch': len(train_data)}))
"""

_EPOCH = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")
_VALID = re.compile(r"epoch (\d+) evaluating \[time: [\d.]+s, valid_score: ([\d.]+)\]")
_METRICS = re.compile(r"(recall|ndcg|precision|map)@(\d+): ([\d.]+)")


def mmrec_commit() -> str:
    """The MMRec commit the copy in ``MMREC_DIR`` was made from (its ``COMMIT`` file)."""
    f = MMREC_DIR / "COMMIT"
    return f.read_text().strip() if f.exists() else "unknown"


def _metrics(line: str) -> dict[str, float]:
    return {f"{m}@{k}": float(v) for m, k, v in _METRICS.findall(line) if m in ("recall", "ndcg")}


def parse_log(text: str) -> dict[str, Any]:
    """Per-epoch training seconds and validation Recall@20, and the best-valid-epoch valid/test metrics, from an
    MMRec log (its stdout)."""
    secs = [float(s) for _, s in _EPOCH.findall(text)]
    evals = [(int(e), float(v)) for e, v in _VALID.findall(text)]
    valid = [v for _, v in evals]
    best_valid = test = None
    for line in text.splitlines():
        if "best valid result:" in line:
            best_valid = _metrics(line)
        elif "INFO test result:" in line and "recall@" in line:
            test = _metrics(line)
    # 1-based like our FitReport.best_epoch (MMRec counts epochs from 0)
    # (validation may run every eval_step epochs: the epoch number comes from the log line)
    best_epoch = max(evals, key=lambda ev: (ev[1], -ev[0]))[0] + 1 if evals else None
    return {
        "epoch_seconds": secs,
        "valid_recall@20": valid,
        "best_epoch": best_epoch,
        "epochs_run": len(secs),
        "valid": best_valid,
        "test": test,
    }


def _mmrec_config(
    folder: Path, name: str, seed: int, *, epochs: int, patience: int, eval_step: int
) -> dict[str, Any]:
    """MMRec's config for a run on the exported folder (the model's settings are added by the caller)."""
    return {
        "gpu_id": 0,
        "use_gpu": False,
        "data_path": str(folder.parent) + "/",
        "inter_file_name": f"{name}.inter",
        "USER_ID_FIELD": "userID",
        "ITEM_ID_FIELD": "itemID",
        "TIME_FIELD": "timestamp",
        "text_feature_file": "text_feat.npy",
        "vision_feature_file": "image_feat.npy",
        "seed": [seed],
        "epochs": epochs,
        "stopping_step": patience,
        "eval_step": eval_step,
    }


def run_mmrec(
    model: str,
    folder: Path,
    name: str,
    seed: int,
    *,
    epochs: int = 1000,
    patience: int = 20,
    eval_step: int = 1,
    timeout: float = PEER_TIMEOUT_S,
) -> dict[str, Any]:
    """Run MMRec's ``model`` on the folder ``folder`` (holding ``<name>.inter`` and the features) at one thread,
    validating (and, as MMRec does, testing) every ``eval_step`` epochs.

    Returns the command, MMRec's commit, wall seconds, median training seconds per epoch and the parsed metrics.
    """
    folder = Path(folder).resolve()
    config = _mmrec_config(folder, name, seed, epochs=epochs, patience=patience, eval_step=eval_step)
    config |= MMREC_SETTINGS[model]
    arg = json.dumps({"model": model, "dataset": folder.name, "config": config})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [MMREC_PY, "-c", _DRIVER, arg]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=MMREC_DIR / "src", env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - t0
    out = parse_log(proc.stdout + proc.stderr)
    if proc.returncode != 0 or out["test"] is None:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"MMRec {model} failed (rc {proc.returncode}):\n{tail}")
    secs = sorted(out["epoch_seconds"])
    return {
        "library": "mmrec",
        "model": model,
        "seed": seed,
        "commit": mmrec_commit(),
        "command": f"cd {MMREC_DIR / 'src'} && OMP_NUM_THREADS=1 {MMREC_PY} -c <driver: quick_start> '{arg}'",
        "wall_s": wall,
        "s_per_epoch": secs[len(secs) // 2] if secs else None,
        **{k: out[k] for k in ("best_epoch", "epochs_run", "valid", "test")},
    }


_CORNAC_DRIVER = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
import cornac
from cornac.data import ImageModality
from cornac.eval_methods import BaseMethod
a = json.loads(sys.argv[1])
rows = [l.rstrip('\\n').split('\\t') for l in open(a['inter'])]
head, rows = rows[0], rows[1:]
u, i, x = head.index('userID'), head.index('itemID'), head.index('x_label')
parts = {0: [], 1: [], 2: []}
for r in rows:
    parts[int(r[x])].append((r[u], r[i], 1.0))
feats = np.hstack([np.load(f) for f in a['features']]).astype(np.float32)
n_items = feats.shape[0]
ids = [str(k) for k in range(n_items)]
mod = ImageModality(features=feats, ids=ids, normalized=a['normalized'])
bm = BaseMethod.from_splits(train_data=parts[0], test_data=parts[2], val_data=parts[1], exclude_unknowns=True,
                            verbose=False, seed=a['seed'], item_image=mod)
model = cornac.models.VBPR(k=a['k'], k2=a['k2'], n_epochs=a['epochs'], batch_size=2048, learning_rate=1e-3,
                           lambda_w=a['reg'], lambda_b=a['reg'], lambda_e=0.0, use_gpu=False, seed=a['seed'],
                           trainable=True, verbose=False)
t0 = time.perf_counter()
model.fit(bm.train_set)
fit_s = time.perf_counter() - t0
ts = bm.train_set
uidx = np.array([ts.uid_map[k] for k in sorted(ts.uid_map, key=int)])
iidx = np.array([ts.iid_map.get(k, -1) for k in ids])
scores = np.full((len(uidx), n_items), -np.inf, dtype=np.float32)
known = iidx >= 0
for row, ui in enumerate(uidx):
    s = model.score(int(ui))
    scores[row, known] = s[iidx[known]]
users = np.array(sorted(ts.uid_map, key=int), dtype=np.int64)
np.save(a['out'], scores)
np.save(a['out'] + '.users.npy', users)
print(json.dumps({'fit_s': fit_s}))
"""


def probe_record(model: str, seed: int, info: dict[str, Any]) -> dict[str, Any]:
    """The record of a probe: MMRec's timed first batches and an epoch's training seconds estimated from them
    (median seconds a batch x batches an epoch + the epoch's preprocessing), labelled as an estimate."""
    secs = sorted(info["batch_seconds"])
    if not secs:
        raise RuntimeError(f"MMRec {model} probe: no batch was timed")
    median = secs[len(secs) // 2]
    return {
        "library": "mmrec",
        "model": model,
        "seed": seed,
        "probe": True,
        "batch_seconds": info["batch_seconds"],
        "batches_per_epoch": info["batches_per_epoch"],
        "build_s": info["build_s"],
        "pre_epoch_s": info["pre_epoch_s"],
        "epoch_estimate_s": median * info["batches_per_epoch"] + info["pre_epoch_s"],
    }


def probe_mmrec(
    model: str, folder: Path, name: str, seed: int, *, batches: int, timeout: float = PEER_TIMEOUT_S
) -> dict[str, Any]:
    """Time MMRec's ``model``'s first ``batches`` training steps on the folder at one thread (for a model whose
    full epoch does not fit here): :func:`probe_record` of its driver's output, with the command and commit."""
    folder = Path(folder).resolve()
    config = {**_mmrec_config(folder, name, seed, epochs=1, patience=1, eval_step=1), **MMREC_SETTINGS[model]}
    arg = json.dumps({"model": model, "dataset": folder.name, "config": config, "batches": batches})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [MMREC_PY, "-c", _PROBE_DRIVER, arg],
        cwd=MMREC_DIR / "src",
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"MMRec {model} probe failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}"
        )
    rec = probe_record(model, seed, json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        **rec,
        "commit": mmrec_commit(),
        "command": f"cd {MMREC_DIR / 'src'} && OMP_NUM_THREADS=1 {MMREC_PY} -c <probe driver> '{arg}'",
        "wall_s": time.perf_counter() - t0,
    }


def run_cornac_vbpr(
    folder: Path,
    name: str,
    seed: int,
    features: list[str],
    *,
    epochs: int,
    reg: float,
    out: Path,
    normalized: bool = True,
    timeout: float = PEER_TIMEOUT_S,
) -> dict[str, Any]:
    """Fit Cornac's VBPR (k = k2 = 64: γ and θ as wide as our vbpr's ``dim`` and ``feat_dim``) on the folder's
    train rows for ``epochs`` epochs; its (users, n_items) score matrix is saved to ``out`` for our evaluator.

    ``normalized``: Cornac's ``ImageModality(normalized=...)``. True (the protocol's, as Cornac's example scripts
    run it) scales the features by one global min-max, f' = (f − min) / (max − min); False (Cornac's default)
    gives it the features as exported, as our vbpr gets them."""
    folder = Path(folder).resolve()
    arg = {
        "inter": str(folder / f"{name}.inter"),
        "features": [str(folder / f) for f in features],
        "seed": seed,
        "epochs": epochs,
        "reg": reg,
        "k": 64,
        "k2": 64,
        "out": str(out),
        "normalized": normalized,
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [CORNAC_PY, "-c", _CORNAC_DRIVER, json.dumps(arg)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"Cornac VBPR failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}"
        )
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "library": "cornac",
        "model": "VBPR",
        "seed": seed,
        "command": f"OMP_NUM_THREADS=1 {CORNAC_PY} -c <driver: cornac.models.VBPR> '{json.dumps(arg)}'",
        "wall_s": time.perf_counter() - t0,
        "fit_s": info["fit_s"],
        "s_per_epoch": info["fit_s"] / epochs,
        "epochs_run": epochs,
        "normalized": normalized,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True, help="an exported MMRec folder")
    ap.add_argument("--name", required=True, help="the .inter file's stem")
    ap.add_argument("--models", default="FREEDOM,LATTICE,BM3,VBPR,LightGCN")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per run here")
    ap.add_argument(
        "--probe-batches",
        type=int,
        default=0,
        help="time only the first N training batches and estimate an epoch (for a model whose epoch does not fit)",
    )
    args = ap.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        for model in args.models.split(","):
            if args.probe_batches > 0:  # a failed probe is recorded and the next model still probed
                probe = partial(probe_mmrec, model, args.folder, args.name, seed, batches=args.probe_batches)
                rec = {**fit_or_failure("mmrec", model, seed, probe), "probe": True}
            else:
                fit = partial(
                    run_mmrec, model, args.folder, args.name, seed, epochs=args.epochs, patience=args.patience
                )
                rec = fit_or_failure("mmrec", model, seed, fit)
            line = json.dumps(rec)
            print(line, flush=True)
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as f:
                    f.write(line + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
