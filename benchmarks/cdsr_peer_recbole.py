"""Sanity row for attnrec's sasrec: RecBole 1.2.1's SASRec on the same single-domain sequences (issue 16).

Two steps, two Pythons (RecBole pins old helper packages, so it lives in its own venv)::

    .venv/bin/python benchmarks/cdsr_peer_recbole.py export --data abxi-food-kitchen --dir bench_results/cdsr/recbole
    OMP_NUM_THREADS=1 /work/peer-venv-recbole/bin/python benchmarks/cdsr_peer_recbole.py run \
        --dir bench_results/cdsr/recbole --domains A,B --epochs 80 --patience 5 --seed 0 \
        --out bench_results/cdsr/recbole_sasrec.jsonl

``export`` prepares the dataset once as attnrec's run path does for ``sasrec`` (:func:`prepared_split`, i.e.
``prepare_sequences``: the registered reader, the sequence checks, leave-one-out by position per user, by timestamp
with ties in file order: last item -> test, the one before -> valid), and builds both outputs from that one split:
it writes, per domain D, RecBole's pre-augmented sequential atomic files ``D.{train,valid,test}.inter``
(``user_id``, ``item_id_list`` = the previous at most ``max_len`` items of domain D, oldest first, ``item_id`` =
the target): a training row for every position after the first of the user's domain-D training items; a
validation row for each user whose validation item is in D (input: the D items of train); a test row for each
user whose test item is in D (input: the D items of train plus the validation item when it is in D). That is what
attnrec's ``sasrec`` with ``domain="D"`` reads (``Sequences.view(D)``; test input = train + validation) whenever a
user's mixed sequence holds at most ``max_len`` items, as on abxi-food-kitchen: attnrec cuts the MIXED sequence to
its last ``max_len`` positions before the view, these rows keep the last ``max_len`` items of D.

``export`` also writes ``D/D.{valid,test}.cands``: attnrec's own validation and test candidate lists (target + 999
negatives per held-out row of domain D, seed 0, captured from ``evaluate_sequential``; see :func:`write_candidates`).
A list whose user has no input in domain D has no RecBole row (RecBole cannot score an empty sequence).

``run`` trains RecBole's SASRec on each domain's files (``benchmark_filename``: RecBole does not re-split): 2
layers, 2 heads, hidden 64, CE loss over all items, Adam lr 1e-3, batch 2048 rows (RecBole's SASRec defaults), and,
set to attnrec's sasrec defaults, inner size 64 and dropout 0.2 (:data:`MATCHED`; ``--recbole-defaults``: RecBole's
inner 256 and dropout 0.5). Model selection as attnrec's: after every epoch the model scores attnrec's validation
lists (:func:`score_candidates`; rank = 1 + #(negatives scored strictly above the target)); early stopping on that
NDCG@10 after ``--patience`` epochs without improvement; the best epoch's weights are restored and the test read
once: ``test`` = attnrec's test lists, and ``test_recbole_full`` = RecBole's own full ranking over all items
(``mode: full``; MRR there is MRR@1000). RecBole's ``uni999`` is not used: it runs the whole network once per
candidate (1,000 forward passes per row), an epoch's validation took over 7 minutes on one core and had not ended.
Which numbers BENCHMARKS.md quotes: the top-level metrics of ``test`` (and ``valid``), averaged over EVERY candidate
list as attnrec averages its own, a list without a RecBole row ranking its target last (rank = ``n_candidates``,
:func:`score_candidates`); ``peer_rows_only`` (the lists RecBole scored) is beside them, equal when
``rows_without_a_peer_row`` is 0. Early stopping differs by design in one point: RecBole counts a tie with the best
validation score as an improvement (``value >= best`` resets its count and saves that later epoch), attnrec's
Trainer does not (strictly better only; the earlier epoch is kept).
``--max-fit-minutes``: no epoch starts once the fit has run that long (full CE over a domain's items is slow on CPU:
BENCHMARKS.md, "SASRec sanity row"); the best epoch so far is tested and the record says ``stopped_by``.
One JSON line per domain.
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


def prepared_split(data: str) -> dict[str, Any]:
    """attnrec's own run-path split of ``data`` (:func:`~attnrec.experiments.seq_run.prepare_sequences` of a
    sasrec run: leave-one-out by position, cold-start held-out rows kept, the sequence checks, the catalogue
    vocabulary): the one source of both RecBole's files and the candidate lists, so they cannot diverge."""
    from attnrec.experiments.config import RunConfig, SplitSpec
    from attnrec.experiments.seq_run import prepare_sequences

    cfg = RunConfig(model="sasrec", data=data, split=SplitSpec(method="leave_last_out"), save_model=False)
    return prepare_sequences(cfg, progress=False)


def export(data: str, out_dir: Path, max_len: int = MAX_LEN) -> dict[str, Any]:
    """Write the per-domain atomic files and candidate lists of attnrec's leave-one-out split of ``data``
    (:func:`prepared_split`, read once); returns row counts."""
    import numpy as np

    from attnrec.data.sequences import item_domains_of

    prep = prepared_split(data)
    train, valid, test = prep["train"], prep["valid"], prep["test"]
    item_domains, names = item_domains_of(train, prep["items"])
    users, items = train.user_vocab.ids, train.item_vocab.ids
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {"data": data, "max_len": max_len}
    # each user's training items oldest first: by timestamp, ties by frame row (Sequences.from_interactions' rule);
    # users in index order (the vocabulary's sorted ids)
    frame_row = np.arange(len(train))
    ts = train.frame["timestamp"].to_numpy() if "timestamp" in train.frame.columns else np.zeros(len(train))
    order = np.lexsort((frame_row, ts, train.users))
    tu, ti = train.users[order], train.items[order]
    held = {part: dict(zip(rows.users.tolist(), rows.items.tolist(), strict=True)) for part, rows in
            (("valid", valid), ("test", test))}  # fmt: skip
    for d, dom in enumerate(names):
        in_dom = item_domains[ti] == d
        hist: dict[int, list[int]] = {}
        for u, i in zip(tu[in_dom].tolist(), ti[in_dom].tolist(), strict=True):
            hist.setdefault(u, []).append(i)

        def line(u: int, seq: list[int], target: int) -> str:
            return f"{users[u]}\t{' '.join(items[seq[-max_len:]])}\t{items[target]}"

        rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
        for u, seq in hist.items():
            rows["train"] += [line(u, seq[:t], seq[t]) for t in range(1, len(seq))]
        for u, i in held["valid"].items():
            if item_domains[i] == d and hist.get(u):
                rows["valid"].append(line(u, hist[u], i))
        for u, i in held["test"].items():
            if item_domains[i] != d:
                continue
            # the test-time input: train, then the validation item (Sequences.append), domain D's items
            v = held["valid"].get(u)
            seq = hist.get(u, []) + ([v] if v is not None and item_domains[v] == d else [])
            if seq:
                rows["test"].append(line(u, seq, i))
        folder = out_dir / dom
        folder.mkdir(exist_ok=True)
        for part, lines in rows.items():
            text = "user_id:token\titem_id_list:token_seq\titem_id:token\n" + "\n".join(lines) + "\n"
            (folder / f"{dom}.{part}.inter").write_text(text)
        counts[dom] = {part: len(lines) for part, lines in rows.items()}
    counts["candidates"] = write_candidates(prep, out_dir)
    (out_dir / "export.json").write_text(json.dumps(counts, indent=2))
    return counts


def write_candidates(prep: dict[str, Any], out_dir: Path) -> dict[str, dict[str, int]]:
    """Write ``D/D.{valid,test}.cands`` per domain D: one line per held-out row whose target is in D,
    ``user<TAB>target<TAB>`` then its 999 negatives (item ids, space-separated) — exactly the lists attnrec's
    validation and test evaluation of any sequential model on the prepared split ``prep`` (:func:`prepared_split`)
    rank (the run path's split, vocabulary and protocols, seed 0: validation excludes train, test excludes train +
    valid; the negatives are the split's, not the model's, so a stand-in model that scores nothing is enough to
    capture them from :func:`attnrec.evaluation.sequential.draw_negatives`). Returns the row counts per part and
    domain."""
    import scipy.sparse as sp

    from attnrec.experiments.seq_run import sequential_protocols

    train, valid, test = prep["train"], prep["valid"], prep["test"]
    valid_protocol, test_protocol = sequential_protocols(train, valid, prep["items"])
    seen = train.csr() + (valid.csr() if len(valid) else sp.csr_matrix(train.csr().shape))  # as run.py
    out: dict[str, dict[str, int]] = {}
    parts = [("test", test, test_protocol, seen)]
    if len(valid):
        parts.insert(0, ("valid", valid, valid_protocol, train.csr()))
    for part, rows, protocol, exclude in parts:
        for name, lines in _captured_lists(rows, protocol, exclude).items():
            (out_dir / name).mkdir(exist_ok=True)
            (out_dir / name / f"{name}.{part}.cands").write_text("\n".join(lines) + "\n")
            out.setdefault(part, {})[name] = len(lines)
    return out


def _captured_lists(rows: Any, protocol: Any, exclude: Any) -> dict[str, list[str]]:
    """Per domain, the candidate lines of ``rows`` as ``evaluate_sequential(..., protocol, exclude)`` draws them."""
    import numpy as np
    import torch

    from attnrec.evaluation import sequential as ev

    class StandIn:  # the ItemScorer surface evaluate_sequential reads
        n_items = rows.n_items

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
        ev.evaluate_sequential(StandIn(), rows, replace_full(protocol), exclude=exclude)  # type: ignore[arg-type]
    finally:
        ev.draw_negatives = real  # type: ignore[assignment]
    doms = np.asarray(protocol.item_domains)
    row_dom = doms[rows.items]
    users, items = rows.user_vocab.ids, rows.item_vocab.ids
    out: dict[str, list[str]] = {}
    k = 0
    for d in np.unique(row_dom):  # evaluate_sequential's order: domain by domain, chunk by chunk
        sel = np.flatnonzero(row_dom == d)
        n_chunks = -(-len(sel) // ev.SAMPLE_CHUNK)
        tg = np.concatenate([t for t, _ in drawn[k : k + n_chunks]])
        ng = np.concatenate([n for _, n in drawn[k : k + n_chunks]])
        k += n_chunks
        if not np.array_equal(tg, rows.items[sel]):
            raise RuntimeError("captured negatives are not in the evaluation's row order")
        out[protocol.domain_names[int(d)]] = [
            f"{users[u]}\t{items[t]}\t{' '.join(items[ng[j]])}"
            for j, (u, t) in enumerate(zip(rows.users[sel], rows.items[sel], strict=True))
        ]
    return out


def replace_full(protocol: Any) -> Any:
    """The protocol without the full ranking (not needed to capture the sampled candidates)."""
    from dataclasses import replace

    return replace(protocol, full=False)


#: RecBole settings set to attnrec's sasrec defaults (the rest are RecBole's SASRec defaults: hidden 64, 2 layers,
#: 2 heads, lr 1e-3, batch 2048 rows, CE over all items, post-LayerNorm)
MATCHED = {"inner_size": 64, "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2}


class _OutOfTime(Exception):
    """Raised at the start of an epoch once the fit's time budget is spent."""


def run_domain(
    folder: Path,
    epochs: int,
    patience: int,
    seed: int,
    overrides: dict[str, Any] | None = None,
    max_fit_minutes: float | None = None,
) -> dict[str, Any]:
    """RecBole SASRec on one domain's exported files (``overrides``: RecBole settings, e.g. :data:`MATCHED`);
    best-validation weights, then test once. ``max_fit_minutes``: no epoch starts after that much fit time (the
    best epoch so far is tested; recorded as ``stopped_by: "time budget"``)."""
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
        # the input lists share the target's id space: without this alias RecBole remaps item_id_list on its own
        # (the inputs index other items than the outputs, and a test list can hold an id past the embedding table)
        "alias_of_item_id": ["item_id_list"],
        "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        # RecBole's own test reading: full ranking (its uni999 runs the whole network once per candidate: ~1,000
        # forward passes per row, hours per validation on one core); validation is attnrec's lists (below)
        "eval_args": {"order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": TOPK,
        "valid_metric": "NDCG@10",
        "epochs": epochs,
        # RecBole stops when more than stopping_step evaluations in a row did not improve; attnrec's trainer
        # after `patience` of them. A tie counts as an improvement in RecBole (value >= best: the count resets and
        # the tied, later epoch is saved), not in attnrec's Trainer (strictly better only)
        "stopping_step": patience - 1,
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
        if max_fit_minutes is not None and t - t0 > 60 * max_fit_minutes:
            raise _OutOfTime
        out = inner(*a, **kw)
        epoch_seconds.append(time.perf_counter() - t)
        return out

    trainer._train_epoch = timed_epoch  # type: ignore[method-assign]
    valid_cands = folder / f"{dom}.valid.cands"
    curve: list[dict[str, float]] = []

    def our_valid_epoch(valid_data: Any, show_progress: bool = False) -> tuple[float, dict[str, Any]]:
        # model selection on attnrec's validation lists (the same candidates attnrec's sasrec is selected on)
        t = time.perf_counter()
        m = score_candidates(model, valid_data._dataset, valid_cands, config["device"])
        curve.append({"ndcg@10": m["ndcg@10"], "valid_s": time.perf_counter() - t})
        model.train()
        return float(m["ndcg@10"]), m

    trainer._valid_epoch = our_valid_epoch  # type: ignore[method-assign]
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    try:
        _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        stopped_by = "early stopping" if int(trainer.cur_step) > patience - 1 else "epoch cap"
    except _OutOfTime:
        best_valid, stopped_by = trainer.best_valid_result, "time budget"
    fit_s = time.perf_counter() - t0
    # RecBole's own reload uses torch.load's new weights_only default, which rejects its checkpoint; the file was
    # written by this run a moment ago
    ckpt = torch.load(trainer.saved_model_file, map_location=trainer.device, weights_only=False)
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(ckpt.get("other_parameter"))
    cands = folder / f"{dom}.test.cands"
    ours = score_candidates(model, test_data._dataset, cands, config["device"]) if cands.exists() else None
    try:  # RecBole's own reading, second: a failure there must not lose attnrec's protocol
        test: dict[str, Any] | str = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    except Exception as e:  # recorded in the result line
        test = f"{type(e).__name__}: {e}"
    Path(trainer.saved_model_file).unlink()

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
        "valid": best_valid,
        # RecBole's own full ranking over all items (its MRR is MRR@1000 here)
        "test_recbole_full": rename(test) if isinstance(test, dict) else test,
        "valid_curve": curve,
        # attnrec's protocol: the same candidate lists as attnrec's test evaluation (export's D.test.cands)
        "test": ours,
        "epochs_run": len(epoch_seconds),
        "stopped_by": stopped_by,
        "max_fit_minutes": max_fit_minutes,
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
                "epochs",
                "stopping_step",
                "seed",
            )
        },
    }


def rank_metrics(ranks: list[int], ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """attnrec's sampled metrics from 1-based ranks among the candidates: ``hr@k``, ``ndcg@k``
    (``1 / log2(rank + 1)`` when ``rank <= k``), ``mrr`` (``1 / rank``, not cut); NaN without ranks."""
    import math

    n = len(ranks)
    if n == 0:
        return {**{f"{m}@{k}": math.nan for k in ks for m in ("hr", "ndcg")}, "mrr": math.nan}
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = sum(r <= k for r in ranks) / n
        out[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k) / n
    out["mrr"] = sum(1.0 / r for r in ranks) / n
    return out


_CANDIDATES: dict[tuple[str, int], Any] = {}


def _candidate_ids(dataset: Any, cands: Path) -> tuple[Any, Any, Any, int, int]:
    """``(rows, targets, negatives, rows missing, candidates per list)`` of a candidate file in RecBole's ids (read
    once per dataset): ``rows`` index ``dataset.inter_feat``, ``negatives`` (n, k) with -1 for an item RecBole
    never saw; a list whose user has no row in ``dataset`` is counted in ``rows missing``."""
    import torch

    key = (str(cands), id(dataset))
    if key not in _CANDIDATES:
        tokens = dataset.field2token_id["item_id"]
        users = dataset.id2token("user_id", dataset.inter_feat["user_id"].numpy())
        row_of = {str(u): i for i, u in enumerate(users)}
        lines = [ln.split("\t") for ln in cands.read_text().splitlines() if ln]
        keep = [(row_of[u], tokens[t], n.split()) for u, t, n in lines if u in row_of]
        _CANDIDATES[key] = (
            torch.tensor([r for r, _, _ in keep], dtype=torch.long),
            torch.tensor([t for _, t, _ in keep], dtype=torch.long),
            torch.tensor([[tokens.get(x, -1) for x in n] for _, _, n in keep], dtype=torch.long),
            len(lines) - len(keep),
            1 + max((len(n.split()) for _, _, n in lines), default=0),
        )
    return _CANDIDATES[key]  # type: ignore[no-any-return]


def score_candidates(model: Any, dataset: Any, cands: Path, device: Any, batch: int = 256) -> dict[str, Any]:
    """The RecBole model's metrics on attnrec's candidate lists (``cands``: ``user<TAB>target<TAB>negatives``):
    each row of ``dataset`` (RecBole's valid or test split, one row per user) is scored over all items with
    ``full_sort_predict`` and ranked as attnrec ranks: ``1 + #(negatives scored strictly above the target)``.
    A candidate RecBole never saw (in none of its files) has no score: counted, and ranked below the target.

    The metrics at the top level average over EVERY list, as attnrec's do: a list whose user has no RecBole row
    (no input sequence in the domain, so export wrote none) ranks its target last (rank = ``n_candidates``). That
    is a worst case for the peer: attnrec scores the same lists from an empty history, and no list of the peer is
    scored so, so the top-level numbers lean against the peer. ``peer_rows_only`` averages over the lists RecBole
    scored and is the like-for-like reading; the two agree when ``rows_without_a_peer_row`` is 0, as on
    Food-Kitchen (every candidate list has its RecBole row: export.json's rows equal its lists)."""
    import torch

    rows, targets, negs, missing, n_candidates = _candidate_ids(dataset, cands)
    ranks: list[int] = []
    model.eval()
    for start in range(0, len(rows), batch):
        sl = slice(start, start + batch)
        with torch.no_grad():
            scores = model.full_sort_predict(dataset.inter_feat[rows[sl]].to(device)).cpu()
        t_score = scores.gather(1, targets[sl, None])
        n_score = scores.gather(1, negs[sl].clamp(min=0)).masked_fill(negs[sl] < 0, float("-inf"))
        ranks.extend((1 + (n_score > t_score).sum(1)).tolist())
    return {
        **rank_metrics(ranks + [n_candidates] * missing),
        "n_rows": len(ranks) + missing,
        "peer_rows_only": {**rank_metrics(ranks), "n_rows": len(ranks)},
        "rows_without_a_peer_row": missing,
        "unknown_candidates": int((negs < 0).sum()),
        "n_candidates": n_candidates,
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
        "--max-fit-minutes", type=float, default=None, help="start no epoch after this much fit time"
    )
    r.add_argument(
        "--recbole-defaults",
        action="store_true",
        help="RecBole's own SASRec defaults (inner 256, dropout 0.5) instead of attnrec's (inner 64, dropout 0.2)",
    )
    a = p.parse_args(argv)
    if getattr(a, "max_fit_minutes", None) is not None and a.max_fit_minutes <= 0:
        p.error(f"--max-fit-minutes must be > 0 (the first epoch always runs), got {a.max_fit_minutes}")
    if a.cmd == "export":
        print(json.dumps(export(a.data, a.dir), indent=2))
        return
    import torch

    torch.set_num_threads(a.threads)
    for dom in a.domains.split(","):
        rec = run_domain(
            a.dir / dom,
            a.epochs,
            a.patience,
            a.seed,
            None if a.recbole_defaults else MATCHED,
            a.max_fit_minutes,
        )
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
