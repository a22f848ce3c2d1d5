"""Data-parallel training on PyTorch's own engine (``torch.distributed`` + ``DistributedDataParallel``).

The Trainer reads the process group through :func:`context`; nothing else in attnrec needs to know how many
processes run. What a fit does on ``W`` ranks:

* **Batches.** Every rank draws the same *global* epoch from the epoch's generator (a function of ``(seed,
  epoch)``: per-epoch reseeding, as ``DistributedSampler.set_epoch``), then keeps its contiguous share of each
  global batch's rows (:func:`shard_batch`). The local loss is weighted by ``W * n_local / n_global`` so that the
  mean DDP takes over ranks is the loss of the whole global batch: a run on ``W`` ranks takes the same optimiser
  steps as one process with the same ``batch_size`` and seed (up to float rounding), whatever ``W`` is.
* **Gradients.** :func:`wrap_module` puts the module in ``DistributedDataParallel`` behind a forward that calls
  ``loss(batch)`` (DDP all-reduces gradients only for work that went through its own ``forward``).
* **Solvers that are not SGD** (svd's ALS, pop's counting) run replicated: every rank runs the same epoch on all
  the data, then rank 0's parameters are broadcast (:func:`broadcast_module`) so ranks cannot drift apart.
* **Collectives that fail** (a rank died or hangs) raise :class:`DistributedError` after the process group's
  timeout (``ATTNREC_DIST_TIMEOUT`` seconds, default :data:`DEFAULT_TIMEOUT_S`), naming this rank.

:func:`process_group_from_env` starts the group from the variables ``torchrun`` (or :func:`launch`) sets: gloo on
the CPU, nccl on CUDA. Checkpoints and logs are rank 0's (the Trainer's business, not this module's).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from attnrec.errors import AttnrecError, ConfigError

#: seconds a collective waits for the other ranks before this rank gives up (a dead or stuck rank)
DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "ATTNREC_DIST_TIMEOUT"

T = TypeVar("T")


class DistributedError(AttnrecError):
    """A distributed run failed: a rank died, a collective timed out, or the process group could not start."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world`` processes (``local_rank`` on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when more than one process trains together."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs, bundles and metrics."""
        return self.rank == 0


def context() -> DistContext:
    """This process's place in the initialised default process group (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistContext()


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when unset): the processes this one was launched among."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable WORLD_SIZE={raw!r}: expected an integer") from None


def timeout_seconds() -> float:
    """The collective timeout: ``ATTNREC_DIST_TIMEOUT`` seconds (> 0), else :data:`DEFAULT_TIMEOUT_S`."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"environment variable {TIMEOUT_ENV}={raw!r}: expected seconds > 0")
    return value


@contextmanager
def process_group_from_env(device: torch.device) -> Iterator[DistContext]:
    """Within: the default process group of a torchrun-launched process (``WORLD_SIZE`` > 1), gloo for a CPU
    ``device`` and nccl for CUDA (each rank on ``cuda:LOCAL_RANK``); destroyed on exit. A process that is alone,
    or whose group is already initialised (by the caller), is left as it is."""
    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield context()
        return
    if not dist.is_available():
        raise DistributedError(
            "this torch build has no torch.distributed: it cannot train on several processes"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds()))
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {os.environ.get('RANK', '?')}: could not join the {backend} process group "
            f"(MASTER_ADDR={os.environ.get('MASTER_ADDR')}, MASTER_PORT={os.environ.get('MASTER_PORT')}): {exc}"
        ) from None
    try:
        yield context()
    finally:
        dist.destroy_process_group()


def _failed(what: str, exc: BaseException) -> DistributedError:
    ctx = context()
    return DistributedError(
        f"rank {ctx.rank} of {ctx.world}: {what} failed, most likely because another rank died or stopped "
        f"responding (timeout {timeout_seconds():g} s, {TIMEOUT_ENV}): {_backend_message(exc)}"
    )


def _backend_message(exc: BaseException) -> str:
    """The backend's own words, without gloo's source location and advice: ``Connection closed by peer
    [127.0.0.1]:port``, ``Timed out waiting 5000ms for recv operation``..."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    return text.split(". This is typically")[0]


def collective(what: str, fn: Callable[[], T]) -> T:
    """``fn()``, a step that talks to the other ranks; its failure (a dead rank, a timeout) becomes a
    :class:`DistributedError` that says ``what`` this rank was doing."""
    try:
        return fn()
    except DistributedError:
        raise
    except (RuntimeError, dist.DistError) as exc:
        raise _failed(what, exc) from exc


def all_gather_objects(obj: T, what: str = "gathering results") -> list[T]:
    """``obj`` of every rank, in rank order (a list of one where there is no process group)."""
    ctx = context()
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world
    collective(what, lambda: dist.all_gather_object(out, obj))
    return out


def broadcast_object(obj: T, what: str = "sharing rank 0's state") -> T:
    """Rank 0's ``obj`` on every rank (the argument is ignored elsewhere)."""
    if not context().active:
        return obj
    box: list[Any] = [obj]
    collective(what, lambda: dist.broadcast_object_list(box, src=0))
    return box[0]


def all_reduce_sum(
    values: Sequence[float], device: torch.device, what: str = "summing over ranks"
) -> list[float]:
    """Element-wise sums of ``values`` over ranks, as float64."""
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    if context().active:
        collective(what, lambda: dist.all_reduce(t))
    return [float(v) for v in t.tolist()]


def broadcast_module(module: nn.Module, what: str = "sharing rank 0's parameters") -> None:
    """Overwrite every parameter and buffer of ``module`` with rank 0's values (in place)."""
    if not context().active:
        return
    for t in [*module.parameters(), *module.buffers()]:
        if t.is_sparse:
            continue  # sparse buffers are built from the data, identical on every rank
        _broadcast_tensor(t.data, what)


def _broadcast_tensor(t: torch.Tensor, what: str) -> None:
    collective(what, lambda: dist.broadcast(t, src=0))


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of ``n`` that rank ``rank`` of ``world`` keeps: contiguous, sizes differ by at most one."""
    return rank * n // world, (rank + 1) * n // world


def shard_batch(batch: T, rank: int, world: int) -> tuple[T, float]:
    """This rank's rows of a global ``batch`` and the weight of its local loss, ``world * u_local / u_global``.

    ``batch`` is a dataclass of tensors (``attnrec.data.batches``) with ``len()``: every tensor field whose first
    dimension is the batch's length is sliced, other fields are kept whole. Two optional declarations on a batch:

    * ``shared_fields`` (a class variable or property, ``frozenset[str]``): fields shared by all rows whatever their
      shape (negatives drawn once per batch, ``(D, n)``, where ``D`` may equal the batch size): kept whole;
    * ``row_units()`` -> ``(B,)`` tensor: how many terms each row adds to the loss's mean (a sequence's target
      positions), when the loss is a mean over those terms rather than over rows (default: one per row).

    ``u`` counts those units, so DDP's mean of the weighted local losses is the global batch's loss. A rank left
    without units (a global batch smaller than ``world``, or rows that add no term) computes the first row that adds
    one, with weight 0, so it still joins the all-reduce.
    """
    if not (dataclasses.is_dataclass(batch) and not isinstance(batch, type)):
        raise ConfigError(
            f"distributed training splits each batch's rows across ranks: a {type(batch).__name__} batch must be "
            "a dataclass of tensors with a leading batch dimension (see attnrec.data.batches)"
        )
    n = len(batch)  # type: ignore[arg-type]
    if n == 0:
        raise ConfigError(f"an empty {type(batch).__name__} batch cannot be split across ranks")
    units_fn = getattr(batch, "row_units", None)
    units = units_fn().detach().cpu().double() if units_fn is not None else torch.ones(n, dtype=torch.float64)
    lo, hi = shard_bounds(n, rank, world)
    total, local = float(units.sum()), float(units[lo:hi].sum())
    weight = world * local / total if total > 0 else (world * (hi - lo) / n)
    if hi == lo or (total > 0 and local == 0):
        first = int(torch.nonzero(units > 0)[0, 0]) if total > 0 else 0
        lo, hi, weight = first, first + 1, 0.0
    shared: frozenset[str] = getattr(batch, "shared_fields", frozenset())
    parts = {
        f.name: getattr(batch, f.name) if f.name in shared else _rows(getattr(batch, f.name), n, lo, hi)
        for f in dataclasses.fields(batch)
    }
    return dataclasses.replace(batch, **parts), weight  # type: ignore[type-var]


def _rows(x: object, n: int, lo: int, hi: int) -> object:
    if isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] == n:
        return x[lo:hi]
    return x


class _LossForward(nn.Module):
    """``forward(batch) = module.loss(batch)``: DDP synchronises gradients of work done through ``forward``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: Any) -> torch.Tensor:
        return self.module.loss(batch)  # type: ignore[operator]


def wrap_module(module: nn.Module, device: torch.device) -> Callable[[Any], torch.Tensor]:
    """``batch -> loss``: ``module.loss`` itself on one process; under a process group, the same through
    ``DistributedDataParallel`` (rank 0's parameters and buffers are broadcast at construction, gradients
    all-reduced and averaged in backward). Parameters a step does not use are allowed (``find_unused_parameters``),
    so any model trains without declaring which parameters each loss reads."""
    if not context().active:
        loss: Callable[[Any], torch.Tensor] = module.loss  # type: ignore[assignment]
        return loss
    from torch.nn.parallel import DistributedDataParallel

    ids = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else None
    )
    ddp = collective(
        "wrapping the model in DistributedDataParallel",
        lambda: DistributedDataParallel(_LossForward(module), device_ids=ids, find_unused_parameters=True),
    )
    return ddp


def rank_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for a CUDA run under a process group (one GPU per process)."""
    ctx = context()
    if ctx.active and device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device
