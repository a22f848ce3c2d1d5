"""``attnrec train --nproc N``: the run on ``N`` local processes, launched by PyTorch's own elastic launcher.

This is ``torchrun --standalone --nproc-per-node N -m attnrec train ...`` from Python: the launcher
(:func:`torch.distributed.launcher.api.elastic_launch`) starts ``N`` workers with the rendezvous variables set
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...), each worker runs :func:`~attnrec.experiments.run.run_experiment`
(which joins the process group, :mod:`attnrec.experiments.ranks`), and rank 0's metrics come back. A worker that
fails makes the launcher stop the others; the failure comes back as one
:class:`~attnrec.training.distributed.DistributedError` naming each failed rank, its exit code or signal, and
the error it raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from attnrec.errors import ConfigError
from attnrec.experiments.config import RunConfig
from attnrec.experiments.run import run_experiment
from attnrec.training.distributed import DistributedError

T = TypeVar("T")


@dataclass
class LaunchResult:
    """What a launched run returns to the caller: rank 0's metrics and the run directory."""

    metrics: dict[str, Any]
    out: Path | None


def _worker(cfg_json: str, progress: bool) -> dict[str, Any]:
    """One rank: the whole run (rank 0 writes ``out``); returns its metrics (the launcher sends them back)."""
    return run_experiment(RunConfig.model_validate_json(cfg_json), progress=progress).metrics


def run_distributed(cfg: RunConfig, nproc: int, *, progress: bool = True) -> LaunchResult:
    """Run ``cfg`` on ``nproc`` processes of this machine (gloo on the CPU, nccl on CUDA with one GPU a process),
    DistributedDataParallel in the Trainer. ``cfg.threads`` is per process. Raises
    :class:`~attnrec.training.distributed.DistributedError` when a rank fails."""
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: expected at least 1 process")
    if nproc == 1:
        result = run_experiment(cfg, progress=progress)
        return LaunchResult(result.metrics, result.out)
    results = launch(_worker, (cfg.model_dump_json(exclude_unset=True), progress), nproc)
    return LaunchResult(results[0], cfg.out)


def launch(
    entrypoint: Callable[..., T], args: tuple[Any, ...], nproc: int, *, start_method: str = "spawn"
) -> dict[int, T]:
    """``entrypoint(*args)`` on ``nproc`` local processes started by torch's elastic launcher (a c10d rendezvous
    on a free port of 127.0.0.1, no restarts; with ``spawn`` ``entrypoint`` must be importable): each rank's
    return value by rank. Raises :class:`~attnrec.training.distributed.DistributedError` naming every failed
    rank. ``start_method="fork"`` saves each rank importing torch again (tests); spawn is the safe default."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"attnrec-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port on this machine, as torchrun --standalone
        max_restarts=0,
        monitor_interval=0.2,
        start_method=start_method,
    )
    try:
        return elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        raise DistributedError(describe_failure(exc, nproc)) from None


def describe_failure(exc: Any, nproc: int) -> str:
    """One message for a launcher's ``ChildFailedError``: per failed rank, how it ended and its error's last line
    (the exception it raised; a rank killed by a signal has none)."""
    lines = []
    for rank, failure in sorted(exc.failures.items()):
        how = (
            f"killed by {failure.signal_name()}"
            if failure.exitcode is not None and failure.exitcode < 0
            else f"exit code {failure.exitcode}"
        )
        message = _last_error_line(failure.message)
        lines.append(f"rank {rank} ({how}{': ' + message if message else ''})")
    return f"distributed run on {nproc} processes failed: " + "; ".join(lines)


def _last_error_line(message: object) -> str:
    """The exception line of a worker's recorded error (``message`` is a dict with ``message``, or a string)."""
    text = message.get("message", "") if isinstance(message, dict) else str(message or "")
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error:" in ln or "Error " in ln]
    return (errors[-1] if errors else lines[-1] if lines else "")[:500]
