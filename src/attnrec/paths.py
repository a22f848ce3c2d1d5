"""Where attnrec keeps files on disk, and small helpers to name and check them.

A leaf module (standard library and :mod:`attnrec.errors` only): the dataset registry (downloads), the embedding
cache and the ONNX exports of :mod:`attnrec.text` all put their files under :func:`cache_home`, and none of them
has to import another to find it. Results are written through :func:`atomic_write` / :func:`atomic_dir` (all or nothing), into
folders checked by :func:`prepare_output_dir` before any work and locked by :class:`DirLock` for the run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from attnrec.errors import OutputError

#: environment variable that moves the cache folder
HOME_ENV = "ATTNREC_HOME"


def cache_home(home: str | Path | None = None) -> Path:
    """The cache folder: ``home``, else ``$ATTNREC_HOME``, else ``~/.cache/attnrec`` (``~`` expanded)."""
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attnrec"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (memory stays flat for large archives)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path_slug(name: str) -> str:
    """A file name for an arbitrary id (e.g. a model id such as ``org/model@rev``), unique per id.

    The readable part is the id's last ``/`` component without its ``@revision``, reduced to
    ``[A-Za-z0-9._-]`` and cut to 48 characters; 12 hex digits of the SHA-256 of the whole id follow, so two ids
    that read alike still get different names.
    """
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name.split("@")[0].rstrip("/").split("/")[-1])[:48]
    return f"{readable or 'model'}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


# ------------------------------------------------------------------------------------------------ safe outputs
def temp_name(path: Path) -> Path:
    """The temporary sibling a write of ``path`` goes through: hidden, per process, ending in ``.tmp`` (so a left-over
    one is recognisable), on the same filesystem so that :func:`os.replace` onto ``path`` is atomic."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def describe_os_error(exc: OSError) -> str:
    """``exc``'s reason in words (``No space left on device``), without Python's ``[Errno 28]`` prefix."""
    return exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc)) or type(exc).__name__


def atomic_write(path: str | Path, write: Callable[[Path], object], *, what: str = "file") -> Path:
    """Write ``path`` all at once: ``write(tmp)`` fills a temporary sibling, which then replaces ``path``.

    A failure (a full disk, an interrupt) leaves ``path`` as it was and no temporary file; an :class:`OSError`
    becomes :class:`~attnrec.errors.OutputError` naming ``path`` and ``what`` it is. (Atomic against the process
    failing, not against power loss: no fsync.)"""
    path = Path(path)
    tmp = temp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"{path}: cannot write the {what}: {describe_os_error(exc)}") from exc
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, what: str = "file") -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what=what)


@contextmanager
def atomic_dir(path: str | Path, *, what: str = "folder") -> Iterator[Path]:
    """Build a folder all at once: the ``with`` body fills the yielded temporary sibling, which is then renamed to
    ``path`` (an existing ``path`` is replaced). On any failure the temporary folder is removed and ``path`` is left
    as it was; an :class:`OSError` becomes :class:`~attnrec.errors.OutputError` naming ``path``."""
    path = Path(path)
    tmp = temp_name(path)
    old = path.with_name(f".{path.name}.{os.getpid()}.old.tmp")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        yield tmp
        if path.exists():
            os.replace(
                path, old
            )  # a folder cannot be renamed onto a non-empty one: move the old one aside first
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"{path}: cannot write the {what}: {describe_os_error(exc)}") from exc
        raise


@contextmanager
def staged_files(folder: str | Path, *, last: str | None = None, what: str = "files") -> Iterator[Path]:
    """Put several files into ``folder`` (created), each whole: the ``with`` body writes them into the yielded
    temporary folder (hidden, inside ``folder``, so that ``.`` works and no write lands beside it), then each
    replaces its namesake in ``folder`` (``last`` moved last, e.g. the report that says the others are complete).
    Other files in ``folder`` are kept. On a failure while writing, nothing reaches ``folder``; the temporary
    folder is always removed; an :class:`OSError` becomes :class:`~attnrec.errors.OutputError` naming ``folder``."""
    folder = Path(folder)
    tmp = folder / f".attnrec-staging.{os.getpid()}.tmp"
    created: list[Path] = []
    try:
        created = prepare_output_dir(folder)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        yield tmp
        for f in sorted(tmp.iterdir(), key=lambda p: (p.name == last, p.name)):
            os.replace(f, folder / f.name)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"{folder}: cannot write the {what}: {describe_os_error(exc)}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty_dirs(created)  # a failed write leaves no folder it made


def check_output_dir(path: str | Path, *, flag: str = "--out") -> list[Path]:
    """Check, creating nothing, that ``path`` can be a results folder: refused with
    :class:`~attnrec.errors.OutputError` naming ``flag`` and the path when ``path`` or one of its parents is a file,
    or the folder (or the nearest existing parent) is not writable. Returns the folders still missing, outermost
    first."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path}: is a file, not a folder (give a folder for the results)")
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{flag} {path}: {probe} is a file, so the folder cannot be created there")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "the folder is" if probe == path else f"cannot create it: {probe} is"
        raise OutputError(f"{flag} {path}: {what} not writable")
    return missing[::-1]


def prepare_output_dir(path: str | Path, *, flag: str = "--out") -> list[Path]:
    """:func:`check_output_dir`, then create the folder (with missing parents) before any work is done. Returns
    the folders it created, outermost first, so that a failed run can remove them again (:func:`remove_empty_dirs`)."""
    missing = check_output_dir(path, flag=flag)
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot create the folder: {describe_os_error(exc)}") from None
    return missing


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove those of ``dirs`` (as :func:`prepare_output_dir` returned them) that are still empty, deepest first."""
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            return  # not empty (the run wrote there) or already gone: its parents stay too


#: the lock file of a run folder
LOCK_NAME = ".attnrec.lock"


class DirLock:
    """An exclusive lock on a folder for one run: ``fcntl.flock`` on ``LOCK_NAME`` inside it, holding the owner's pid.

    A second run on the same folder fails at once with :class:`~attnrec.errors.OutputError` naming the folder and
    the holder's pid. The kernel drops the lock when its process dies (even by ``kill -9``), so a lock file left by
    a dead run is never stale: the next run takes it. The lock nests within one thread (a run on ``out`` whose
    trainer checkpoints into ``out`` itself takes it twice); another thread or process is refused. POSIX only (where
    ``fcntl`` is missing, no lock is taken); not reliable on network filesystems without ``flock`` support."""

    #: the locks this process holds: resolved folder -> (thread id, nesting depth)
    _held: ClassVar[dict[Path, tuple[int, int]]] = {}

    def __init__(self, folder: str | Path, *, hint: str = "give another --out") -> None:
        self.folder = Path(folder)
        self.hint = hint
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._nested = False

    def holder(self) -> str:
        """The pid recorded in the lock file ('unknown' when it cannot be read)."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self) -> DirLock:
        """Take the lock or raise :class:`~attnrec.errors.OutputError`; returns self."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        key = self.folder.resolve()
        owner = self._held.get(key)
        if owner is not None and owner[0] == threading.get_ident():
            self._held[key] = (owner[0], owner[1] + 1)
            self._nested = True
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(
                    f"{self.path}: cannot create the run's lock file: {describe_os_error(exc)}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(
                    f"{self.folder} is in use by another attnrec run (pid {self.holder()}, lock file {self.path}): "
                    f"wait for it to finish, or {self.hint}"
                ) from None
            try:  # the previous holder unlinks the file on release: a lock on an unlinked file protects nothing
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)  # e.g. a full disk: the lock goes with the file, else held for the process's life
            raise OutputError(
                f"{self.path}: cannot write the run's lock file: {describe_os_error(exc)}"
            ) from None
        self._fd = fd
        self._held[key] = (threading.get_ident(), 1)
        return self

    def release(self) -> None:
        """Drop the lock and its file (unlinked while still held, so no other run can lock a file about to vanish)."""
        key = self.folder.resolve()
        if self._nested:
            thread, depth = self._held[key]
            self._held[key] = (thread, depth - 1)
            self._nested = False
            return
        if self._fd is None:
            return
        self._held.pop(key, None)
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
