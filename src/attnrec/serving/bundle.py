"""Model bundles: a directory holding safetensors weights, a JSON manifest (model name, task, config, versions)
and the vocabularies. Loading never unpickles anything: safetensors and JSON only.

Layout::

    bundle/
      manifest.json     {"format": 1, "model": name, "task": ..., "config": {...}, "attnrec": version, "extra": {...}}
      weights.safetensors  the model's tensors plus the seen-items matrix (``_seen.indptr``, ``_seen.indices``)
      users.json, items.json   vocabularies (external ids by index), when the model has them
      extra.json        the model's other JSON artifacts (e.g. a CTR feature schema)
      items.parquet     optional item metadata (e.g. titles) aligned by item_id
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

import attnrec
from attnrec.data.vocab import Vocabulary
from attnrec.errors import DataError
from attnrec.models.base import Recommender, get_model_class

FORMAT_VERSION = 1
_SEEN = "_seen."


def save_bundle(
    model: Recommender,
    path: str | Path,
    *,
    items: pl.DataFrame | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to directory ``path`` (created). ``items``: optional metadata keyed by ``item_id``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_tensors().items()}
    if model.seen is not None:
        seen = model.seen.tocsr()
        tensors[_SEEN + "indptr"] = torch.from_numpy(seen.indptr.astype(np.int64))
        tensors[_SEEN + "indices"] = torch.from_numpy(seen.indices.astype(np.int64))
    save_file(tensors, str(out / "weights.safetensors"))
    manifest = {
        "format": FORMAT_VERSION,
        "model": model.name,
        "model_class": f"{type(model).__module__}:{type(model).__qualname__}",
        "task": str(model.task),
        "config": model.config.to_dict(),
        "attnrec": attnrec.__version__,
        "torch": torch.__version__,
        "extra": extra or {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if model.user_vocab is not None:
        model.user_vocab.save(out / "users.json")
    if model.item_vocab is not None:
        model.item_vocab.save(out / "items.json")
    (out / "extra.json").write_text(json.dumps(model.bundle_json()))
    if items is not None:
        items.write_parquet(out / "items.parquet")
    return out


def load_bundle(path: str | Path) -> Recommender:
    """Load a bundle written by :func:`save_bundle`; scores are identical to the saved model's."""
    src = Path(path)
    manifest_path = src / "manifest.json"
    if not manifest_path.exists():
        raise DataError(
            "not a model bundle: manifest.json is missing", file=src, expected="a directory from save_bundle"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", file=manifest_path, line=exc.lineno) from None
    if manifest.get("format") != FORMAT_VERSION:
        raise DataError(
            "unsupported bundle format",
            file=manifest_path,
            field="format",
            value=manifest.get("format"),
            expected=str(FORMAT_VERSION),
        )
    name = manifest["model"]
    try:
        cls = get_model_class(name)
    except Exception:
        cls = get_model_class(manifest["model_class"])
    model = cls(cls.config_class.parse(manifest["config"], source=str(manifest_path)))
    if (src / "users.json").exists():
        model.user_vocab = Vocabulary.load(src / "users.json")
    if (src / "items.json").exists():
        model.item_vocab = Vocabulary.load(src / "items.json")
    extra_path = src / "extra.json"
    model.load_bundle_json(json.loads(extra_path.read_text()) if extra_path.exists() else {})
    tensors = load_file(str(src / "weights.safetensors"))
    if _SEEN + "indptr" in tensors and model.user_vocab is not None and model.item_vocab is not None:
        indptr = tensors.pop(_SEEN + "indptr").numpy()
        indices = tensors.pop(_SEEN + "indices").numpy()
        model.seen = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr),
            shape=(len(model.user_vocab), len(model.item_vocab)),
        )
    model.load_state_tensors(tensors)
    return model


def load_bundle_items(path: str | Path) -> pl.DataFrame | None:
    """The item metadata saved with a bundle, if any."""
    p = Path(path) / "items.parquet"
    return pl.read_parquet(p) if p.exists() else None
