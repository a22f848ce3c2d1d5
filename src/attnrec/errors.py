"""Errors that name the thing: file, line, field, value and what was expected."""

from __future__ import annotations

from pathlib import Path


class AttnrecError(Exception):
    """Base class of every error attnrec raises on purpose (the CLI prints these without a traceback)."""


class DataError(AttnrecError, ValueError):
    """Bad input data. Carries where it is (file, line, field) and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        value: object = None,
        expected: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.value = value
        self.expected = expected
        parts: list[str] = []
        if self.file is not None:
            parts.append(self.file if line is None else f"{self.file}:{line}")
        elif line is not None:
            parts.append(f"line {line}")
        if field is not None:
            parts.append(f"field {field!r}")
        if value is not None:
            shown = repr(value)
            parts.append(f"value {shown[:80] + '...' if len(shown) > 80 else shown}")
        where = ", ".join(parts)
        text = f"{where}: {message}" if where else message
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class ConfigError(AttnrecError, ValueError):
    """A bad configuration value or an unknown key."""


class OutputError(AttnrecError, OSError):
    """A result cannot be written where it was asked for (a file where a folder is expected, no permission, a full
    disk) or its folder is in use by another run; names the path. Nothing half-written is left behind."""


class UnknownIdError(AttnrecError, KeyError):
    """An external user or item id that the vocabulary does not know."""

    def __init__(self, kind: str, ids: list[object], total: int | None = None) -> None:
        self.kind = kind
        self.ids = ids
        shown = ", ".join(repr(i) for i in ids[:5])
        more = f" and {total - 5} more" if total is not None and total > 5 else ""
        super().__init__(f"unknown {kind} id(s): {shown}{more}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingExtraError(AttnrecError, ImportError):
    """An optional dependency is not installed; names the extra that provides it."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is needed for this; install it with: pip install 'attnrec[{extra}]'")


def require(module: str, extra: str):  # type: ignore[no-untyped-def]
    """Import an optional dependency lazily, raising MissingExtraError naming the extra if absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra) from exc
