"""The CTR benchmark's data: MovieLens-100k as CTR, and the Criteo/Avazu samples' files or a seeded redraw of them.

Split out of ``bench_ctr.py`` (which re-exports these names). ``movielens``: a seeded random 80/10/10 split;
``criteo``/``avazu``: the sample's own train/dev/test files under ``data_dir/<name>/``, or with ``resplit`` those
rows pooled and redrawn at random with the split seed into parts of the files' sizes (:func:`redraw`). Every split
is encoded by a :class:`~attnrec.data.ctr.FeatureEncoder` fitted on train only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attnrec.data.ctr import CTRData, FeatureEncoder
from attnrec.data.readers.ctr import CTRTable, movielens_ctr, read_avazu, read_criteo

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ctr-criteo-avazu-8k"
DATASETS = ("movielens", "criteo", "avazu")
PARTS = ("train", "valid", "test")
Splits = tuple[CTRData, CTRData, CTRData]


def _movielens_splits(split_seed: int) -> tuple[list[Any], Any]:
    from attnrec.data.registry import load_dataset

    table = movielens_ctr(load_dataset("ml-100k", progress=False))
    df = table.frame
    order = np.random.default_rng(split_seed).permutation(df.height)
    cut1, cut2 = int(0.8 * df.height), int(0.9 * df.height)
    return [df[order[:cut1]], df[order[cut1:cut2]], df[order[cut2:]]], table.schema


def redraw(frames: Sequence[Any], seed: int) -> list[Any]:
    """``frames`` (polars frames of one schema) pooled, shuffled with ``seed`` and cut into parts of their sizes."""
    import polars as pl

    pooled = pl.concat(list(frames), how="vertical")
    order = np.random.default_rng(seed).permutation(pooled.height)
    ends = np.cumsum([f.height for f in frames])
    return [pooled[order[a:b]] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def sample_frames(name: str, data_dir: Path = DEFAULT_DATA_DIR) -> tuple[list[Any], Any, list[str]]:
    """``(frames, schema, paths)``: the raw rows of the ``criteo``/``avazu`` sample's train/dev/test files (polars
    frames, not encoded), their schema and the files read."""
    reader: Callable[[Path], CTRTable] = read_criteo if name == "criteo" else read_avazu
    paths = [data_dir / name / f"{part}.csv" for part in ("train", "dev", "test")]
    tables = [reader(p) for p in paths]
    return [t.frame for t in tables], tables[0].schema, [str(p) for p in paths]


def encode_parts(frames: Sequence[Any], schema: Any) -> Splits:
    """``(train, valid, test)`` raw frames encoded by one FeatureEncoder fitted on ``frames[0]`` (train) only:
    valid/test values unseen in train map to each field's OOV index 0."""
    encoder = FeatureEncoder(schema).fit(frames[0])
    return tuple(encoder.transform(f, source=part) for f, part in zip(frames, PARTS, strict=True))  # type: ignore[return-value]


# movielens is always a seeded random draw: a record saying "resplit" for it would claim a redraw that never ran
NO_RESPLIT = "--resplit is for criteo/avazu only: movielens is always split at random by --split-seed"


def load_splits(
    name: str, data_dir: Path = DEFAULT_DATA_DIR, split_seed: int = 2026, resplit: bool = False
) -> tuple[Splits, dict]:
    """``((train, valid, test), info)`` for a benchmark dataset, encoded by a FeatureEncoder fitted on train only.

    ``movielens``: ml-100k with a seeded random 80/10/10 split; ``criteo``/``avazu``: ``data_dir/<name>/
    {train,dev,test}.csv``, or with ``resplit`` those rows pooled and redrawn with ``split_seed`` (:func:`redraw`).
    ``info`` holds row counts, positive rates, field count and the files read.
    """
    if name == "movielens":
        if resplit:
            raise SystemExit(NO_RESPLIT)
        frames, schema = _movielens_splits(split_seed)
        source: Any = f"ml-100k via attnrec.data.registry, random 80/10/10 split, seed {split_seed}"
    elif name in ("criteo", "avazu"):
        frames, schema, source = sample_frames(name, data_dir)
        if resplit:
            frames = redraw(frames, split_seed)
            source = {
                "files": source,
                "redrawn": f"pooled, shuffled with seed {split_seed}, cut to the files' sizes",
            }
    else:
        raise ValueError(f"unknown dataset {name!r}; have {DATASETS}")
    splits = encode_parts(frames, schema)
    tr = splits[0]
    info = {
        "source": source,
        "rows": {part: len(d) for part, d in zip(PARTS, splits, strict=True)},
        "positive_rate": {part: round(d.positive_rate, 4) for part, d in zip(PARTS, splits, strict=True)},
        "fields": len(tr.schema.fields),
        "vocab_rows": int(sum(tr.schema.vocab_sizes) + sum(tr.schema.multi_vocab_sizes)),
    }
    return splits, info  # type: ignore[return-value]
