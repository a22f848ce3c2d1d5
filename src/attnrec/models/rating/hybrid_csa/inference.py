"""hybrid_csa inference plumbing: the per-row token tables a module scores from (:class:`TokenTables`), the
version-keyed cache that keeps every user's and item's tables between queries, pair blocking and gathering, and
the stable top-k that both query scorers rank with. Nothing here knows the module: it imports only torch."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from torch import nn

V = TypeVar("V")


@dataclass(frozen=True)
class TokenTables:
    """One side's per-row tables for inference (users, items or query texts): the projected tokens (n, d_model)
    it contributes, in token order; their attention states (``SelfAttentionBlock.project``: (n, 3, H, dh); the
    tokens themselves for concat_mlp); with svd_residual its SVD factors (n, k) and biases (n,)."""

    tokens: tuple[torch.Tensor, ...]
    states: tuple[torch.Tensor, ...]
    svd: tuple[torch.Tensor, torch.Tensor] | None


class VersionKeyedCache(Generic[V]):
    """One value derived from a list of tensors, kept while each of them is the same tensor, on the same storage,
    at the same version (an optimiser step, ``load_state_dict``, ``.to()`` or a replaced tensor renews it; a write
    through ``.data`` into the same storage bypasses the version counter and is not seen). Holds the tensors by
    weak reference only; does not pickle (owners drop it in ``__getstate__``)."""

    def __init__(self) -> None:
        self._entry: tuple[list[weakref.ref[torch.Tensor]], list[tuple[int, int]], V] | None = None

    @property
    def empty(self) -> bool:
        """Whether nothing is held."""
        return self._entry is None

    def clear(self) -> None:
        """Drop the held value."""
        self._entry = None

    def get_or_build(self, tensors: list[torch.Tensor], build: Callable[[], V | None]) -> V | None:
        """The value held for ``tensors`` in their current state, else ``build()`` (kept unless None). None,
        holding nothing, for inference tensors: they have no version counter to key on."""
        try:
            key = [(t.data_ptr(), t._version) for t in tensors]
        except RuntimeError:
            self._entry = None
            return None
        if self._entry is not None:
            refs, old, value = self._entry
            if old == key and all(r() is t for r, t in zip(refs, tensors, strict=True)):
                return value
        self._entry = None
        built = build()
        if built is not None:
            self._entry = ([weakref.ref(t) for t in tensors], key, built)
        return built


def blocks(shape: tuple[int, ...], max_rows: int) -> Iterator[tuple[slice, ...]]:
    """Slices of the first one or two axes of ``shape`` covering it in blocks of about ``max_rows`` elements:
    runs of whole rows along axis 0, or, when one row alone is larger, pieces of one row along axis 1."""
    row = math.prod(shape[1:])
    if row <= max_rows or len(shape) == 1:
        step = max(1, max_rows // max(1, row))
        for s in range(0, shape[0], step):
            yield (slice(s, min(shape[0], s + step)),)
        return
    step = max(1, max_rows // max(1, math.prod(shape[2:])))
    for s in range(shape[0]):
        for c in range(0, shape[1], step):
            yield slice(s, s + 1), slice(c, min(shape[1], c + step))


def narrow(index: torch.Tensor, block: tuple[slice, ...], ndim: int) -> torch.Tensor:
    """The part of ``index`` (broadcast, right-aligned, to ``ndim`` axes) that ``block`` (slices of the leading
    axes) reads: sliced on the axes it varies on, left whole where it has size 1 or no axis."""
    for axis, sl in enumerate(block):
        own = axis - (ndim - index.dim())
        if own >= 0 and index.shape[own] > 1:
            index = index.narrow(own, sl.start, sl.stop - sl.start)
    return index


def autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``torch.is_autocast_enabled()`` alone is CUDA's only)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def top_stable(x: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` columns of a stable descending sort of each row of ``x`` (Q, N) — ties in index
    order, ONNX TopK's rule — as (values, indices), via ``topk`` (a full sort of a large catalogue
    costs far more); rows where a tie crosses the cut are fully sorted."""
    if size >= x.shape[1] or size == 0 or x.numel() <= 8192:  # a small sort costs less than topk + fix-ups
        ranked = torch.sort(x, dim=1, descending=True, stable=True)
        return ranked.values[:, :size], ranked.indices[:, :size]
    vals, idx = torch.topk(x, size, dim=1)
    idx, perm = torch.sort(idx, dim=1)  # the chosen in index order, then stably by value
    ranked = torch.sort(vals.gather(1, perm), dim=1, descending=True, stable=True)
    vals, idx = ranked.values, idx.gather(1, ranked.indices)
    cut = vals[:, -1:]
    crossing = ((x == cut).sum(1) > (vals == cut).sum(1)).nonzero()[:, 0]
    if len(crossing):  # topk may have kept a later tied item than the stable order keeps
        full = torch.sort(x[crossing], dim=1, descending=True, stable=True)
        vals[crossing], idx[crossing] = full.values[:, :size], full.indices[:, :size]
    return vals, idx


def module_tensors(module: nn.Module, out: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every parameter and buffer of ``module`` and its submodules, appended to ``out`` (a plain walk: a few
    times cheaper than ``parameters()`` + ``buffers()``, which build names; this runs once per query)."""
    out.extend(t for t in module._parameters.values() if t is not None)
    out.extend(t for t in module._buffers.values() if t is not None)
    for child in module._modules.values():
        if child is not None:
            module_tensors(child, out)
    return out


def gather(tables: list[torch.Tensor], rows: list[torch.Tensor]) -> list[torch.Tensor]:
    """[table[r] for each token], for row indices of any shape: (*r.shape, ...) (index_select on the flattened
    index: several times faster than advanced indexing for row gathers on CPU)."""
    return [
        t.index_select(0, r.reshape(-1)).view(*r.shape, *t.shape[1:])
        for t, r in zip(tables, rows, strict=True)
    ]
