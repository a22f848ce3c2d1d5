"""Where attnrec keeps files on disk, and small helpers to name and check them.

A leaf module (standard library only): the dataset registry (downloads), the embedding cache and the ONNX
exports of :mod:`attnrec.text` all put their files under :func:`cache_home`, and none of them has to import
another to find it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

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
