"""The byte layer under every reader of a user's file: open (gzip or plain), size limits, decoding, lines.

Every path that reads a file a user hands us (``data info``/``data split``, ``train --data/--train/--valid/--test``,
``evaluate --test/--exclude``, ``recommend --users-file``, ``--items``, CTR rows) reads it through here, so a bad
file fails the same way everywhere: a :class:`~attnrec.errors.DataError` naming the file and, where it applies,
the line and the value.

**Line numbers** are 1-based physical line numbers of the file as a text editor shows them (after gunzipping):
the header, when there is one, is line 1, and blank lines are counted although they are skipped.

**Limits.** A file read whole into memory may hold at most ``$ATTNREC_MAX_INPUT_BYTES`` bytes
(:data:`DEFAULT_MAX_BYTES` by default; for a gzip file this counts the inflated bytes), and a gzip file may inflate
to at most ``$ATTNREC_MAX_GZIP_RATIO`` times its compressed size (:data:`DEFAULT_MAX_RATIO`; checked once more than
:data:`RATIO_FLOOR` bytes came out, so small files never trip it). Both stop a decompression bomb after a bounded
amount of work, and the error names the variable to raise. Streaming readers (the CTR block reader) keep only the
ratio limit, since their memory is bounded by a block.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import polars as pl

from attnrec.errors import ConfigError, DataError

#: environment variable: the most bytes (inflated) a file read whole may hold
MAX_BYTES_ENV = "ATTNREC_MAX_INPUT_BYTES"
#: environment variable: the most a gzip file may inflate, as a multiple of its compressed size
MAX_RATIO_ENV = "ATTNREC_MAX_GZIP_RATIO"
DEFAULT_MAX_BYTES = 4 << 30
# Far above the ratio of real data files (repetitive review text included) and far below what deflate reaches on
# a run of one byte (its maximum), so a bomb stops after RATIO_FLOOR inflated bytes.
DEFAULT_MAX_RATIO = 250.0
#: inflated bytes below which the ratio limit is not checked
RATIO_FLOOR = 64 << 20

GZIP_MAGIC = b"\x1f\x8b"
#: the UTF-8 byte-order mark (some Windows tools start a file with it); never part of the data
BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20
#: compressed or archive formats we do not read, by their magic bytes (named in the error)
_OTHER_ARCHIVES = (
    ("zip", b"PK\x03\x04"),
    ("bzip2", b"BZh"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("7z", b"7z\xbc\xaf\x27\x1c"),
)


@dataclass(frozen=True)
class ReadLimits:
    """``max_bytes``: most bytes (inflated) of a file read whole, None for a streaming read; ``max_ratio``: most a
    gzip file may inflate relative to its compressed size."""

    max_bytes: int | None
    max_ratio: float

    @classmethod
    def from_env(cls, *, streaming: bool = False) -> ReadLimits:
        """The limits set by ``$ATTNREC_MAX_INPUT_BYTES`` / ``$ATTNREC_MAX_GZIP_RATIO`` (defaults when unset)."""
        max_bytes = None if streaming else int(_env_number(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))
        return cls(max_bytes, _env_number(MAX_RATIO_ENV, DEFAULT_MAX_RATIO))


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also rejects NaN
        raise ConfigError(f"${name}={raw!r}: expected a positive number")
    return value


def regular_file(path: str | Path) -> Path:
    """``path`` after checking it names an existing regular file (a FIFO, device or folder is refused: reading one
    could block forever or never end)."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file", file=p, expected="an existing file")
    if not p.is_file():
        raise DataError(
            "not a regular file", file=p, expected="a regular file (not a folder, FIFO or device)"
        )
    return p


class _GuardedGzip(io.RawIOBase):
    """A gzip stream that raises DataError when it inflates past a limit or is corrupt, instead of OSError or
    MemoryError later."""

    def __init__(self, path: Path, limits: ReadLimits) -> None:
        self.path = path
        self.limits = limits
        self._raw = path.open("rb")
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="rb")
        self.inflated = 0

    def readable(self) -> bool:
        return True

    def _read(self, n: int) -> bytes:
        try:
            data = self._gz.read(n)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"corrupt gzip file: {exc}", file=self.path, expected="a complete gzip stream"
            ) from None
        self.inflated += len(data)
        self._check()
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._read(len(b))
        b[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        # RawIOBase.readall would read in 8 KiB pieces
        return b"".join(iter(lambda: self._read(_CHUNK), b""))

    def _check(self) -> None:
        lim = self.limits
        if lim.max_bytes is not None and self.inflated > lim.max_bytes:
            raise DataError(
                f"gzip file inflates to more than {lim.max_bytes} bytes",
                file=self.path,
                expected=f"at most ${MAX_BYTES_ENV}={lim.max_bytes} bytes; set {MAX_BYTES_ENV} higher to read it",
            )
        if self.inflated > RATIO_FLOOR and self.inflated > lim.max_ratio * max(self._raw.tell(), 1):
            raise DataError(
                f"gzip file inflates more than {lim.max_ratio:g} times its compressed size (a decompression bomb?)",
                file=self.path,
                expected=f"at most ${MAX_RATIO_ENV}={lim.max_ratio:g}; set {MAX_RATIO_ENV} higher to read it",
            )

    def close(self) -> None:
        try:
            self._gz.close()
        finally:
            self._raw.close()
            super().close()


def open_input(path: str | Path, limits: ReadLimits | None = None, *, streaming: bool = False) -> IO[bytes]:
    """A binary stream of the file's bytes, gunzipped when it starts with the gzip magic number (whatever its
    suffix), under ``limits`` (default: from the environment; ``streaming`` drops the total-size limit)."""
    p = regular_file(path)
    lim = limits or ReadLimits.from_env(streaming=streaming)
    with p.open("rb") as fh:
        head = fh.read(6)
    for kind, sig in _OTHER_ARCHIVES:
        if head.startswith(sig):
            raise DataError(
                f"a {kind} file",
                file=p,
                expected=f"gzip or plain text, or Parquet (unpack the {kind} file first)",
            )
    if head[:2] == GZIP_MAGIC:
        return io.BufferedReader(_GuardedGzip(p, lim), buffer_size=_CHUNK)
    if lim.max_bytes is not None and p.stat().st_size > lim.max_bytes:
        raise DataError(
            f"file is larger than {lim.max_bytes} bytes ({p.stat().st_size})",
            file=p,
            expected=f"at most ${MAX_BYTES_ENV}={lim.max_bytes} bytes; set {MAX_BYTES_ENV} higher to read it",
        )
    return p.open("rb")


def check_parquet_size(path: str | Path, limits: ReadLimits | None = None) -> None:
    """Refuse a Parquet file whose columns would take more than ``$ATTNREC_MAX_INPUT_BYTES`` decoded, estimated from
    its footer before anything is decoded (a small file of one repeated value can otherwise fill the memory); a
    footer that cannot be read is left to the reader to report."""
    import pyarrow.parquet as pq

    p = regular_file(path)
    lim = limits or ReadLimits.from_env()
    if lim.max_bytes is None:
        return
    try:
        meta = pq.read_metadata(p)
    except Exception:  # noqa: BLE001 - a broken footer: the Parquet reader's own error names it
        return
    # encoded pages can be tiny (run-length encoding of one repeated value): at least 8 bytes per decoded value,
    # counted at the leaves (a list cell holds many values: one row can hold millions)
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    encoded = sum(g.total_byte_size for g in groups)
    values = sum(g.column(j).num_values for g in groups for j in range(g.num_columns))
    total = max(encoded, meta.num_rows * meta.num_columns * 8, values * 8)
    if total > lim.max_bytes:
        raise DataError(
            f"Parquet file decodes to at least {total} bytes ({meta.num_rows} rows x {meta.num_columns} columns, "
            f"{values} values), more than {lim.max_bytes}",
            file=p,
            expected=f"at most ${MAX_BYTES_ENV}={lim.max_bytes} bytes; set {MAX_BYTES_ENV} higher to read it",
        )


def iter_blocks(path: str | Path, block_bytes: int) -> Iterator[tuple[bytes, int]]:
    """``(text ending in a newline, number of its first line)`` blocks of about ``block_bytes`` bytes of the file
    (gunzipped; a leading byte-order mark dropped): the streaming readers' one pass (CTR rows, review dumps), with
    memory bounded by a block whatever the file's size (the gzip-bomb ratio limit still holds)."""
    line = 1
    rest = b""
    with open_input(path, streaming=True) as fh:
        try:
            while buf := fh.read(block_bytes):
                if line == 1 and not rest:
                    buf = buf.removeprefix(BOM)
                data = rest + buf if rest else buf
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                chunk, rest = data[: cut + 1], data[cut + 1 :]
                yield chunk, line
                line += chunk.count(b"\n")
        except (OSError, EOFError) as exc:
            raise DataError(
                f"cannot read: {exc}", file=path, expected="a readable (gzip or plain) file"
            ) from exc
    if rest:
        yield rest + b"\n", line


def read_bytes(path: str | Path, limits: ReadLimits | None = None) -> bytes:
    """The whole file's bytes (gunzipped when gzip), within the size limits."""
    with open_input(path, limits) as fh:
        return fh.read()


def decode_text(data: bytes, path: str | Path, *, encoding: str = "utf-8", first_line: int = 1) -> str:
    """Decode a whole file (a UTF-8 byte-order mark is dropped). A byte that is not valid ``encoding``, or a NUL
    byte (binary data, or UTF-16 text), raises DataError with its line number (``data`` may be a block of a file
    that starts on line ``first_line``)."""
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8") and data.startswith(BOM):
        data = data[len(BOM) :]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"a NUL byte at byte {nul} (binary data, or UTF-16 text?)",
            file=path,
            line=data.count(b"\n", 0, nul) + first_line,
            value=data[max(0, nul - 8) : nul + 8],
            expected=f"{encoding} text",
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"bytes that are not {encoding} at byte {exc.start}",
            file=path,
            line=data.count(b"\n", 0, exc.start) + first_line,
            value=data[exc.start : exc.start + 8],
            expected=f"{encoding} text",
        ) from None


def read_text(path: str | Path, *, encoding: str = "utf-8", limits: ReadLimits | None = None) -> str:
    """The whole file as text: :func:`read_bytes` then :func:`decode_text`."""
    return decode_text(read_bytes(path, limits), path, encoding=encoding)


def text_lines(text: str, path: str | Path, *, skip_first: int = 0) -> pl.DataFrame:
    """Split text into a ``(line: Int64, text: String)`` frame of its non-blank lines (``\\r\\n`` and lone
    ``\\r`` line ends accepted).

    ``line`` is the 1-based physical line number in the file; the first ``skip_first`` lines (headers) are left
    out. Raises DataError when no data line remains (an empty file).
    """
    if "\n" not in text and "\r" in text:  # old Mac line ends
        text = text.replace("\r", "\n")
    # split by Python, then one copy into Polars: Polars' str.split + explode held the text about five times over
    # at once; the "\r" strip and the blank-line filter copy the column only when there is something to strip or
    # drop. Reading a 224 MB train.csv with review text peaked at 1.6 GB, 1.05 GB now (BENCHMARKS.md, issue 19)
    lines = pl.Series("text", text.split("\n"), dtype=pl.String).to_frame()
    lines = lines.with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))
    if "\r" in text:
        lines = lines.with_columns(pl.col("text").str.strip_suffix("\r"))
    # \S: a character that is not Unicode white space, the set strip_chars() strips
    keep = lines.select((pl.col("line") > skip_first) & pl.col("text").str.contains(r"\S")).to_series()
    if not keep.all():
        lines = lines.filter(keep)
    if lines.height == 0:
        raise DataError("empty file: no data lines", file=path, expected="at least one data line")
    return lines


def read_id_list(path: str | Path, *, what: str = "user id") -> list[str]:
    """Ids from a file with one id per line (gzip or plain UTF-8; blank lines skipped, spaces around an id trimmed).

    A line holding a separator (comma, tab) is an error naming its line: the file is a table, not a list."""
    lines = text_lines(read_text(path), path)
    ids = lines["text"].str.strip_chars()
    bad = ids.str.contains(r"[,\t]")
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataError(
            f"more than one field on a line of a {what} list",
            file=path,
            line=int(lines["line"][row]),
            value=ids[row],
            expected=f"one {what} per line",
        )
    return ids.to_list()
