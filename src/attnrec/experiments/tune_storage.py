"""Where a tuning study lives (:mod:`attnrec.experiments.tune`): opening an Optuna storage, and the file lock the
workers of one machine take turns on. Imports only Optuna, so a worker opens its storage before the heavy imports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attnrec.errors import ConfigError, require


def open_storage(url: str | None) -> Any:
    """An Optuna storage: None = in memory (one process); ``sqlite:///path`` waits up to 60 s on a locked file, so
    workers on one machine share it; any other database URL goes to Optuna's RDB storage as is.

    Workers starting together would race to create the schema (Optuna's tables and its version row): on SQLite
    they take turns under ``<db>.lock``; on a server a worker that loses the race retries and finds the schema."""
    optuna = require("optuna", "tune")
    if url is None:
        return None
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    lock = sqlite_lock(url)
    if lock is not None:
        lock.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        try:
            with asking(lock):
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:
            racing = any(s in str(exc) for s in ("locked", "exists", "UNIQUE", "Duplicate", "duplicate"))
            if attempt == 4 or not racing:
                raise ConfigError(f"--storage {url}: cannot open it ({type(exc).__name__}: {exc})") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def sqlite_lock(url: str) -> Path | None:
    """``<db>.lock`` beside a ``sqlite:///<db>`` file (what the workers of one machine take turns on), else None."""
    return Path(url.removeprefix("sqlite:///") + ".lock") if url.startswith("sqlite:///") else None


@contextmanager
def asking(lock: Path | None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (blocking; nothing when None or off POSIX)."""
    if lock is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
