"""The item-feature modalities of a run (``RunConfig.modalities``, CLI ``--modalities``), for models that take
``item_features`` (the multimodal family).

Entries: ``text`` (MiniLM sentence embeddings of one text per item: MovieLens ``"Title (year). Genres: ..."``,
else title/description/categories/brand, through the on-disk embedding cache), ``meta`` (multi-hot of the
structured metadata: genres, categories, brand, year buckets), ``copurchase`` (opt-in only: multi-hot of Amazon's
``also_buy``/``also_view`` lists, interaction data that may span the held-out period, so the run's modality report
flags it ``leaky``) and ``NAME=FILE.npy`` (a matrix whose row
``r`` is item id ``r``, or follows the ``i_id_mapping.csv`` beside it, as an MMRec folder has). Empty: ``text``
and ``meta`` where the item metadata supports them.

Modalities are built from the item metadata (``--items`` or the dataset's table) and files only, never from a
split, aligned to the training item vocabulary, and checked (``data/modalities.py``): bad input is an error
naming the modality, items without features a counted fallback recorded in ``metrics.json``
(``data.notes.modalities``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from attnrec.data.modalities import (
    COPURCHASE_FIELDS,
    check_modality,
    multihot_modality,
    npy_modality,
    text_modality,
)
from attnrec.data.side import ItemFeatures
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError
from attnrec.paths import cache_home
from attnrec.text import EmbeddingCache, SentenceEncoder
from attnrec.text.builders import item_text_from_meta, movielens_item_text, texts_for_vocab

log = logging.getLogger(__name__)

BUILDERS = ("text", "meta", "copurchase")


def parse_modalities(entries: list[str]) -> tuple[list[str], dict[str, Path]]:
    """``(builders, files)`` from ``--modalities`` entries: builder names, and ``NAME=FILE.npy`` files."""
    builders: list[str] = []
    files: dict[str, Path] = {}
    for raw in entries:
        entry = raw.strip()
        if "=" in entry:
            name, _, file = entry.partition("=")
            name = name.strip()
            if not name.isidentifier() or name in files or name in builders:
                raise ConfigError(f"--modalities {entry!r}: {name!r} is not a new name (letters, digits, _)")
            files[name] = Path(file.strip()).expanduser()
        elif entry in BUILDERS:
            if entry in builders or entry in files:
                raise ConfigError(f"--modalities: {entry!r} given twice")
            builders.append(entry)
        else:
            raise ConfigError(
                f"--modalities {entry!r}: expected one of {', '.join(BUILDERS)} or NAME=FILE.npy"
            )
    for name, path in files.items():
        if not path.is_file():
            raise ConfigError(f"--modalities {name}={path}: no such file")
    return builders, files


def check_run_modalities(entries: list[str], takes_features: bool, model: str) -> None:
    """Refuse ``--modalities`` for a model that reads no item features, and malformed entries (before fitting)."""
    if entries and not takes_features:
        raise ConfigError(f"--modalities: model {model!r} reads no item features; drop --modalities")
    parse_modalities(entries)


def build_item_features(
    entries: list[str], items: pl.DataFrame | None, vocab: Vocabulary, *, progress: bool = True
) -> tuple[ItemFeatures, dict[str, Any]]:
    """The run's modalities aligned to ``vocab`` (the training items) and a JSON report per modality
    (shape, featureless items, source)."""
    builders, files = parse_modalities(entries)
    if not builders and not files:
        builders = default_builders(items)
    matrices = {}
    report: dict[str, Any] = {}
    if builders and items is None:
        raise ConfigError(
            f"--modalities {','.join(builders)} builds item features from item metadata, and this run has none: "
            "give --items FILE, a dataset with item metadata, or NAME=FILE.npy feature files"
        )
    for name in builders:
        assert items is not None
        if name == "text":
            matrices[name] = text_modality(_item_texts(items, vocab), _encoder(progress), name=name)
            report[name] = {"source": "MiniLM text of the item metadata"}
        elif name == "copurchase":  # opt-in only (never a default): co-purchase lists are interaction data
            fields = [f for f in COPURCHASE_FIELDS if f in items.columns]
            if not fields:
                raise DataError(
                    "--modalities copurchase: the item metadata has no co-purchase list",
                    field="items",
                    value=items.columns,
                    expected=f"one of {list(COPURCHASE_FIELDS)} (Amazon metadata)",
                )
            matrices[name], cols = multihot_modality(items, vocab, fields, name=name)
            report[name] = {
                "source": "multi-hot Amazon co-purchase lists",
                "columns": len(cols),
                "leaky": True,
            }
        else:
            matrices[name], cols = multihot_modality(items, vocab, name=name)
            report[name] = {"source": "multi-hot metadata", "columns": len(cols)}
    for name, path in files.items():
        matrices[name] = npy_modality(path, vocab, _mmrec_ids(path), name=name)
        report[name] = {"source": str(path)}
    for name, m in matrices.items():
        rep = check_modality(name, m, len(vocab), file=report[name]["source"])
        report[name].update(dim=rep.dim, featureless=rep.featureless)
        if rep.featureless:
            log.warning(
                "modality %s: %d of %d training items have no features (all-zero rows; self-loop only "
                "in the item graph)",
                name,
                rep.featureless,
                rep.n_items,
            )
    return ItemFeatures(vocab, matrices), report


def default_builders(items: pl.DataFrame | None) -> list[str]:
    """``text`` and ``meta`` where the metadata has what each needs (none without metadata: an error then)."""
    if items is None:
        raise ConfigError(
            "this model needs item features: give --modalities text,meta with item metadata (--items FILE or a "
            "dataset that has it), or --modalities NAME=FILE.npy"
        )
    out = []
    if any(c in items.columns for c in ("title", "description")):
        out.append("text")
    # also_buy/also_view alone never turn `meta` on: they are not part of it (COPURCHASE_FIELDS)
    if any(c in items.columns for c in ("genres", "categories", "category", "brand", "year")):
        out.append("meta")
    if not out:
        raise DataError(
            "no text or structured column to build item features from",
            field="items",
            value=items.columns,
            expected="title/description or genres/categories/brand/year",
        )
    return out


def _item_texts(items: pl.DataFrame, vocab: Vocabulary) -> pl.Series:
    if "genres" in items.columns and "title" in items.columns and "description" not in items.columns:
        texts = movielens_item_text(items, report=False)
    else:
        texts = item_text_from_meta(items, report=False)
    return texts_for_vocab(texts, vocab, report=False)


def _encoder(progress: bool) -> SentenceEncoder:
    return SentenceEncoder(cache=EmbeddingCache(cache_home() / "embeddings"), progress=progress)


def _mmrec_ids(path: Path) -> list[str] | None:
    """Row ids of a feature file inside an MMRec folder (its ``i_id_mapping.csv``), else None (row r = id r)."""
    mapping = path.parent / "i_id_mapping.csv"
    if not mapping.is_file():
        return None
    m = pl.read_csv(mapping, separator="\t", infer_schema=False)
    if not {"item_id", "itemID"} <= set(m.columns):
        raise DataError("missing column", file=mapping, field="itemID", expected="item_id and itemID")
    return m.sort(pl.col("itemID").cast(pl.Int64))["item_id"].to_list()
