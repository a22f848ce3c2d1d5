"""benchmarks/mm_peer_setup.py: the MMRec peer copy is rebuilt outside the repository, at its pinned commit, with
every patch applied exactly where it was meant to be (or not at all)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from attnrec.testing.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "mm_peer_setup.py"


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    return load_script(BENCH)


def _tree(root: Path, setup) -> None:  # type: ignore[no-untyped-def]
    """A fake MMRec tree holding each patch target as often as the patch expects."""
    for rel, old, _, count, _ in setup.PATCHES:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        body = path.read_text() if path.exists() else "import torch\n"
        path.write_text(body + "".join(f"x{k} = {old}\n" if "\n" not in old else old for k in range(count)))


def test_every_patch_is_applied_once_per_expected_site(setup, tmp_path):  # type: ignore[no-untyped-def]
    _tree(tmp_path, setup)
    lines = setup.apply_patches(tmp_path)
    assert len(lines) == len(setup.PATCHES)
    for rel, old, new, _, _ in setup.PATCHES:
        text = (tmp_path / rel).read_text()
        assert new in text
        assert old not in text.replace(new, "")  # no site left unpatched
    assert ".cuda()" not in (tmp_path / "src/models/grcn.py").read_text()


def test_a_target_found_a_different_number_of_times_stops_before_writing(setup, tmp_path):  # type: ignore[no-untyped-def]
    _tree(tmp_path, setup)
    lattice = tmp_path / "src/models/lattice.py"
    lattice.write_text(lattice.read_text() + "y = image_adj.cuda()\n")  # a third site: another MMRec version
    before = {p: p.read_text() for p in tmp_path.rglob("*.py")}
    with pytest.raises(ValueError, match=r"lattice.py: '_adj.cuda\(\)' occurs 3 time\(s\), expected 2"):
        setup.apply_patches(tmp_path)
    assert {p: p.read_text() for p in tmp_path.rglob("*.py")} == before  # nothing half-patched


def test_the_copy_is_a_patched_archive_of_the_commit_outside_the_repository(setup, tmp_path):  # type: ignore[no-untyped-def]
    repo = tmp_path / "mmrec"
    _tree(repo, setup)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "fake MMRec")
    commit = git("rev-parse", "HEAD").strip()
    dest = tmp_path / "peers" / "MMRec"
    assert setup.main(["--repo", str(repo), "--dest", str(dest), "--commit", commit]) == 0
    assert (dest / "COMMIT").read_text().strip() == commit
    assert "_adj.to(self.device)" in (dest / "src/models/lattice.py").read_text()
    assert len((dest / "ATTNREC_PATCHES.md").read_text().splitlines()) == 2 + len(setup.PATCHES)
    with pytest.raises(SystemExit, match="exists"):
        setup.main(["--repo", str(repo), "--dest", str(dest), "--commit", commit])
    with pytest.raises(SystemExit, match="inside this repository"):
        setup.main(["--repo", str(repo), "--dest", str(BENCH.parent / "MMRec"), "--commit", commit])
