"""benchmarks/_record.py's git_commit: the commit every benchmark script records beside its results."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from attnrec.testing.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "_record.py"


def test_git_commit_is_the_checkouts_head_full_or_short() -> None:
    record = load_script(RECORD)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout here (an sdist or a copied tree)")
    full = record.git_commit(ROOT / "benchmarks")
    assert full == head.stdout.strip() and re.fullmatch(r"[0-9a-f]{40}", full)
    short = record.git_commit(ROOT, short=True)
    assert short is not None and 4 <= len(short) < 40 and full.startswith(short)


def test_git_commit_outside_a_checkout_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = load_script(RECORD)
    # git must find no checkout from the probe whatever the environment: no GIT_DIR / GIT_WORK_TREE pointing at one,
    # and no search above tmp_path (a TMPDIR inside a checkout would otherwise give that checkout's HEAD)
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.resolve()))
    probe = tmp_path / "probe"
    probe.mkdir()
    found = subprocess.run(
        ["git", "-C", str(probe), "rev-parse", "--git-dir"], capture_output=True, text=True
    )
    if found.returncode == 0:
        pytest.skip(f"git still finds a checkout from {probe}: {found.stdout.strip()}")
    assert record.git_commit(probe) is None
    assert record.git_commit(probe / "missing") is None
