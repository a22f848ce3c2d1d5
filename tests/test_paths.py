"""attnrec.paths: the cache folder, file checksums and id slugs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from attnrec.paths import cache_home, path_slug, sha256_file


def test_cache_home_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTNREC_HOME", str(tmp_path / "env"))
    assert cache_home() == tmp_path / "env"
    assert cache_home(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("ATTNREC_HOME")
    assert cache_home() == Path.home() / ".cache" / "attnrec"
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_home("~/c") == tmp_path / "h" / "c"


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 2 MiB: several 1 MiB chunks and a partial one
    f = tmp_path / "blob"
    f.write_bytes(data)
    assert sha256_file(f) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_path_slug() -> None:
    digest = hashlib.sha256(b"sentence-transformers/all-MiniLM-L6-v2@abc").hexdigest()[:12]
    assert path_slug("sentence-transformers/all-MiniLM-L6-v2@abc") == f"all-MiniLM-L6-v2-{digest}"
    # same readable part, different ids -> different names
    assert path_slug("a/model") != path_slug("b/model")
    assert path_slug("a/model").startswith("model-")
    assert path_slug("x/we ird:name").startswith("we_ird_name-")
    assert path_slug("@rev").startswith("model-")
    assert len(path_slug("o/" + "n" * 100)) == 48 + 1 + 12
