"""Readers for cross-domain sequential recommendation (CDSR) data: ABXI, LLMCDSR, C2DSR and a generic table.

Each returns a :class:`~attnrec.data.table.Dataset` in the canonical form: one row per interaction with
``user_id``, ``item_id`` (the item's external id, an ASIN where the source has one), ``domain`` (``"A"`` /
``"B"``) and ``timestamp`` when the source has times (LLMCDSR has order only: rows are in sequence order and
there is no ``timestamp`` column). Rows are grouped by user, each user's rows in chronological order. The
``items`` table lists the whole catalogue (``item_id``, ``domain``, and ``title`` where the source has titles),
including items that occur only in a held-out position, so a run's item vocabulary and per-domain negative pools
cover every item of the source.

Bad input (issue 16), the same for every format (:func:`finish_sequences`):

* a sequence shorter than ``min_len`` (default 3: one train, one validation and one test position) is dropped,
  and the users and rows dropped are counted in ``notes["short_sequences"]``;
* an item missing from the source's item map is a :class:`DataError` naming the file, line and item;
* a domain outside the declared domains is a :class:`DataError` naming the file, line (or map entry) and value;
* timestamps out of order within a user are sorted (stably: equal times keep file order, which is the order
  ABXI's own code reads) and the users affected counted in ``notes["out_of_order_sorted"]``;
* a user on two lines is a :class:`DataError` naming both lines (their sequences would otherwise merge).

Local research copies are found by :func:`data_root` (``$ATTNREC_DATA``); :data:`LOCAL_DATASETS` names them
for the dataset registry (``abxi-food-kitchen``, ``llmcdsr-food-kitchen``, ``c2dsr-food-kitchen``,
``c2dsr-movie-book``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from attnrec.data.readers.files import read_text, text_lines
from attnrec.data.table import Dataset
from attnrec.errors import DataError

log = logging.getLogger(__name__)

#: the fewest interactions a sequence needs for leave-one-out (train, validation, test)
MIN_LEN = 3
#: the domain names of two-domain sources, by the sources' 0/1 domain ids
AB = ("A", "B")


def _parse_int(col: pl.Expr) -> pl.Expr:
    return col.str.strip_chars().cast(pl.Int64, strict=False)


def _first_bad(df: pl.DataFrame, bad: pl.Series) -> dict[str, Any]:
    row = int(bad.arg_true()[0])
    return {k: df[k][row] for k in df.columns}


def _tokens(lines: pl.DataFrame, *, sep: str, skip: int, tok_sep: str = "|") -> pl.DataFrame:
    """``(line, user_id, pos, item_raw, ts_raw)`` from sequence lines ``user<sep>[skipped fields]<sep>item|ts...``
    (``skip`` fields after the user are ignored); one row per token, in file order."""
    parts = pl.col("text").str.strip_chars().str.split(sep)
    return (
        lines.select(
            "line",
            parts.list.first().str.strip_chars().alias("user_id"),
            parts.list.slice(1 + skip).alias("tok"),
        )
        .explode("tok")
        .filter(pl.col("tok").is_not_null() & (pl.col("tok").str.strip_chars() != ""))
        .with_columns(pl.col("tok").str.strip_chars().str.split(tok_sep).alias("f"))
        .with_columns(pl.col("f").list.get(0, null_on_oob=True).alias("item_raw"))
        .with_columns(pl.col("f").list.get(1, null_on_oob=True).alias("ts_raw"))
        .drop("f")
    )


def _ints(df: pl.DataFrame, raw: str, out: str, path: Path, what: str) -> pl.DataFrame:
    """``raw`` parsed to Int64 column ``out``; a token that is not an integer is a DataError naming its line."""
    df = df.with_columns(_parse_int(pl.col(raw)).alias(out))
    bad = df[out].is_null()
    if bad.any():
        r = _first_bad(df, bad)
        raise DataError(
            f"not an integer {what}",
            file=path,
            line=int(r["line"]),
            field=what,
            value=r.get("tok", r[raw]),
            expected=f"an integer {what} in every token",
        )
    return df.drop(raw)


def _check_one_line_per_user(df: pl.DataFrame, path: Path | str) -> None:
    lines = df.group_by("user_id", maintain_order=True).agg(pl.col("line").unique(maintain_order=True))
    multi = lines.filter(pl.col("line").list.len() > 1)
    if multi.height:
        u, ls = multi["user_id"][0], multi["line"][0].to_list()
        raise DataError(
            f"user {u!r} has more than one line ({multi.height} such user(s) in all)",
            file=path,
            line=int(ls[1]),
            field="user_id",
            value=u,
            expected=f"one line per user (also on line {ls[0]})",
        )


def finish_sequences(
    df: pl.DataFrame,
    *,
    name: str,
    source: Path | str,
    items: pl.DataFrame,
    domains: Sequence[str] = AB,
    min_len: int = MIN_LEN,
    notes: dict[str, object] | None = None,
    one_line_per_user: bool = True,
) -> Dataset:
    """The checks every CDSR reader shares (see the module docstring), then the :class:`Dataset`.

    ``df``: one row per interaction, in file order, with ``line`` (1-based source line), ``user_id``,
    ``item_id``, ``domain`` and optionally ``timestamp`` and extra columns. ``items``: the catalogue
    (``item_id``, ``domain``, ...). ``domains``: the declared domain names.
    """
    notes = dict(notes or {})
    declared = list(domains)
    for frame, what in ((df, "interaction"), (items, "item map")):
        bad = ~frame["domain"].is_in(declared) | frame["domain"].is_null()
        if bad.any():
            r = _first_bad(frame, bad)
            raise DataError(
                f"domain outside the declared domains ({what})",
                file=source,
                line=int(r["line"]) if "line" in r else None,
                field="domain",
                value=r["domain"] if "line" in r else f"item {r['item_id']!r}: {r['domain']!r}",
                expected=f"one of {declared}",
            )
    if one_line_per_user:
        _check_one_line_per_user(df, source)
    df = df.with_row_index("_row")
    if "timestamp" in df.columns:
        prev = pl.col("timestamp").shift(1).over("user_id")
        late = df.select((pl.col("timestamp") < prev).fill_null(False).alias("x"), "user_id")
        ooo = late.filter(pl.col("x"))["user_id"].unique()
        if ooo.len():
            log.info("%s: %d user(s) with timestamps out of order, sorted (stably)", source, ooo.len())
        notes["out_of_order_sorted"] = {"users": int(ooo.len())}
        # stable within a user: equal timestamps keep their file order
        first = df.group_by("user_id").agg(pl.col("_row").min().alias("_first"))
        df = df.join(first, on="user_id").sort(["_first", "timestamp", "_row"]).drop("_first")
    counts = pl.len().over("user_id")
    short = df.filter(counts < min_len)
    notes["short_sequences"] = {
        "min_len": min_len,
        "users": int(short["user_id"].n_unique()),
        "rows": short.height,
    }
    if short.height:
        log.warning(
            "%s: %d sequence(s) shorter than %d dropped (%d rows)",
            source,
            short["user_id"].n_unique(),
            min_len,
            short.height,
        )
    df = df.filter(counts >= min_len)
    if df.height == 0:
        raise DataError(
            "no sequence is long enough", file=source, expected=f"at least one user with >= {min_len} items"
        )
    notes["declared_domains"] = declared
    lines = df["line"]
    out = df.drop("_row", "line")
    return Dataset(name, out, items=items, source=str(source), notes=notes, lines=lines)


# ------------------------------------------------------------------------------------------------ ABXI


def read_abxi(
    path: str | Path, *, min_len: int = MIN_LEN, name: str = "abxi", on_bad_lines: str = "error"
) -> Dataset:
    """ABXI's format: a folder (or its sequence file) with ``*_preprocessed.txt`` (``user item|ts item|ts ...``,
    space-separated, chronological) and ``map_item*.txt`` (JSON ``ASIN -> [item index, domain 0|1]``).

    ``item_id`` is the ASIN, ``domain`` ``"A"`` (0) / ``"B"`` (1), ``timestamp`` the token's Unix time; the
    user id is the line's first field. ``on_bad_lines`` is accepted for the CLI; every bad line is an error.
    """
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    seq = _one(folder, "*_preprocessed.txt") if p.is_dir() else p
    map_path = _one(folder, "map_item*.txt")
    raw = json.loads(read_text(map_path))
    if not isinstance(raw, dict):
        raise DataError("not a JSON object", file=map_path, expected="ASIN -> [item index, domain]")
    bad = [(k, v) for k, v in raw.items() if not (isinstance(v, list) and len(v) == 2)]
    if bad:
        raise DataError(
            "bad item map entry",
            file=map_path,
            field=bad[0][0],
            value=bad[0][1],
            expected="[item index, domain 0|1]",
        )
    items = pl.DataFrame(
        {
            "item_id": list(raw),
            "_idx": [v[0] for v in raw.values()],
            "_dom": [v[1] for v in raw.values()],
        },
        schema={"item_id": pl.String, "_idx": pl.Int64, "_dom": pl.Int64},
    )
    bad_dom = ~items["_dom"].is_in([0, 1]) | items["_dom"].is_null()
    if bad_dom.any():
        r = _first_bad(items, bad_dom)
        raise DataError(
            "domain outside the declared domains (item map)",
            file=map_path,
            field=str(r["item_id"]),
            value=r["_dom"],
            expected="domain 0 (A) or 1 (B)",
        )
    items = items.with_columns(pl.col("_dom").replace_strict({0: "A", 1: "B"}).alias("domain"))
    tok = _tokens(text_lines(read_text(seq), seq), sep=" ", skip=0)
    tok = _ints(_ints(tok, "item_raw", "_idx", seq, "item"), "ts_raw", "timestamp", seq, "timestamp")
    df = _join_items(tok, items, seq, "the item map " + map_path.name)
    return finish_sequences(
        df,
        name=name,
        source=seq,
        items=items.sort("_idx").select("item_id", "domain"),
        min_len=min_len,
    )


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise DataError(
            f"expected one file matching {pattern!r}",
            file=folder,
            value=[f.name for f in found],
            expected=f"exactly one {pattern}",
        )
    return found[0]


def _join_items(tok: pl.DataFrame, items: pl.DataFrame, path: Path, where: str) -> pl.DataFrame:
    """Tokens (``_idx``) joined to the catalogue (``_idx`` -> ``item_id``, ``domain``); an index missing from it
    is a DataError naming the line and the item."""
    dup = items.filter(pl.col("_idx").is_duplicated())
    if dup.height:
        raise DataError(
            "two items share an index", file=where, value=dup["_idx"][0], expected="one item per index"
        )
    df = tok.join(items.select("_idx", "item_id", "domain"), on="_idx", how="left", maintain_order="left")
    missing = df["item_id"].is_null()
    if missing.any():
        r = _first_bad(df, missing)
        raise DataError(
            f"item {r['_idx']} is not in {where} ({int(missing.sum())} token(s) in all)",
            file=path,
            line=int(r["line"]),
            field="item",
            value=r["_idx"],
            expected=f"an item index listed in {where}",
        )
    return df.drop("_idx", "tok", strict=False)


# ------------------------------------------------------------------------------------------------ C2DSR


def read_c2dsr(
    path: str | Path,
    *,
    files: Sequence[str] = ("val_new.txt", "test_new.txt"),
    min_len: int = MIN_LEN,
    name: str = "c2dsr",
    on_bad_lines: str = "error",
) -> Dataset:
    """C2DSR's format: a domain-pair folder with ``items_a.txt`` / ``items_b.txt`` (``original_id<TAB>ASIN<TAB>
    index``; a global item id is the index for A and ``len(items_a) + index`` for B) and sequence files
    ``user<TAB>n<TAB>item|ts|date|<TAB>...`` (the second field is ignored, tokens are sorted by time as the
    official loader does). ``files`` are read in order (``.gz`` or plain) and their lines taken as whole
    sequences (the shared copy has no train file: each user's line is the whole time-stamped sequence).
    """
    folder = Path(path)
    cat = []
    for dom, fname in zip(AB, ("items_a.txt", "items_b.txt"), strict=True):
        f = _maybe_gz(folder, fname)
        lines = text_lines(read_text(f), f)
        parts = pl.col("text").str.split("\t")
        t = lines.select(
            "line",
            parts.list.get(1, null_on_oob=True).str.strip_chars().alias("item_id"),
            parts.list.get(2, null_on_oob=True).alias("_raw"),
        )
        t = _ints(t, "_raw", "_local", f, "item index")
        cat.append(t.with_columns(pl.lit(dom).alias("domain")))
    n_a = int(cat[0]["_local"].max()) + 1  # type: ignore[arg-type]
    items = pl.concat(
        [
            cat[0].with_columns(pl.col("_local").alias("_idx")),
            cat[1].with_columns((pl.col("_local") + n_a).alias("_idx")),
        ]
    ).select("_idx", "item_id", "domain")
    toks = []
    for fname in files:
        f = _maybe_gz(folder, fname)
        t = _tokens(text_lines(read_text(f), f), sep="\t", skip=1)
        t = _ints(_ints(t, "item_raw", "_idx", f, "item"), "ts_raw", "timestamp", f, "timestamp")
        # a user id shared by two files is one user: the line check then names the clash
        toks.append(_join_items(t, items, f, "items_a/items_b"))
    df = pl.concat(toks) if len(toks) > 1 else toks[0]
    if len(files) > 1:
        # line numbers restart per file; the line check compares lines within one file only
        _check_disjoint_users(toks, [_maybe_gz(folder, f) for f in files])
    return finish_sequences(
        df,
        name=name,
        source=folder,
        items=items.sort("_idx").select("item_id", "domain"),
        min_len=min_len,
        one_line_per_user=False,
        notes={"files": list(files)},
    )


def _check_disjoint_users(parts: list[pl.DataFrame], paths: list[Path]) -> None:
    for k, part in enumerate(parts):
        _check_one_line_per_user(part, paths[k])
        for j in range(k):
            both = part.join(parts[j].select("user_id").unique(), on="user_id", how="semi")
            if both.height:
                raise DataError(
                    f"user {both['user_id'][0]!r} is in two sequence files",
                    file=paths[k],
                    line=int(both["line"][0]),
                    field="user_id",
                    value=both["user_id"][0],
                    expected=f"users disjoint from {paths[j].name}",
                )


def _maybe_gz(folder: Path, fname: str) -> Path:
    for cand in (folder / fname, folder / (fname + ".gz")):
        if cand.is_file():
            return cand
    raise DataError("missing file", file=folder / fname, expected=f"{fname} or {fname}.gz in {folder}")


# ------------------------------------------------------------------------------------------------ LLMCDSR

#: LLMCDSR's sequence files and the prefix their user ids get (ids are per-file row ids)
LLMCDSR_FILES = ("train_overlap", "train_A", "train_B", "valid", "test")


def read_llmcdsr(
    path: str | Path,
    *,
    files: Sequence[str] = LLMCDSR_FILES,
    min_len: int = MIN_LEN,
    name: str = "llmcdsr",
    on_bad_lines: str = "error",
) -> Dataset:
    """LLMCDSR's format: a folder with ``num.txt`` (items in A, items in B; global ids A = ``0..n_A-1``,
    B = ``n_A..``), ``item_set_A.json`` / ``item_set_B.json`` (ASIN -> index within the domain), optional
    ``text_A.json`` / ``text_B.json`` (ASIN -> title) and sequence files ``user<TAB>i1,i2,...`` in order.

    User ids are row ids per file, so each gets its file as a prefix (``overlap:1``, ``A:1``, ``valid:1``):
    the files' users are kept apart, and a ``part`` column says which file a row came from. There are no
    timestamps: rows stay in sequence order (no ``timestamp`` column). The catalogue (``items``) has titles.
    """
    folder = Path(path)
    counts = text_lines(read_text(folder / "num.txt"), folder / "num.txt")
    n = _ints(counts.with_columns(pl.col("text").alias("_r")), "_r", "n", folder / "num.txt", "item count")
    if n.height != 2:
        raise DataError(
            "expected two item counts", file=folder / "num.txt", value=n.height, expected="2 lines"
        )
    n_a = int(n["n"][0])
    cat = []
    for k, dom in enumerate(AB):
        f = folder / f"item_set_{dom}.json"
        raw = json.loads(read_text(f))
        t = pl.DataFrame(
            {"item_id": list(raw), "_local": list(raw.values())},
            schema={"item_id": pl.String, "_local": pl.Int64},
        )
        titles = folder / f"text_{dom}.json"
        if titles.is_file():
            tt = json.loads(read_text(titles))
            t = t.with_columns(pl.col("item_id").replace_strict(tt, default=None).alias("title"))
        cat.append(t.with_columns((pl.col("_local") + k * n_a).alias("_idx"), pl.lit(dom).alias("domain")))
    items = pl.concat(cat, how="diagonal_relaxed").drop("_local")
    toks = []
    for fname in files:
        f = folder / f"{fname}.txt"
        t = _tokens(text_lines(read_text(f), f), sep="\t", skip=0, tok_sep="\x00")
        t = t.with_columns(pl.col("item_raw").str.split(",")).explode("item_raw")
        t = t.filter(pl.col("item_raw").str.strip_chars() != "")
        t = _ints(t.drop("ts_raw", "tok"), "item_raw", "_idx", f, "item")
        prefix = fname.removeprefix("train_")
        t = t.with_columns(
            (pl.lit(prefix + ":") + pl.col("user_id")).alias("user_id"), pl.lit(fname).alias("part")
        )
        toks.append(_join_items(t, items, f, "item_set_A/item_set_B"))
    return finish_sequences(
        pl.concat(toks),
        name=name,
        source=folder,
        items=items.sort("_idx").drop("_idx"),
        min_len=min_len,
        one_line_per_user=False,
        notes={"files": list(files), "order": "file order (no timestamps)"},
    )


# ------------------------------------------------------------------------------------------------ table


def read_sequence_table(
    path: str | Path,
    *,
    domains: Sequence[str] | None = None,
    min_len: int = MIN_LEN,
    name: str | None = None,
    **kw: Any,
) -> Dataset:
    """A generic table (CSV/TSV/Parquet, read by :func:`~attnrec.data.readers.tabular.read_table`) with
    ``user_id, item_id, domain, timestamp`` columns, checked like the other CDSR formats
    (:func:`as_sequences`)."""
    from attnrec.data.readers.tabular import read_table

    ds = read_table(path, name=name, **kw)
    if "domain" not in ds.interactions.columns:
        raise DataError("missing column", file=path, field="domain", expected="a domain column for CDSR data")
    return as_sequences(ds, domains=domains, min_len=min_len)


def as_sequences(ds: Dataset, *, domains: Sequence[str] | None = None, min_len: int = MIN_LEN) -> Dataset:
    """A dataset read by another reader (a table) checked as sequences (:func:`finish_sequences`: short
    sequences dropped and counted, timestamps sorted and counted, declared domains), with a catalogue built from
    its rows (an item under two domains is a DataError naming its first line). A dataset a CDSR reader made
    (it has ``notes["short_sequences"]``) is returned as it is; so is one without a ``domain`` column apart from
    the length and order checks (one domain, ``"all"``)."""
    if "short_sequences" in ds.notes:
        return ds
    source = ds.source or ds.name
    df = ds.interactions
    if "domain" not in df.columns:
        df = df.with_columns(pl.lit("all").alias("domain"))
    lines = ds.lines if ds.lines is not None else pl.Series(range(1, df.height + 1), dtype=pl.Int64)
    df = df.with_columns(lines.alias("line"))
    names = list(domains) if domains is not None else sorted(df["domain"].drop_nulls().unique().to_list())
    items = df.group_by("item_id", maintain_order=True).agg(pl.col("domain").unique(), pl.col("line").first())
    two = items.filter(pl.col("domain").list.len() > 1)
    if two.height:
        raise DataError(
            "item in two domains",
            file=source,
            line=int(two["line"][0]),
            field="domain",
            value=f"item {two['item_id'][0]!r}: {two['domain'][0].to_list()}",
            expected="one domain per item",
        )
    cat = items.select("item_id", pl.col("domain").list.first())
    if ds.items is not None:  # keep the metadata (titles) beside the domains
        cat = cat.join(ds.items.drop("domain", strict=False), on="item_id", how="left")
    return finish_sequences(
        df,
        name=ds.name,
        source=source,
        items=cat,
        domains=names,
        min_len=min_len,
        one_line_per_user=False,
        notes=dict(ds.notes),
    )


# ------------------------------------------------------------------------------------------------ registry


def detect_cdsr(folder: Path) -> Callable[..., Dataset] | None:
    """The reader of a CDSR folder by the files it holds (ABXI: ``*_preprocessed.txt`` + ``map_item*.txt``;
    C2DSR: ``items_a.txt[.gz]``; LLMCDSR: ``num.txt`` + ``item_set_A.json``), or None."""
    if not folder.is_dir():
        return None
    if any(folder.glob("*_preprocessed.txt")) and any(folder.glob("map_item*.txt")):
        return read_abxi
    if (folder / "items_a.txt").is_file() or (folder / "items_a.txt.gz").is_file():
        return read_c2dsr
    if (folder / "num.txt").is_file() and (folder / "item_set_A.json").is_file():
        return read_llmcdsr
    return None


#: environment variable: folders (``os.pathsep``-separated) holding local research copies of CDSR data
DATA_ENV = "ATTNREC_DATA"


@dataclass(frozen=True)
class LocalDataset:
    """A dataset read from a local research copy (never downloaded: the sources ask for research use only):
    ``folder`` under :func:`data_root`, ``reader`` applied to it."""

    name: str
    folder: str
    reader: Callable[..., Dataset]
    description: str = ""


LOCAL_DATASETS: dict[str, LocalDataset] = {
    spec.name: spec
    for spec in (
        LocalDataset(
            "abxi-food-kitchen",
            "cdsr-abxi-food-kitchen",
            partial(read_abxi, name="abxi-food-kitchen"),
            "Amazon Food (A) + Kitchen (B), ABXI's processing (users in both domains, last 50 items)",
        ),
        LocalDataset(
            "llmcdsr-food-kitchen",
            "cdsr-food-kitchen-llmcdsr",
            partial(read_llmcdsr, name="llmcdsr-food-kitchen"),
            "Amazon Food (A) + Kitchen (B), LLMCDSR's processing, with item titles; order only",
        ),
        LocalDataset(
            "llmcdsr-food-kitchen-overlap",
            "cdsr-food-kitchen-llmcdsr",
            partial(read_llmcdsr, name="llmcdsr-food-kitchen-overlap", files=("train_overlap",)),
            "LLMCDSR's Food-Kitchen, only its users with both domains (train_overlap.txt)",
        ),
        LocalDataset(
            "c2dsr-food-kitchen",
            "cdsr-c2dsr-partial/Food-Kitchen",
            partial(read_c2dsr, name="c2dsr-food-kitchen"),
            "Amazon Food (A) + Kitchen (B), C2DSR's processing (its val/test files: one sequence per user)",
        ),
        LocalDataset(
            "c2dsr-movie-book",
            "cdsr-c2dsr-partial/Movie-Book",
            partial(read_c2dsr, name="c2dsr-movie-book"),
            "Amazon Movie (A) + Book (B), C2DSR's processing (its val/test files: one sequence per user)",
        ),
    )
}


def data_roots() -> list[Path]:
    """Where local research copies are looked for, in order: each folder of ``$ATTNREC_DATA``, then
    ``./shared/data`` and ``../shared/data`` relative to the working directory."""
    env = [Path(p).expanduser() for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]
    return env + [Path("shared/data"), Path("../shared/data")]


def data_root(folder: str) -> Path:
    """The first of :func:`data_roots` that holds ``folder``; a DataError listing where it looked."""
    roots = data_roots()
    for root in roots:
        if (root / folder).is_dir():
            return root / folder
    raise DataError(
        f"local dataset folder {folder!r} not found",
        value=[str(r) for r in roots],
        expected=f"a folder holding {folder}/ (set ${DATA_ENV} to it)",
    )


def load_local(name: str, **kw: Any) -> Dataset:
    """Read a :data:`LOCAL_DATASETS` entry (keyword arguments go to its reader)."""
    spec = LOCAL_DATASETS[name]
    kw.pop("progress", None)
    ds = spec.reader(data_root(spec.folder), **kw)
    ds.notes["local_copy"] = str(data_root(spec.folder))
    return ds
