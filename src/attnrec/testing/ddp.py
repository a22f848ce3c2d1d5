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
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attnrec.data.side import ItemFeatures, ReviewCorpus, SideInputs
from attnrec.evaluation.protocols import default_protocol
from attnrec.evaluation.sharded import evaluate
from attnrec.models.base import TaskKind, get_model_class
from attnrec.testing.data import checkerboard, planted_ctr, planted_item_features, review_checkerboard
from attnrec.testing.serve import free_port
from attnrec.training.distributed import all_gather_objects, process_group_from_env
from attnrec.training.trainer import SGDSolver, TrainerConfig


def task_data(name: str) -> tuple[Any, Any, Any]:
    """(train, valid, test) synthetic data for model ``name``'s task (reviews on the training rows of a model that
    reads them)."""
    cls = get_model_class(name)
    if cls.task is TaskKind.CTR:
        return planted_ctr(2000)
    if "reviews" in cls.side_inputs:
        return review_checkerboard()
    return checkerboard(implicit=cls.task is not TaskKind.RATING)


def fit_and_score(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit ``spec["model"]`` (config ``spec["config"]``, TrainerConfig fields ``spec["trainer"]``) on its task's
    synthetic data and score validation: ``{"loss": per-epoch losses, "history": the fit's rows, "valid":
    metrics, "best_epoch", "epochs_run", "params": per-tensor sums}``. Under a process group every rank calls it."""
    torch.set_num_threads(1)
    train, valid, _ = task_data(spec["model"])
    model = get_model_class(spec["model"])(**spec.get("config", {}))
    trainer = TrainerConfig(**{"progress": False, **spec.get("trainer", {})})
    side = None
    if "reviews" in model.side_inputs:
        side = SideInputs(reviews=ReviewCorpus.from_split(train))
    elif "item_features" in model.side_inputs:
        side = SideInputs(
            item_features=ItemFeatures(train.item_vocab, planted_item_features(len(train.item_vocab)))
        )
    report = model.fit(train, valid, side=side, trainer=trainer)
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


class Killed(Exception):
    """Raised by a fit that ``spec["kill_at_epoch"]`` stops (as a killed process would, after a checkpoint)."""


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`fit_and_score`, or ``{"killed": epoch}`` when ``spec["kill_at_epoch"]`` stops the fit there (the
    epoch's SGD step is never taken; the checkpoint of the epoch before it is on disk)."""
    if dist.is_initialized() and str(dist.get_rank()) in spec.get("rank_config", {}):
        # a rank fitting another config than the others (the Trainer must refuse it)
        spec = {**spec, "config": {**spec.get("config", {}), **spec["rank_config"][str(dist.get_rank())]}}
    kill = spec.get("kill_at_epoch")
    if kill is None:
        return fit_and_score(spec)
    original = SGDSolver.train_epoch

    def dies(self: SGDSolver, epoch: int, generator: torch.Generator) -> dict[str, float]:
        if epoch == kill:
            raise Killed
        return original(self, epoch, generator)

    SGDSolver.train_epoch = dies  # type: ignore[method-assign]
    try:
        fit_and_score(spec)
    except Killed:
        return {"killed": kill}
    finally:
        SGDSolver.train_epoch = original  # type: ignore[method-assign]
    raise AssertionError(f"the fit ended before epoch {kill}")


def _rank_main(rank: int, world: int, port: int, specs: list[dict[str, Any]], out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    timeout = float(specs[0].get("timeout", 60))
    os.environ["ATTNREC_DIST_TIMEOUT"] = str(timeout)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    try:
        if rank in specs[0].get("die_ranks", ()):
            os._exit(17)  # a rank that dies at once, as a killed one does
        results = [run_spec(spec) for spec in specs]
        Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def fit_on_ranks(
    specs: list[dict[str, Any]], world: int = 2, start_method: str = "forkserver"
) -> list[list[dict[str, Any]]]:
    """:func:`run_spec` of each spec in turn on ``world`` gloo processes on 127.0.0.1 (one process group, one
    spawn): per rank, the list of results.

    ``specs[0]["die_ranks"]`` (rank numbers) makes those ranks exit at once (code 17) after joining the group; the
    others then fail on their first collective (``specs[0]["timeout"]`` seconds at most). A failed rank raises
    ``torch.multiprocessing.ProcessRaisedException`` or ``ProcessExitedException`` from here.

    ``start_method="forkserver"`` (the default) forks each rank from a clean server process that has imported
    this module once: no rank imports torch again (seconds each), and none inherits the caller's thread pools
    (a plain fork after the caller ran BLAS or OpenMP work can hang in the child's first solve)."""
    if start_method == "forkserver":
        from attnrec.models.base import _BUILTIN_MODULES

        mp.set_forkserver_preload([__name__, *_BUILTIN_MODULES])
    with tempfile.TemporaryDirectory(prefix="attnrec-ddp-") as out:
        mp.start_processes(
            _rank_main,
            args=(world, free_port(), specs, out),
            nprocs=world,
            join=True,
            start_method=start_method,
        )
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]


def rank_fails(mode: str, timeout: float) -> str:
    """A launched rank (:func:`attnrec.experiments.launch.launch`) in a gloo group whose rank 1 is killed by SIGKILL
    (``mode="kill"``) or stops responding (``mode="hang"``) while rank 0 waits for it in a collective."""
    os.environ["ATTNREC_DIST_TIMEOUT"] = str(timeout)
    with process_group_from_env(torch.device("cpu")) as ctx:
        if ctx.rank == 1:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10 * timeout)
        all_gather_objects(ctx.rank, "waiting for the other ranks")
        return "done"
