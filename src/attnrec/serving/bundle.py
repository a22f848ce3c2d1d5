"""Model bundles: a directory holding safetensors weights, a JSON manifest (model name, task, config, versions,
checksums) and the vocabularies. Loading never unpickles anything and never imports code the bundle names unless
the caller opts in.

Layout::

    bundle/
      manifest.json     {"format": 2, "model": name, "model_class": "pkg.mod:Class", "task": ..., "config": {...},
                         "attnrec": version, "torch": version, "extra": {...},
                         "files": {name: {"sha256": hex digest, "bytes": size}, ...}}
      weights.safetensors  the model's tensors plus the seen-items matrix (``_seen.indptr``, ``_seen.indices``)
      users.json, items.json   vocabularies (external ids by index), when the model has them
      extra.json        the model's other JSON artifacts (e.g. a CTR feature schema)
      items.parquet     optional item metadata (e.g. titles) aligned by item_id

What :func:`load_bundle` guarantees about a bundle it did not write (every failure is a :class:`DataError` naming
the file, and the field or tensor where there is one):

* **No code runs, nothing is fetched.** The model class comes from the registry of built-in and registered names
  (:func:`~attnrec.models.base.available_models`). The manifest's ``model_class`` import path is used only with
  ``trust_code=True``, for a model whose module the caller has not imported. A config value that would load code
  or files from outside the bundle, or reach the network, is refused unless ``trust_code=True``
  (:meth:`~attnrec.models.base.Estimator.restrict_to_bundle`): hybrid_csa's ``config.encoder`` must be a
  registered offline text model (the packaged all-MiniLM-L6-v2), never a folder or a hub id.
* **Integrity.** Format 2 lists the sha256 and size of every other file; each file is checked before it is parsed,
  and only listed files are read. A format 1 bundle (no checksums) is refused unless the caller trusts it
  (``trust_code=True``, the CLI's ``--trust-bundle``): anyone who can rewrite a bundle could otherwise downgrade
  it to format 1 to skip the checks. Trusted, it loads with a logged warning; :func:`resave_hint` says how
  saving it again upgrades it.
* **Regular files inside the bundle only.** A symbolic link, a FIFO, a device or a directory in place of a bundle
  file is refused before it is opened (a FIFO cannot block the load); the manifest is capped at
  :data:`MAX_MANIFEST_BYTES` and other JSON files at :data:`MAX_JSON_BYTES` (a file that grows past its cap or
  its listed size while being read is refused too).
* **Structure before use.** The manifest is a JSON object with the required keys and types; the vocabularies are
  lists of strings, both present for a recommender; the seen-items matrix is a valid CSR structure of shape
  (n_users, n_items) stored as int64; every floating-point tensor is finite; every tensor has the name, shape and
  dtype the model's config gives it, with one row per vocabulary entry where it is indexed by user or item; the
  model's JSON artifacts have the types and lengths it needs (e.g. a CTR feature encoder matches the schema).

What the checksums prove, and what not: they detect corruption, truncation, an edit of a file alone (an edited
``mu``, swapped ids) and files mixed up between bundles (the weights also carry the name of the model they were
saved from). They are not a signature: someone who can rewrite a file can rewrite the manifest's checksum for
it, and a bundle written from a diverged model has valid checksums. Against those, the guarantees are the
structural checks above, and the finiteness check (a NaN or inf tensor is refused whatever its checksum); a
plausible edited value that keeps the structure (a shifted ``mu``, two ids swapped with the manifest rewritten)
loads. Verify the provenance of a bundle (e.g. a signature over ``manifest.json``) before trusting its numbers.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from polars.exceptions import PanicException
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import attnrec
from attnrec.data.vocab import Vocabulary
from attnrec.errors import AttnrecError, ConfigError, DataError
from attnrec.models.base import Estimator, Recommender, available_models, get_model_class
from attnrec.serving.bundle_files import (
    BUNDLE_FILES,
    EXTRA,
    FORMAT_VERSION,
    ITEM_META,
    ITEMS,
    MANIFEST,
    MAX_JSON_BYTES,
    MAX_MANIFEST_BYTES,
    READABLE_FORMATS,
    USERS,
    WEIGHTS,
    bundle_dir,
    listed_files,
    one_line,
    read_json,
    read_manifest,
    read_manifest_bytes,
    read_verified,
    resave_hint,
)

log = logging.getLogger(__name__)

__all__ = [
    "BUNDLE_FILES",
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_JSON_BYTES",
    "MAX_MANIFEST_BYTES",
    "READABLE_FORMATS",
    "bundle_extra",
    "load_bundle",
    "load_bundle_items",
    "read_manifest_bytes",
    "resave_hint",
    "save_bundle",
]

_SEEN = "_seen."


# ------------------------------------------------------------------------------------------------------ save
def save_bundle(
    model: Estimator[Any],
    path: str | Path,
    *,
    items: pl.DataFrame | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write fitted ``model`` to directory ``path`` (created) in format :data:`FORMAT_VERSION`.

    ``items``: optional item metadata keyed by an ``item_id`` column (e.g. titles), returned by
    :func:`load_bundle_items`. ``extra``: JSON-able run information stored in the manifest. The manifest is written
    last, atomically, with the sha256 of every other file, so an interrupted save never leaves a bundle that loads.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}

    def put(name: str, data: bytes) -> None:
        (out / name).write_bytes(data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_tensors().items()}
    vocabs: tuple[Vocabulary | None, Vocabulary | None] = (None, None)
    if isinstance(model, Recommender):  # the id space: vocabularies and the seen-items matrix
        vocabs = (model.user_vocab, model.item_vocab)
        if model.seen is not None:
            seen = model.seen.tocsr()
            tensors[_SEEN + "indptr"] = torch.from_numpy(seen.indptr.astype(np.int64))
            tensors[_SEEN + "indices"] = torch.from_numpy(seen.indices.astype(np.int64))
    put(WEIGHTS, save_safetensors(tensors, metadata={"model": model.name}))
    for name, vocab in zip((USERS, ITEMS), vocabs, strict=True):
        if vocab is not None:
            put(name, json.dumps({"kind": vocab.kind, "ids": vocab.to_json()}).encode())
    put(EXTRA, json.dumps(model.bundle_json()).encode())
    if items is not None:
        buf = io.BytesIO()
        _item_metadata(items).write_parquet(buf)
        put(ITEM_META, buf.getvalue())
    manifest = {
        "format": FORMAT_VERSION,
        "model": model.name,
        "model_class": f"{type(model).__module__}:{type(model).__qualname__}",
        "task": str(model.task),
        "config": model.config.to_dict(),
        "attnrec": attnrec.__version__,
        "torch": torch.__version__,
        "extra": extra or {},
        "files": files,
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / MANIFEST)
    return out


def _item_metadata(items: pl.DataFrame) -> pl.DataFrame:
    """``items`` as :func:`load_bundle_items` accepts it: string ``item_id`` (and ``title``), one row per item (the
    first of repeated ids, e.g. Amazon metadata listing a product twice)."""
    if "item_id" not in items.columns:
        raise ConfigError(f"item metadata needs an item_id column, got {items.columns}")
    strings = [pl.col(c).cast(pl.String) for c in ("item_id", "title") if c in items.columns]
    frame = items.with_columns(strings).filter(pl.col("item_id").is_not_null())
    unique = frame.unique("item_id", keep="first", maintain_order=True)
    if unique.height < frame.height:
        log.info(
            "item metadata: %d repeated item id row(s) dropped (the first is kept)",
            frame.height - unique.height,
        )
    return unique


# ------------------------------------------------------------------------------------------------------ load
def load_bundle(path: str | Path, *, trust_code: bool = False) -> Estimator[Any]:
    """Load a bundle written by :func:`save_bundle`; scores are identical to the saved model's.

    The model class is looked up by the manifest's ``model`` name among registered models (built-ins, and any
    model whose module has been imported so that ``@register`` ran). ``trust_code=True`` also allows importing the
    manifest's ``model_class`` path (``package.module:Class``) for a name that is not registered: that runs the
    named module's code, so pass it only for bundles from someone you trust. See the module docstring for what is
    checked; any failure raises :class:`~attnrec.errors.DataError` naming the file.
    """
    root = bundle_dir(path)
    manifest_path = root / MANIFEST
    manifest = read_manifest(root, trust=trust_code)
    cls = _model_class(manifest, manifest_path, trust_code=trust_code)
    # a field an older bundle lacks takes the value it was trained under (ModelConfig.bundle_legacy)
    config = {**cls.config_class.bundle_legacy, **manifest["config"]}
    model = cls(cls.config_class.parse(config, source=f"{manifest_path}: field 'config'"))
    if not trust_code:  # before anything else is read: e.g. a text encoder named by path or hub id is refused
        with _blame(manifest_path, "the config is not allowed in a bundle"):
            model.restrict_to_bundle()
    listed = listed_files(root, manifest)
    users, items = (
        _read_vocab(root, name, manifest, kind) if name in listed else None
        for name, kind in ((USERS, "user"), (ITEMS, "item"))
    )
    if isinstance(model, Recommender):
        if users is None or items is None:
            raise DataError(
                f"missing: a {model.name} model needs its user and item vocabularies",
                file=root / (USERS if users is None else ITEMS),
            )
        model.user_vocab, model.item_vocab = users, items
    elif users is not None or items is not None:
        raise DataError(
            f"the bundle has user/item vocabularies, but a {model.name} model has no id space",
            file=root / (USERS if users is not None else ITEMS),
        )
    extra = read_json(root, EXTRA, manifest) if EXTRA in listed else {}
    if not isinstance(extra, dict):
        raise DataError(
            f"expected a JSON object, got {type(extra).__name__}",
            file=root / EXTRA,
            expected="the model's artifacts",
        )
    with _blame(root / EXTRA, "the model's artifacts in it are not valid"):
        model.load_bundle_json(extra)
    if WEIGHTS not in listed:
        raise DataError(
            "the weights file is missing", file=root / WEIGHTS, expected="a bundle from save_bundle"
        )
    tensors = _read_weights(root, manifest)
    seen = _pop_seen(tensors, users, items, root / WEIGHTS)
    if isinstance(model, Recommender):
        model.seen = seen
    _load_tensors(model, tensors, root / WEIGHTS)
    return model


def bundle_extra(path: str | Path) -> dict[str, Any]:
    """The ``extra`` table a run stored in a bundle's manifest (e.g. a CTR run's read settings), read through the
    same checks as :func:`load_bundle` (regular file, size cap, manifest shape)."""
    # the manifest is not under a checksum in any format: its extra table is as trustworthy in format 1
    extra = read_manifest(bundle_dir(path), trust=True, warn=False).get("extra", {})
    return extra if isinstance(extra, dict) else {}


def load_bundle_items(path: str | Path, *, trust_code: bool = False) -> pl.DataFrame | None:
    """The item metadata saved with a bundle (a frame with an ``item_id`` column), or None when it has none.

    Checked like every bundle file (checksum, regular file inside the bundle); a corrupt file is a DataError.
    ``trust_code``: as for :func:`load_bundle` (a format 1 bundle, unverified, is read only when trusted).
    """
    root = bundle_dir(path)
    manifest = read_manifest(
        root, trust=trust_code, warn=False
    )  # load_bundle, called first, has said a format 1 is unverified
    if ITEM_META not in listed_files(root, manifest):
        return None
    file = root / ITEM_META
    data = read_verified(root, ITEM_META, manifest, limit=None)
    try:  # a corrupt file can make the reader panic (a BaseException) as well as fail
        frame = pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError, ValueError, PanicException) as exc:
        raise DataError(f"not a readable Parquet file: {one_line(exc)}", file=file) from None
    if "item_id" not in frame.columns:
        raise DataError(
            "no item_id column", file=file, value=frame.columns, expected="item metadata keyed by item_id"
        )
    for column in ("item_id", "title"):  # what recommendations are joined on and show
        if column in frame.columns and frame[column].dtype != pl.String:
            raise DataError(f"column type {frame[column].dtype}", file=file, field=column, expected="strings")
    ids = frame["item_id"]
    if ids.null_count() or ids.n_unique() != len(ids):  # a repeated id would repeat a recommendation row
        raise DataError(
            "repeated or missing item ids", file=file, field="item_id", expected="one row per item"
        )
    return frame


# ------------------------------------------------------------------------------------------------------ files
def _read_vocab(root: Path, name: str, manifest: dict[str, Any], kind: str) -> Vocabulary:
    file = root / name
    data = read_json(root, name, manifest)
    ids = data.get("ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise DataError(
            "not a vocabulary",
            file=file,
            field="ids",
            expected='{"kind": ..., "ids": [external ids as strings]}',
        )
    with _blame(file, "not a valid vocabulary"):
        return Vocabulary.from_json(ids, kind=kind)


# ------------------------------------------------------------------------------------------------------ model
def _model_class(manifest: dict[str, Any], manifest_path: Path, *, trust_code: bool) -> type[Estimator[Any]]:
    name = manifest["model"]
    registry = available_models()
    if name in registry:
        cls = registry[name]
    else:
        target = manifest.get("model_class")
        if not trust_code or target is None:
            how = (
                f"load_bundle(path, trust_code=True) imports its model_class {target!r}, if you trust this bundle"
                if target is not None
                else "the manifest names no model_class to import"
            )
            raise DataError(
                f"model {name!r} is not registered (registered: {', '.join(registry)}); import the module that "
                f"registers it before loading, or: {how}",
                file=manifest_path,
                field="model",
                value=name,
            )
        try:
            cls = get_model_class(target)
        except ConfigError as exc:
            raise DataError(str(exc), file=manifest_path, field="model_class", value=target) from None
    if manifest["task"] != str(cls.task):
        raise DataError(
            f"model {name!r} is a {cls.task} model",
            file=manifest_path,
            field="task",
            value=manifest["task"],
            expected=str(cls.task),
        )
    return cls


def _read_weights(root: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    file = root / WEIGHTS
    data = read_verified(root, WEIGHTS, manifest, limit=None)
    try:
        tensors = load_safetensors(data)
    except SafetensorError as exc:
        raise DataError(f"not a readable safetensors file: {one_line(exc)}", file=file) from None
    # safetensors checked the header when it loaded; its metadata names the model the weights were saved from
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    saved_for = (header.get("__metadata__") or {}).get("model")
    if saved_for is not None and saved_for != manifest["model"]:
        raise DataError(
            f"the weights were saved from a {saved_for!r} model, the manifest names {manifest['model']!r}",
            file=file,
        )
    for key, t in tensors.items():
        if not t.is_floating_point():
            continue
        finite = torch.isfinite(t if t.element_size() > 1 else t.float())  # no isfinite for float8 types
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise DataError(
                f"{bad} non-finite value(s) (NaN or inf)", file=file, field=key, expected="finite weights"
            )
    return tensors


def _pop_seen(
    tensors: dict[str, torch.Tensor], users: Vocabulary | None, items: Vocabulary | None, file: Path
) -> sp.csr_matrix | None:
    """The seen-items matrix from the weights, after checking it is a valid CSR structure of the vocabularies'
    shape (scipy trusts indptr / indices; bad ones read or write out of bounds)."""
    indptr_t, indices_t = tensors.pop(_SEEN + "indptr", None), tensors.pop(_SEEN + "indices", None)
    if indptr_t is None and indices_t is None:
        return None
    for key, t in ((_SEEN + "indptr", indptr_t), (_SEEN + "indices", indices_t)):
        if t is None:
            raise DataError(
                "missing (the seen-items matrix needs both indptr and indices)", file=file, field=key
            )
        if t.dim() != 1 or t.dtype != torch.int64:  # what save_bundle writes
            raise DataError(
                f"shape {tuple(t.shape)} dtype {t.dtype}", file=file, field=key, expected="1-D torch.int64"
            )
    assert indptr_t is not None and indices_t is not None
    if users is None or items is None:
        raise DataError(
            "the bundle has a seen-items matrix but no user/item vocabulary",
            file=file,
            field=_SEEN + "indptr",
        )
    n_users, n_items = len(users), len(items)
    indptr, indices = indptr_t.numpy().astype(np.int64), indices_t.numpy().astype(np.int64)
    if len(indptr) != n_users + 1:
        raise DataError(
            f"length {len(indptr)}",
            file=file,
            field=_SEEN + "indptr",
            expected=f"n_users + 1 = {n_users + 1}",
        )
    if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise DataError(
            "not a CSR row pointer",
            file=file,
            field=_SEEN + "indptr",
            expected=f"non-decreasing from 0 to len(indices) = {len(indices)}",
        )
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise DataError(
            f"item index out of range [{indices.min()}, {indices.max()}]",
            file=file,
            field=_SEEN + "indices",
            expected=f"0..{n_items - 1}",
        )
    return sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n_users, n_items))


def _load_tensors(model: Estimator[Any], tensors: dict[str, torch.Tensor], file: Path) -> None:
    """``model.load_state_tensors`` with a missing tensor or a shape mismatch turned into a DataError."""
    try:
        model.load_state_tensors(tensors)
    except DataError as exc:
        raise _with_file(exc, file) from None
    except (AttnrecError, NotImplementedError):
        raise
    except KeyError as exc:
        key = exc.args[0] if exc.args else None
        raise DataError(
            f"the weights have no tensor {key!r}",
            file=file,
            field=str(key),
            expected=f"the weights of a {model.name} model",
        ) from None
    except (
        RuntimeError,
        ValueError,
        IndexError,
        TypeError,
    ) as exc:  # load_state_dict: size mismatch, missing keys
        raise DataError(
            f"the weights do not fit a {model.name} model with this config: {one_line(exc)}", file=file
        ) from None


@contextmanager
def _blame(file: Path, what: str) -> Iterator[None]:
    """Turns the errors a model raises on malformed artifacts into a DataError naming ``file``."""
    try:
        yield
    except DataError as exc:
        raise _with_file(exc, file) from None
    except AttnrecError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{what}: {one_line(exc)}", file=file) from None


def _with_file(exc: DataError, file: Path) -> DataError:
    """``exc`` (raised by a model, which does not know the bundle's paths) naming ``file``; unchanged if it names
    another file (a model naming just ``extra.json``, or ``extra.json: part``, gets the full path)."""
    if exc.file is not None and not exc.file.startswith(file.name):
        return exc
    at = file if exc.file is None else f"{file}{exc.file.removeprefix(file.name)}"

    def like(message: str, where: str | Path | None) -> DataError:
        return DataError(
            message, file=where, line=exc.line, field=exc.field, value=exc.value, expected=exc.expected
        )

    prefix, suffix = str(like("\0", exc.file)).split("\0")  # the same layout around the bare message
    return like(str(exc).removeprefix(prefix).removesuffix(suffix), at)
