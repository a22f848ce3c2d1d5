"""The MMRec folder format (enoche/MMRec, the reference code of FREEDOM, LATTICE, BM3): read and write.

A folder ``<dir>/`` holds

* ``<name>.inter`` — tab-separated with a header: ``userID``, ``itemID`` (0-based contiguous ints), optionally
  ``rating`` and ``timestamp``, and ``x_label`` (0 train, 1 validation, 2 test). MMRec counts items as
  ``max(itemID) + 1`` over all rows, so feature row ``i`` is item ``i``;
* ``text_feat.npy``, ``image_feat.npy`` — float32 (n_items, d) item features, either may be absent (other
  modality names are written as ``<name>_feat.npy``; MMRec reads only the two);
* ``u_id_mapping.csv`` / ``i_id_mapping.csv`` (written here, as MMRec's preprocessing does; tab-separated
  ``user_id``/``item_id`` (the external id) and ``userID``/``itemID``) so the ints map back to the original ids.

:func:`write_mmrec` exports a split (our encoded ``Interactions``, item index = MMRec ``itemID``) so MMRec runs on
exactly our files; :func:`read_mmrec` reads such a folder back (external ids from the mapping files when present,
else the ints as text), with its features aligned to the item ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from attnrec.data.table import Interactions
from attnrec.errors import DataError

log = logging.getLogger(__name__)

LABELS = ("train", "valid", "test")
#: MMRec's file name of a modality (``text``/``image`` are the two it reads)
FEATURE_FILES = {"text": "text_feat.npy", "image": "image_feat.npy"}


def feature_file(modality: str) -> str:
    """The file name a modality is stored under: ``text_feat.npy``, ``image_feat.npy``, else ``<name>_feat.npy``."""
    return FEATURE_FILES.get(modality, f"{modality}_feat.npy")


@dataclass
class MMRecData:
    """A read MMRec folder: the three parts as frames of external ids (``user_id``, ``item_id``, plus ``rating``
    and ``timestamp`` when the file has them), the item ids in ``itemID`` order, and the features by modality
    (rows aligned to ``item_ids``)."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    item_ids: list[str]
    user_ids: list[str]
    features: dict[str, np.ndarray] = field(default_factory=dict)


def write_mmrec(
    folder: str | Path,
    name: str,
    train: Interactions,
    valid: Interactions | None = None,
    test: Interactions | None = None,
    features: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write ``train``/``valid``/``test`` (encoded with the same vocabularies) and ``features`` (rows aligned to the
    item vocabulary) as an MMRec folder; returns the ``.inter`` path. The ints are our indices, so a model's
    item ``i`` is MMRec's ``itemID`` ``i``. Existing cached item graphs in the folder (MMRec's ``*.pt``) are
    removed: they would be read instead of graphs of the new features."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for label, part in enumerate((train, valid, test)):
        if part is None or len(part) == 0:
            continue
        if part.user_vocab != train.user_vocab or part.item_vocab != train.item_vocab:
            raise DataError(
                f"the {LABELS[label]} part is encoded with other vocabularies than train",
                field=LABELS[label],
                expected="parts encoded with the training vocabularies (Interactions.encode)",
            )
        cols = {"userID": part.users.astype(np.int64), "itemID": part.items.astype(np.int64)}
        if part.has_ratings:
            cols["rating"] = part.ratings.astype(np.float64)
        if "timestamp" in part.frame.columns:
            cols["timestamp"] = part.frame["timestamp"].cast(pl.Int64).to_numpy()
        frames.append(pl.DataFrame(cols).with_columns(pl.lit(label, dtype=pl.Int64).alias("x_label")))
    inter = pl.concat(frames, how="diagonal")
    path = out / f"{name}.inter"
    inter.write_csv(path, separator="\t")
    pl.DataFrame({"user_id": train.user_vocab.ids, "userID": np.arange(train.n_users)}).write_csv(
        out / "u_id_mapping.csv", separator="\t"
    )
    pl.DataFrame({"item_id": train.item_vocab.ids, "itemID": np.arange(train.n_items)}).write_csv(
        out / "i_id_mapping.csv", separator="\t"
    )
    for modality, m in (features or {}).items():
        if m.ndim != 2 or m.shape[0] != train.n_items:
            raise DataError(
                "feature rows do not match the items",
                field=modality,
                value=tuple(m.shape),
                expected=f"shape ({train.n_items}, d)",
            )
        np.save(out / feature_file(modality), np.ascontiguousarray(m, dtype=np.float32))
    for cached in out.glob("*.pt"):
        cached.unlink()
        log.info("%s: removed MMRec's cached graph %s (built from older features)", out, cached.name)
    return path


def read_mmrec(folder: str | Path, name: str | None = None) -> MMRecData:
    """Read an MMRec folder (``name``: the ``.inter`` file's stem; default the only ``.inter`` file there).

    Checks: the header has ``userID``, ``itemID``, ``x_label``; ids are non-negative ints; ``x_label`` is 0, 1 or
    2; each feature file is a 2-d finite matrix with ``max(itemID) + 1`` rows (or as many as the item mapping).
    Errors name the file, line and field."""
    root = Path(folder)
    if name is None:
        inters = sorted(root.glob("*.inter"))
        if len(inters) != 1:
            raise DataError(
                f"{len(inters)} .inter files", file=root, expected="exactly one, or name the dataset"
            )
        path = inters[0]
    else:
        path = root / f"{name}.inter"
    try:
        df = pl.read_csv(path, separator="\t", infer_schema_length=10000)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(
            f"cannot read: {exc}", file=path, expected="a tab-separated MMRec .inter file"
        ) from None
    for col in ("userID", "itemID", "x_label"):
        if col not in df.columns:
            raise DataError(
                "missing column", file=path, field=col, value=df.columns, expected="userID, itemID, x_label"
            )
        if not df[col].dtype.is_integer():
            raise DataError(
                "not an integer column",
                file=path,
                field=col,
                value=str(df[col].dtype),
                expected="0-based integer ids",
            )
        neg = df[col] < 0
        if neg.any():
            row = int(np.argmax(neg.to_numpy()))
            raise DataError(
                "negative id",
                file=path,
                line=row + 2,
                field=col,
                value=int(df[col][row]),
                expected="ids >= 0",
            )
    bad = ~df["x_label"].is_in([0, 1, 2])
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise DataError(
            "bad split label",
            file=path,
            line=row + 2,
            field="x_label",
            value=int(df["x_label"][row]),
            expected="0 (train), 1 (valid) or 2 (test)",
        )
    user_ids = _mapping(root / "u_id_mapping.csv", "user_id", "userID", int(df["userID"].max()) + 1)  # type: ignore[arg-type]
    item_ids = _mapping(root / "i_id_mapping.csv", "item_id", "itemID", int(df["itemID"].max()) + 1)  # type: ignore[arg-type]
    keep = [c for c in ("rating", "timestamp") if c in df.columns]
    frame = df.select(
        pl.Series("user_id", np.asarray(user_ids, dtype=object)[df["userID"].to_numpy()].astype(str)),
        pl.Series("item_id", np.asarray(item_ids, dtype=object)[df["itemID"].to_numpy()].astype(str)),
        *[pl.col(c) for c in keep],
        pl.col("x_label"),
    )
    parts = [frame.filter(pl.col("x_label") == k).drop("x_label") for k in range(3)]
    feats = {}
    for f in sorted(root.glob("*_feat.npy")):
        modality = f.name.removesuffix("_feat.npy")
        try:
            m = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read: {exc}", file=f, expected="a .npy matrix") from None
        if m.ndim != 2 or m.shape[0] != len(item_ids):
            raise DataError(
                "feature rows do not match the items",
                file=f,
                field=modality,
                value=tuple(m.shape),
                expected=f"shape ({len(item_ids)}, d): row i = itemID i",
            )
        if not np.isfinite(m).all():
            raise DataError("NaN or inf in the features", file=f, field=modality, expected="finite numbers")
        feats[modality] = m.astype(np.float32, copy=False)
    return MMRecData(parts[0], parts[1], parts[2], item_ids, user_ids, feats)


def _mapping(path: Path, ext: str, internal: str, n: int) -> list[str]:
    """External ids by int id from a mapping file, or the ints as text when there is none."""
    if not path.exists():
        return [str(i) for i in range(n)]
    m = pl.read_csv(path, separator="\t", infer_schema=False)
    if ext not in m.columns or internal not in m.columns:
        raise DataError(
            "missing column",
            file=path,
            field=ext if ext not in m.columns else internal,
            expected=f"{ext} and {internal}",
        )
    idx = m[internal].cast(pl.Int64, strict=False)
    if idx.null_count() or idx.min() != 0 or idx.max() != len(m) - 1 or idx.n_unique() != len(m):  # type: ignore[operator]
        raise DataError("ids are not 0..n-1, each once", file=path, field=internal, expected="a bijection")
    if len(m) < n:
        raise DataError(
            f"{len(m)} ids but the .inter file uses {n}",
            file=path,
            field=internal,
            expected=f"at least {n} rows",
        )
    out = np.empty(len(m), dtype=object)
    out[idx.to_numpy()] = m[ext].to_numpy()
    return [str(x) for x in out]
