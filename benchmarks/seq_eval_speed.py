"""How long the per-target-domain sequential evaluation takes on a CDSR dataset (issue 16).

Loads the data as a run does (``experiments/seq_run.py``: leave-one-out over the whole catalogue), fits a sasrec
for ``--epochs`` epochs (the scores need a fitted model; its quality does not matter here), then times
``evaluate`` under :class:`~attnrec.evaluation.sequential.SequentialRanking`: validation (stored training
sequences) and test (context = train + validation item), each with the full within-domain ranking and without it
(sampled only). Also times the same protocol with a trivial scorer (inner product of the user's last item's
embedding with every item: the protocol's own cost, negatives and ranking, with almost no model cost).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/seq_eval_speed.py --data abxi-food-kitchen --threads 1

Prints (and with ``--out`` writes) a JSON record: users evaluated, wall and CPU seconds per evaluation.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _record import write_record

from attnrec.data.sequences import Sequences
from attnrec.evaluation.protocols import evaluate
from attnrec.evaluation.sequential import SequentialRanking
from attnrec.experiments.config import RunConfig
from attnrec.experiments.seq_run import prepare_sequences, sequential_protocols
from attnrec.models.capabilities import ItemScorer
from attnrec.models.query import Query
from attnrec.models.sequential.sasrec import SASRec
from attnrec.training.trainer import TrainerConfig


class LastItem(ItemScorer):
    """Scores = <e(last item of the sequence), e(item)> with random embeddings: a model of almost no cost."""

    name = "last_item"
    query_inputs = frozenset({"users", "history", "domain"})

    def __init__(self, seqs: Sequences, dim: int = 64) -> None:
        self.seqs = seqs
        self.emb = torch.randn(seqs.n_items, dim, generator=torch.Generator().manual_seed(0))

    @property
    def n_items(self) -> int:
        return self.seqs.n_items

    def score(self, query: Query) -> torch.Tensor:
        assert query.users is not None
        if query.history is not None:
            h = query.history
            last = h.items[h.offsets[1:] - 1]
        else:
            last = self.seqs.last_items()[query.users]
        return self.emb[torch.from_numpy(np.maximum(last, 0))] @ self.emb.T


def _time(model: Any, data: Any, proto: SequentialRanking, exclude: Any) -> dict[str, float]:
    t, c = time.perf_counter(), time.process_time()
    m = evaluate(model, data, proto, exclude=exclude)
    return {
        "seconds": round(time.perf_counter() - t, 2),
        "cpu_seconds": round(time.process_time() - c, 2),  # this process's CPU time: less load-sensitive
        "users": int(m["n_rows"]),
        "ndcg@10": m["ndcg@10"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="abxi-food-kitchen")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    d = prepare_sequences(RunConfig(model="sasrec", data=args.data), progress=False)
    t_data = time.perf_counter() - t0
    train, valid, test = d["train"], d["valid"], d["test"]
    v_proto, t_proto = sequential_protocols(train, valid, d["items"])
    seen_tv = (train.csr() + valid.csr()).tocsr()
    result: dict[str, Any] = {"data_s": round(t_data, 2), "users": train.n_users, "items": train.n_items}

    model = SASRec(max_len=50)
    from attnrec.data.side import SideInputs

    t0 = time.perf_counter()
    model.fit(
        train,
        None,
        side=SideInputs(items=d["items"]),
        trainer=TrainerConfig(epochs=args.epochs, progress=False, device="cpu", patience=None),
    )
    result["sasrec_fit_s"] = round(time.perf_counter() - t0, 2)
    for name, scorer in (("sasrec", model), ("last_item", LastItem(model.sequences))):  # type: ignore[arg-type]
        for full in (True, False):
            key = f"{name}{'' if full else '_sampled_only'}"
            result[key] = {
                "valid": _time(scorer, valid, replace(v_proto, full=full), train.csr()),
                "test": _time(scorer, test, replace(t_proto, full=full), seen_tv),
            }
    write_record(
        "seq_eval_speed",
        result,
        args.out,
        threads=args.threads,
        load=os.getloadavg(),
        data=args.data,
    )


if __name__ == "__main__":
    main()
