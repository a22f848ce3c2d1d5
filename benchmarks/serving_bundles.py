"""Generated bundles for the serving benchmarks: a catalogue of any size, fitted briefly so the weights are real.

``build_bundle(out, n_items=10_000)`` writes ``out/model`` (a bundle with titles) from synthetic implicit
interactions: ``n_users`` users, each with ``per_user`` items drawn from a Zipf-like popularity (so popular items
exist, as in real catalogues), split 90/10 for one validation pass. The model is fitted for ``epochs`` epochs:
latency depends on the catalogue size and the embedding width, not on how well it is trained.

Used by ``bench_serving_inproc.py`` (the in-process recommend path) and by the HTTP load benchmarks.

    python benchmarks/serving_bundles.py --items 100000 --out /tmp/serve-100k
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.base import get_model_class
from attnrec.serving.bundle import save_bundle
from attnrec.training.trainer import TrainerConfig


def synthetic_interactions(
    n_users: int, n_items: int, per_user: int, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """(train, valid) implicit interactions, ``per_user`` distinct items per user by Zipf(1.1)-like popularity."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 1.1
    weights /= weights.sum()
    perm = rng.permutation(n_items)  # popular items are not the first ids
    users = np.repeat(np.arange(n_users), per_user)
    items = perm[rng.choice(n_items, size=n_users * per_user, p=weights)]
    pairs = np.unique(users.astype(np.int64) * n_items + items)
    users, items = pairs // n_items, pairs % n_items
    uv = Vocabulary([f"u{k}" for k in range(n_users)], kind="user")
    iv = Vocabulary([f"i{k}" for k in range(n_items)], kind="item")
    valid_mask = rng.random(len(users)) < 0.1

    def make(sel: np.ndarray) -> Interactions:
        df = pl.DataFrame(
            {
                "user_id": uv.ids[users[sel]],
                "item_id": iv.ids[items[sel]],
                "rating": np.ones(int(sel.sum()), dtype=np.float32),
                "timestamp": np.arange(int(sel.sum()), dtype=np.int64),
            }
        )
        return Interactions.encode(df, uv, iv)[0]

    return make(~valid_mask), make(valid_mask)


def build_bundle(
    out: str | Path,
    *,
    n_items: int = 10_000,
    n_users: int = 5_000,
    per_user: int = 20,
    model: str = "bpr",
    params: dict[str, object] | None = None,
    epochs: int = 1,
    seed: int = 0,
) -> Path:
    """Fit ``model`` (default bpr, 64-d) on :func:`synthetic_interactions` and save it with titles to
    ``out/model``; returns the bundle folder."""
    train, valid = synthetic_interactions(n_users, n_items, per_user, seed)
    cls = get_model_class(model)
    est = cls(**{"seed": seed, **(params or {})})
    est.fit(train, valid, trainer=TrainerConfig(epochs=epochs, batch_size=4096, progress=False, device="cpu"))
    titles = pl.DataFrame(
        {"item_id": train.item_vocab.ids, "title": [f"Item number {k}" for k in range(n_items)]}
    )
    return save_bundle(est, Path(out) / "model", items=titles)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--per-user", type=int, default=20)
    ap.add_argument("--model", default="bpr")
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    t0 = time.perf_counter()
    path = build_bundle(
        a.out, n_items=a.items, n_users=a.users, per_user=a.per_user, model=a.model, epochs=a.epochs
    )
    print(f"{path}: {a.model}, {a.items} items, {a.users} users ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
