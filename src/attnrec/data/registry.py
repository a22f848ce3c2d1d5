"""Named datasets: where they are published, their checksums, how to fetch them into a cache and read them.

``fetch("ml-100k")`` downloads the publisher's archive into ``$ATTNREC_HOME`` (default ``~/.cache/attnrec``),
checks its SHA-256 and extracts it. When the publisher cannot be reached and the dataset has a
package-registry copy (ml-100k is inside the PyPI wheel ``recbole==1.2.1``), that copy is used instead, file
by file checked against SHA-256 values recorded here. The source used is logged and returned. A second call
finds the cache and downloads nothing. ``load_dataset`` reads a registered name or a path (MovieLens folder,
Amazon JSON lines, CSV/Parquet, RecBole atomic folder) into a :class:`~attnrec.data.table.Dataset`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from attnrec.data.readers.amazon import read_amazon
from attnrec.data.readers.cdsr import LOCAL_DATASETS, detect_cdsr, load_local
from attnrec.data.readers.movielens import (
    read_movielens,
    read_movielens_1m,
    read_movielens_100k,
    read_movielens_csv,
    read_movielens_recbole,
)
from attnrec.data.readers.tabular import read_recbole_atomic, read_table
from attnrec.data.table import Dataset
from attnrec.errors import AttnrecError, DataError
from attnrec.paths import cache_home, sha256_file

log = logging.getLogger(__name__)

#: seconds to wait for the publisher before falling back (this must fail fast on machines without internet)
DEFAULT_TIMEOUT = 5.0
_MARKER = ".attnrec-complete.json"


class FetchError(AttnrecError, OSError):
    """A dataset could not be fetched from any source."""


@dataclass(frozen=True)
class PypiFallback:
    """A copy of a dataset inside a wheel on PyPI: ``members`` maps a path in the wheel to its SHA-256."""

    requirement: str
    members: dict[str, str]
    reader: Callable[..., Dataset]

    @property
    def source(self) -> str:
        return f"pypi:{self.requirement}"


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset. ``sha256``/``size`` are of the publisher's archive; ``folder`` is its top
    folder."""

    name: str
    url: str
    sha256: str | None
    reader: Callable[..., Dataset]
    folder: str
    size: int | None = None
    fallback: PypiFallback | None = None
    description: str = ""
    citation: str = ""


@dataclass
class FetchResult:
    """Where the fetched files are, which source they came from, and whether the cache already had them."""

    name: str
    path: Path
    source: str
    cached: bool
    details: dict[str, Any] = field(default_factory=dict)


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
_ML_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. "
    "ACM TiiS 5(4)."
)

#: The RecBole 1.2.1 wheel (its own SHA-256: 9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407)
#: ships ml-100k converted to RecBole's atomic format. These are the SHA-256 values of its three files,
#: computed from that wheel downloaded from PyPI.
_RB = "recbole/dataset_example/ml-100k/ml-100k"
RECBOLE_ML100K = PypiFallback(
    requirement="recbole==1.2.1",
    members={
        f"{_RB}.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        f"{_RB}.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        f"{_RB}.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    },
    reader=partial(read_movielens_recbole, name="ml-100k"),
)

# Archive SHA-256 values as recorded by tensorflow/datasets (url_checksums/movielens.txt) and matched by
# several
# independent projects; GroupLens itself publishes only MD5 files.
REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> None:
    """Add (or replace) a dataset in the registry."""
    REGISTRY[spec.name] = spec


def available() -> list[str]:
    """Names of the registered datasets (fetched ones, and local research copies: ``readers/cdsr.py``)."""
    return sorted([*REGISTRY, *LOCAL_DATASETS])


register(
    DatasetSpec(
        name="ml-100k",
        url=f"{_GROUPLENS}/ml-100k.zip",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        size=4924029,
        folder="ml-100k",
        reader=read_movielens_100k,
        fallback=RECBOLE_ML100K,
        description="MovieLens 100k: 100,000 ratings (1-5) of 1,682 movies by 943 users, with demographics.",
        citation=_ML_CITATION,
    )
)
register(
    DatasetSpec(
        name="ml-1m",
        url=f"{_GROUPLENS}/ml-1m.zip",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        size=5917549,
        folder="ml-1m",
        reader=read_movielens_1m,
        description="MovieLens 1M: 1,000,209 ratings of 3,706 movies by 6,040 users, with user demographics.",
        citation=_ML_CITATION,
    )
)
register(
    DatasetSpec(
        name="ml-latest-small",
        url=f"{_GROUPLENS}/ml-latest-small.zip",
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        size=978202,
        folder="ml-latest-small",
        reader=partial(read_movielens_csv, name="ml-latest-small"),
        description="MovieLens latest-small: 100,836 ratings (0.5-5) of 9,742 movies by 610 users.",
        citation=_ML_CITATION,
    )
)


def _check_sha256(actual: str, expected: str | None, what: str | Path) -> None:
    if expected is not None and actual != expected:
        raise DataError(
            "checksum mismatch: the file is not the one registered (corrupt or changed upstream)",
            file=what,
            field="sha256",
            value=actual,
            expected=expected,
        )


def download(url: str, dest: Path, *, timeout: float = DEFAULT_TIMEOUT, progress: bool = True) -> None:
    """Download ``url`` to ``dest`` (written as ``dest.part`` then renamed). Raises OSError/URLError on
    failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:  # noqa: S310 (https only)
        total = int(resp.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name)
        try:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    part.replace(dest)


def pip_download(requirement: str, dest: Path, *, timeout: float = 300.0) -> Path:
    """``pip download --no-deps requirement`` into ``dest`` with the running interpreter; returns the wheel
    path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        requirement,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"pip download {requirement} failed: {exc}") from exc
    if proc.returncode != 0:
        raise FetchError(
            f"pip download {requirement} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download {requirement} produced no wheel in {dest}")
    return wheels[0]


def _read_marker(d: Path) -> dict[str, Any] | None:
    m = d / _MARKER
    if not m.is_file():
        return None
    try:
        return dict(json.loads(m.read_text()))
    except (OSError, ValueError):
        return None


def _write_marker(d: Path, info: dict[str, Any]) -> None:
    """Write the cache marker, with the size, mtime and SHA-256 of every file under ``d`` (see
    :func:`_verify_cache`)."""
    info = {**info, "files": _file_records(d)}
    (d / _MARKER).write_text(json.dumps(info, indent=1, sort_keys=True))


def _file_records(d: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(d.rglob("*")):
        if f.is_file() and f.name != _MARKER:
            st = f.stat()
            out[f.relative_to(d).as_posix()] = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": sha256_file(f),
            }
    return out


def _verify_cache(d: Path, info: dict[str, Any], name: str) -> None:
    """Check a cached copy against the records its marker took at fetch time, before it is used.

    Fast path: a file whose size and mtime are unchanged is taken as is; otherwise its SHA-256 is computed, and a
    different hash (an edited or corrupt file) or a missing file is a DataError telling the user to fetch again. A
    file touched but unchanged gets its new mtime recorded. A marker written before files were recorded gets its
    records now."""
    files = info.get("files")
    if not isinstance(files, dict):
        log.warning("%s: the cache at %s predates per-file checksums; recording them now", name, d)
        _write_marker(d, {k: v for k, v in info.items() if k != "files"})
        return
    refetch = f"delete {d} and run `attnrec data fetch {name}` to fetch it again"
    touched = False
    for rel, rec in files.items():
        f = d / rel
        if not f.is_file():
            raise DataError(
                "a file of the cached dataset is missing", file=f, expected=f"the file fetched; {refetch}"
            )
        st = f.stat()
        if st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns"):
            continue
        actual = sha256_file(f)
        if actual != rec.get("sha256"):
            raise DataError(
                "the cached file changed since it was fetched (edited or corrupt)",
                file=f,
                field="sha256",
                value=actual,
                expected=f"{rec.get('sha256')}, as fetched; {refetch}",
            )
        rec.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        touched = True
    if touched:
        (d / _MARKER).write_text(json.dumps(info, indent=1, sort_keys=True))


def _safe_extract(archive: Path, dest: Path, folder: str) -> Path:
    """Extract a zip, refusing absolute paths and ``..``; returns the folder holding the data."""
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            parts = Path(info.filename).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts:
                raise DataError(
                    "unsafe path in archive",
                    file=archive,
                    value=info.filename,
                    expected="relative member paths",
                )
        z.extractall(dest)
    inner = dest / folder
    return inner if inner.is_dir() else dest


def _fetch_publisher(spec: DatasetSpec, root: Path, *, timeout: float, progress: bool) -> Path:
    target = root / "grouplens"
    archive = root / Path(spec.url).name
    download(spec.url, archive, timeout=timeout, progress=progress)
    actual = sha256_file(archive)
    try:
        _check_sha256(actual, spec.sha256, archive)
    except DataError:
        archive.unlink(missing_ok=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    data_dir = _safe_extract(archive, target, spec.folder)
    archive.unlink(missing_ok=True)
    _write_marker(
        target,
        {"source": "grouplens", "url": spec.url, "sha256": actual, "path": str(data_dir.relative_to(target))},
    )
    return data_dir


def _fetch_pypi(spec: DatasetSpec, fb: PypiFallback, root: Path) -> Path:
    target = root / fb.source.replace(":", "-").replace("==", "-")
    with tempfile.TemporaryDirectory(prefix="attnrec-pip-") as tmp:
        wheel = pip_download(fb.requirement, Path(tmp))
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            for member, expected in fb.members.items():
                if member not in names:
                    raise DataError(
                        "file missing from wheel",
                        file=wheel.name,
                        value=member,
                        expected=f"{member} inside {fb.requirement}",
                    )
                data = z.read(member)
                _check_sha256(hashlib.sha256(data).hexdigest(), expected, f"{wheel.name}!{member}")
                (target / Path(member).name).write_bytes(data)
    _write_marker(target, {"source": fb.source, "members": fb.members, "path": "."})
    return target


def _cached(root: Path, spec: DatasetSpec) -> FetchResult | None:
    candidates = [root / "grouplens"]
    if spec.fallback is not None:
        fb = spec.fallback
        candidates.append(root / fb.source.replace(":", "-").replace("==", "-"))
    for d in candidates:
        info = _read_marker(d)
        if info is not None:
            _verify_cache(d, info, spec.name)
            return FetchResult(
                spec.name,
                (d / info.get("path", ".")).resolve(),
                str(info["source"]),
                True,
                {k: v for k, v in info.items() if k != "files"},
            )
    return None


def _spec(name: str) -> DatasetSpec:
    if name not in REGISTRY:
        raise DataError("unknown dataset name", value=name, expected=f"one of {available()}")
    return REGISTRY[name]


def fetch(
    name: str,
    *,
    home: str | Path | None = None,
    offline_fallback: bool = True,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> FetchResult:
    """Make a registered dataset's files available locally and say where and from which source.

    Order: the cache (no network); the publisher's URL (``timeout`` seconds to connect, archive SHA-256
    checked); then, if ``offline_fallback`` and the dataset has one, its PyPI wheel copy (each file's SHA-256
    checked). A checksum mismatch raises :class:`DataError` at once (it is never papered over by a fallback).
    Raises :class:`FetchError` when no source could be reached.
    """
    spec = _spec(name)
    root = cache_home(home) / name
    hit = _cached(root, spec)
    if hit is not None:
        log.info("%s: cached copy from %s at %s", name, hit.source, hit.path)
        return hit
    root.mkdir(parents=True, exist_ok=True)
    try:
        path = _fetch_publisher(spec, root, timeout=timeout, progress=progress)
        log.info("%s: downloaded from %s", name, spec.url)
        return FetchResult(name, path, "grouplens", False, {"url": spec.url})
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        if spec.fallback is None or not offline_fallback:
            raise FetchError(f"{name}: cannot download {spec.url}: {exc}") from exc
        log.warning("%s: cannot reach %s (%s); using %s", name, spec.url, exc, spec.fallback.source)
    path = _fetch_pypi(spec, spec.fallback, root)
    log.info("%s: extracted from %s", name, spec.fallback.source)
    return FetchResult(name, path, spec.fallback.source, False, {"requirement": spec.fallback.requirement})


_FETCH_KEYS = ("home", "offline_fallback", "progress", "timeout")


def load_dataset(name_or_path: str | Path, **kw: Any) -> Dataset:
    """A :class:`Dataset` from a registered name (fetched, see :func:`fetch`) or a path.

    Paths: a MovieLens folder (or one of its files), a RecBole atomic folder (``*.inter``), an Amazon reviews
    ``.json``/``.jsonl`` (gzip or not; a folder with one reviews file and a ``meta_*`` file is read with its
    metadata), or a ``.csv``/``.tsv``/``.parquet`` interactions table. Keyword arguments go to :func:`fetch`
    (``home``, ``offline_fallback``, ``progress``, ``timeout``) and the rest to the reader (e.g.
    ``on_bad_lines``, ``columns``, ``sep``).
    """
    fetch_kw = {k: kw.pop(k) for k in _FETCH_KEYS if k in kw}
    key = str(name_or_path)
    if isinstance(name_or_path, str) and key in REGISTRY:
        res = fetch(key, **fetch_kw)
        spec = REGISTRY[key]
        reader = spec.fallback.reader if spec.fallback and res.source == spec.fallback.source else spec.reader
        ds = reader(res.path, **kw)
        ds.name = key
        ds.notes["fetched_from"] = res.source
        return ds
    if isinstance(name_or_path, str) and key in LOCAL_DATASETS:
        return load_local(key, **kw)
    p = Path(name_or_path).expanduser()
    if not p.exists():
        raise DataError(
            "neither a registered dataset nor an existing path",
            value=key,
            expected=f"one of {available()} or a file/folder",
        )
    return _load_path(p, kw)


def _is_json(p: Path) -> bool:
    name = p.name.lower().removesuffix(".gz")
    return name.endswith((".json", ".jsonl", ".ndjson"))


def _load_path(p: Path, kw: dict[str, Any]) -> Dataset:
    cdsr = detect_cdsr(p)  # ABXI / C2DSR / LLMCDSR folders (readers/cdsr.py)
    if cdsr is not None:
        return cdsr(p, **{k: v for k, v in kw.items() if k == "on_bad_lines"})
    if p.is_dir():
        jsons = sorted(c for c in p.iterdir() if c.is_file() and _is_json(c))
        if jsons and not any(p.glob("*.inter")):
            reviews = [c for c in jsons if not c.name.startswith("meta_")]
            metas = [c for c in jsons if c.name.startswith("meta_")]
            if len(reviews) != 1 or len(metas) > 1:
                raise DataError(
                    "ambiguous Amazon folder",
                    file=p,
                    value=[c.name for c in jsons],
                    expected="one reviews file and at most one meta_* file",
                )
            return read_amazon(reviews[0], meta=metas[0] if metas else None, **kw)
        inters = sorted(p.glob("*.inter"))
        if len(inters) == 1 and not (p / "u.data").exists():
            return read_recbole_atomic(p, inters[0].name.removesuffix(".inter"), **kw)
        return read_movielens(p, **kw)
    name = p.name.lower()
    if _is_json(p):
        if name.startswith("meta_"):
            raise DataError(
                "this is an item metadata file",
                file=p,
                expected="the reviews file (pass the meta file as meta=)",
            )
        return read_amazon(p, **kw)
    if name.removesuffix(".gz") in ("u.data", "ratings.dat", "ratings.csv"):
        return read_movielens(p, **kw)
    if name.endswith(".inter"):
        return read_recbole_atomic(p.parent, p.name.removesuffix(".inter"), **kw)
    stem = name.removesuffix(".gz")
    if stem.endswith((".csv", ".tsv", ".txt", ".parquet", ".pq")):
        if stem.endswith(".tsv"):
            kw.setdefault("sep", "\t")
        return read_table(p, **kw)
    raise DataError(
        "unknown data format",
        file=p,
        expected="a MovieLens/RecBole folder, Amazon .json(.gz)/.jsonl, or .csv/.tsv/.parquet",
    )
