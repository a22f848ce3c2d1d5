"""svd's fit before and after the ALS solve change (issue 19), interleaved, on bench_svd_scaling's generated set.

    git show 53e7a41^:src/attnrec/models/rating/svd.py | sed 's/^@register$//' > /tmp/svd_before.py
    .venv/bin/python benchmarks/svd_before_after.py --before /tmp/svd_before.py --items 8000

``--before`` is the earlier svd.py with its ``@register`` line removed (so it imports beside the current one).
Each side fits svd with its defaults twice at one thread (before, after, before, after); fit seconds and test RMSE.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch
from bench_svd_scaling import generate

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.evaluation.protocols import Rating, evaluate
from attnrec.models.rating.svd import SVD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--items", type=int, default=8000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("svd_before", args.before)
    assert spec is not None and spec.loader is not None
    before = importlib.util.module_from_spec(spec)
    sys.modules["svd_before"] = before  # pydantic resolves the config's annotations through it
    spec.loader.exec_module(before)
    folder = Path(tempfile.mkdtemp())
    info = generate(args.items, folder)
    schema = {"user_id": pl.String, "item_id": pl.String}
    tr, va, te = (
        pl.read_csv(folder / f"{n}.csv", schema_overrides=schema) for n in ("train", "valid", "test")
    )
    uv, iv = Vocabulary.from_ids(tr["user_id"], kind="user"), Vocabulary.from_ids(tr["item_id"], kind="item")
    train = Interactions.encode(tr, uv, iv)[0]
    valid, test = (Interactions.encode(x, uv, iv, unknown="drop")[0] for x in (va, te))
    out: dict[str, object] = {"command": "python " + " ".join(sys.argv), "data": info}
    for name, cls in (("before", before.SVD), ("after", SVD)) * 2:
        model = cls(seed=0)
        t = time.perf_counter()
        model.fit(train, valid)
        fit_s = time.perf_counter() - t
        run = {"fit_s": round(fit_s, 2), "test_rmse": evaluate(model, test, Rating())["rmse"]}
        out.setdefault(name, []).append(run)  # type: ignore[union-attr]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
