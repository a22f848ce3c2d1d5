"""What the one Trainer needs from a model, as types that live beside it (``training/`` imports no model).

* :class:`TrainableModule` — an ``nn.Module`` that returns a scalar loss for one typed batch (the SGD form).
* :class:`EpochSolver` — anything that advances a model one epoch at a time (ALS sweeps, graph rebuilds, counting),
  so that non-SGD solvers get the same early stopping, best-epoch restore, logs, checkpoints and progress.
* :class:`RunIdentity` and :func:`data_fingerprint` — what a checkpoint must match before it is resumed.
* :class:`FitReport` — what fitting did (epochs, best validation epoch and metrics, seconds, history).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl
import torch
from pydantic import BaseModel
from torch import nn


class TrainableModule(nn.Module):
    """A module the Trainer can fit: it returns a scalar loss for one typed batch."""

    def loss(self, batch: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


@runtime_checkable
class EpochSolver(Protocol):
    """A solver the Trainer drives one epoch at a time (LensKit's ``ModelTrainer.train_epoch``).

    ``module`` holds the parameters that validation reads, that best-epoch restore snapshots and that checkpoints
    save; the solver keeps it current after every epoch (and places it on its device itself). Everything else an
    exact resume needs (optimiser moments, a rebuilt graph) comes from :meth:`state_dict`.
    """

    @property
    def module(self) -> nn.Module:
        """The parameters being fitted (read-only here: a solver may hold a more specific module type)."""
        ...

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        """Run epoch ``epoch`` (1-based) and return what it measured, e.g. ``{"loss": ...}`` (training data only).

        ``generator`` is the epoch's randomness, a function of (seed, epoch) alone; a solver that draws random
        numbers must draw them from it (or from the global RNG, which the Trainer also seeds per epoch).
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """What resume needs beyond ``module``'s tensors: tensors and plain data only (``weights_only`` loads it)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (called after ``module`` is restored)."""
        ...


@dataclass(frozen=True)
class RunIdentity:
    """What a fit is, besides the trainer's own settings: the model's config and a fingerprint of its data.

    The Trainer stores it (with its trainer config, less the logging / progress / path / resume fields) in every
    checkpoint and resumes only a checkpoint whose three parts all match.
    """

    #: the model's hyper-parameters as JSON-able data (``ModelConfig.to_dict()``)
    model_config: dict[str, Any]
    #: :func:`data_fingerprint` of everything fitting reads (training and validation data)
    data: str
    #: model-config fields added after checkpoints were written, with the value that reproduces the run before them
    #: (``ModelConfig.bundle_legacy``): a field at that value is left out of the identity on both sides, so a
    #: checkpoint written before the field existed, or after with that value, stays resumable
    legacy: dict[str, Any] = field(default_factory=dict)


def without_legacy(values: dict[str, Any] | None, legacy: dict[str, Any]) -> dict[str, Any] | None:
    """``values`` less the fields of ``legacy`` that hold their legacy value (a run identity's config part)."""
    if values is None:
        return None
    return {k: v for k, v in values.items() if not (k in legacy and v == legacy[k])}


def data_fingerprint(*parts: object) -> str:
    """A 16-hex SHA-256 over ``parts``: the data a fit reads (train, validation, sizes).

    Understood: None, numbers, strings, paths, bytes, NumPy arrays and tensors (dtype, shape, bytes), polars frames
    and series (column names, dtypes, values), dicts, lists, tuples, pydantic models, dataclasses (their fields), and
    any other object by its public attributes and length. Equal data gives equal fingerprints across processes.
    """
    h = hashlib.sha256()
    for part in parts:
        _feed(h, part, 0)
    return h.hexdigest()[:16]


def _feed(h: Any, obj: object, depth: int) -> None:
    if depth > 12:
        raise TypeError(f"data_fingerprint: {type(obj).__name__} is nested too deeply to fingerprint")
    h.update(type(obj).__name__.encode() + b"\x00")
    if obj is None or isinstance(obj, bool | int | float | str | Path):
        h.update(repr(obj).encode())
    elif isinstance(obj, bytes):
        h.update(obj)
    elif isinstance(obj, torch.Tensor):
        _feed(h, obj.detach().cpu().numpy(), depth + 1)
    elif isinstance(obj, np.ndarray):
        h.update(f"{obj.dtype}{obj.shape}".encode())
        if obj.dtype == object:
            h.update("\x1f".join(map(str, obj.ravel())).encode())
        else:
            h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, pl.DataFrame):
        for name in obj.columns:
            h.update(name.encode())
            _feed(h, obj[name], depth + 1)
    elif isinstance(obj, pl.Series):
        h.update(str(obj.dtype).encode())
        if obj.dtype.is_numeric() or obj.dtype == pl.Boolean:
            h.update(obj.to_numpy().tobytes())
        else:
            h.update("\x1f".join("\x00" if v is None else str(v) for v in obj.to_list()).encode())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _feed(h, obj[k], depth + 1)
    elif isinstance(obj, list | tuple):
        for item in obj:
            _feed(h, item, depth + 1)
    elif isinstance(obj, BaseModel):
        h.update(obj.model_dump_json().encode())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            h.update(f.name.encode())
            _feed(h, getattr(obj, f.name), depth + 1)
    elif hasattr(obj, "__dict__"):
        # private attributes are often caches filled on use: only the public state and the length count
        _feed(h, {k: v for k, v in vars(obj).items() if not k.startswith("_")}, depth + 1)
        if hasattr(obj, "__len__"):
            h.update(str(len(obj)).encode())  # type: ignore[arg-type]
    else:
        raise TypeError(f"data_fingerprint: cannot fingerprint a {type(obj).__name__}")


def config_digest(data: dict[str, Any]) -> str:
    """A 16-hex SHA-256 of a JSON-able config (keys sorted), as stored in checkpoints."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class FitReport:
    """What fitting did: epochs, the best validation epoch and metrics, seconds, and the per-epoch history.

    ``best_epoch`` 0 and a first history row with ``epoch`` 0 (no ``loss``) come from ``TrainerConfig.validate_start``:
    the starting point was validated, and 0 means no trained epoch beat it (its weights were restored when
    ``restore_best``, the default; without it the module keeps its last epoch's)."""

    seconds: float
    epochs_run: int = 0
    best_epoch: int | None = None
    best_valid: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
