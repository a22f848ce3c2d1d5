"""Leakage-safe train/valid/test splits of the canonical raw table (external ids).

Every split assigns each input row to exactly one part with vectorised Polars expressions (no Python loop over
users), then validates the result the same way:

* ``protocol="warm"`` (default): rows of valid/test whose user or item never appears in train are removed,
  and how many (and why) is written into the report — never silently. ``protocol="cold_start"`` keeps them
  (and still counts them), for models that score unseen users/items from features.
* an empty train or an empty test part is a :class:`DataError` naming the part and what was expected.
* a (user, item) pair never lands in two parts: the unit a split assigns is the *pair*, and every row that repeats
  it goes with it (ratios are shares of distinct pairs; temporal splits order a pair by its latest row, so no
  train row is later than the latest row of any held-out pair). How many rows repeat a pair is reported
  (``duplicates``) and logged; ``filters.deduplicate`` keeps one row per pair instead. Pre-split files are used as
  given: pairs they share are counted (``shared_pairs``) and logged as a warning.

Rows keep their original external ids and all their columns (canonical columns first, in canonical
order); within a part rows stay in input order. Random splits are seeded; temporal splits break timestamp
ties by input row order, so the same table always gives the same split.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from attnrec.data.table import CANONICAL, Dataset, canonicalize, enforce_rating_range
from attnrec.errors import ConfigError, DataError

PARTS: tuple[str, str, str] = ("train", "valid", "test")
PROTOCOLS: tuple[str, str] = ("warm", "cold_start")
METHODS: tuple[str, ...] = ("random", "random_per_user", "temporal", "temporal_per_user", "leave_last_out")

# helper columns; names that no reader produces
_ROW = "__split_row"
_KEY = "__split_key"
_PART = "__split_part"
_SHORT = "__split_short"
_HELPERS = (_ROW, _KEY, _PART, _SHORT)
_PAIR = ["user_id", "item_id"]

#: Unix seconds of 1973-03-03 and of 2286-11-20: a timestamp column whose values fall on both sides of this band
#: mixes units (seconds and milliseconds), which a temporal split would order wrongly
_SECONDS_BAND = (10**8, 10**10)

Ratios = tuple[float, float, float] | Sequence[float]

log = logging.getLogger(__name__)


@dataclass
class SplitResult:
    """Three parts of one table plus a JSON-serialisable report of how they were made.

    ``train``/``valid``/``test`` hold the original columns and external ids. ``report`` holds ``method``,
    ``seed``, ``ratios``, ``protocol``, ``input_rows``, ``assigned`` / ``assigned_pairs`` (rows / distinct pairs
    per part before validation), ``sizes``, ``users``, ``items`` (per part, after validation), ``unseen``
    (valid/test rows whose user or item is not in train), ``dropped`` (rows removed for that, per part, with
    reasons), ``seen_pairs`` (valid/test rows whose (user, item) pair also occurs in train: 0 for every split made
    here, possibly not for pre-split files), ``duplicates`` (rows repeating a pair, and pairs shared between
    parts) and, where a run set it, ``rating_range`` (the scale, declared or inferred, and rows skipped).
    """

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    report: dict[str, Any] = field(default_factory=dict)
    protocol: str = "warm"

    def parts(self) -> dict[str, pl.DataFrame]:
        """``{"train": ..., "valid": ..., "test": ...}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}


# --------------------------------------------------------------------------------------------------- helpers


def _source(df: pl.DataFrame | Dataset) -> str:
    return (df.source or df.name) if isinstance(df, Dataset) else "<table>"


def _table(df: pl.DataFrame | Dataset, source: str = "<table>") -> pl.DataFrame:
    """Canonical table with canonical columns first and a row-number helper column."""
    if isinstance(df, Dataset):
        source = df.source or df.name
        df = df.interactions
    clash = [c for c in _HELPERS if c in df.columns]
    if clash:
        raise DataError(
            "reserved column name", file=source, field=clash[0], expected="no column named like this"
        )
    out = canonicalize(df, source=source)
    if out.height == 0:
        raise DataError("the table has no rows", file=source, expected="at least one interaction to split")
    canon = [c for c in CANONICAL if c in out.columns]
    extra = [c for c in out.columns if c not in CANONICAL]
    return out.select(canon + extra).with_row_index(_ROW).with_columns(pl.col(_ROW).cast(pl.Int64))


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown split protocol {protocol!r}; expected one of {list(PROTOCOLS)}")


def check_ratios(ratios: Ratios) -> tuple[float, float, float]:
    """``(train, valid, test)`` shares: three finite numbers >= 0 summing to 1, train and test > 0; else a
    :class:`ConfigError` naming the values (NaN included)."""
    try:
        vals = [float(r) for r in ratios]
    except (TypeError, ValueError):
        raise ConfigError(
            f"split ratios {tuple(ratios)!r}: expected three numbers (train, valid, test)"
        ) from None
    # shown in parentheses: a console that reads markup would take "[nan, ...]" for a style tag and drop it
    shown = "(" + ", ".join(f"{r:g}" for r in vals) + ")"
    if len(vals) != 3 or not all(math.isfinite(r) and r >= 0 for r in vals):
        raise ConfigError(
            f"split ratios {shown}: expected three finite non-negative numbers (train, valid, test), e.g. 0.8,0.1,0.1"
        )
    if abs(sum(vals) - 1.0) > 1e-6:
        raise ConfigError(f"split ratios {shown} sum to {sum(vals):g}; expected them to sum to 1")
    if vals[0] <= 0 or vals[2] <= 0:
        raise ConfigError(f"split ratios {shown}: expected a positive train ratio and a positive test ratio")
    return vals[0], vals[1], vals[2]


def _need_timestamp(frame: pl.DataFrame, method: str, source: str = "<table>") -> None:
    """Refuse timestamps a temporal order cannot use: missing, empty, negative, or a mix of seconds and
    milliseconds (values on both sides of :data:`_SECONDS_BAND`); each error names the first such row."""
    if "timestamp" not in frame.columns:
        raise DataError(
            f"the {method} split needs timestamps",
            file=source,
            field="timestamp",
            expected="a 'timestamp' column (Int64)",
        )
    ts = frame["timestamp"]
    nulls = ts.is_null()
    if nulls.any():
        row = int(nulls.arg_true()[0])
        raise DataError(
            f"the {method} split needs a timestamp on every row (data row {row + 1} has none)",
            file=source,
            line=row + 1,
            field="timestamp",
            expected="no empty timestamps",
        )
    if ts.len() > 1 and ts.n_unique() == 1:
        log.warning(
            "%s: every row has the same timestamp (%d): the %s split orders rows by their place in the file",
            source,
            int(ts[0]),  # type: ignore[arg-type]
            method,
        )
    negative = ts < 0
    if negative.any():
        row = int(negative.arg_true()[0])
        raise DataError(
            f"negative timestamp at data row {row + 1} ({int(negative.sum())} row(s) in all)",
            file=source,
            field="timestamp",
            value=int(ts[row]),
            expected="Unix times >= 0 (seconds or milliseconds since 1970)",
        )
    secs, millis = ts < _SECONDS_BAND[1], ts >= _SECONDS_BAND[1] * 10
    if secs.any() and millis.any():
        r_s, r_ms = int(secs.arg_true()[0]), int(millis.arg_true()[0])
        raise DataError(
            f"timestamps mix units: {int(millis.sum())} row(s) look like milliseconds (data row {r_ms + 1}: "
            f"{int(ts[r_ms])}) and {int(secs.sum())} like seconds (data row {r_s + 1}: {int(ts[r_s])}); "
            f"a {method} split would order them wrongly",
            file=source,
            field="timestamp",
            value=int(ts[r_s]),
            expected="one unit for the whole column (convert milliseconds to seconds)",
        )


def _units(frame: pl.DataFrame, *, latest: bool) -> pl.DataFrame:
    """One representative row per (user_id, item_id) pair, in input order: the pair's first input row, or with
    ``latest`` its latest row in (timestamp, input row) order (input row order without timestamps). A split cuts
    these rows and :func:`_spread` sends every copy of a pair to its representative's part."""
    order = ["timestamp", _ROW] if latest and "timestamp" in frame.columns else [_ROW]
    return frame.sort(order).unique(_PAIR, keep="last" if latest else "first", maintain_order=True).sort(_ROW)


def _spread(frame: pl.DataFrame, units: pl.DataFrame, cols: Sequence[str] = (_PART,)) -> pl.DataFrame:
    """``frame`` with ``cols`` of each row's pair representative in ``units`` (see :func:`_units`)."""
    return frame.join(units.select(*_PAIR, *cols), on=_PAIR, how="left", maintain_order="left")


def _time_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Adds ``_KEY``: the row's position in (timestamp, input row) order — ties broken by input order."""
    order = frame.select(_ROW, "timestamp").sort(["timestamp", _ROW]).with_row_index(_KEY)
    return frame.join(order.select(_ROW, pl.col(_KEY).cast(pl.Int64)), on=_ROW, how="left").sort(_ROW)


def _cut(frame: pl.DataFrame, ratios: tuple[float, float, float], per_user: bool) -> pl.DataFrame:
    """Assign parts by the rank of the unique ``_KEY`` (globally or within each user) and cumulative ratios.

    With ``cnt`` rows in a group, the first ``round(cnt * r_train)`` go to train and rows up to
    ``round(cnt * (r_train + r_valid))`` to valid (half rounds up), the rest to test; sizes sum to ``cnt``.
    """
    pos = pl.col(_KEY).rank("ordinal").cast(pl.Int64) - 1
    cnt = pl.len().cast(pl.Int64)
    if per_user:
        pos, cnt = pos.over("user_id"), cnt.over("user_id")
    c1, c2 = ratios[0], ratios[0] + ratios[1]
    # the epsilon keeps exact halves (e.g. 10 * 0.25) from flipping on float noise
    b1 = (cnt.cast(pl.Float64) * c1 + 0.5 + 1e-9).floor()
    b2 = (cnt.cast(pl.Float64) * c2 + 0.5 + 1e-9).floor()
    part = pl.when(pos < b1).then(0).when(pos < b2).then(1).otherwise(2).cast(pl.Int8)
    return frame.with_columns(part.alias(_PART))


def _counts(frame: pl.DataFrame, col: str) -> dict[str, int]:
    return {name: int(frame.filter(pl.col(_PART) == k)[col].n_unique()) for k, name in enumerate(PARTS)}


def _finalize(
    frame: pl.DataFrame,
    report: dict[str, Any],
    protocol: str,
    files: Mapping[str, str] | None = None,
    source: str = "<table>",
) -> SplitResult:
    """Validate an assignment (``_PART`` column: 0/1/2) and build the result; see the module docstring."""
    _check_protocol(protocol)
    files = files or {}
    assigned = {name: int((frame[_PART] == k).sum()) for k, name in enumerate(PARTS)}
    assigned_pairs = {
        name: frame.filter(pl.col(_PART) == k).select(_PAIR).n_unique() for k, name in enumerate(PARTS)
    }
    report = {
        **report,
        "protocol": protocol,
        "input_rows": frame.height,
        "assigned": assigned,
        "assigned_pairs": assigned_pairs,
        "duplicates": _duplicates(
            frame, report.get("method"), files.get("train") or source, report.get("units") == "position"
        ),
    }
    if assigned["train"] == 0:
        raise DataError(
            "the train part is empty",
            file=files.get("train"),
            value=assigned,
            expected="at least one train row (more data, a larger train ratio, or fewer held-out rows)",
        )
    if assigned["test"] == 0:
        raise DataError(
            "the test part is empty",
            file=files.get("test"),
            value=assigned,
            expected="at least one test row (more data, a larger test ratio, or users with enough rows)",
        )

    train = frame.filter(pl.col(_PART) == 0)
    unknown_user = ~pl.col("user_id").is_in(train["user_id"].unique().implode())
    unknown_item = ~pl.col("item_id").is_in(train["item_id"].unique().implode())
    pairs = train.select("user_id", "item_id").unique().with_columns(pl.lit(True).alias(_KEY))
    held = (
        frame.filter(pl.col(_PART) > 0)
        .select(_ROW, _PART, "user_id", "item_id")
        .join(pairs, on=["user_id", "item_id"], how="left", maintain_order="left")
        .with_columns(
            unknown_user.alias("u"), unknown_item.alias("i"), pl.col(_KEY).fill_null(False).alias("s")
        )
    )
    unseen: dict[str, dict[str, int]] = {}
    seen_pairs: dict[str, int] = {}
    for k, name in ((1, "valid"), (2, "test")):
        h = held.filter(pl.col(_PART) == k)
        unseen[name] = {
            "rows": int((h["u"] | h["i"]).sum()),
            "unknown_user": int(h["u"].sum()),
            "unknown_item": int(h["i"].sum()),
        }
        seen_pairs[name] = int(h["s"].sum())
    if protocol == "warm":
        bad = held.filter(pl.col("u") | pl.col("i"))[_ROW]
        frame = frame.filter(~pl.col(_ROW).is_in(bad.implode()))
        dropped = {name: dict(v) for name, v in unseen.items()}
        if bad.len():
            log.warning(
                "%s: %d valid and %d test row(s) left out of evaluation: their user or item is not in train "
                "(cold start: %d of them with an unknown user, %d with an unknown item; protocol 'cold_start' "
                "keeps them)",
                files.get("test") or source,
                unseen["valid"]["rows"],
                unseen["test"]["rows"],
                unseen["valid"]["unknown_user"] + unseen["test"]["unknown_user"],
                unseen["valid"]["unknown_item"] + unseen["test"]["unknown_item"],
            )
    else:
        dropped = {name: {"rows": 0, "unknown_user": 0, "unknown_item": 0} for name in unseen}
    sizes = {name: int((frame[_PART] == k).sum()) for k, name in enumerate(PARTS)}
    report.update(
        sizes=sizes,
        users=_counts(frame, "user_id"),
        items=_counts(frame, "item_id"),
        unseen=unseen,
        dropped={**dropped, "total": dropped["valid"]["rows"] + dropped["test"]["rows"]},
        seen_pairs=seen_pairs,
    )
    if sizes["test"] == 0:
        raise DataError(
            f"the test part is empty after removing {dropped['test']['rows']} row(s) whose user or item "
            "is not in train",
            file=files.get("test"),
            value=report["dropped"],
            expected="at least one test row whose user and item occur in train (or protocol='cold_start')",
        )
    out = frame.sort(_ROW)
    keep = [c for c in out.columns if c not in _HELPERS]
    parts = [out.filter(pl.col(_PART) == k).select(keep) for k in range(3)]
    return SplitResult(parts[0], parts[1], parts[2], report=report, protocol=protocol)


def _duplicates(
    frame: pl.DataFrame, method: object, source: str | None, positional: bool = False
) -> dict[str, Any]:
    """Rows that repeat a (user, item) pair, and pairs found in more than one part (0 for every pair-unit split
    made here; pre-split files and positional leave-one-out can share pairs): ``{"rows", "pairs",
    "shared_pairs": {"train/valid", "train/test", "valid/test"}}``; logged as warnings when not 0 (a positional
    split's shared pairs are re-consumed items, logged at info level)."""
    per_pair = frame.group_by(_PAIR).agg(
        pl.len().alias("n"), *[(pl.col(_PART) == k).any().alias(name) for k, name in enumerate(PARTS)]
    )
    repeated = per_pair.filter(pl.col("n") > 1)
    out: dict[str, Any] = {
        "rows": int(repeated["n"].sum()) - repeated.height,
        "pairs": repeated.height,
        "shared_pairs": {
            f"{a}/{b}": int((per_pair[a] & per_pair[b]).sum())
            for a, b in (("train", "valid"), ("train", "test"), ("valid", "test"))
        },
    }
    where = source or "the data"
    if out["rows"] and method != "presplit" and not positional:
        log.warning(
            "%s: %d row(s) repeat %d (user, item) pair(s); every copy of a pair is kept in one part, so no pair "
            "is in two of train/valid/test (dedup last|first|mean keeps one row per pair instead)",
            where,
            out["rows"],
            out["pairs"],
        )
    shared = sum(out["shared_pairs"].values())
    if shared and positional:
        log.info(
            "%s: %d (user, item) pair(s) recur in two parts (an item consumed again later in the sequence; "
            "positional leave-one-out keeps each occurrence in its place)",
            where,
            shared,
        )
    elif shared:
        # only pre-split files get here: every split made by this module assigns whole pairs
        log.warning(
            "%s: the %s files share %d (user, item) pair(s) between parts (%s): those held-out rows repeat a pair "
            "the model trains on",
            where,
            method,
            shared,
            ", ".join(f"{k}: {v}" for k, v in out["shared_pairs"].items()),
        )
    return out


# ---------------------------------------------------------------------------------------------------- splits


def random_split(
    df: pl.DataFrame | Dataset,
    ratios: Ratios = (0.8, 0.1, 0.1),
    seed: int = 0,
    per_user: bool = False,
    *,
    protocol: str = "warm",
) -> SplitResult:
    """Random split by ``ratios`` (train, valid, test; summing to 1), seeded.

    Global: one shuffle of all rows, cut at ``round(n * r_train)`` and ``round(n * (r_train + r_valid))``.
    ``per_user=True``: each user's rows are shuffled and cut by the same rule, so every user keeps about
    ``r_train`` of their history in train (users with one row stay in train).
    """
    r = check_ratios(ratios)
    _check_protocol(protocol)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(
            f"split seed {seed!r}: expected an integer >= 0 (numpy's generators take no negative seed)"
        )
    frame = _table(df)
    units = _units(frame, latest=False)
    key = np.random.default_rng(seed).permutation(units.height).astype(np.int64)
    frame = _spread(frame, _cut(units.with_columns(pl.Series(_KEY, key)), r, per_user))
    report = {"method": "random_per_user" if per_user else "random", "seed": int(seed), "ratios": list(r)}
    return _finalize(frame, report, protocol, source=_source(df))


def temporal_split(
    df: pl.DataFrame | Dataset,
    ratios: Ratios = (0.8, 0.1, 0.1),
    per_user: bool = False,
    *,
    protocol: str = "warm",
) -> SplitResult:
    """Split by time: earliest rows to train, then valid, latest to test.

    Global: rows sorted by (timestamp, input row) and cut by ratios, so max train timestamp <= min valid
    timestamp <= min test timestamp. ``per_user=True``: each user's history sorted the same way and cut by
    ratios.
    Needs a ``timestamp`` column without empty values (:class:`DataError` naming the field otherwise).
    """
    r = check_ratios(ratios)
    _check_protocol(protocol)
    frame = _table(df)
    method = "temporal_per_user" if per_user else "temporal"
    _need_timestamp(frame, method, _source(df))
    frame = _spread(frame, _cut(_time_order(_units(frame, latest=True)), r, per_user))
    return _finalize(frame, {"method": method, "seed": None, "ratios": list(r)}, protocol, source=_source(df))


def leave_last_out(
    df: pl.DataFrame | Dataset,
    n_valid: int = 1,
    n_test: int = 1,
    *,
    protocol: str = "warm",
    units: Literal["pair", "position"] = "pair",
) -> SplitResult:
    """Per user: the last ``n_test`` rows to test, the ``n_valid`` before them to valid, the rest to train.

    "Last" is by timestamp (ties by input row order), or by input row order when there is no ``timestamp``
    column. Users with fewer than ``n_valid + n_test + 1`` rows stay train-only; their count is reported as
    ``train_only_users`` (with ``train_only_rows``).

    ``units="pair"`` cuts (user, item) pairs (each pair's latest row decides; every copy of a pair goes to that
    part, so no pair is in two parts). ``units="position"`` cuts rows, the sequential protocol (SASRec/ABXI:
    train = seq[:-2], valid = seq[-2], test = seq[-1]): an item consumed again stays at each of its positions.
    """
    if units not in ("pair", "position"):
        raise ConfigError(f"leave_last_out: units={units!r}; expected 'pair' or 'position'")
    if n_valid < 0 or n_test < 1:
        raise ConfigError(
            f"leave_last_out: n_valid={n_valid}, n_test={n_test}; expected n_valid >= 0, n_test >= 1"
        )
    _check_protocol(protocol)
    frame = _table(df)
    by_pair = units == "pair"
    cut = _units(frame, latest=True) if by_pair else frame
    if "timestamp" in frame.columns:
        _need_timestamp(frame, "leave_last_out", _source(df))
        cut = _time_order(cut)
        order = "timestamp"
    else:
        cut = cut.with_columns(pl.col(_ROW).alias(_KEY))
        order = "row"
    pos = (pl.col(_KEY).rank("ordinal").cast(pl.Int64) - 1).over("user_id")
    cnt = pl.len().cast(pl.Int64).over("user_id")
    short = cnt < n_valid + n_test + 1
    part = (
        pl.when(short)
        .then(0)
        .when(pos >= cnt - n_test)
        .then(2)
        .when(pos >= cnt - n_test - n_valid)
        .then(1)
        .otherwise(0)
        .cast(pl.Int8)
    )
    cut = cut.with_columns(part.alias(_PART), short.alias(_SHORT))
    frame = _spread(frame, cut, (_PART, _SHORT)) if by_pair else cut.drop(_KEY)
    shorts = frame.filter(pl.col(_SHORT))
    report = {
        "method": "leave_last_out",
        "seed": None,
        "ratios": None,
        "n_valid": int(n_valid),
        "n_test": int(n_test),
        "order": order,
        "units": units,
        "train_only_users": int(shorts["user_id"].n_unique()),
        "train_only_rows": shorts.height,
    }
    return _finalize(frame.drop(_SHORT), report, protocol, source=_source(df))


def split(df: pl.DataFrame | Dataset, method: str, **kw: Any) -> SplitResult:
    """Split by method name: one of :data:`METHODS` (``random``, ``random_per_user``, ``temporal``,
    ``temporal_per_user``, ``leave_last_out``).

    Keyword arguments go to the split function (``ratios``, ``seed``, ``n_valid``, ``n_test``, ``protocol``).
    """
    if method == "random":
        return random_split(df, per_user=False, **kw)
    if method == "random_per_user":
        return random_split(df, per_user=True, **kw)
    if method == "temporal":
        return temporal_split(df, per_user=False, **kw)
    if method == "temporal_per_user":
        return temporal_split(df, per_user=True, **kw)
    if method == "leave_last_out":
        return leave_last_out(df, **kw)
    raise ConfigError(f"unknown split method {method!r}; expected one of {list(METHODS)}")


# ------------------------------------------------------------------------------------------- files on disk


def export_split(result: SplitResult, out_dir: str | Path) -> Path:
    """Write ``train.csv``, ``valid.csv``, ``test.csv`` and ``split.json`` (the report) into ``out_dir``.

    CSV header: the canonical columns present, in order ``user_id,item_id,rating,timestamp,domain,review``,
    then any extra columns; ids are the original external ids. Returns ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in result.parts().items():
        nested = [c for c, t in frame.schema.items() if t.is_nested()]
        if nested:
            raise DataError(
                "cannot write a nested column to CSV", field=nested[0], expected="scalar columns in a split"
            )
        canon = [c for c in CANONICAL if c in frame.columns]
        frame.select(canon + [c for c in frame.columns if c not in CANONICAL]).write_csv(out / f"{name}.csv")
    report = {**result.report, "protocol": result.protocol}
    (out / "split.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return out


def read_interactions_file(path: str | Path, columns: Mapping[str, str] | None = None) -> pl.DataFrame:
    """One interaction file (CSV with a header, or Parquet by suffix) as a canonical table; ids stay strings.

    ``columns`` renames the file's columns to canonical names (``{"userId": "user_id", ...}``); a name the file
    lacks is an error naming the file and its columns."""
    return read_interactions_with_lines(path, columns)[0]


def read_interactions_with_lines(
    path: str | Path, columns: Mapping[str, str] | None = None
) -> tuple[pl.DataFrame, pl.Series | None]:
    """:func:`read_interactions_file` and the line of the file each row came from (None when not known)."""
    from attnrec.data.readers.tabular import read_interactions_dataset

    # the readers' machinery (limits, decoding, line numbers, id normalisation), as for `data info`
    ds = read_interactions_dataset(path, columns)
    return canonicalize(ds.interactions, source=str(path)), ds.lines


def load_presplit(
    train: str | Path,
    valid: str | Path | None,
    test: str | Path,
    *,
    protocol: str = "warm",
    columns: Mapping[str, str] | None = None,
    rating_range: tuple[float, float] | None = None,
    on_bad_lines: str = "error",
    infer_rating_range: bool = True,
) -> SplitResult:
    """Read a split given as three files (CSV or Parquet by suffix) and validate it like every split.

    ``valid`` may be ``None`` (an empty valid part). All files must have the same columns. The report has
    method ``"presplit"``, the file paths, ``rating_range`` (see :func:`~attnrec.data.table.enforce_rating_range`:
    every file checked against ``rating_range``, an error or with ``on_bad_lines="skip"`` dropped and counted; or
    the range inferred from the train file) and ``duplicates`` (pairs the files share, also logged as a warning).
    ``columns``: see :func:`read_interactions_file`.
    """
    _check_protocol(protocol)
    paths = {"train": Path(train), "test": Path(test)}
    if valid is not None:
        paths["valid"] = Path(valid)
    read = {name: read_interactions_with_lines(p, columns) for name, p in paths.items()}
    tables = {name: frame for name, (frame, _) in read.items()}
    lines = {name: ln for name, (_, ln) in read.items() if ln is not None}
    cols = tables["train"].columns
    for name, t in tables.items():
        if sorted(t.columns) != sorted(cols):
            raise DataError(
                "columns differ from the train file",
                file=paths[name],
                value=t.columns,
                expected=f"the same columns as {paths['train']}: {cols}",
            )
    sources = {name: str(p) for name, p in paths.items()}
    tables, scale = enforce_rating_range(
        tables,
        rating_range,
        sources=sources,
        on_bad_lines=on_bad_lines,
        lines=lines,
        infer=infer_rating_range,
    )
    if "valid" not in tables:
        tables["valid"] = tables["train"].clear()
    frame = pl.concat(
        [
            tables[name].select(cols).with_columns(pl.lit(k, dtype=pl.Int8).alias(_PART))
            for k, name in enumerate(PARTS)
        ]
    )
    canon = [c for c in CANONICAL if c in cols]
    frame = frame.select(canon + [c for c in frame.columns if c not in CANONICAL])
    frame = frame.with_row_index(_ROW).with_columns(pl.col(_ROW).cast(pl.Int64))
    files = {name: str(p) for name, p in paths.items()}
    report = {"method": "presplit", "seed": None, "ratios": None, "files": files, "rating_range": scale}
    return _finalize(frame, report, protocol, files=files)


def with_rating_range(
    result: SplitResult,
    declared: tuple[float, float] | None,
    *,
    source: str,
    on_bad_lines: str = "error",
    infer: bool = True,
) -> SplitResult:
    """``result`` with its ratings checked against the ``declared`` scale, or the scale inferred from its train
    part (see :func:`~attnrec.data.table.enforce_rating_range`); the scale goes into the report as
    ``rating_range`` (None for implicit data) and the sizes count what is left."""
    sources = {name: f"the {name} part of {source}" for name in PARTS}
    parts, scale = enforce_rating_range(
        result.parts(), declared, sources=sources, on_bad_lines=on_bad_lines, infer=infer
    )
    result.train, result.valid, result.test = parts["train"], parts["valid"], parts["test"]
    if scale is not None and scale["skipped"]:
        result.report["sizes"] = {name: parts[name].height for name in PARTS}
    result.report["rating_range"] = scale
    return result


def read_split(
    dir_or_paths: str | Path | Sequence[str | Path] | Mapping[str, str | Path],
    *,
    protocol: str | None = None,
) -> SplitResult:
    """Read a split written by :func:`export_split` (a folder) or given as three paths (sequence or mapping).

    In a folder, each part is ``<part>.csv`` or ``<part>.parquet`` (valid may be absent). Ids come back as
    strings. ``protocol`` defaults to the one saved in ``split.json``, else ``"warm"``. The rows are validated
    again; when ``split.json`` is present and validation removes nothing, its report is returned as saved.
    """
    saved: dict[str, Any] | None = None
    valid: Path | None
    if isinstance(dir_or_paths, Mapping):
        train, valid, test = (
            Path(dir_or_paths["train"]),
            Path(dir_or_paths["valid"]) if dir_or_paths.get("valid") is not None else None,
            Path(dir_or_paths["test"]),
        )
    elif isinstance(dir_or_paths, str | Path):
        folder = Path(dir_or_paths)
        if not folder.is_dir():
            raise DataError(
                "not a folder", file=folder, expected="a folder with train/valid/test CSV or Parquet files"
            )

        def find(name: str) -> Path | None:
            for ext in (".csv", ".parquet"):
                if (folder / f"{name}{ext}").is_file():
                    return folder / f"{name}{ext}"
            return None

        found = {name: find(name) for name in PARTS}
        for name in ("train", "test"):
            if found[name] is None:
                raise DataError(f"no {name} file", file=folder, expected=f"{name}.csv or {name}.parquet")
        train, valid, test = found["train"], found["valid"], found["test"]  # type: ignore[assignment]
        if (folder / "split.json").is_file():
            saved = json.loads((folder / "split.json").read_text())
    else:
        seq = list(dir_or_paths)
        if len(seq) != 3:
            raise DataError("expected three paths", value=seq, expected="(train, valid, test)")
        train, test = Path(seq[0]), Path(seq[2])
        valid = Path(seq[1]) if seq[1] is not None else None
    if protocol is None:
        protocol = str(saved.get("protocol", "warm")) if saved else "warm"
    result = load_presplit(train, valid, test, protocol=protocol)  # type: ignore[arg-type]
    if saved is not None and saved.get("protocol") == protocol and result.report["dropped"]["total"] == 0:
        result.report = saved
    elif saved is not None:
        result.report["saved_report"] = saved
    return result
