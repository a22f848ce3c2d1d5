"""Cornac's HFT as a worker of ``bench_review.py``, run in its own venv (cornac 3.0.1 needs NumPy 2):

    python3 -m venv /work/cornac-venv && /work/cornac-venv/bin/pip install cornac==3.0.1

Reads the same exported split (``train/valid/test.csv``). HFT (McAuley & Leskovec, RecSys 2013) models each
item's document: here, as in its paper and Cornac's example, an item's document is the concatenation of the
item's *training* reviews (validation and test text is never read). Tokenised by Cornac's ``BaseTokenizer``
(lower case, punctuation removed, English stop words dropped), vocabulary capped at ``vocab_size`` words and
words in more than half of the documents dropped (Cornac's HFT example). Predictions are HFT's own
``score(user, item)`` for the rows in file order; the driver clips and scores them like every other library's.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

from fair_common import serve


def serve_cornac(split_root: Path) -> None:
    """Answer ``fit`` requests for HFT: train on train.csv, return predictions for the requested parts."""
    import cornac
    import numpy as np
    from cornac.data import TextModality
    from cornac.data.text import BaseTokenizer
    from cornac.eval_methods import BaseMethod

    cache: dict[str, Any] = {}

    def data(name: str) -> Any:
        if name not in cache:
            rows = {}
            for p in ("train", "valid", "test"):
                with open(split_root / name / f"{p}.csv", newline="", encoding="utf-8") as f:
                    rows[p] = list(csv.DictReader(f))
            triples = {
                p: [(r["user_id"], r["item_id"], float(r["rating"])) for r in rs] for p, rs in rows.items()
            }
            docs: dict[str, list[str]] = {}
            for r in rows["train"]:  # training reviews only
                docs.setdefault(r["item_id"], []).append(r.get("review") or "")
            ids = sorted(docs)
            cache[name] = (triples, [" ".join(docs[i]) for i in ids], ids)
        return cache[name]

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        triples, corpus, ids = data(req["dataset"])
        params = dict(req["params"])
        modality = TextModality(
            corpus=corpus,
            ids=ids,
            tokenizer=BaseTokenizer(sep=" ", stop_words="english"),
            max_vocab=params["vocab_size"],
            max_doc_freq=0.5,
        )
        # the test triples only register ids; HFT is fitted on train_set and never sees them
        method = BaseMethod.from_splits(
            train_data=triples["train"],
            test_data=triples["test"],
            val_data=triples["valid"],
            exclude_unknowns=True,
            item_text=modality,
            verbose=False,
            seed=req["seed"],
        )
        model = cornac.models.HFT(seed=req["seed"], verbose=False, **params)
        # HFT's Gibbs sampling draws from NumPy's global generator, not from ``seed``: seed that too
        np.random.seed(req["seed"])  # noqa: NPY002
        t0 = time.perf_counter()
        model.fit(method.train_set)
        fit_s = time.perf_counter() - t0
        uid, iid = method.train_set.uid_map, method.train_set.iid_map
        pred = {}
        for part in req["parts"]:
            u = np.array([uid[t[0]] for t in triples[part]])
            i = np.array([iid[t[1]] for t in triples[part]])
            pred[part] = [float(model.score(a, b)) for a, b in zip(u, i, strict=True)]
        return {"fit_s": fit_s, "pred": pred, "info": {"version": cornac.__version__}}

    serve(handle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", choices=["cornac"], required=True)
    ap.add_argument("--split-root", type=Path, required=True)
    args = ap.parse_args()
    serve_cornac(args.split_root)


if __name__ == "__main__":
    main()
