"""Reading a bundle's files safely: the names and caps of the files a bundle may hold, the manifest's shape, and
the reads that refuse links, FIFOs, devices, files over their cap and files that do not match their checksum.

:mod:`attnrec.serving.bundle` builds saving and loading on these; its docstring states the guarantees.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from attnrec.errors import DataError

log = logging.getLogger("attnrec.serving.bundle")

#: the format :func:`save_bundle` writes; :func:`load_bundle` reads this one, and format 1 (no checksums) only
#: from a caller who trusts the bundle
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
#: the largest manifest a load reads, in bytes (a config and a run's settings: kilobytes)
MAX_MANIFEST_BYTES = 4 * 2**20
#: the largest other JSON file (vocabularies, extra) a load reads, in bytes: a catalogue of millions of ids with
#: their titles is tens of megabytes; a file must also have the size its manifest lists
MAX_JSON_BYTES = 256 * 2**20

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
USERS = "users.json"
ITEMS = "items.json"
EXTRA = "extra.json"
ITEM_META = "items.parquet"
#: every file a bundle may hold besides the manifest; a manifest listing any other name is refused
BUNDLE_FILES = (WEIGHTS, USERS, ITEMS, EXTRA, ITEM_META)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MANIFEST_KEYS: dict[str, tuple[type, bool]] = {  # key -> (type, required)
    "format": (int, True),
    "model": (str, True),
    "task": (str, True),
    "config": (dict, True),
    "model_class": (str, False),
    "attnrec": (str, False),
    "torch": (str, False),
    "extra": (dict, False),
    "files": (dict, False),
}


def bundle_dir(path: str | Path) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise DataError(
            "not a model bundle: no such directory",
            file=root,
            expected="a directory holding manifest.json, written by save_bundle",
        )
    return root.resolve()


def read_file(root: Path, name: str, *, limit: int | None, size: int | None = None) -> bytes:
    """The bytes of regular file ``root/name``. Links, FIFOs, devices, files over ``limit`` bytes and (when
    ``size`` is given, from the manifest) files of another size are refused before any byte is read; a FIFO is
    never opened for a blocking read."""
    file = root / name
    try:
        st = os.lstat(file)
    except FileNotFoundError:
        raise DataError("missing from the bundle", file=file, expected="a bundle from save_bundle") from None
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror}", file=file) from None
    if stat.S_ISLNK(st.st_mode):
        raise DataError(
            f"is a symbolic link (to {os.readlink(file)!r}); a bundle holds regular files only", file=file
        )
    _require_regular(st, file, limit, size)
    if file.resolve().parent != root:  # names are fixed, so this holds unless the name itself is hostile
        raise DataError("resolves outside the bundle directory", file=file, value=str(file.resolve()))
    flags = (
        os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(file, flags)
    except OSError as exc:  # e.g. swapped for a link after lstat (O_NOFOLLOW)
        raise DataError(f"cannot be opened: {exc.strerror}", file=file) from None
    with open(fd, "rb", closefd=True) as fh:
        _require_regular(os.fstat(fd), file, limit, size)  # what was opened, not what lstat saw
        caps = [c for c in (limit, size) if c is not None]
        cap = min(caps) if caps else None
        data = fh.read() if cap is None else fh.read(cap + 1)  # one byte more shows a file that grew
    if cap is not None and len(data) > cap:
        raise DataError(f"grew past {cap:,} bytes while being read", file=file)
    return data


def _require_regular(st: os.stat_result, file: Path, limit: int | None, size: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise DataError(f"is {kind}; a bundle holds regular files only", file=file)
    if size is not None and st.st_size != size:
        raise DataError(
            f"has {st.st_size:,} bytes but the manifest lists {size:,} (truncated or replaced)", file=file
        )
    if limit is not None and st.st_size > limit:
        raise DataError(f"has {st.st_size:,} bytes, over the {limit:,}-byte limit", file=file)


def resave_hint(path: str | Path) -> str:
    """How to upgrade the format 1 bundle at ``path`` to the current format (checksums), as one sentence."""
    return (
        "re-save it once from Python, if you trust it: from attnrec.serving.bundle import bundle_extra, "
        f"load_bundle, load_bundle_items, save_bundle; p = {str(path)!r}; save_bundle(load_bundle(p, "
        "trust_code=True), NEW_DIR, items=load_bundle_items(p, trust_code=True), extra=bundle_extra(p)) "
        "(or pass --trust-bundle to use it as it is)"
    )


def read_manifest_bytes(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """``path``'s manifest.json, bytes and JSON object, read with load_bundle's file checks (else DataError)."""
    root = bundle_dir(path)
    file = root / MANIFEST
    if not os.path.lexists(file):
        raise DataError(
            "not a model bundle: manifest.json is missing", file=root, expected="a directory from save_bundle"
        )
    raw = read_file(root, MANIFEST, limit=MAX_MANIFEST_BYTES)
    manifest = parse_json(raw, file)
    if not isinstance(manifest, dict):
        raise DataError(
            f"the manifest is a JSON {type(manifest).__name__}", file=file, expected="a JSON object"
        )
    return raw, manifest


def read_manifest(root: Path, *, trust: bool, warn: bool = True) -> dict[str, Any]:
    """The manifest, checked for shape: a JSON object whose keys have the types of ``_MANIFEST_KEYS``, a readable
    format, and (format 2) a ``files`` table of known names with a sha256 and a size each. A format 1 manifest
    (no checksums) is refused unless ``trust``. ``warn``: log that a trusted format 1 bundle is unverified."""
    file = root / MANIFEST
    manifest = read_manifest_bytes(root)[1]
    for key, (kind, required) in _MANIFEST_KEYS.items():
        if key not in manifest:
            if required:
                raise DataError("required key is missing", file=file, field=key, expected=kind.__name__)
            continue
        value = manifest[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DataError(
                f"wrong type {type(value).__name__}",
                file=file,
                field=key,
                value=value,
                expected=kind.__name__,
            )
    _check_rating_range(manifest.get("extra", {}).get("rating_range"), file)
    if manifest["format"] not in READABLE_FORMATS:
        raise DataError(
            "unsupported bundle format",
            file=file,
            field="format",
            value=manifest["format"],
            expected=" or ".join(str(v) for v in READABLE_FORMATS),
        )
    if manifest["format"] >= 2:
        if "files" not in manifest:
            raise DataError("required key is missing", file=file, field="files", expected="dict")
        for name, entry in manifest["files"].items():
            field = f"files.{name}"
            if name not in BUNDLE_FILES:
                raise DataError(
                    "not a bundle file name", file=file, field=field, expected=", ".join(BUNDLE_FILES)
                )
            if not isinstance(entry, dict):
                raise DataError("wrong type", file=file, field=field, value=entry, expected="an object")
            digest, size = entry.get("sha256"), entry.get("bytes")
            if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
                raise DataError(
                    "bad checksum", file=file, field=f"{field}.sha256", value=digest, expected="64 hex digits"
                )
            if not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
                raise DataError(
                    "bad size", file=file, field=f"{field}.bytes", value=size, expected="an integer >= 0"
                )
    elif not trust:
        # an untrusted format 1 would let whoever rewrote the bundle skip every checksum by downgrading it
        raise DataError(
            "bundle format 1 has no checksums, so its files cannot be verified; it is loaded only from a "
            "source you trust",
            file=file,
            field="format",
            value=1,
            expected=f"a format {FORMAT_VERSION} bundle: {resave_hint(root)}",
        )
    elif warn:
        log.warning(
            "%s: bundle format 1 has no checksums; its files are loaded unverified (save it again)", file
        )
    return manifest


def _check_rating_range(scale: Any, file: Path) -> None:
    """A run's stored rating scale (``extra.rating_range``: ``{"range": [low, high], "source": "declared" |
    "inferred", ...}`` or null), which ``attnrec evaluate`` enforces on held-out ratings."""
    if scale is None:
        return
    bounds = scale.get("range") if isinstance(scale, dict) else None
    finite = [
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in (bounds if isinstance(bounds, list) else [])
    ]
    if not (isinstance(bounds, list) and finite == [True, True] and bounds[0] <= bounds[1]):
        raise DataError(
            "not a rating scale",
            file=file,
            field="extra.rating_range",
            value=scale,
            expected='{"range": [low, high], "source": ...} with finite low <= high',
        )
    if scale.get("source") not in ("declared", "inferred"):
        raise DataError(
            "unknown source",
            file=file,
            field="extra.rating_range.source",
            value=scale.get("source"),
            expected="'declared' or 'inferred'",
        )


def listed_files(root: Path, manifest: dict[str, Any]) -> set[str]:
    """Files the load may read: those the manifest lists (format 2), or those present (format 1; a link or FIFO
    counts as present, so that it is refused rather than skipped)."""
    if manifest["format"] >= 2:
        return set(manifest["files"])
    return {name for name in BUNDLE_FILES if os.path.lexists(root / name)}


def read_verified(root: Path, name: str, manifest: dict[str, Any], *, limit: int | None) -> bytes:
    entry = manifest["files"].get(name) if manifest["format"] >= 2 else None
    data = read_file(root, name, limit=limit, size=entry["bytes"] if entry is not None else None)
    if entry is not None:
        if len(data) != entry["bytes"]:  # shrank between stat and read
            raise DataError(
                f"has {len(data):,} bytes but the manifest lists {entry['bytes']:,}", file=root / name
            )
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise DataError(
                f"does not match its sha256 in {MANIFEST} (corrupt or changed since it was saved)",
                file=root / name,
            )
    return data


def parse_json(data: bytes, file: Path) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 at byte {exc.start}", file=file) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=file, line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer too long to convert, nesting too deep
        raise DataError(f"invalid JSON: {one_line(exc)}", file=file) from None


def read_json(root: Path, name: str, manifest: dict[str, Any]) -> Any:
    return parse_json(read_verified(root, name, manifest, limit=MAX_JSON_BYTES), root / name)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 500 else text[:500] + "..."
