"""The one training loop: epochs, optimiser and LR schedule, early stopping on a validation metric, best-epoch
restore, checkpoints with exact resume, seeds, device choice, progress bars and a JSONL log.

Models hand in a :class:`~attnrec.models.base.TrainableModule` (``loss(batch)``), a function that yields one
epoch of typed batches from a seeded ``torch.Generator``, and optionally a validation function returning metrics
computed on the *validation* split (the Trainer is never given test data).

Exact resume: every epoch's randomness (batch order, negatives, dropout) is derived from ``(seed, epoch)``
alone, so resuming from the checkpoint written after epoch ``e`` replays epochs ``e+1..`` bit for bit.

Distributed data parallel slots in at two places and nowhere else: :meth:`Trainer._prepare_module` (wrap in
``DistributedDataParallel``) and :meth:`Trainer._epoch_batches` (keep this rank's shard of each epoch's batches);
checkpoints and logs are written by rank 0.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from attnrec.errors import ConfigError
from attnrec.training.types import FitReport, TrainableModule

CHECKPOINT_NAME = "checkpoint.pt"


class TrainerConfig(BaseModel):
    """Everything about *how* to train, separate from the model's own hyper-parameters."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(1024, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = 0.0
    lr_schedule: Literal["none", "step", "cosine", "cosine_warm_restarts"] = "none"
    step_size: int = Field(10, ge=1)
    gamma: float = 0.5
    restart_period: int = Field(10, ge=1)
    grad_clip: float | None = None
    valid_metric: str | None = None
    valid_mode: Literal["min", "max"] | None = None
    valid_every: int = Field(1, ge=1)
    patience: int | None = Field(5, ge=1)
    restore_best: bool = True
    device: str = "auto"
    amp: bool = False
    checkpoint_dir: Path | None = None
    resume: bool = True
    log_path: Path | None = None
    progress: bool = True


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"trainer field 'device': {exc}") from None


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's randomness, a function of (seed, epoch) only (this is what makes resume exact)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))


class Trainer:
    """Fits a module. One instance per fit."""

    def __init__(
        self, config: TrainerConfig | None = None, *, valid_metric: str = "loss", mode: str = "min"
    ) -> None:
        self.config = config or TrainerConfig()
        self.valid_metric = valid_metric
        self.mode = mode
        self.device = resolve_device(self.config.device)

    # ------------------------------------------------------------------ building blocks
    def _optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in module.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum)

    def _scheduler(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        c = self.config
        if c.lr_schedule == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma)
        if c.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
        if c.lr_schedule == "cosine_warm_restarts":
            return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=c.restart_period)
        return None

    def _prepare_module(self, module: TrainableModule) -> TrainableModule:
        return module.to(self.device)

    def _epoch_batches(self, batches: Iterable[Any]) -> Iterator[Any]:
        for batch in batches:
            yield batch.to(self.device)

    def _better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        module: TrainableModule,
        make_batches: Callable[[int, torch.Generator], Iterable[Any]],
        *,
        validate: Callable[[], dict[str, float]] | None = None,
        seed: int = 0,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    ) -> FitReport:
        """Train ``module`` and return the report; the module ends with the best validation epoch's weights."""
        c = self.config
        t0 = time.perf_counter()
        module = self._prepare_module(module)
        opt = self._optimizer(module)
        sched = self._scheduler(opt)
        state: dict[str, Any] = {
            "epoch": 0,
            "best": None,
            "best_epoch": None,
            "bad": 0,
            "history": [],
            "best_valid": {},
        }
        best_weights: dict[str, torch.Tensor] | None = None
        ckpt = c.checkpoint_dir / CHECKPOINT_NAME if c.checkpoint_dir else None
        if ckpt is not None and c.resume and ckpt.exists():
            saved = torch.load(ckpt, map_location="cpu", weights_only=True)
            module.load_state_dict(saved["module"])
            opt.load_state_dict(saved["optimizer"])
            if sched is not None and "scheduler" in saved:
                sched.load_state_dict(saved["scheduler"])
            best_weights = saved.get("best_weights")
            state = json.loads(saved["state"])
        amp = c.amp and self.device.type == "cuda"
        for epoch in range(state["epoch"] + 1, c.epochs + 1):
            module.train()
            gen = epoch_generator(seed, epoch)
            torch.manual_seed((seed * 7919 + epoch) % (2**63))
            total, n_batches, e0 = 0.0, 0, time.perf_counter()
            bar = tqdm(
                self._epoch_batches(make_batches(epoch, gen)),
                desc=f"epoch {epoch}/{c.epochs}",
                disable=not c.progress,
                leave=False,
                unit="batch",
            )
            for batch in bar:
                opt.zero_grad(set_to_none=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = module.loss(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"epoch {epoch}: the loss became {loss.item()} (lower the learning rate?)"
                    )
                loss.backward()
                if c.grad_clip:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), c.grad_clip)
                opt.step()
                total += float(loss.detach())
                n_batches += 1
            if sched is not None:
                sched.step()
            row: dict[str, float] = {
                "epoch": epoch,
                "loss": total / max(1, n_batches),
                "seconds": time.perf_counter() - e0,
                "lr": opt.param_groups[0]["lr"],
            }
            stop = False
            if validate is not None and (epoch % c.valid_every == 0 or epoch == c.epochs):
                module.eval()
                with torch.no_grad():
                    metrics = validate()
                if self.valid_metric not in metrics:
                    raise ConfigError(
                        f"trainer field 'valid_metric': {self.valid_metric!r} is not computed; have {sorted(metrics)}"
                    )
                row.update({f"valid_{k}": float(v) for k, v in metrics.items()})
                value = float(metrics[self.valid_metric])
                if math.isfinite(value) and self._better(value, state["best"]):
                    state.update(
                        best=value,
                        best_epoch=epoch,
                        bad=0,
                        best_valid={k: float(v) for k, v in metrics.items()},
                    )
                    best_weights = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
                else:
                    state["bad"] += 1
                    stop = c.patience is not None and state["bad"] >= c.patience
            state["epoch"] = epoch
            state["history"].append(row)
            self._log(row)
            if ckpt is not None:
                self._checkpoint(ckpt, module, opt, sched, state, best_weights)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            if stop:
                break
        if c.restore_best and best_weights is not None:
            module.load_state_dict(best_weights)
        module.eval()
        return FitReport(
            seconds=time.perf_counter() - t0,
            epochs_run=state["epoch"],
            best_epoch=state["best_epoch"],
            best_valid=state["best_valid"],
            history=state["history"],
        )

    def _log(self, row: dict[str, float]) -> None:
        if self.config.log_path is not None:
            self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.config.log_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")

    @staticmethod
    def _checkpoint(
        path: Path,
        module: torch.nn.Module,
        opt: torch.optim.Optimizer,
        sched: Any,
        state: dict[str, Any],
        best_weights: dict[str, torch.Tensor] | None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "module": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "optimizer": copy.deepcopy(opt.state_dict()),
            "state": json.dumps(state),
        }
        if sched is not None:
            payload["scheduler"] = sched.state_dict()
        if best_weights is not None:
            payload["best_weights"] = best_weights
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint intact
