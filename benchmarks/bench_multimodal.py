"""Multimodal top-K (issue 15): our bpr, lightgcn, vbpr, lattice, bm3, freedom, mrcsaf and its ablations, against
MMRec's own FREEDOM/LATTICE/BM3/VBPR/LightGCN and Cornac's VBPR on the same exported split files.

    .venv/bin/python benchmarks/bench_multimodal.py --dataset ml-100k [--seeds 0,1,2] [--models ...]
        [--peers mmrec,cornac] [--epochs 1000] [--patience 20] [--split-seed 2026] [--work /work/mm-bench]
    .venv/bin/python benchmarks/bench_multimodal.py --dataset food-kitchen --models lightgcn --peers '' \\
        --set reg=0 --trainer-set adam_eps=1e-12 --out VARIANTS.jsonl     # a diagnostic variant of our rows
    .venv/bin/python benchmarks/bench_multimodal.py --dataset food-kitchen --models vbpr --peers cornac \\
        --cornac-features raw --out RESULTS.jsonl       # Cornac's VBPR without its min-max feature scaling
    .venv/bin/python benchmarks/bench_multimodal.py --dataset food-kitchen --models vbpr --peers '' \\
        --item-features minmax --out RESULTS.jsonl      # our vbpr given Cornac's min-max scaled features
    .venv/bin/python benchmarks/bench_multimodal.py --report bench_results/multimodal/ml-100k.jsonl

The straight line (MMRec's protocol, which the MR-CSAF paper follows): the dataset → ``random_split(per_user=True,
ratios 8:1:1, seed=--split-seed)`` → vocabularies from train (valid/test rows of unseen ids dropped, counted) →
item modalities aligned to the item vocabulary → the split and modalities written as an MMRec folder
(``attnrec.data.readers.mmrec.write_mmrec``: ``text`` → ``text_feat.npy``, ``meta`` → ``image_feat.npy``, the
slot MMRec's two-modality models read as their second modality) → for each seed, each row: fit with Adam lr 1e-3,
batch 2048, early stopping on validation Recall@20 with patience 20 (at most ``--epochs``), then test once at the
best epoch; the row's MMRec/Cornac peer runs right after it on the same files (interleaved, one thread each).
Metrics: full ranking over all items, training items masked (valid items are not masked at test, as MMRec).

Modalities: MovieLens-100k — ``text``: MiniLM (all-MiniLM-L6-v2, 384-d) of "Title (year). Genres: ..."; ``meta``:
multi-hot of genres + release-decade buckets. Gift Cards 5-core — ``text``: MiniLM of title/description/categories/
brand from its metadata file; ``meta``: multi-hot of categories/brand (the default fields: 15 columns, two items
with none; Amazon's also_buy co-purchase lists are not item content and are never a default). No images exist here.
Each run is one JSON line in ``--out`` (appended as it finishes, so a stopped run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_topk import encode  # noqa: E402
from mm_peer_mmrec import PEER_TIMEOUT_S, fit_or_failure, mmrec_commit, run_cornac_vbpr, run_mmrec  # noqa: E402

from attnrec.cli_common import parse_sets  # noqa: E402
from attnrec.data.readers.mmrec import feature_file, write_mmrec  # noqa: E402
from attnrec.data.side import ItemFeatures, SideInputs  # noqa: E402
from attnrec.data.splits import random_split  # noqa: E402
from attnrec.data.table import Interactions  # noqa: E402
from attnrec.errors import ConfigError, DataError  # noqa: E402
from attnrec.evaluation.evaluators import evaluate_full_ranking  # noqa: E402
from attnrec.models.base import Estimator, get_model_class  # noqa: E402
from attnrec.models.topk.bpr import PairwiseRecommender  # noqa: E402
from attnrec.training.trainer import TrainerConfig  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KS = (10, 20)
#: the LLMCDSR Food-Kitchen files read as one implicit set (51,164 users: overlap, Food-only, Kitchen-only)
FOOD_KITCHEN_FILES = ("train_overlap", "train_A", "train_B")
DATASETS = ("ml-100k", "gift-cards", "food-kitchen")
_MM = {"dim": 64, "feat_dim": 64, "knn_k": 10}
_FREEDOM = {**_MM, "n_layers": 2, "n_mm_layers": 1, "dropout": 0.8, "modality_weights": {"meta": 0.1}}
#: row → (registered model, settings). The same values as mm_peer_mmrec.MMREC_SETTINGS for the peers' rows;
#: no row is tuned (one setting each, MMRec's published defaults / first grid values)
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "bpr": ("bpr", {"dim": 64, "init": "xavier", "reg": 1e-4}),
    "lightgcn": ("lightgcn", {"dim": 64, "init": "xavier", "n_layers": 2, "reg": 1e-4}),
    "vbpr": ("vbpr", {**_MM, "reg": 1e-4}),
    "lattice": ("lattice", {**_MM, "n_layers": 2, "n_item_layers": 1, "lambda_coeff": 0.9, "reg": 1e-4}),
    "bm3": ("bm3", {**_MM, "n_layers": 1, "dropout": 0.3, "reg": 0.1, "cl_weight": 2.0}),
    "freedom": ("freedom", {**_FREEDOM, "reg_weight": 1e-4}),
    "mrcsaf": ("mrcsaf", {**_FREEDOM, "reg_weight": 1e-5, "variant": "full"}),
    "mrcsaf-selector": ("mrcsaf", {**_FREEDOM, "reg_weight": 1e-5, "variant": "selector_only"}),
    "mrcsaf-csa": ("mrcsaf", {**_FREEDOM, "reg_weight": 1e-5, "variant": "csa_only"}),
}
MMREC_OF = {"freedom": "FREEDOM", "lattice": "LATTICE", "bm3": "BM3", "vbpr": "VBPR", "lightgcn": "LightGCN"}


def load(
    dataset: str, split_seed: int
) -> tuple[Interactions, Interactions, Interactions, dict[str, Any], Any]:
    """The split (encoded) and the raw dataset of ``dataset`` (``ml-100k`` or ``gift-cards``)."""
    from attnrec.data.registry import load_dataset

    if dataset == "ml-100k":
        ds = load_dataset("ml-100k", progress=False)
    elif dataset == "gift-cards":
        ds = load_dataset(SHARED / "amazon2018-gift-cards-5core", progress=False)
    elif dataset == "food-kitchen":
        # LLMCDSR's three training files (their users are distinct: ids are per-file row ids); valid.txt/test.txt
        # repeat overlap users' sequences and are left out. As an implicit set: each (user, item) once, order dropped
        ds = load_dataset("llmcdsr-food-kitchen", files=FOOD_KITCHEN_FILES)
        before = ds.interactions.height
        ds.interactions = ds.interactions.unique(["user_id", "item_id"], keep="first", maintain_order=True)
        ds.lines = None
        ds.notes["repeats_dropped"] = before - ds.interactions.height
    else:
        raise SystemExit(f"unknown dataset {dataset!r}")
    split = random_split(ds, (0.8, 0.1, 0.1), seed=split_seed, per_user=True)
    train, valid, test, dropped = encode(split)
    return train, valid, test, dropped, ds


def modalities(dataset: str, ds: Any, train: Interactions) -> dict[str, np.ndarray]:
    """``text`` (MiniLM embedding) and ``meta`` (multi-hot) aligned to the training item vocabulary; Food-Kitchen
    has item titles only (no categories, brand or images), so its one modality is ``text`` (MiniLM of the title)."""
    from attnrec.data.modalities import multihot_modality, text_modality
    from attnrec.paths import cache_home
    from attnrec.text.builders import item_text_from_meta, movielens_item_text, texts_for_vocab
    from attnrec.text.cache import EmbeddingCache
    from attnrec.text.encoder import SentenceEncoder

    vocab = train.item_vocab
    meta: np.ndarray | None = None
    if dataset == "ml-100k":
        texts = movielens_item_text(ds.items)
        meta, _ = multihot_modality(ds.items, vocab, ["genres", "year"])
    elif dataset == "food-kitchen":
        titles = texts_for_vocab(item_text_from_meta(ds.items, ["title"]), vocab)
        return {"text": tfidf_modality([str(t or "") for t in titles])}
    else:
        texts = item_text_from_meta(ds.items)
        meta, _ = multihot_modality(ds.items, vocab)
    enc = SentenceEncoder(device="cpu", progress=False, cache=EmbeddingCache(cache_home() / "embeddings"))
    text = text_modality(texts_for_vocab(texts, vocab), enc)
    return {"text": text} if meta is None else {"text": text, "meta": meta}


def tfidf_modality(texts: list[str], dim: int = 128, seed: int = 0) -> np.ndarray:
    """(len(texts), dim) float32: TF-IDF of word uni+bigrams → truncated SVD → unit rows. Food-Kitchen's text
    modality: MiniLM over its 35,832 titles measured 15 titles/s on the shared machine (2,000 in 134 s), ~40 min,
    so the titles are embedded by this bag-of-words projection instead (seconds). A title with no known word
    gets the mean row (counted, printed), so no item has a zero row (MMRec's cosine would divide by 0)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    empty = np.asarray(x.getnnz(axis=1) == 0)
    z = TruncatedSVD(dim, random_state=seed).fit_transform(x).astype(np.float32)
    z[empty] = z[~empty].mean(axis=0)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    print(json.dumps({"tfidf": list(x.shape), "svd_dim": dim, "items_without_known_word": int(empty.sum())}))
    return z


def load_avg() -> float:
    """The 1-minute load average (the machine is shared: noted beside every timing)."""
    return os.getloadavg()[0]


def row_model(
    row: str, seed: int, feats: dict[str, np.ndarray], overrides: dict[str, Any] | None = None
) -> tuple[Estimator[Any], dict[str, Any]]:
    """The unfitted model of row ``row`` with ``seed`` (``overrides`` replacing some of the row's settings) and the
    settings it was built from, as :func:`fit_ours` fits it; ``model.config.to_dict()`` is its full resolved config
    (every default filled in), which benchmarks/mm_tune.py records and checks before reusing a fit."""
    name, params = ROWS[row]
    params = {**params, **(overrides or {})}
    weights = {k: v for k, v in params.get("modality_weights", {}).items() if k in feats}
    if "modality_weights" in params and weights != params["modality_weights"]:
        # one modality (Food-Kitchen: text only): its weight is 1, as MMRec's FREEDOM with no image file
        params = {**params, "modality_weights": weights}
    return get_model_class(name)(**params, seed=seed), params


def fit_ours(
    row: str,
    seed: int,
    split: tuple[Interactions, Interactions, Interactions],
    feats: dict[str, np.ndarray],
    epochs: int,
    patience: int,
    valid_every: int = 1,
    overrides: dict[str, Any] | None = None,
    inspect: Callable[[Any], dict[str, Any]] | None = None,
    score_test: bool = True,
    trainer_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit row ``row`` with ``seed``; validation metrics at the best epoch and test metrics read once after
    (validation every ``valid_every`` epochs: the large set, where one full-ranking pass costs several epochs).
    ``overrides`` replace some of the row's settings (a tuning grid point); ``inspect(model)`` adds its dict to
    the record under ``inspect`` (diagnostics of the fitted model, benchmarks/mm_tune.py). ``score_test=False``
    (a grid point before any choice is made) never touches the test split: the record has no ``test`` key.
    ``trainer_overrides`` replace some of the protocol's TrainerConfig settings (recorded under that key)."""
    train, valid, test = split
    model, params = row_model(row, seed, feats, overrides)
    cls = type(model)
    side = SideInputs(item_features=ItemFeatures(train.item_vocab, feats))
    kw: dict[str, Any] = {"side": side} if "item_features" in cls.side_inputs else {}
    trainer = protocol_trainer(epochs, patience, valid_every, trainer_overrides)
    load0, t0 = load_avg(), time.perf_counter()
    report = model.fit(train, valid, trainer=trainer, **kw)
    fit_s = time.perf_counter() - t0
    secs = [h["seconds"] for h in report.history]
    assert isinstance(model, PairwiseRecommender)
    test_m = evaluate_full_ranking(model.score_users, test.csr(), train.csr(), ks=KS) if score_test else None
    return {
        "library": "attnrec",
        "model": row,
        "seed": seed,
        "params": params,
        **({"overrides": overrides} if overrides else {}),
        **({"trainer_overrides": trainer_overrides} if trainer_overrides else {}),
        "best_epoch": report.best_epoch,
        "epochs_run": report.epochs_run,
        "fit_s": fit_s,
        "s_per_epoch": statistics.median(secs) if secs else None,
        "valid": {k: v for k, v in report.best_valid.items() if k.startswith(("recall@", "ndcg@"))},
        **(
            {"test": {k: float(v) for k, v in test_m.items() if k.startswith(("recall@", "ndcg@"))}}
            if test_m is not None
            else {}
        ),
        "load": [load0, load_avg()],
        # validation Recall@20 per validated epoch (None where an epoch was not validated)
        "curve": [h.get("valid_recall@20") for h in report.history],
        **({"inspect": inspect(model)} if inspect is not None else {}),
    }


#: the protocol's trainer settings that have flags of their own (--epochs, --patience, --valid-every)
FLAG_SETTINGS = {"epochs": "--epochs", "patience": "--patience", "valid_every": "--valid-every"}


def protocol_trainer(
    epochs: int, patience: int, valid_every: int = 1, overrides: dict[str, Any] | None = None
) -> TrainerConfig:
    """The protocol's trainer (Adam lr 1e-3, batch 2,048, early stopping on validation Recall@20), with
    ``overrides`` (``--trainer-set``) replacing some of its settings."""
    protocol = {
        "epochs": epochs,
        "patience": patience,
        "valid_every": valid_every,
        "batch_size": 2048,
        "lr": 1e-3,
        "valid_metric": "recall@20",
        "progress": False,
        "device": "cpu",
    }
    return TrainerConfig(**(protocol | (overrides or {})))


def check_variant(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` / ``--trainer-set`` parsed and checked before any data are loaded: each selected row of ours built
    with the settings (an unknown key or a bad value names the flag and the row), the trainer the fits will use
    built, and a variant of our rows (these two, ``--item-features minmax``) refused beside peer runs (their rows
    would be the protocol's); ``--cornac-features raw`` refused without ``--peers cornac`` and the vbpr row.
    Raises ``ConfigError``."""
    overrides = parse_sets(args.set, "--set")
    trainer_overrides = parse_sets(args.trainer_set, "--trainer-set")
    for key, flag in FLAG_SETTINGS.items():
        if key in trainer_overrides:
            raise ConfigError(f"--trainer-set {key}: use {flag} (the records keep its value)")
    try:
        protocol_trainer(args.epochs, args.patience, args.valid_every, trainer_overrides)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(map(str, e["loc"]))
        raise ConfigError(f"--trainer-set {loc}: {e['msg']} (got {e.get('input')!r})") from None
    rows = args.models.split(",")
    peers = {p for p in args.peers.split(",") if p}
    if not args.peer_timeout > 0:
        raise ConfigError(f"--peer-timeout must be a positive number of seconds, got {args.peer_timeout}")
    if args.cornac_features != "minmax" and ("cornac" not in peers or "vbpr" not in rows):
        raise ConfigError(
            "--cornac-features changes Cornac's VBPR row: run it with --peers cornac --models vbpr"
        )
    if overrides or trainer_overrides or args.item_features != "raw":
        if peers or any(m.startswith("mmrec:") for m in rows):
            raise ConfigError(
                "--set / --trainer-set / --item-features change our rows only: run them with --peers '' and no "
                "mmrec: row"
            )
    if overrides:
        for row in rows:
            if row not in ROWS:
                raise ConfigError(f"--models {row!r}: not a row of ours (have {', '.join(ROWS)})")
            try:  # construction reads no data (the modality names only)
                row_model(row, 0, dict.fromkeys(("text", "meta")), overrides)
            except (ConfigError, ValidationError) as err:
                raise ConfigError(f"--set {overrides} on row {row!r}: {err}") from None
    return overrides, trainer_overrides


def cornac_row(
    folder: Path,
    name: str,
    modalities: list[str],
    seed: int,
    epochs: int,
    test: Interactions,
    train: Interactions,
    work: Path,
    normalized: bool = True,
    timeout: float = PEER_TIMEOUT_S,
) -> dict[str, Any]:
    """Cornac's VBPR for ``epochs`` (our vbpr's validated epoch count for the seed), scored by our evaluator; its
    item features are the modalities this run exported (``modalities``; Food-Kitchen: the text alone), concatenated,
    min-max scaled by Cornac unless not ``normalized`` (:func:`mm_peer_mmrec.run_cornac_vbpr`)."""
    out = work / f"cornac_scores_{seed}.npy"
    load0 = load_avg()
    features = [feature_file(m) for m in modalities]
    rec = run_cornac_vbpr(
        folder, name, seed, features, epochs=epochs, reg=1e-4, out=out, normalized=normalized, timeout=timeout
    )
    try:
        scores = torch.from_numpy(np.load(out))

        def score(users: np.ndarray) -> torch.Tensor:
            return scores[torch.from_numpy(np.asarray(users, dtype=np.int64))]

        test_m = evaluate_full_ranking(score, test.csr(), train.csr(), ks=KS)
    finally:  # users × items float32, 7.3 GB a seed on Food-Kitchen: gone once read, whether or not it scored
        for path in (out, Path(f"{out}.users.npy")):
            path.unlink(missing_ok=True)
    rec["test"] = {k: float(v) for k, v in test_m.items() if k.startswith(("recall@", "ndcg@"))}
    rec["load"] = [load0, load_avg()]
    return rec


def row_label(rec: dict[str, Any]) -> str:
    """A record's row in the report: the model and, for a variant, its settings (sorted, so one variant is one row
    whatever the order they were given in)."""
    over, trainer, scaling = variant_of(rec)
    label = rec["model"] + "".join(f" {k}={json.dumps(v)}" for k, v in sorted(over.items()))
    label += "".join(f" trainer.{k}={json.dumps(v)}" for k, v in sorted(trainer.items()))
    label += "" if scaling == "raw" else f" item_features={scaling}"
    return label + ("" if cornac_normalized(rec) else " cornac_features=raw")


def report(path: Path) -> None:
    """Markdown table (mean ± std over seeds) of a results file."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    failed: dict[tuple[str, str], list[str]] = {}
    records = _records(path)
    done = {(r["library"], row_label(r), r["seed"]) for r in records if "failed" not in r}
    for r in records:
        label = row_label(r)
        # a failure under its variant's label (not the protocol row's); dropped once a rerun succeeded
        if "failed" in r:
            if (r["library"], label, r["seed"]) not in done:
                failed.setdefault((r["library"], label), []).append(
                    f"seed {r['seed']}: {r['failed'][-160:]!r}"
                )
            continue
        rows.setdefault((r["library"], label), []).append(r)
    print(
        "| library | model | seeds | Recall@10 | Recall@20 | NDCG@10 | NDCG@20 | best epoch | s/epoch | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (lib, model), rs in rows.items():
        cells = []
        for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20"):
            v = [r["test"][k] for r in rs]
            cells.append(f"{np.mean(v):.4f} ± {np.std(v):.4f}")
        ep = [r.get("best_epoch") for r in rs]
        spe = [r["s_per_epoch"] for r in rs if r.get("s_per_epoch") is not None]
        loads = [x for r in rs for x in r.get("load", [])]
        load_s = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
        spe_s = f"{np.mean(spe):.3f}" if spe else "-"
        print(f"| {lib} | {model} | {len(rs)} | " + " | ".join(cells) + f" | {ep} | {spe_s} | {load_s} |")
    for (lib, model), why in failed.items():
        print(f"\n{lib} {model} failed: " + "; ".join(why))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k", choices=list(DATASETS))
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default=",".join(ROWS))
    ap.add_argument("--peers", default="mmrec,cornac", help="comma list of mmrec, cornac (empty: none)")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument(
        "--valid-every",
        type=int,
        default=1,
        help="validate every N epochs (ours: TrainerConfig.valid_every; MMRec: eval_step)",
    )
    ap.add_argument(
        "--work", type=Path, default=Path("/work/mm-bench"), help="exported MMRec folders go here"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a model setting for every row of ours (repeatable; a diagnostic variant: no peer runs with it)",
    )
    ap.add_argument(
        "--trainer-set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a TrainerConfig setting replacing the protocol's for every row of ours (repeatable; likewise)",
    )
    ap.add_argument(
        "--cornac-features",
        choices=("minmax", "raw"),
        default="minmax",
        help="Cornac VBPR's item features: minmax = ImageModality(normalized=True), the global min-max scaling "
        "of Cornac's example scripts (the protocol's); raw = normalized=False, Cornac's default: the features "
        "as exported, as our vbpr gets them (recorded, and kept apart from the protocol's row). Either runs for "
        "the protocol vbpr row's best epoch in --out (that row is fitted first when absent): give the file that "
        "holds the protocol's rows",
    )
    ap.add_argument(
        "--item-features",
        choices=("raw", "minmax"),
        default="raw",
        help="our rows' item features: raw (the protocol: as exported) or minmax (Cornac's normalized=True scaling, "
        "one min and max over all modalities, as Cornac over its concatenation; the export stays raw; a diagnostic "
        "variant for vbpr: no peer runs with it; for the graph rows it also changes the cosine kNN graphs)",
    )
    ap.add_argument(
        "--peer-timeout",
        type=float,
        default=PEER_TIMEOUT_S,
        help="seconds one MMRec or Cornac fit may take before it is stopped and recorded as failed (default 2 h)",
    )
    ap.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the peer fits whose record in --out is a failure (by default a failure counts as done)",
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--report", type=Path, default=None, help="print the table of a results file and exit")
    args = ap.parse_args()
    if args.report is not None:
        report(args.report)
        return
    try:  # a malformed item, a typo or a bad value stops here, before the data are loaded
        overrides, trainer_overrides = check_variant(args)
    except ConfigError as err:
        ap.error(str(err))
    torch.set_num_threads(1)
    out = args.out or Path(f"bench_results/multimodal/{args.dataset}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    train, valid, test, dropped, ds = load(args.dataset, args.split_seed)
    feats = modalities(args.dataset, ds, train)
    name = args.dataset.replace("-", "_")
    folder = args.work / name
    mm_feats = (
        {"text": feats["text"]} if "meta" not in feats else {"text": feats["text"], "image": feats["meta"]}
    )
    write_mmrec(folder, name, train, valid, test, mm_feats)
    ours_feats = feats if args.item_features == "raw" else minmax_scaled(feats)
    header = {
        "dataset": args.dataset,
        "split_seed": args.split_seed,
        "users": train.n_users,
        "items": train.n_items,
        "sizes": [len(train), len(valid), len(test)],
        "dropped": dropped,
        "modalities": {k: list(v.shape) for k, v in feats.items()},
        "folder": str(folder),
        "mmrec_commit": mmrec_commit(),
        "machine": platform.processor() or platform.machine(),
        "command": " ".join(sys.argv),
        "threads": 1,
    }
    print(json.dumps(header), flush=True)
    peers = {p for p in args.peers.split(",") if p}

    # resumable: a (library, model, seed) already in --out is not run again (rerun the same command after a stop);
    # a row of ours matches only a record of the same variant (variant_of: --set / --trainer-set / --item-features;
    # none for the protocol's rows); a Cornac row only one of the same --cornac-features. A peer's failure record
    # counts as done unless --retry-failed.
    def on_file() -> list[dict[str, Any]]:
        return [r for r in _records(out) if not (args.retry_failed and "failed" in r)]

    done = {(r["library"], r["model"], r["seed"]) for r in on_file()}

    def emit(rec: dict[str, Any]) -> None:
        rec["dataset"] = args.dataset
        rec["epoch_cap"] = args.epochs
        rec["valid_every"] = args.valid_every
        print(json.dumps(rec), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        done.add((rec["library"], rec["model"], rec["seed"]))

    def peer(model: str, seed: int) -> None:
        if ("mmrec", model, seed) in done:
            return
        load0 = load_avg()
        fit = partial(
            run_mmrec,
            model,
            folder,
            name,
            seed,
            epochs=args.epochs,
            patience=args.patience,
            eval_step=args.valid_every,
            timeout=args.peer_timeout,
        )
        emit({**fit_or_failure("mmrec", model, seed, fit), "load": [load0, load_avg()]})

    for seed in (int(s) for s in args.seeds.split(",")):
        for row in args.models.split(","):
            if row.startswith("mmrec:"):  # a peer row with no model of ours (MMGCN, GRCN, SLMRec)
                peer(row.removeprefix("mmrec:"), seed)
                continue
            ours = next(
                (
                    r
                    for r in _records(out)
                    if (r["library"], r["model"], r["seed"]) == ("attnrec", row, seed)
                    and variant_of(r) == (overrides, trainer_overrides, args.item_features)
                ),
                None,
            )
            if ours is None:
                ours = fit_ours(
                    row,
                    seed,
                    (train, valid, test),
                    ours_feats,
                    args.epochs,
                    args.patience,
                    args.valid_every,
                    overrides or None,
                    trainer_overrides=trainer_overrides or None,
                )
                if args.item_features != "raw":
                    ours["item_features"] = args.item_features
                emit(ours)
            if "mmrec" in peers and row in MMREC_OF:
                peer(MMREC_OF[row], seed)
            normalized = args.cornac_features == "minmax"
            if (
                "cornac" in peers
                and row == "vbpr"
                and not any(
                    (r["library"], r["model"], r["seed"]) == ("cornac", "VBPR", seed)
                    and cornac_normalized(r) == normalized
                    for r in on_file()
                )
            ):
                epochs = ours["best_epoch"] or 1
                fit = partial(
                    cornac_row,
                    folder,
                    name,
                    list(mm_feats),
                    seed,
                    epochs,
                    test,
                    train,
                    args.work,
                    normalized,
                    timeout=args.peer_timeout,
                )
                emit({**fit_or_failure("cornac", "VBPR", seed, fit), "normalized": normalized})


def variant_of(rec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A record's (model overrides, trainer overrides, item-feature scaling): ({}, {}, "raw") for the protocol's own
    rows."""
    return rec.get("overrides", {}), rec.get("trainer_overrides", {}), rec.get("item_features", "raw")


def minmax_scaled(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The modalities scaled as Cornac's ``ImageModality(normalized=True)`` scales the concatenated feature matrix
    our Cornac driver gives it: (f − min) / (max − min) with one min and one max over every entry of every modality.
    All-constant features are refused (Cornac would map them to zeros through its +1e-10: nothing to learn from)."""
    lo = min(float(f.min()) for f in feats.values())
    hi = max(float(f.max()) for f in feats.values())
    if hi <= lo:
        raise DataError(
            f"--item-features minmax: every entry of {', '.join(feats)} is {lo}; nothing to scale"
        )
    return {name: ((f - lo) / (hi - lo)).astype(f.dtype) for name, f in feats.items()}


def cornac_normalized(rec: dict[str, Any]) -> bool:
    """Whether a record's Cornac VBPR had min-max scaled features (records before the option: it had; True for
    any other library's record)."""
    return bool(rec.get("normalized", True))


def _records(path: Path) -> list[dict[str, Any]]:
    """The run records of a results file (none when it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
