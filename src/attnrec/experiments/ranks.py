"""A run's view of the process group it was launched in (``torchrun`` or ``attnrec train --nproc N``).

Every rank runs the whole straight line (read, split, encode, fit, evaluate) on the same data; the Trainer and
:mod:`attnrec.evaluation.sharded` split the work. Only rank 0 touches ``out``: it checks and locks it, writes the
checkpoints, the log, the bundle and ``metrics.json``; the other ranks run with ``out`` unset and no progress bars.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from attnrec.experiments.config import RunConfig
from attnrec.models.base import get_model_class
from attnrec.training.distributed import env_world_size, process_group_from_env
from attnrec.training.trainer import resolve_device


def run_device(cfg: RunConfig) -> torch.device:
    """The device the run's fit asks for (the run's ``trainer.device``, else the model's default): it picks the
    process group's backend (nccl for CUDA, gloo otherwise)."""
    name = cfg.trainer.get("device") or get_model_class(cfg.model).default_trainer.get("device", "auto")
    return resolve_device(str(name))


def rank_view(cfg: RunConfig) -> RunConfig:
    """What a rank other than 0 runs: ``cfg`` without ``out`` (rank 0 writes everything), and without an item
    table that only the bundle would keep (the model reads neither it nor item features built from it)."""
    update: dict[str, object] = {"out": None}
    if cfg.items is not None and not get_model_class(cfg.model).side_inputs & {"items", "item_features"}:
        update["items"] = None
    return cfg.model_copy(update=update)


@contextmanager
def rank_session(cfg: RunConfig, progress: bool) -> Iterator[tuple[RunConfig, bool]]:
    """Within: this rank's ``(cfg, progress)``, inside the process group of a launched run (one process: as given)."""
    if env_world_size() <= 1:
        yield cfg, progress
        return
    with process_group_from_env(run_device(cfg)) as ctx:
        yield (cfg, progress) if ctx.is_main else (rank_view(cfg), False)
