"""The data and protocols of a sequential run (task ``sequential``: sasrec, gca), hooked into ``run.py``.

What differs from an interactions run, and why:

* **Split**: positional leave-one-out per user (the last interaction to test, the one before it to validation, by timestamp
  then file order; rows, not (user, item) pairs: an item consumed again keeps each of its positions), whatever
  ``split.method`` says (another explicit method is refused). Pre-split files are taken as given.
* **Item vocabulary**: the whole catalogue (the dataset's ``items`` table, e.g. ABXI's item map, plus every item
  of the interactions; for pre-split files train + valid and an ``--items`` table), not the training items only:
  ABXI draws negatives from every item of the target's domain and counts every held-out row, also those whose
  item never occurs in train. Held-out rows are therefore kept (split protocol ``cold_start``); a test row whose
  item is outside the vocabulary (pre-split files only) is dropped and counted.
* **Item domains**: from the catalogue's ``domain`` column (else the interactions'); the model gets the
  catalogue as its ``items`` side input (:func:`attnrec.data.sequences.item_domains_of`). An ``--items`` table
  with a ``domain`` column *declares* the domains of a generic table (as ABXI's item map does): a row whose domain
  is not one of them, or differs from its item's domain there, is a DataError naming the file, line and value
  (:func:`sequence_checks`); without one the table's own domain values are the declared set.
* **Protocols** (:class:`~attnrec.evaluation.sequential.SequentialRanking`): validation from the model's stored
  training sequences with ``exclude`` = train; test from the context train + validation item per user
  (:func:`~attnrec.evaluation.sequential.context_history`) with ``exclude`` = train + valid. No test item is
  ever part of an input or of the vocabulary's construction beyond the catalogue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from attnrec.data.readers.cdsr import as_sequences
from attnrec.data.sequences import item_domains_of
from attnrec.data.table import Dataset, Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.sequential import SequentialRanking, context_history
from attnrec.experiments.config import RunConfig
from attnrec.experiments.inputs import load_split, read_items

log = logging.getLogger(__name__)


def prepare_sequences(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Load, split leave-one-out and encode a sequential run's data (see the module docstring). Returns the
    fields of ``run.PreparedData``: ``dataset``, ``split``, ``train``, ``valid``, ``test``, ``notes``, ``items``."""
    if cfg.ctr.format is not None:
        raise ConfigError(f"--format {cfg.ctr.format}: model {cfg.model!r} reads interaction sequences")
    method = cfg.split.method
    if "method" in cfg.split.model_fields_set and method != "leave_last_out":
        raise ConfigError(
            f"split method {method!r}: model {cfg.model!r} is evaluated leave-one-out (last item test, the one "
            "before validation); use split.method = 'leave_last_out' or leave it unset"
        )
    items = read_items(cfg.items, cfg.columns) if cfg.items is not None else None
    # held-out rows whose item is not in train are kept (cold_start): the vocabulary is the catalogue
    split = cfg.split.model_copy(update={"method": "leave_last_out", "protocol": "cold_start"})
    # positions, not (user, item) pairs: an item consumed again stays at each of its places in the sequence
    dataset, result, notes = load_split(
        cfg.model_copy(update={"split": split}),
        progress=progress,
        checked=sequence_checks(items, cfg.items),
        split_options={"units": "position"},
    )
    if dataset is None:  # pre-split files: what train and valid hold (test rows with other items are dropped)
        catalogue = [result.train["item_id"], result.valid["item_id"]]
        if items is not None and "domain" in items.columns:  # the split keeps no line numbers: file and item
            for part, path in (("train", cfg.train), ("valid", cfg.valid)):
                catalogue_gaps(result.parts()[part], items, file=path, catalogue_file=cfg.items)
    else:
        catalogue = [dataset.interactions["item_id"]]
        if items is None:
            items = dataset.items
        notes["sequences"] = {k: dataset.notes.get(k) for k in ("short_sequences", "out_of_order_sorted")}
    if items is not None:
        catalogue.append(items["item_id"])
    notes["split_rule"] = "leave-one-out per user (timestamp, then file order); item vocabulary = catalogue"
    train_df = result.train
    user_vocab = Vocabulary.from_ids(train_df["user_id"], kind="user")
    item_vocab = Vocabulary.from_ids(pl.concat([c.cast(pl.String) for c in catalogue]), kind="item")
    train, _ = Interactions.encode(train_df, user_vocab, item_vocab)
    valid, drop_v = Interactions.encode(result.valid, user_vocab, item_vocab, unknown="drop")
    test, drop_t = Interactions.encode(result.test, user_vocab, item_vocab, unknown="drop")
    if drop_v or drop_t:
        notes["unknown_ids_dropped"] = {"valid": drop_v, "test": drop_t}
        log.warning(
            "%d valid and %d test row(s) with a user not in train or an item outside the catalogue are not "
            "evaluated",
            drop_v,
            drop_t,
        )
    if len(test) == 0:
        raise ConfigError("the test split is empty after encoding: nothing to evaluate")
    if items is None or "domain" not in items.columns:
        items = _catalogue_from_rows(dataset, result.parts())
    item_domains, names = item_domains_of(train, items)  # checks every item has exactly one domain
    notes["domains"] = {n: int((item_domains == d).sum()) for d, n in enumerate(names)}
    return {
        "dataset": dataset,
        "split": result,
        "train": train,
        "valid": valid,
        "test": test,
        "notes": notes,
        "items": items,
    }


def sequence_checks(
    catalogue: pl.DataFrame | None, catalogue_file: str | Path | None = None
) -> Callable[[Dataset], Dataset]:
    """The checks a sequential run applies to a loaded dataset: :func:`~attnrec.data.readers.cdsr.as_sequences`
    (short sequences dropped and counted, timestamps sorted and counted, declared domains), with the declared
    domains taken from ``catalogue`` (the ``--items`` table, read from ``catalogue_file``) when it has a
    ``domain`` column; then every row's domain must equal its item's domain in the catalogue, and every row's item
    must have a domain there (:func:`catalogue_gaps`). A DataError names the file, line and value."""
    if catalogue is None or "domain" not in catalogue.columns:
        return as_sequences
    cat = catalogue.select(
        pl.col("item_id").cast(pl.String), pl.col("domain").cast(pl.String).alias("_declared")
    )
    declared = sorted(cat["_declared"].drop_nulls().unique().to_list())

    def check(ds: Dataset) -> Dataset:
        if "domain" not in ds.interactions.columns:
            # the rows name no domain: the catalogue gives each item's (item_domains_of), as before the check
            out = as_sequences(ds)
            source = out.source or out.name
            catalogue_gaps(
                out.interactions, catalogue, file=source, catalogue_file=catalogue_file, lines=out.lines
            )
            return out
        out = as_sequences(ds, domains=declared)
        df = out.interactions
        lines = out.lines if out.lines is not None else pl.Series(range(1, df.height + 1), dtype=pl.Int64)
        rows = df.select(pl.col("item_id").cast(pl.String), pl.col("domain").cast(pl.String)).with_columns(
            lines.alias("line")
        )
        clash = rows.join(cat, on="item_id", how="inner", maintain_order="left").filter(
            pl.col("domain") != pl.col("_declared")
        )
        if clash.height:
            r = clash.row(0, named=True)
            raise DataError(
                f"the row's domain differs from the item's domain in the --items catalogue ({clash.height} row(s) "
                "in all)",
                file=out.source or out.name,
                line=int(r["line"]),
                field="domain",
                value=f"item {r['item_id']!r}: {r['domain']!r}",
                expected=f"{r['_declared']!r}, the item's domain in the catalogue",
            )
        catalogue_gaps(df, catalogue, file=out.source or out.name, catalogue_file=catalogue_file, lines=lines)
        return out

    return check


def catalogue_gaps(
    rows: pl.DataFrame,
    catalogue: pl.DataFrame,
    *,
    file: str | Path | None,
    catalogue_file: str | Path | None,
    lines: pl.Series | None = None,
) -> None:
    """A DataError when an item of ``rows`` (interactions read from ``file``, ``lines`` their line numbers) has no
    domain in ``catalogue`` (no row, or an empty ``domain`` in the first row of the item, the one used): it names
    the interactions file, the first line with that item (else the field and value), the catalogue file and the
    first few such items with their count (as the CDSR readers name an item missing from their item map)."""
    first = catalogue.select(pl.col("item_id").cast(pl.String), pl.col("domain").cast(pl.String)).unique(
        "item_id", keep="first", maintain_order=True
    )
    df = rows.select(pl.col("item_id").cast(pl.String))
    if lines is not None:
        df = df.with_columns(lines.alias("line"))
    bad = df.join(first, on="item_id", how="left", maintain_order="left").filter(pl.col("domain").is_null())
    if not bad.height:
        return
    if (
        lines is not None
    ):  # rows may be in sequence order (a user's rows re-sorted by time): name the first line
        bad = bad.sort("line", maintain_order=True)
    r = bad.row(0, named=True)
    ids = bad["item_id"].unique(maintain_order=True).to_list()
    listed = first.filter(pl.col("item_id") == r["item_id"]).height > 0
    where = f"the --items catalogue {catalogue_file}" if catalogue_file is not None else "the item catalogue"
    raise DataError(
        f"item {r['item_id']!r} {'has an empty domain in' if listed else 'is not in'} {where} ({len(ids)} "
        f"item(s) in all: {ids[:5]}{' ...' if len(ids) > 5 else ''})",
        file=file,
        line=int(r["line"]) if lines is not None else None,
        field="item_id",
        value=r["item_id"],
        expected="a catalogue row with a domain for every item of the interactions",
    )


def _catalogue_from_rows(dataset: Dataset | None, parts: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    """``item_id, domain`` from the interaction rows (the dataset's; for pre-split files train's and valid's,
    never test's), or None without domains."""
    if dataset is not None:
        frames = [dataset.interactions]
    else:
        frames = [parts[k] for k in ("train", "valid") if parts[k].height]
    if not all("domain" in f.columns for f in frames):
        return None
    rows = pl.concat([f.select("item_id", pl.col("domain").cast(pl.String)) for f in frames])
    return rows.unique(maintain_order=True)


def sequential_protocols(
    train: Interactions, valid: Interactions, items: pl.DataFrame | None, **kw: Any
) -> tuple[SequentialRanking, SequentialRanking]:
    """``(validation protocol, test protocol)``: the test one scores each user from train + the validation item.
    ``kw`` sets other :class:`SequentialRanking` fields (``n_negatives``, ``seed``, ``ks``, ``full``...)."""
    item_domains, names = item_domains_of(train, items)
    # a small domain (test data, toy sets) caps the negatives at what every row can draw, reported per domain
    kw.setdefault("on_short", "cap")
    protocol = SequentialRanking(item_domains=item_domains, domain_names=names, **kw)
    parts = [train, valid] if len(valid) else [train]
    return protocol, replace(protocol, context=context_history(parts, train.n_users))


def bundle_protocol(
    model: object, extra: list[Interactions], ks: tuple[int, ...] | None = None
) -> SequentialRanking | None:
    """The protocol ``attnrec evaluate`` scores a loaded sequential model with (None for any other model): per
    target domain, each user scored from the model's stored training sequences followed by the rows of ``extra``
    (the ``--exclude`` files: a run's test numbers need its valid split there, the validation item being part of
    the test-time input); ``ks`` default (1, 5, 10)."""
    from attnrec.models.sequential.base import SequentialRecommender

    if not isinstance(model, SequentialRecommender) or model.sequences is None:
        return None
    seqs = model.sequences
    uv, iv = model._vocabs()
    rows, items, ts = seqs.flat()
    cols: dict[str, Any] = {"user": rows, "item": items}
    if ts is not None:
        cols["timestamp"] = ts
    stored = Interactions(pl.DataFrame(cols), uv, iv)
    kw: dict[str, Any] = {"ks": tuple(ks)} if ks else {}
    protocol = SequentialRanking(
        item_domains=seqs.item_domains, domain_names=seqs.domain_names, on_short="cap", **kw
    )
    return replace(protocol, context=context_history([stored, *extra], len(uv)))
