"""Tampering with a saved bundle, for tests of what :func:`~attnrec.serving.bundle.load_bundle` refuses.

Most attacks rewrite one file and then its checksum in the manifest (:func:`rewrite`), as someone who can edit
the whole bundle would, so that the check behind the checksum is the one under test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


def manifest(path: Path) -> dict[str, Any]:
    """The bundle's manifest as written (no checks)."""
    data: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    return data


def write_manifest(path: Path, data: Any) -> None:
    """Replace the manifest with ``data`` (any JSON value)."""
    (path / MANIFEST).write_text(json.dumps(data))


def edit_manifest(path: Path, **changes: Any) -> None:
    """Set top-level manifest keys."""
    write_manifest(path, {**manifest(path), **changes})


def as_written_before(path: Path, *fields: str) -> None:
    """Make the bundle at ``path`` one that an attnrec from before config ``fields`` existed wrote: its manifest's
    model config without them (to test what ``ModelConfig.bundle_legacy`` loads them as)."""
    data = manifest(path)
    for name in fields:
        del data["config"][name]
    write_manifest(path, data)


def rewrite(path: Path, name: str, data: bytes) -> None:
    """Replace bundle file ``name`` and record its new sha256 and size in the manifest, as an attacker who edits
    the manifest too would."""
    (path / name).write_bytes(data)
    m = manifest(path)
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    write_manifest(path, m)


def edit_json(path: Path, name: str, change: Callable[[Any], Any]) -> None:
    """Rewrite JSON file ``name`` as ``change(data)`` (checksum updated)."""
    rewrite(path, name, json.dumps(change(json.loads((path / name).read_text()))).encode())


def edit_weights(
    path: Path, change: Callable[[dict[str, torch.Tensor]], None], model: str | None = None
) -> None:
    """Change the weights' tensors in place through ``change`` and save them again, labelled as saved from
    ``model`` (default: the manifest's model), checksum updated."""
    tensors = load_safetensors((path / WEIGHTS).read_bytes())
    change(tensors)
    rewrite(path, WEIGHTS, save_safetensors(tensors, metadata={"model": model or manifest(path)["model"]}))


def set_tensor(
    key: str, value: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[dict[str, torch.Tensor]], None]:
    """A change for :func:`edit_weights`: tensor ``key`` becomes ``value(old)``."""

    def change(t: dict[str, torch.Tensor]) -> None:
        t[key] = value(t[key])

    return change


def poke(t: torch.Tensor, index: int, value: float) -> torch.Tensor:
    """A copy of ``t`` with ``t[index] = value``."""
    t = t.clone()
    t[index] = value
    return t
