"""hybrid_csa text queries: the relevance/rating blend's weight chosen on validation, checked on test (issue 13).

For each split seed: Amazon 2018 Gift Cards 5-core with its item metadata (../shared/data; or ``--data ml-100k``,
the registry's MovieLens-100k with titles, years and genres), a random 80/10/10 split,
hybrid_csa fitted with the packaged all-MiniLM-L6-v2; fit chooses w on validation (docs/models/hybrid_csa.md, "Text
queries"). The same criterion is then computed once on test (queries from test positives' titles, the users'
training items excluded): the mean reciprocal rank of the target at the chosen w, against w = 0 (the predicted
rating alone, the ranking before the blend) and w = 1 (text relevance alone), all in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_text_query_weight.py --seeds 0 1 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_text_query_weight.py --data ml-100k --seeds 2026
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from attnrec.data.readers.amazon import read_amazon
from attnrec.data.registry import load_dataset
from attnrec.data.side import SideInputs, strip_text
from attnrec.data.splits import random_split
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.rating.hybrid_csa import HybridCSA
from attnrec.models.rating.hybrid_csa.inputs import item_texts
from attnrec.training.trainer import TrainerConfig

DATA = Path(__file__).resolve().parents[2] / "shared/data/amazon2018-gift-cards-5core"


def one_seed(data: str, seed: int, epochs: int) -> dict[str, object]:
    """Fit on one split seed; the chosen weight, its validation report and the test criterion at 0 / chosen / 1."""
    if data == "gift-cards":
        ds = read_amazon(DATA / "Gift_Cards_5.json.gz", meta=DATA / "meta_Gift_Cards.json.gz")
    else:
        ds = load_dataset(data)
    parts = random_split(ds, seed=seed)
    uv = Vocabulary.from_ids(parts.train["user_id"], kind="user")
    iv = Vocabulary.from_ids(parts.train["item_id"], kind="item")
    train, _ = Interactions.encode(parts.train, uv, iv)
    valid, _ = Interactions.encode(parts.valid, uv, iv, unknown="drop")
    test, _ = Interactions.encode(parts.test, uv, iv, unknown="drop")
    model = HybridCSA(seed=seed)
    t0 = time.perf_counter()
    model.fit(
        train,
        strip_text(valid),
        side=SideInputs(items=ds.items),
        trainer=TrainerConfig(epochs=epochs, progress=False, device="cpu"),
    )
    fit_s = time.perf_counter() - t0
    texts, _ = item_texts(train.decode(), ds.items, iv, max_chars=model.config.review_max_chars)
    _, on_test = model._choose_text_weight(strip_text(test), texts)
    w = model.text_weight
    return {
        "seed": seed,
        "fit_s": round(fit_s, 1),
        "chosen_w": w,
        "valid": model.text_weight_report,
        "test_queries": on_test["queries"],
        "test_mrr": {k: on_test["mrr"][k] for k in ("0.0", f"{w:.1f}", "1.0")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="gift-cards", help="gift-cards, or a registry name such as ml-100k")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [one_seed(args.data, s, args.epochs) for s in args.seeds]
    for r in rows:
        valid = r["valid"]
        assert isinstance(valid, dict)
        print(
            f"seed {r['seed']}: w={r['chosen_w']} (valid MRR {valid['mrr']}, SE {valid['se']}); test MRR {r['test_mrr']} "
            f"on {r['test_queries']} queries; fit {r['fit_s']} s"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
