"""The JSON record every benchmark script prints and optionally writes: what ran, when, with which torch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def git_commit(path: Path, short: bool = False) -> str | None:
    """The HEAD commit of the git checkout holding ``path`` (abbreviated with ``short``), None when ``path`` is in
    no git checkout or git cannot run: benchmark records name the code they ran on."""
    cmd = ["git", "-C", str(path), "rev-parse", *(["--short"] if short else []), "HEAD"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def git_state(path: Path, short: bool = False, paths: tuple[str, ...] = ("src", "benchmarks")) -> str | None:
    """:func:`git_commit` of ``path``'s checkout, with ``+dirty`` appended when files under ``paths`` (relative to
    the checkout's top, not to ``path``) differ from that commit or are untracked: the tree is shared and other
    uncommitted edits are routinely present, so a bare commit need not be the code a record ran. None as for
    :func:`git_commit`."""
    head = git_commit(path, short)
    if head is None:
        return None
    cmd = ["git", "-C", str(path), "status", "--porcelain", "--", *(f":(top){p}" for p in paths)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return f"{head}+dirty?"  # the state could not be read: do not claim a clean tree
    return f"{head}+dirty" if out.stdout.strip() else head


def write_record(bench: str, result: Any, out: Path | None, **extra: Any) -> dict[str, Any]:
    """Print ``{"bench", "command", "date", "torch", **extra, "result"}`` and write it to ``out`` when given."""
    import torch  # here, not at import: git_commit serves scripts (and peers' venvs) that need no torch

    record = {
        "bench": bench,
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        **extra,
        "result": result,
    }
    print(json.dumps(record, indent=2))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2))
    return record
