"""Amazon review readers: 2014 and 2018 (McAuley et al.) and 2023 (Hou et al.), reviews and item metadata.

Files are JSON lines, gzip or plain. Two encodings exist and are detected per file from its first line:

* strict JSON (2018, 2023, and most 2014 5-core files);
* Python dict literals (``{'reviewerID': 'A2...', ...}``, the old 2014 ``reviews_*.json.gz`` /
  ``meta_*.json.gz`` dumps that were meant for ``ast.literal_eval``). These are parsed line by line with
  :func:`ast.literal_eval` (never ``eval``) and re-serialised as JSON, then follow the same columnar path.

Fields are pulled out of every line at once with Polars' JSON-path matching; values keep their line numbers,
so a bad line (not JSON, non-numeric rating, missing id) raises :class:`DataError` with file, line, field and
value, or is skipped and counted with ``on_bad_lines="skip"``.

Interaction columns: ``user_id, item_id, rating, timestamp`` (Unix seconds), ``review`` (the review text),
``summary`` (its headline), ``vote`` (helpful votes, Int64), and where the file has them ``verified`` (bool),
``style`` (the product variant as a JSON object string) and, for 2023, ``asin`` (the variant) and
``timestamp_ms``.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Literal

import polars as pl

from attnrec.data.readers.markup import markup_changes, strip_markup, strip_markup_list
from attnrec.data.readers.tabular import (
    OnBadLines,
    RowChecker,
    decode_text,
    merge_notes,
    parse_float,
    parse_int,
    read_bytes,
    reject_structured_ids,
    require_nonempty,
    text_lines,
)
from attnrec.data.table import Dataset
from attnrec.errors import DataError

log = logging.getLogger(__name__)

JsonStyle = Literal["json", "python"]


def detect_json_style(first_line: str) -> JsonStyle:
    """``"python"`` for a dict literal with single-quoted keys (2014 dumps), else ``"json"``."""
    head = first_line.lstrip()
    return "python" if head.startswith("{'") or head.startswith("{u'") else "json"


def json_lines(path: str | Path, checker: RowChecker) -> tuple[pl.DataFrame, JsonStyle]:
    """``(line, text)`` rows of a JSON-lines file where every ``text`` is a JSON object.

    Python-literal files are converted line by line (the one per-line loop: there is no columnar parser for
    them). Lines that are not an object are bad rows of ``checker``.
    """
    p = Path(path)
    lines = text_lines(decode_text(read_bytes(p), p), p)
    style = detect_json_style(str(lines["text"][0]))
    return json_objects(lines, style, checker), style


def json_objects(lines: pl.DataFrame, style: JsonStyle, checker: RowChecker) -> pl.DataFrame:
    """``(line, text)`` rows (all of a file, or one block of it) as JSON objects: Python literals converted, lines
    that are not an object rejected by ``checker``."""
    if style == "python":
        converted: list[str | None] = []
        for text in lines["text"]:
            converted.append(_literal_to_json(text))
            if converted[-1] is None and checker.on_bad_lines == "error":
                break
        converted.extend([None] * (lines.height - len(converted)))
        as_json = pl.Series("text", converted, dtype=pl.String)
        lines = lines.with_columns(as_json.alias("_json"))
        lines = checker.reject(
            lines,
            as_json.is_null(),
            message="not a Python dict literal",
            values=lines["text"],
            expected="one {'key': value} object per line",
        )
        lines = lines.select("line", pl.col("_json").alias("text"))
    else:
        whole = lines["text"].str.json_path_match("$")
        bad = whole.is_null() | ~whole.str.starts_with("{")
        lines = checker.reject(
            lines, bad, message="not a JSON object", values=lines["text"], expected="one JSON object per line"
        )
    return lines


def _literal_to_json(text: str) -> str | None:
    try:
        obj = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    return json.dumps(obj, ensure_ascii=False, default=_jsonable)


def _jsonable(obj: object) -> object:
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


def _get(lines: pl.DataFrame, path: str) -> pl.Series:
    """The value at a JSON path of every line as a String (arrays/objects as JSON text; missing -> null)."""
    return lines["text"].str.json_path_match(path)


def _has_key(lines: pl.DataFrame, key: str, sample: int = 100) -> bool:
    return bool(lines.head(sample)["text"].str.json_path_match(f"$.{key}").is_not_null().any())


def _require_field(fields: pl.DataFrame, col: str, key: str, path: Path) -> None:
    if fields[col].is_null().all():
        raise DataError(
            f"missing field {key!r} in every line",
            file=path,
            field=key,
            expected=f"a {key!r} key in each review",
        )


def read_amazon(
    path: str | Path,
    *,
    meta: str | Path | None = None,
    on_bad_lines: OnBadLines = "error",
    domain: str | None = None,
    name: str | None = None,
) -> Dataset:
    """Read an Amazon reviews file (2014, 2018 or 2023; JSON or Python literals; gzip or plain).

    ``meta`` is the matching ``meta_*.json(.gz)`` file, read into the items table (:func:`read_amazon_meta`).
    ``domain``, when given, fills the canonical ``domain`` column (for cross-domain data).
    """
    p = Path(path)
    checker = RowChecker(p, on_bad_lines)
    lines, style = json_lines(p, checker)
    fields, version = review_fields(lines, p, checker)
    if domain is not None:
        fields = fields.with_columns(pl.lit(domain).alias("domain"))
    items = None
    checkers = [checker]
    if meta is not None:
        meta_checker = RowChecker(meta, on_bad_lines)
        items = _read_meta(Path(meta), meta_checker)
        checkers.append(meta_checker)
    label = name or dataset_name(p)
    notes: dict[str, object] = {"format": f"amazon-{version}", "encoding": style} | merge_notes(*checkers)
    return Dataset(label, fields.drop("line"), items=items, source=str(p), notes=notes, lines=fields["line"])


AmazonVersion = Literal["2014/2018", "2023"]


def detect_version(lines: pl.DataFrame) -> AmazonVersion:
    """``"2023"`` when the first lines carry ``user_id`` or ``parent_asin``, else ``"2014/2018"``."""
    return "2023" if _has_key(lines, "user_id") or _has_key(lines, "parent_asin") else "2014/2018"


def review_fields(
    lines: pl.DataFrame, path: Path, checker: RowChecker, *, version: AmazonVersion | None = None
) -> tuple[pl.DataFrame, AmazonVersion]:
    """The interaction columns (module docstring) of JSON-object lines — a whole file, or one block of a file read
    in a stream, which passes the ``version`` its first block had — plus ``line``; bad rows go to ``checker``.
    A required key missing from every line is an error for a whole file or a first block (``version`` None); in a
    later block the lines without it are bad rows like any other."""
    first = version is None
    version = version or detect_version(lines)
    fields = _fields_2023(lines) if version == "2023" else _fields_2014_2018(lines)
    for col, key in _REQUIRED_KEYS[version].items() if first else ():
        _require_field(fields, col, key, path)
    ids = ["user_id", "item_id"]
    fields = require_nonempty(reject_structured_ids(fields, ids, checker), ids, checker)
    fields = parse_float(fields, "rating", checker)
    fields = parse_int(fields, "timestamp", checker)
    if "vote" in fields.columns:
        fields = fields.with_columns(pl.col("vote").str.replace_all(",", ""))
        fields = parse_int(fields, "vote", checker, required=False)
    if "verified" in fields.columns:
        fields = fields.with_columns((pl.col("verified").str.to_lowercase() == "true").alias("verified"))
    if version == "2023":
        fields = fields.with_columns(pl.col("timestamp").alias("timestamp_ms"), pl.col("timestamp") // 1000)
    return fields, version


_REQUIRED_KEYS = {
    "2014/2018": {
        "user_id": "reviewerID",
        "item_id": "asin",
        "rating": "overall",
        "timestamp": "unixReviewTime",
    },
    "2023": {"user_id": "user_id", "item_id": "parent_asin", "rating": "rating", "timestamp": "timestamp"},
}


def dataset_name(p: Path) -> str:
    """A dataset's name from its file: ``reviews_Books_5.json.gz`` -> ``Books_5``."""
    name = p.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name.removeprefix("reviews_")


def _fields_2014_2018(lines: pl.DataFrame) -> pl.DataFrame:
    cols: dict[str, pl.Series] = {
        "line": lines["line"],
        "user_id": _get(lines, "$.reviewerID"),
        "item_id": _get(lines, "$.asin"),
        "rating": _get(lines, "$.overall"),
        "timestamp": _get(lines, "$.unixReviewTime"),
        "review": _get(lines, "$.reviewText"),
        "summary": _get(lines, "$.summary"),
    }
    # 2018 has "vote" (a string such as "1,234"); 2014 has "helpful": [helpful votes, total votes]
    vote = _get(lines, "$.vote") if _has_key(lines, "vote", sample=lines.height) else None
    helpful = _get(lines, "$.helpful[0]") if _has_key(lines, "helpful") else None
    if vote is not None and helpful is not None:
        cols["vote"] = vote.fill_null(helpful)
    elif vote is not None or helpful is not None:
        cols["vote"] = vote if vote is not None else helpful  # type: ignore[assignment]
    if _has_key(lines, "verified"):
        cols["verified"] = _get(lines, "$.verified")
    if _has_key(lines, "style", sample=lines.height):
        cols["style"] = _get(lines, "$.style")
    return pl.DataFrame(cols)


def _fields_2023(lines: pl.DataFrame) -> pl.DataFrame:
    item = _get(lines, "$.parent_asin")
    asin = _get(lines, "$.asin")
    return pl.DataFrame(
        {
            "line": lines["line"],
            "user_id": _get(lines, "$.user_id"),
            "item_id": item if not item.is_null().all() else asin,
            "rating": _get(lines, "$.rating"),
            "timestamp": _get(lines, "$.timestamp"),
            "review": _get(lines, "$.text"),
            "summary": _get(lines, "$.title"),
            "vote": _get(lines, "$.helpful_vote"),
            "verified": _get(lines, "$.verified_purchase"),
            "asin": asin,
        }
    )


# ----------------------------------------------------------------------------------------------------
# item metadata


def read_amazon_meta(path: str | Path, *, on_bad_lines: OnBadLines = "error") -> pl.DataFrame:
    """Items table from a ``meta_*.json(.gz)`` file (2014, 2018 or 2023), one row per item.

    Columns: ``item_id`` (asin; ``parent_asin`` for 2023), ``title``, ``description`` (list joined with
    newlines), ``categories`` (List[str]: 2014's nested lists flattened, 2018's ``category``, 2023's
    ``categories``), ``main_category``, ``brand`` (2023: ``store``), ``price`` (Float64; null when absent or
    not a single number), ``also_buy`` / ``also_view`` (List[str]; 2014: ``related.also_bought`` /
    ``also_viewed``; 2023: ``bought_together``), ``features`` (List[str]). When an item appears twice, the
    first row is kept.
    """
    p = Path(path)
    return _read_meta(p, RowChecker(p, on_bad_lines))


def _read_meta(p: Path, checker: RowChecker) -> pl.DataFrame:
    lines, _ = json_lines(p, checker)
    if _has_key(lines, "parent_asin"):
        key = "parent_asin"
        paths = {
            "categories": "$.categories",
            "main_category": "$.main_category",
            "brand": "$.store",
            "also_buy": "$.bought_together",
            "also_view": None,
            "features": "$.features",
        }
    else:
        key = "asin"
        is_2014 = _has_key(lines, "categories") or _has_key(lines, "related")
        paths = {
            "categories": "$.categories" if is_2014 else "$.category",
            "main_category": None if is_2014 else "$.main_cat",
            "brand": "$.brand",
            "also_buy": "$.related.also_bought" if is_2014 else "$.also_buy",
            "also_view": "$.related.also_viewed" if is_2014 else "$.also_view",
            "features": None if is_2014 else "$.feature",
        }
    item = _get(lines, f"$.{key}")
    if item.is_null().all():
        raise DataError(
            f"missing field {key!r} in every line", file=p, field=key, expected=f"a {key!r} key per item"
        )
    frame = pl.DataFrame({"line": lines["line"], "item_id": item})
    frame = require_nonempty(frame, ["item_id"], checker)
    lines = lines.filter(pl.col("line").is_in(frame["line"].implode()))

    def text(path: str | None) -> pl.Series:
        return _get(lines, path) if path is not None else pl.Series([None] * lines.height, dtype=pl.String)

    def as_list(path: str | None) -> pl.Series:
        return _str_list(text(path))

    price = text("$.price").str.replace_all(r"[$,\s]", "").cast(pl.Float64, strict=False)
    raw = {
        "title": text("$.title"),
        "description": as_list("$.description"),
        "categories": as_list(paths["categories"]),
        "main_category": text(paths["main_category"]),
        "brand": text(paths["brand"]),
        "features": as_list(paths["features"]),
    }
    clean = _clean_meta_text(raw, p)
    out = pl.DataFrame(
        {
            "item_id": frame["item_id"],
            "title": clean["title"],
            "description": clean["description"].list.join("\n").replace("", None),
            "categories": clean["categories"],
            "main_category": clean["main_category"],
            "brand": clean["brand"],
            "price": price,
            "also_buy": as_list(paths["also_buy"]),
            "also_view": as_list(paths["also_view"]),
            "features": clean["features"],
        }
    )
    return out.unique("item_id", keep="first", maintain_order=True)


def _clean_meta_text(raw: dict[str, pl.Series], path: Path) -> dict[str, pl.Series]:
    """Every text field of the metadata as plain text (:func:`~attnrec.data.readers.markup.strip_markup`), with
    one log line saying what was cleaned and how many titles were markup only (those become missing: the item's
    text then comes from its other fields, or its training reviews, and it is shown without a title)."""
    out: dict[str, pl.Series] = {}
    cleaned: dict[str, int] = {}
    emptied_titles = 0
    for name, values in raw.items():
        is_list = isinstance(values.dtype, pl.List)
        flat = values.explode() if is_list else values
        flat_clean = strip_markup(flat, keep_alt=name == "main_category")
        n_marked, n_emptied = markup_changes(flat, flat_clean)
        if n_marked:
            cleaned[name] = n_marked
        if name == "title":
            emptied_titles = n_emptied
        out[name] = strip_markup_list(values) if is_list else flat_clean
    if cleaned:
        n_titles = int(raw["title"].is_not_null().sum())
        what = ", ".join(f"{name} {n}" for name, n in cleaned.items())
        log.info("%s: HTML markup / entities cleaned in %s values", path.name, what)
        if emptied_titles:
            log.warning(
                "%s: %d of %d titles were HTML markup only; they are missing now (item text uses the other "
                "metadata fields, else training reviews; no title is shown)",
                path.name,
                emptied_titles,
                n_titles,
            )
    return out


def _str_list(raw: pl.Series) -> pl.Series:
    """JSON-path values to List[str]: arrays decoded (nested arrays flattened, order kept, repeats dropped), a
    plain string becomes a one-element list, missing stays null."""
    df = pl.DataFrame({"raw": raw}).with_row_index("_i")
    is_arr = df["raw"].str.starts_with("[").fill_null(False)
    parts = [
        df.filter(~is_arr).select(
            "_i", pl.when(pl.col("raw").is_not_null()).then(pl.concat_list(pl.col("raw"))).alias("v")
        )
    ]
    arrays = df.filter(is_arr)
    if arrays.height:
        try:
            nested = arrays["raw"].str.starts_with("[[")
            flat = arrays.filter(~nested).select(
                "_i",
                pl.col("raw").str.json_decode(pl.List(pl.String)).list.unique(maintain_order=True).alias("v"),
            )
            deep = arrays.filter(nested).select(
                "_i",
                pl.col("raw")
                .str.json_decode(pl.List(pl.List(pl.String)))
                .list.eval(pl.element().explode())
                .list.unique(maintain_order=True)
                .alias("v"),
            )
            parts += [flat, deep]
        except pl.exceptions.PolarsError:
            # mixed shapes (or a plain string that starts with "["): rare, decode these rows one by one
            values = [_flatten_json_list(s) for s in arrays["raw"]]
            parts.append(pl.DataFrame({"_i": arrays["_i"], "v": pl.Series(values, dtype=pl.List(pl.String))}))
    return pl.concat(parts).sort("_i")["v"].alias(raw.name)


def _flatten_json_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    out: list[str] = []

    def walk(v: object) -> None:
        if isinstance(v, list):
            for x in v:
                walk(x)
        elif v is not None:
            s = v if isinstance(v, str) else json.dumps(v)
            if s not in out:
                out.append(s)

    walk(value)
    return out
