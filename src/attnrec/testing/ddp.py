"""Run a fit on several gloo processes on 127.0.0.1 and compare it with one process (tests and benchmarks).

:func:`fit_on_ranks` spawns ``world`` processes (``torch.multiprocessing``, spawn), each joining a gloo process
group on a free local port, fitting the same model on the same synthetic data and writing what it saw (the
per-epoch losses, the validation metrics, the fit's report) as JSON; :func:`fit_and_score` is that same fit on
one process. Any model family works: the data follows the model's task (:func:`attnrec.testing.checkerboard` for
rating and top-K models, :func:`attnrec.testing.planted_ctr` for CTR models), so a new family is covered by
naming its model.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attnrec.evaluation.protocols import default_protocol
from attnrec.evaluation.sharded import evaluate
from attnrec.models.base import TaskKind, get_model_class
from attnrec.testing.data import checkerboard, planted_ctr
from attnrec.testing.serve import free_port
from attnrec.training.trainer import TrainerConfig


def task_data(name: str) -> tuple[Any, Any, Any]:
    """(train, valid, test) synthetic data for model ``name``'s task."""
    task = get_model_class(name).task
    if task is TaskKind.CTR:
        return planted_ctr(2000)
    return checkerboard(implicit=task is not TaskKind.RATING)


def fit_and_score(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit ``spec["model"]`` (config ``spec["config"]``, TrainerConfig fields ``spec["trainer"]``) on its task's
    synthetic data and score validation: ``{"loss": per-epoch losses, "history": the fit's rows, "valid":
    metrics, "best_epoch", "epochs_run", "params": per-tensor sums}``. Under a process group every rank calls it."""
    torch.set_num_threads(1)
    train, valid, _ = task_data(spec["model"])
    model = get_model_class(spec["model"])(**spec.get("config", {}))
    trainer = TrainerConfig(**{"progress": False, **spec.get("trainer", {})})
    report = model.fit(train, valid, trainer=trainer)
    exclude = train.csr() if hasattr(train, "csr") else None
    metrics = evaluate(model, valid, default_protocol(model), exclude=exclude)
    module = getattr(model, "module", None)
    params = [float(p.detach().double().sum()) for p in module.parameters()] if module is not None else []
    return {
        "loss": [row.get("loss") for row in report.history],
        "history": report.history,
        "valid": metrics,
        "best_epoch": report.best_epoch,
        "epochs_run": report.epochs_run,
        "params": params,
    }


def _rank_main(rank: int, world: int, port: int, spec: dict[str, Any], out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    timeout = float(spec.get("timeout", 60))
    os.environ["ATTNREC_DIST_TIMEOUT"] = str(timeout)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    try:
        if rank in spec.get("die_ranks", ()):
            os._exit(17)  # a rank that dies at once, as a killed one does
        result = fit_and_score(spec)
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def fit_on_ranks(spec: dict[str, Any], world: int = 2) -> list[dict[str, Any]]:
    """:func:`fit_and_score` on ``world`` gloo processes on 127.0.0.1: each rank's result, in rank order.

    ``spec["die_ranks"]`` (rank numbers) makes those ranks exit at once (code 17) after joining the group; the
    others then fail on their first collective. A failed rank raises ``torch.multiprocessing.ProcessRaisedException``
    or ``ProcessExitedException`` from here."""
    with tempfile.TemporaryDirectory(prefix="attnrec-ddp-") as out:
        mp.start_processes(
            _rank_main, args=(world, free_port(), spec, out), nprocs=world, join=True, start_method="spawn"
        )
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]
