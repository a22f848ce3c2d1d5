"""Rebuild the MMRec peer copy that ``mm_peer_mmrec.py`` runs (issue 15): a ``git archive`` of MMRec's pinned commit in
a folder outside this repository, with the CPU/compatibility patches every earlier peer row ran under.

    .venv/bin/python benchmarks/mm_peer_setup.py --repo PATH_OR_URL_OF_enoche/MMRec [--dest /work/peers/MMRec]

MMRec's code is never copied into this repository: ``--dest`` inside it is refused. The script writes ``DEST/COMMIT``
(read back by ``mm_peer_mmrec.mmrec_commit`` into every peer record), applies :data:`PATCHES` — each a literal
replacement whose target must occur exactly the stated number of times, else it stops naming the file and the
target, so a different MMRec commit cannot be patched silently — and lists them in ``DEST/ATTNREC_PATCHES.md``.
Then it prints the two peer venvs' install commands (:data:`VENV_COMMANDS`; run them by hand: they download torch).
Checked on 2026-12-07 from a mirror of enoche/MMRec: all 10 patches apply at the pinned commit, and MMRec's FREEDOM,
LATTICE, BM3, VBPR, LightGCN, MMGCN, GRCN and SLMRec each ran 3 epochs on a toy folder (``mm_peer_mmrec.run_mmrec``)
in a venv of torch 2.13 CPU, scipy 1.17, numpy 2.4, pandas 3.1, pyyaml and torch_geometric 2.8.0.post1; GRCN's
text-only path (the patched line) ran on the text-only Food-Kitchen export afterwards (3 timed training batches,
``mm_peer_mmrec.py --probe-batches``, 2026-12-07).
The patches are the ones BENCHMARKS.md's issue-15 sections list (first and second pass), plus scipy's and, from
2026-12-07 (session 25), GRCN's text-only typo: none changes a model's computation where it ran before. They move
tensors to the configured device instead of CUDA, replace numpy's removed ``np.float`` and scipy's removed
``dok_matrix._update`` (FREEDOM, BM3 and LightGCN build their adjacency with it), name GRCN's text representation
as its own later lines read it (a set without image features failed), and make imports optional that only MMRec's
image-file path uses (lmdb, torchvision) or that a CPU build lacks
(torch_scatter, whose ``scatter`` torch_geometric provides).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
from pathlib import Path

#: the MMRec commit every peer row of BENCHMARKS.md ran
MMREC_COMMIT = "e775373b3ab1354a92165b0885ce4ab3dc4d7497"

#: (file under the copy, target text, replacement, occurrences of the target, why)
PATCHES: list[tuple[str, str, str, int, str]] = [
    (
        "src/models/lattice.py",
        "_adj.cuda()",
        "_adj.to(self.device)",
        2,
        "the frozen image/text graphs were moved to CUDA unconditionally",
    ),
    (
        "src/utils/metrics.py",
        "np.float)",
        "float)",
        4,
        "np.float was removed in numpy 1.24",
    ),
    (
        "src/utils/dataset.py",
        "from utils.data_utils import (ImageResize, ImagePad, image_to_tensor, load_decompress_img_from_lmdb_value)\n"
        "import lmdb\n",
        "try:  # image-file path only (torchvision, lmdb); not used with feature files\n"
        "    from utils.data_utils import (ImageResize, ImagePad, image_to_tensor, load_decompress_img_from_lmdb_value)\n"
        "    import lmdb\n"
        "except ImportError:\n"
        "    lmdb = None\n",
        1,
        "imports only the raw-image path needs",
    ),
    (
        "src/models/grcn.py",
        "reg_content_loss = torch.zeros(1).cuda()",
        "reg_content_loss = torch.zeros(1).to(self.device)",
        1,
        "CUDA hard-coded in every training step",
    ),
    (
        "src/models/grcn.py",
        "self.word_tensor = torch.LongTensor(features).cuda()",
        "self.word_tensor = torch.LongTensor(features).to(getattr(features, 'device', 'cpu'))",
        1,
        "CUDA hard-coded on the word-feature path (unused with dense features)",
    ),
    (
        "src/models/grcn.py",
        "                conetent_rep = t_rep\n",
        "                content_rep = t_rep\n",
        1,
        "a misspelt name left content_rep None on a set without image features (its forward then fails); "
        "a set with them never takes this branch",
    ),
    *(
        (
            f"src/models/{name}.py",
            "        A._update(data_dict)\n",
            "        for (row, col), value in data_dict.items():  # scipy >= 1.12's dok has no _update\n"
            "            A[row, col] = value\n",
            1,
            "scipy 1.12 dropped dok_matrix._update; the same entries set one by one, as MMRec's own mmgcf.py does",
        )
        for name in ("freedom", "bm3", "lightgcn")
    ),
    (
        "src/models/slmrec.py",
        "from torch_scatter import scatter\n",
        "try:\n"
        "    from torch_scatter import scatter\n"
        "except ImportError:  # torch_geometric ships the same function\n"
        "    from torch_geometric.utils import scatter\n",
        1,
        "torch_scatter has no wheel for this CPU torch; the file's only scatter( call is commented out",
    ),
]

#: the peer venvs (torch 2.13 CPU, as our .venv), run by hand
VENV_COMMANDS = [
    "python3 -m venv /work/mmrec-venv",
    "/work/mmrec-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
    "/work/mmrec-venv/bin/pip install numpy scipy pandas pyyaml torch_geometric==2.8.0.post1",
    "python3 -m venv /work/cornac-venv",
    "/work/cornac-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
    "/work/cornac-venv/bin/pip install cornac==3.0.1",
]


def apply_patches(root: Path, patches: list[tuple[str, str, str, int, str]] = PATCHES) -> list[str]:
    """Apply ``patches`` under ``root`` (all checked before any file is written); returns one line per patch.
    Raises ``ValueError`` naming the file and target when a target does not occur the stated number of times."""
    texts: dict[str, str] = {}
    for rel, old, _, count, _ in patches:
        path = root / rel
        if not path.is_file():
            raise ValueError(f"{path}: no such file (is this MMRec {MMREC_COMMIT[:7]}?)")
        text = texts.get(rel, path.read_text(encoding="utf-8"))
        found = text.count(old)
        if found != count:
            raise ValueError(f"{path}: {old.splitlines()[0]!r} occurs {found} time(s), expected {count}")
        texts[rel] = text
    lines = []
    for rel, old, new, count, why in patches:
        texts[rel] = texts[rel].replace(old, new)
        lines.append(f"* `{rel}`: `{old.splitlines()[0]}` → `{new.splitlines()[0]}` ({count}×) — {why}")
    for rel, text in texts.items():
        (root / rel).write_text(text, encoding="utf-8")
    return lines


def export(repo: str, commit: str, dest: Path) -> None:
    """``git archive`` of ``commit`` from ``repo`` (a local repository or a URL to clone) into ``dest``."""
    if "://" in repo or repo.startswith("git@"):
        clone = dest.parent / (dest.name + ".git")
        subprocess.run(["git", "clone", "--bare", "--quiet", repo, str(clone)], check=True)
        repo = str(clone)
    archive = subprocess.run(["git", "-C", repo, "archive", commit], check=True, capture_output=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        # the "data" filter (no absolute paths, links out of dest, devices) where this Python has it (3.11.4+)
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", required=True, help="a clone of enoche/MMRec (any path git can read) or its URL")
    p.add_argument("--dest", type=Path, default=Path("/work/peers/MMRec"))
    p.add_argument("--commit", default=MMREC_COMMIT)
    a = p.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    dest = a.dest.resolve()
    if dest == here or here in dest.parents:
        raise SystemExit(f"--dest {dest} is inside this repository: MMRec's code must stay outside it")
    if dest.exists():
        raise SystemExit(f"--dest {dest} exists: remove it first (a fresh copy of {a.commit[:7]} is made)")
    export(a.repo, a.commit, dest)
    lines = apply_patches(dest)
    (dest / "COMMIT").write_text(a.commit + "\n", encoding="utf-8")
    (dest / "ATTNREC_PATCHES.md").write_text(
        f"# Patches applied by attnrec's benchmarks/mm_peer_setup.py to MMRec {a.commit}\n\n"
        + "\n".join(lines)
        + "\n",
        encoding="utf-8",
    )
    print(f"MMRec {a.commit} in {dest}, {len(lines)} patches ({dest / 'ATTNREC_PATCHES.md'})")
    print("peer venvs (if absent):\n  " + "\n  ".join(VENV_COMMANDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
