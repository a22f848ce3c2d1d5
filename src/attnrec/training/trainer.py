"""The one training loop: epochs, early stopping on a validation metric, best-epoch restore, checkpoints with
exact resume (refused when the run differs), seeds, device choice, progress bars and a JSONL log.

Every solver goes through the same loop. SGD models hand in a :class:`~attnrec.training.types.TrainableModule`
(``loss(batch)``) and a function that yields one epoch of typed batches from a seeded ``torch.Generator``; the
Trainer wraps them in :class:`SGDSolver` (optimiser, LR schedule, AMP, gradient clipping). Solvers that are not SGD
(ALS sweeps, graph rebuilds) implement :class:`~attnrec.training.types.EpochSolver` themselves. Either way an
optional validation function returns metrics computed on the *validation* split (the Trainer never sees test data).

Exact resume: every epoch's randomness (batch order, negatives, dropout) is derived from ``(seed, epoch)``
alone, so resuming from the checkpoint written after epoch ``e`` replays epochs ``e+1..`` bit for bit. A checkpoint
is resumed only when the model config, the trainer config (less its logging, progress, path and resume fields) and
the data fingerprint all match the ones it was written with (:class:`~attnrec.training.types.RunIdentity`);
otherwise :class:`~attnrec.errors.ConfigError` names what differs.

Distributed data parallel (:mod:`attnrec.training.distributed`) needs nothing from a model: under a process
group, :class:`SGDSolver` steps through ``DistributedDataParallel`` and :meth:`Trainer._epoch_batches` keeps this
rank's rows of every global batch, weighted so that ranks together take the single-process step; an
:class:`EpochSolver` runs replicated, rank 0's parameters broadcast after each epoch. Checkpoints, the log, the
checkpoint lock and progress bars are rank 0's; a resume is read by rank 0 and broadcast to every rank.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from torch import nn
from tqdm.auto import tqdm

from attnrec.errors import ConfigError
from attnrec.paths import DirLock, atomic_write, atomic_write_text
from attnrec.training.distributed import (
    DistributedError,
    all_gather_objects,
    all_reduce_sum,
    broadcast_module,
    broadcast_object,
    collective,
    context,
    rank_device,
    shard_batch,
    wrap_module,
)
from attnrec.training.types import (
    EpochSolver,
    FitReport,
    RunIdentity,
    TrainableModule,
    config_digest,
    without_legacy,
)

CHECKPOINT_NAME = "checkpoint.pt"
#: PyTorch's Adam / AdamW ε, ``TrainerConfig.adam_eps``'s default
ADAM_EPS = 1e-8

#: the TrainerConfig fields that only gradient training reads (the optimiser, its schedule, the batches, AMP): a solver
#: that is not SGD (ALS sweeps, counting) never reads them, so a run that sets one is refused
SGD_FIELDS: frozenset[str] = frozenset(
    {
        "batch_size",
        "optimizer",
        "lr",
        "adam_eps",
        "weight_decay",
        "momentum",
        "lr_schedule",
        "step_size",
        "gamma",
        "restart_period",
        "grad_clip",
        "amp",
    }
)
#: the fields of early stopping on a validation metric (unused by a solver that validates nothing)
VALIDATION_FIELDS: frozenset[str] = frozenset(
    {"valid_metric", "valid_mode", "valid_also", "valid_every", "patience", "restore_best", "validate_start"}
)


class TrainerConfig(BaseModel):
    """Everything about *how* to train, separate from the model's own hyper-parameters."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    #: fields that do not change what is trained: left out of the identity a checkpoint must match
    NOT_IDENTITY: ClassVar[frozenset[str]] = frozenset({"checkpoint_dir", "log_path", "progress", "resume"})
    #: fields added after checkpoints were written, with the value that reproduces the run before them: left out of
    #: the identity at that value, so an older checkpoint stays resumable (any other value is another run)
    ADDED_NEUTRAL: ClassVar[dict[str, Any]] = {"validate_start": False, "adam_eps": ADAM_EPS}

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(1024, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    lr: float = Field(1e-3, gt=0)
    #: Adam's / AdamW's ε, added to the root of the second-moment estimate (PyTorch's default). A loss that is a
    #: batch *mean* has per-row gradients ``batch_size`` times smaller than the same loss summed (Cornac's VBPR, the
    #: BPR papers' per-triple SGD), and Adam is scale-free except through ε: ``adam_eps = 1e-8 / batch_size`` takes
    #: the summed loss's steps — with no ``grad_clip`` (its threshold would scale too) and, under adam, no
    #: ``weight_decay`` (its coupled L2 gradient is not scaled; AdamW's decoupled decay needs nothing). Only for
    #: ``optimizer`` adam / adamw (another optimiser refuses a non-default value)
    adam_eps: float = Field(ADAM_EPS, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = 0.0
    lr_schedule: Literal["none", "step", "cosine", "cosine_warm_restarts"] = "none"
    step_size: int = Field(10, ge=1)
    gamma: float = 0.5
    restart_period: int = Field(10, ge=1)
    grad_clip: float | None = None
    valid_metric: str | None = None
    valid_mode: Literal["min", "max"] | None = None
    #: more validation metrics that extend patience, each with its direction (``{"auc": "max"}``): an epoch where
    #: the selection metric *or* any of these improves on its own best resets the count, so training stops only when
    #: none improves for ``patience`` epochs. The restored weights stay those of the best ``valid_metric`` epoch.
    valid_also: dict[str, Literal["min", "max"]] = Field(default_factory=dict)
    valid_every: int = Field(1, ge=1)
    patience: int | None = Field(5, ge=1)
    restore_best: bool = True
    #: validate the module as it starts (untrained, or warm-started) before the first epoch, as "epoch 0": it is a
    #: candidate for the best state like any validated epoch (restored when no epoch beats it), the epochs after it
    #: must improve on it to reset patience, and its row (``epoch`` 0, ``seconds`` 0, the ``valid_*`` metrics, no
    #: ``loss``) opens the history and the log. Epoch callbacks are not called for it (nothing was trained), and
    #: ``epochs`` still counts trained epochs. Like ``patience``, it applies only to a fit that validates (no
    #: validation function: nothing to validate, no effect). False: the first candidate is epoch 1
    validate_start: bool = False
    device: str = "auto"
    amp: bool = False
    checkpoint_dir: Path | None = None
    #: continue from ``checkpoint_dir``'s checkpoint when there is one (it must match this run); False starts over
    resume: bool = True
    log_path: Path | None = None
    progress: bool = True

    @field_validator("adam_eps")
    @classmethod
    def _adam_eps_needs_adam(cls, value: float, info: ValidationInfo) -> float:
        # the optimizer is absent here when it failed its own check: that error is the one reported
        optimizer = info.data.get("optimizer", "adam")
        if value != ADAM_EPS and optimizer not in ("adam", "adamw"):
            raise ValueError(
                f"adam_eps={value!r} is Adam's / AdamW's ε; optimizer {optimizer!r} does not read it"
            )
        return value


#: what runs after every epoch of every fit inside :func:`epoch_callbacks` (a tuner's pruning)
EpochCallback = Callable[[int, dict[str, float]], None]
_EPOCH_CALLBACKS: ContextVar[tuple[EpochCallback, ...]] = ContextVar("attnrec_epoch_callbacks", default=())


@contextmanager
def epoch_callbacks(*callbacks: EpochCallback) -> Iterator[None]:
    """Call each ``callback(epoch, row)`` after every epoch of any fit inside the ``with`` block, with the row the
    log gets (``loss``, ``seconds``, and ``valid_<metric>`` on validation epochs). Code that fits a model through the
    model's own ``fit`` (a tuner pruning on the validation metric) sees each epoch without every model passing a
    callback down. An exception a callback raises stops the fit and propagates. A model that fits an inner model
    first (hybrid_csa's svd, a CTR model's ``linear_init = "lr"``) does it inside :func:`inner_fit`, so the
    callbacks see the outer model's epochs only."""
    token = _EPOCH_CALLBACKS.set(_EPOCH_CALLBACKS.get() + callbacks)
    try:
        yield
    finally:
        _EPOCH_CALLBACKS.reset(token)


@contextmanager
def inner_fit() -> Iterator[None]:
    """Fit an inner model (one the outer model starts from) without the enclosing :func:`epoch_callbacks`: its
    epochs are not the outer fit's, and a tuner that prunes on ``(epoch, value)`` would otherwise read the inner
    model's curve as the outer model's first epochs (Optuna keeps the first value reported for a step)."""
    token = _EPOCH_CALLBACKS.set(())
    try:
        yield
    finally:
        _EPOCH_CALLBACKS.reset(token)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``, and must exist here:
    ``cuda`` on a build or machine without CUDA (or ``cuda:3`` on a one-GPU machine) is a :class:`ConfigError`
    at once, not a failure after the data is loaded."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"trainer field 'device': {exc}") from None
    fix = "use --device cpu, or auto (cuda, then mps, then cpu)"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            )
            raise ConfigError(f"trainer field 'device' = {name!r}: {why}; {fix}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"trainer field 'device' = {name!r}: there are {torch.cuda.device_count()} CUDA device(s); {fix}"
            )
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"trainer field 'device' = {name!r}: MPS is not available here; {fix}")
    return device


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's randomness, a function of (seed, epoch) only (this is what makes resume exact)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))


def fused_adam(params: list[torch.nn.Parameter]) -> bool | None:
    """Adam / AdamW's ``fused``: True when every parameter is a dense floating tensor on CPU or CUDA, else None
    (torch's own default).

    The default single-tensor Adam makes about six passes over every parameter per step; the fused kernel one.
    An embedding model's step updates its whole user and item tables (dense gradients), so that cost grows with
    users + items on every batch, i.e. with the square of the data per epoch: at 150k × 64 embeddings the fused
    step is ~4.5× faster on one CPU thread (issue 19, BENCHMARKS.md "bpr/lightgcn per epoch as the data grows").
    Same update up to float rounding (tests/training/test_fused_adam.py)."""
    ok = bool(params) and all(
        p.is_floating_point() and not p.is_sparse and p.device.type in ("cpu", "cuda") for p in params
    )
    return True if ok else None


class SGDSolver:
    """The :class:`EpochSolver` of gradient-trained modules: one pass of mini-batch steps per epoch.

    Owns the optimiser and the LR schedule (their state is what resume needs beyond the module's weights);
    ``make_batches(epoch, generator)`` yields the epoch's typed batches.
    """

    def __init__(
        self,
        trainer: Trainer,
        module: TrainableModule,
        make_batches: Callable[[int, torch.Generator], Iterable[Any]],
    ) -> None:
        self.trainer = trainer
        self.module = trainer._prepare_module(module)
        #: batch -> loss: ``module.loss``, or the same through DistributedDataParallel under a process group
        self.step = wrap_module(self.module, trainer.device)
        self.make_batches = make_batches
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()

    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.trainer.config
        params = [p for p in self.module.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(
                params, lr=c.lr, eps=c.adam_eps, weight_decay=c.weight_decay, fused=fused_adam(params)
            )
        if c.optimizer == "adamw":
            return torch.optim.AdamW(
                params, lr=c.lr, eps=c.adam_eps, weight_decay=c.weight_decay, fused=fused_adam(params)
            )
        if c.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum)

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        c, opt = self.trainer.config, self.optimizer
        if c.lr_schedule == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma)
        if c.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
        if c.lr_schedule == "cosine_warm_restarts":
            return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=c.restart_period)
        return None

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        """One pass over ``make_batches(epoch, generator)``: {"loss": mean batch loss, "lr": the rate after the
        schedule's step}. A non-finite loss raises :class:`FloatingPointError`.

        Under a process group each rank computes its rows of every global batch; the local loss is scaled by the
        rank's weight (:func:`~attnrec.training.distributed.shard_batch`) before backward, so DDP's mean over ranks
        is the global batch's gradient, and the reported loss is the global batches' mean (one all-reduce)."""
        t, c, module, opt = self.trainer, self.trainer.config, self.module, self.optimizer
        amp = c.amp and t.device.type == "cuda"
        ctx = t.dist
        module.train()
        total, n_batches = 0.0, 0
        bar = tqdm(
            t._epoch_batches(self.make_batches(epoch, generator)),
            desc=f"epoch {epoch}/{c.epochs}",
            disable=not t.progress,
            leave=False,
            unit="batch",
        )
        for batch, weight in bar:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(t.device.type, dtype=torch.bfloat16, enabled=amp):
                loss = self.step(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"epoch {epoch}: the loss became {loss.item()} (lower the learning rate?)"
                    + (f" on rank {ctx.rank}" if ctx.active else "")
                )
            if ctx.active:
                collective("the gradient all-reduce", (loss * weight).backward)
                total += float(loss.detach()) * weight / ctx.world
            else:
                loss.backward()
                total += float(loss.detach())
            if c.grad_clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), c.grad_clip)
            opt.step()
            n_batches += 1
        if ctx.active:
            total = all_reduce_sum([total], t.device, "summing the epoch's loss")[0]
        if self.scheduler is not None:
            self.scheduler.step()
        return {"loss": total / max(1, n_batches), "lr": opt.param_groups[0]["lr"]}

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"optimizer": copy.deepcopy(self.optimizer.state_dict())}
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        kernels = [group.get("fused") for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        # the kernel is this run's choice, not the checkpoint's: torch copies a saved group's "fused" (None in a
        # checkpoint written before the fused kernel was used), which would silently resume on the slow path
        for group, fused in zip(self.optimizer.param_groups, kernels, strict=True):
            if "fused" in group:
                group["fused"] = fused
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])


class Trainer:
    """Fits a module or drives an :class:`EpochSolver`. One instance per fit."""

    def __init__(
        self, config: TrainerConfig | None = None, *, valid_metric: str = "loss", mode: str = "min"
    ) -> None:
        self.config = config or TrainerConfig()
        self.valid_metric = valid_metric
        self.mode = mode
        #: this process's place among the ranks of the default process group (one process when there is none)
        self.dist = context()
        self.device = rank_device(resolve_device(self.config.device))
        #: progress bars are rank 0's
        self.progress = self.config.progress and self.dist.is_main

    # ------------------------------------------------------------------ building blocks
    def _prepare_module(self, module: TrainableModule) -> TrainableModule:
        return module.to(self.device)

    def _epoch_batches(self, batches: Iterable[Any]) -> Iterator[tuple[Any, float]]:
        """``(batch on the device, weight of its loss)``: the whole batch with weight 1 on one process; under a
        process group this rank's rows of each global batch (:func:`~attnrec.training.distributed.shard_batch`)."""
        ctx = self.dist
        for batch in batches:
            if ctx.active:
                local, weight = shard_batch(batch, ctx.rank, ctx.world)
                yield local.to(self.device), weight
            else:
                yield batch.to(self.device), 1.0

    def _better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    def identity(self, run: RunIdentity | None) -> dict[str, Any]:
        """The three parts a checkpoint must match: model config, trainer config (less the fields in
        ``TrainerConfig.NOT_IDENTITY``) and data fingerprint (None where the caller gave no :class:`RunIdentity`).
        Fields added after checkpoints were written are left out at their legacy value (:meth:`legacy`)."""
        legacy = self.legacy(run)
        trainer = self.config.model_dump(mode="json", exclude=set(TrainerConfig.NOT_IDENTITY))
        return {
            "model config": without_legacy(run.model_config, legacy["model config"])
            if run is not None
            else None,
            "trainer config": without_legacy(trainer, legacy["trainer config"]),
            "data": run.data if run is not None else None,
        }

    @staticmethod
    def legacy(run: RunIdentity | None) -> dict[str, dict[str, Any]]:
        """Per identity part, the fields added after checkpoints were written and the value that reproduces the run
        before them (``RunIdentity.legacy``, ``TrainerConfig.ADDED_NEUTRAL``): left out at that value on both
        sides of a comparison, so a checkpoint written before a field existed, or after at that value, resumes."""
        return {
            "model config": run.legacy if run is not None else {},
            "trainer config": TrainerConfig.ADDED_NEUTRAL,
        }

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        model: TrainableModule | EpochSolver,
        make_batches: Callable[[int, torch.Generator], Iterable[Any]] | None = None,
        *,
        validate: Callable[[], dict[str, float]] | None = None,
        seed: int = 0,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        identity: RunIdentity | None = None,
    ) -> FitReport:
        """Train and return the report; the model ends with the best validation epoch's weights.

        ``model`` is a :class:`TrainableModule` with ``make_batches`` (SGD) or an :class:`EpochSolver` without.
        ``identity`` (the model's config and data fingerprint) is stored in checkpoints; a checkpoint written by a
        run with another identity is never resumed (:class:`ConfigError` names the part that differs). The
        checkpoint folder is locked for the fit (:class:`~attnrec.paths.DirLock`): a second fit writing the same
        checkpoints fails at once instead of resuming the first one's in-flight state.
        """
        if self.config.checkpoint_dir is None or not self.dist.is_main:
            return self._fit(model, make_batches, validate, seed, on_epoch_end, identity)
        self.config.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        with DirLock(self.config.checkpoint_dir, hint="give this fit another trainer checkpoint_dir"):
            return self._fit(model, make_batches, validate, seed, on_epoch_end, identity)

    def _fit(
        self,
        model: TrainableModule | EpochSolver,
        make_batches: Callable[[int, torch.Generator], Iterable[Any]] | None,
        validate: Callable[[], dict[str, float]] | None,
        seed: int,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None,
        identity: RunIdentity | None,
    ) -> FitReport:
        c = self.config
        t0 = time.perf_counter()
        # through JSON, as it is stored: tuples become lists, so a saved identity compares equal to a new one
        ident = json.loads(json.dumps(self.identity(identity), default=str))
        if self.dist.active:
            self._check_same_run(ident)  # before DDP compares parameter shapes, with a clearer message
        solver: EpochSolver
        if isinstance(model, nn.Module):
            if make_batches is None:
                raise ConfigError("Trainer.fit: a module needs make_batches(epoch, generator)")
            solver = SGDSolver(self, model, make_batches)
        else:
            if make_batches is not None:
                raise ConfigError("Trainer.fit: an EpochSolver makes its own epochs; give no make_batches")
            solver = model
        module = solver.module
        state: dict[str, Any] = {
            "epoch": 0,
            "best": None,
            "best_epoch": None,
            "bad": 0,
            "stopped": False,
            "history": [],
            "best_valid": {},
            "best_also": {},
        }
        best_weights: dict[str, torch.Tensor] | None = None
        main = self.dist.is_main
        # checkpoints are rank 0's: it reads one to resume and hands it (or the reason it cannot) to every rank
        ckpt = c.checkpoint_dir / CHECKPOINT_NAME if c.checkpoint_dir and main else None
        saved = (
            self._read_checkpoint(ckpt, ident, self.legacy(identity))
            if ckpt is not None and c.resume and ckpt.exists()
            else None
        )
        saved = broadcast_object(saved, "reading the checkpoint to resume") if self.dist.active else saved
        if isinstance(saved, ConfigError):
            raise saved
        if saved is not None:
            module.load_state_dict(saved["module"])
            solver.load_state_dict(saved["solver"])
            best_weights = saved.get("best_weights")
            state = {"stopped": False, "best_also": {}, **json.loads(saved["state"])}
        elif main and c.log_path is not None and c.log_path.exists():
            c.log_path.unlink()  # a fresh fit starts a fresh log; a resumed one appends

        def check(epoch: int, row: dict[str, float]) -> None:
            """Validate ``module`` after ``epoch`` (0: as it starts): the metrics into ``row``, the best state and
            the patience count updated."""
            nonlocal best_weights
            assert validate is not None
            module.eval()
            with torch.no_grad():
                metrics = validate()
            watched = [(self.valid_metric, "valid_metric"), *((k, "valid_also") for k in c.valid_also)]
            for name, field in watched:
                if name not in metrics:
                    raise ConfigError(
                        f"trainer field {field!r}: {name!r} is not computed; have {sorted(metrics)}"
                    )
            row.update({f"valid_{k}": float(v) for k, v in metrics.items()})
            value = float(metrics[self.valid_metric])
            improved = False
            if math.isfinite(value) and self._better(value, state["best"]):
                state.update(
                    best=value, best_epoch=epoch, best_valid={k: float(v) for k, v in metrics.items()}
                )
                best_weights = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
                improved = True
            for name, mode in c.valid_also.items():
                v, old = float(metrics[name]), state["best_also"].get(name)
                if math.isfinite(v) and (old is None or (v < old if mode == "min" else v > old)):
                    state["best_also"][name] = v
                    improved = True
            if improved:
                state["bad"] = 0
            elif (
                epoch > 0
            ):  # a start with a non-finite metric is no candidate, but not a bad epoch: none was trained
                state["bad"] += 1
                state["stopped"] = c.patience is not None and state["bad"] >= c.patience

        if c.validate_start and validate is not None and saved is None:
            # epoch 0: the starting point is a candidate too. A resumed run has it in the checkpoint's state (a
            # checkpoint is written right after it), so it is validated once per run, never again on resume
            start: dict[str, float] = {"epoch": 0, "seconds": 0.0}
            check(0, start)
            state["history"].append(start)
            if main:
                self._log(state["history"])
            if ckpt is not None:
                self._checkpoint(ckpt, module, solver, state, best_weights, ident)
        bar = tqdm(
            total=c.epochs,
            initial=state["epoch"],
            desc="fit",
            disable=not self.progress,
            leave=False,
            unit="epoch",
        )
        first = state["epoch"] + 1 if not state["stopped"] else c.epochs + 1
        for epoch in range(first, c.epochs + 1):
            e0 = time.perf_counter()
            torch.manual_seed((seed * 7919 + epoch) % (2**63))
            row: dict[str, float] = {
                "epoch": epoch,
                **solver.train_epoch(epoch, epoch_generator(seed, epoch)),
            }
            if self.dist.active and not isinstance(solver, SGDSolver):
                # a solver that is not SGD ran the same epoch on every rank: rank 0's result is the one kept
                broadcast_module(module, f"sharing epoch {epoch}'s parameters")
            row["seconds"] = time.perf_counter() - e0
            if validate is not None and (epoch % c.valid_every == 0 or epoch == c.epochs):
                check(epoch, row)
            state["epoch"] = epoch
            state["history"].append(row)
            if main:
                self._log(state["history"])
            if ckpt is not None:
                self._checkpoint(ckpt, module, solver, state, best_weights, ident)
            bar.update(1)
            shown = ("loss", f"valid_{self.valid_metric}")
            bar.set_postfix({k: f"{row[k]:.4g}" for k in shown if k in row})
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            for callback in _EPOCH_CALLBACKS.get():
                callback(epoch, row)
            if state["stopped"]:
                break
        bar.close()
        if c.restore_best and best_weights is not None:
            module.load_state_dict(best_weights)
        module.eval()
        if self.dist.active:
            self._check_replicas(module)
        return FitReport(
            seconds=time.perf_counter() - t0,
            epochs_run=state["epoch"],
            best_epoch=state["best_epoch"],
            best_valid=state["best_valid"],
            history=state["history"],
        )

    def _log(self, history: list[dict[str, float]]) -> None:
        """Rewrite the log whole from the history (atomically): a kill mid-write leaves the previous log, and a
        resumed fit's log holds exactly the checkpoint's epochs and the new ones, never an epoch twice."""
        path = self.config.log_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in history), what="training log")

    @classmethod
    def _read_checkpoint(
        cls, path: Path, ident: dict[str, Any], legacy: dict[str, dict[str, Any]]
    ) -> dict[str, Any] | ConfigError:
        """The checkpoint at ``path``, or the :class:`ConfigError` saying why this run cannot resume it (returned,
        not raised, so that rank 0 can hand it to the other ranks before every rank raises it)."""
        saved = torch.load(path, map_location="cpu", weights_only=True)
        try:
            cls._check_identity(path, saved, ident, legacy)
        except ConfigError as exc:
            return exc
        return saved  # type: ignore[no-any-return]

    def _check_same_run(self, ident: dict[str, Any]) -> None:
        """Every rank must fit the same run (model config, trainer config, data fingerprint): a rank that read
        other data or another config would train something else behind the same all-reduces."""
        digests = all_gather_objects(
            {k: config_digest({k: v}) for k, v in ident.items()}, "comparing the ranks' runs"
        )
        bad = [
            f"rank {r}: {', '.join(k for k in d if d[k] != digests[0][k])}"
            for r, d in enumerate(digests)
            if d != digests[0]
        ]
        if bad:
            raise DistributedError(
                f"the ranks are not fitting the same run ({'; '.join(bad)} differ from rank 0's): every rank "
                "must read the same data with the same model and trainer settings"
            )

    def _check_replicas(self, module: nn.Module) -> None:
        """Every rank must end with the same parameters (DDP and the epoch broadcasts keep them equal): a
        per-tensor sum, gathered and compared exactly, catches a model whose ranks diverged."""
        sums = [float(p.detach().double().sum()) for p in module.parameters()]
        gathered = all_gather_objects(sums, "comparing the ranks' final parameters")
        bad = [r for r, s in enumerate(gathered) if s != gathered[0]]
        if bad:
            raise DistributedError(
                f"ranks {bad} ended with parameters that differ from rank 0's: the model's training is not the "
                "same on every rank (a loss or solver that reads rank-local state)"
            )

    @staticmethod
    def _check_identity(
        path: Path, saved: dict[str, Any], ident: dict[str, Any], legacy: dict[str, dict[str, Any]]
    ) -> None:
        """Raise :class:`ConfigError` unless the checkpoint at ``path`` was written by a run with identity ``ident``
        (the saved identity read with ``legacy``'s fields left out at their legacy value, as ``ident`` is)."""
        fix = (
            "Start fresh with --overwrite (Python: TrainerConfig(resume=False) or another checkpoint_dir), "
            "or rerun with the checkpoint's settings to resume it."
        )
        if "identity" not in saved:
            raise ConfigError(
                f"{path}: the checkpoint records no run identity (written by an older attnrec). {fix}"
            )
        old = json.loads(saved["identity"])
        for part, fields in legacy.items():
            if isinstance(old.get(part), dict):
                old[part] = without_legacy(old[part], fields)
        diffs = [_describe(part, old.get(part), new) for part, new in ident.items() if old.get(part) != new]
        if diffs:
            raise ConfigError(
                f"{path}: the checkpoint was written by a different run: {'; '.join(diffs)}. {fix}"
            )

    @staticmethod
    def _checkpoint(
        path: Path,
        module: torch.nn.Module,
        solver: EpochSolver,
        state: dict[str, Any],
        best_weights: dict[str, torch.Tensor] | None,
        ident: dict[str, Any],
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "module": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "solver": solver.state_dict(),
            "state": json.dumps(state),
            "identity": json.dumps(ident, default=str),
            "identity_hash": {k: config_digest({k: v}) for k, v in ident.items()},
        }
        if best_weights is not None:
            payload["best_weights"] = best_weights
        # atomic: a kill or a full disk mid-write leaves the previous checkpoint intact and no temporary file
        atomic_write(path, lambda tmp: torch.save(payload, tmp), what="checkpoint")


def _describe(part: str, old: Any, new: Any) -> str:
    """``part`` differs: the changed fields of a config (``lr 0.01 -> 0.5``), or the two values."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        changed = [
            f"{k} {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
            for k in keys
            if old.get(k) != new.get(k)
        ]
        return f"{part} differs ({', '.join(changed)})"
    return f"{part} differs ({old!r} -> {new!r})"
