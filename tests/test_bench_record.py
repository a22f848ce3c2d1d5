"""benchmarks/_record.py's git_commit: the commit every benchmark script records beside its results."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from attnrec.testing.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "_record.py"


def test_git_commit_is_the_checkouts_head_full_or_short() -> None:
    record = load_script(RECORD)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        import pytest

        pytest.skip(f"{ROOT} is not a git checkout here (an sdist or a copied tree)")
    full = record.git_commit(ROOT / "benchmarks")
    assert full == head.stdout.strip() and re.fullmatch(r"[0-9a-f]{40}", full)
    short = record.git_commit(ROOT, short=True)
    assert short is not None and 4 <= len(short) < 40 and full.startswith(short)


def test_git_commit_outside_a_checkout_is_none(tmp_path: Path) -> None:
    record = load_script(RECORD)
    assert record.git_commit(tmp_path) is None  # tmp is in no git checkout
    assert record.git_commit(tmp_path / "missing") is None
