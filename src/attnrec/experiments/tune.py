"""Hyper-parameter search on the validation split with Optuna (``attnrec tune``; the ``tune`` extra).

A search is a run file (:class:`~attnrec.experiments.config.RunConfig`: the model, the data and its split, the
settings that stay fixed) and a space file (:class:`SearchSpace`: which model and trainer fields vary, and how).

* **Validation only.** :meth:`SearchData.from_run` splits the data as the run would and keeps the training and
  validation parts only; the test part is dropped before the first trial. Every trial fits through
  :func:`~attnrec.experiments.run.fit_interactions` (or the CTR fit) and is scored by the run's validation protocol.
* **Pruning.** Each trial reports its per-epoch validation metric through the Trainer's
  :func:`~attnrec.training.trainer.epoch_callbacks`; the study's pruner (median by default) stops a trial whose
  metric trails the others at the same epoch.
* **Many workers, one study.** Workers (processes or machines) that name the same storage (``sqlite:///study.db``,
  or any database URL Optuna supports) and the same run and space files join one study, named after those files;
  together they run ``n_trials`` trials, numbered ``0..n_trials-1`` by the storage.
* **Test once.** When every trial has finished, one worker retrains the best trial's settings as an ordinary run
  (:func:`~attnrec.experiments.run.run_experiment` into ``out/best``), which evaluates the test split once; the
  study records it (``tested``), so no later worker or rerun tests again.

The report (``out/report.md``, ``trials.csv``, ``history.png``, ``importance.png``) is written by
:mod:`attnrec.experiments.tune_report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from attnrec.data.ctr import CTRData, FeatureEncoder
from attnrec.data.side import ItemFeatures
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, require
from attnrec.evaluation.protocols import default_protocol, evaluate
from attnrec.experiments.config import RunConfig
from attnrec.experiments.ctr_run import evaluate_ctr, prepare_ctr
from attnrec.experiments.run import (
    PreparedData,
    RunResult,
    check_trainer,
    fit_interactions,
    prepare_data,
    trainer_config,
)
from attnrec.experiments.seq_run import prepare_sequences, sequential_protocols
from attnrec.experiments.tune_storage import asking, open_storage, sqlite_lock
from attnrec.models.base import DEFAULT_VALID_METRIC, Estimator, TaskKind, get_model_class
from attnrec.models.ctr.base import CTRRecommender
from attnrec.training.trainer import TrainerConfig, epoch_callbacks
from attnrec.training.types import FitReport, data_fingerprint

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

#: metrics where lower is better (the others are maximised unless the space file says otherwise)
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "logloss", "loss", "ece"})
#: trainer fields a space may not vary: where a trial writes, and how it runs, are the tuner's
NOT_TUNABLE_TRAINER = frozenset({"checkpoint_dir", "log_path", "progress", "resume", "device"})


class ParamSpec(BaseModel):
    """One searched field: ``float`` / ``int`` between ``low`` and ``high`` (``log`` scale, or a ``step``), or
    ``categorical`` over ``choices``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
            extra = [k for k in ("low", "high", "step") if getattr(self, k) is not None] + (
                ["log"] if self.log else []
            )
            if extra:
                raise ValueError(f"a categorical parameter takes `choices` only, not {', '.join(extra)}")
            return self
        if self.choices is not None:
            raise ValueError(f"`choices` is for categorical parameters; a {self.type} one takes low and high")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs `low` and `high`")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale parameter needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("give `log` or `step`, not both")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0 (got {self.step})")
        if self.type == "int":
            bad = [
                f"{k} {v}"
                for k in ("low", "high", "step")
                if (v := getattr(self, k)) is not None and v != int(v)
            ]
            if bad:
                raise ValueError(f"an int parameter needs whole numbers ({', '.join(bad)})")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """This field's value in ``trial`` (Optuna parameter ``name``)."""
        if self.type == "categorical":
            assert self.choices is not None
            return trial.suggest_categorical(name, self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            step = int(self.step) if self.step is not None else 1
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)


class StudySpec(BaseModel):
    """The ``[study]`` table: what is optimised and how trials are proposed and pruned."""

    model_config = ConfigDict(extra="forbid")

    #: the validation metric to optimise; None: the one the trials' epochs are selected on: the run's
    #: ``trainer.valid_metric``, else the model's ``default_trainer`` one (CTR models: logloss), else the task's
    #: (rmse, auc, ndcg@20)
    metric: str | None = None
    #: None: ``minimize`` for rmse/mae/mse/logloss/loss/ece, else ``maximize``
    direction: Literal["minimize", "maximize"] | None = None
    sampler: Literal["tpe", "random"] = "tpe"
    #: the sampler's seed (worker ``w`` uses ``seed + w``, so workers propose different trials)
    seed: int = Field(0, ge=0)
    pruner: Literal["median", "hyperband", "none"] = "median"
    #: median pruner: trials that finish before any is pruned
    startup_trials: int = Field(5, ge=0)
    #: median pruner: the first epochs of every trial, never pruned
    warmup_epochs: int = Field(1, ge=0)


class SearchSpace(BaseModel):
    """A space file: ``[study]`` plus ``[model.<field>]`` and ``[trainer.<field>]`` tables of :class:`ParamSpec`
    (docs/scaling.md, "Distributed tuning", shows one)."""

    model_config = ConfigDict(extra="forbid")

    study: StudySpec = StudySpec()
    model: dict[str, ParamSpec] = {}
    trainer: dict[str, ParamSpec] = {}

    @model_validator(mode="after")
    def _fields(self) -> SearchSpace:
        if not self.model and not self.trainer:
            raise ValueError("nothing to search: add a [model.<field>] or [trainer.<field>] table")
        for name in self.trainer:
            if name not in TrainerConfig.model_fields:
                raise ValueError(
                    f"[trainer.{name}]: not a trainer field (have {', '.join(TrainerConfig.model_fields)})"
                )
            if name in NOT_TUNABLE_TRAINER:
                raise ValueError(f"[trainer.{name}]: set by the tuner itself, not searched")
        opt = self.trainer.get("optimizer")
        if "adam_eps" in self.trainer and opt is not None and set(opt.choices or []) - {"adam", "adamw"}:
            raise ValueError(
                "[trainer.adam_eps] is Adam's / AdamW's ε: [trainer.optimizer] may then choose adam / adamw only "
                f"(it has {opt.choices})"
            )
        return self

    @classmethod
    def parse(cls, data: dict[str, Any], *, source: str = "space") -> SearchSpace:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            msgs = [
                f"{source}: field {'.'.join(str(x) for x in e['loc']) or '<root>'!r}: {e['msg']}"
                + (f" (got {e['input']!r})" if not isinstance(e.get("input"), dict) else "")
                for e in exc.errors()
            ]
            raise ConfigError("; ".join(msgs)) from None

    @classmethod
    def from_toml(cls, path: str | Path) -> SearchSpace:
        try:
            data = tomllib.loads(Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"space file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"space file {path}: cannot read it ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        return cls.parse(data, source=str(path))

    def suggest(self, trial: optuna.Trial) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(model params, trainer params)`` of ``trial``; Optuna names them ``model.<field>``, ``trainer.<field>``."""
        model = {k: spec.suggest(trial, f"model.{k}") for k, spec in self.model.items()}
        trainer = {k: spec.suggest(trial, f"trainer.{k}") for k, spec in self.trainer.items()}
        return model, trainer

    def check_model(self, cls: type[Estimator[Any]], source: str = "space") -> None:
        """Refuse a ``[model.<field>]`` that ``cls``'s config does not have, naming the fields it has."""
        fields = cls.config_class.model_fields
        for name in self.model:
            if name not in fields:
                raise ConfigError(
                    f"{source}: [model.{name}]: {cls.name} has no such field (have {', '.join(fields)})"
                )


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna's ``{"model.reg": .., "trainer.lr": ..}`` as ``(model params, trainer params)``."""
    model = {k.removeprefix("model."): v for k, v in params.items() if k.startswith("model.")}
    trainer = {k.removeprefix("trainer."): v for k, v in params.items() if k.startswith("trainer.")}
    return model, trainer


@dataclass
class SearchData:
    """What a trial may read: the training and validation splits and the metadata side inputs — never test."""

    train: Interactions | CTRData
    valid: Interactions | CTRData
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    #: item-feature modalities of the multimodal family (``--modalities``), aligned to the training items
    item_features: ItemFeatures | None = None
    #: CTR rows: the feature encoder fitted on the training rows
    encoder: FeatureEncoder | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_run(cls, cfg: RunConfig, *, progress: bool = False) -> SearchData:
        """Read and split ``cfg``'s data as :func:`~attnrec.experiments.run.run_experiment` does, then keep
        train and validation only (the test split is dropped here, before any trial)."""
        model_cls = get_model_class(cfg.model)
        if model_cls.task is TaskKind.CTR:
            rows = prepare_ctr(cfg, progress=progress)
            if rows.valid is None or len(rows.valid) == 0:
                raise ConfigError(_NO_VALID)
            return cls(rows.train, rows.valid, encoder=rows.encoder, notes=rows.notes)
        # a sequential run's leave-one-out sequences over the whole catalogue: the data the run itself uses
        if model_cls.task is TaskKind.SEQUENTIAL:
            data = PreparedData(**prepare_sequences(cfg, progress=progress))
        else:
            data = prepare_data(cfg, implicit=model_cls.task is not TaskKind.RATING, progress=progress)
        if len(data.valid) == 0:
            raise ConfigError(_NO_VALID)
        users = data.dataset.users if data.dataset is not None else None
        return cls(
            data.train,
            data.valid,
            items=data.items,
            users=users,
            item_features=data.item_features,
            notes=data.notes,
        )


_NO_VALID = (
    "tuning selects on the validation split, and this run has none: give a `valid` file, or a split whose "
    "validation share is above 0"
)


def study_metric(cfg: RunConfig, space: SearchSpace) -> tuple[str, Literal["minimize", "maximize"]]:
    """The metric the study optimises and its direction (see :class:`StudySpec`).

    Unless the space file names one, it is the metric every trial's Trainer selects its epoch on: the run's
    ``trainer.valid_metric``, else the model's ``default_trainer`` one (a CTR model's: logloss, minimised), else
    the task's (:data:`~attnrec.models.base.DEFAULT_VALID_METRIC`), so the study ranks trials by what their
    epochs were kept for."""
    cls = get_model_class(cfg.model)
    default, mode = DEFAULT_VALID_METRIC[cls.task]
    # trainer_config's order: the model's default_trainer, then the run's [trainer] table
    selected = cfg.trainer.get("valid_metric") or cls.default_trainer.get("valid_metric")
    metric = space.study.metric or selected or default
    if space.study.direction is not None:
        return metric, space.study.direction
    if metric == cfg.trainer.get("valid_metric") and cfg.trainer.get("valid_mode"):
        mode = cfg.trainer["valid_mode"]
    elif metric != default:
        mode = "min" if metric.removeprefix("raw_") in LOWER_IS_BETTER else "max"
    return metric, "minimize" if mode == "min" else "maximize"


def study_name(cfg: RunConfig, space: SearchSpace) -> str:
    """``<model>-<12 hex>``: a digest of the run (less where it writes) and the space, so workers started with the
    same files join one study and a changed file never joins an old one."""
    return f"{cfg.model}-{_identity_digest(cfg, space)}"


def _identity_digest(cfg: RunConfig, space: SearchSpace) -> str:
    run = cfg.model_dump(mode="json", exclude={"out", "overwrite", "resume", "threads"})
    blob = json.dumps({"run": run, "space": space.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def open_study(
    cfg: RunConfig,
    space: SearchSpace,
    *,
    storage: str | None = None,
    name: str | None = None,
    worker: int = 0,
    pruner: Any = None,
) -> optuna.Study:
    """Create the study, or join it when it exists in ``storage``; a study created from other run or space files is
    refused (naming the storage and study). ``pruner`` overrides the space's (Python API)."""
    optuna = require("optuna", "tune")
    name = name or study_name(cfg, space)
    metric, direction = study_metric(cfg, space)
    s = space.study
    sampler: Any
    if s.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=s.seed + worker)
    else:
        # constant liar: a running trial counts as a poor result, so parallel workers spread out
        sampler = optuna.samplers.TPESampler(seed=s.seed + worker, constant_liar=True)
    if pruner is None:
        if s.pruner == "median":
            pruner = optuna.pruners.MedianPruner(
                n_startup_trials=s.startup_trials, n_warmup_steps=s.warmup_epochs
            )
        elif s.pruner == "hyperband":
            pruner = optuna.pruners.HyperbandPruner(min_resource=1)
        else:
            pruner = optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=open_storage(storage),
        study_name=name,
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    digest = _identity_digest(cfg, space)
    held = study.user_attrs.get("identity")
    if held is None:
        study.set_user_attr("identity", digest)
        study.set_user_attr("metric", metric)
        study.set_user_attr("model", cfg.model)
    elif held != digest:
        raise ConfigError(
            f"study {name!r} in {storage} was created from another run or space file (digest {held}, these "
            f"give {digest}): leave out --study-name to get this pair's own study"
        )
    return study


def _pruning_callback(trial: optuna.Trial, metric: str) -> Callable[[int, dict[str, float]], None]:
    optuna = require("optuna", "tune")
    key = f"valid_{metric}"

    def report(epoch: int, row: dict[str, float]) -> None:
        if key not in row:
            return
        trial.report(float(row[key]), step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: valid {metric} {row[key]:.6g}")

    return report


def run_trial(
    trial: optuna.Trial, cfg: RunConfig, data: SearchData, space: SearchSpace, metric: str
) -> tuple[float, dict[str, float], FitReport]:
    """Fit ``cfg``'s model with ``trial``'s settings on ``data.train`` and score it on ``data.valid``:
    ``(value of metric, every validation metric, the fit's report)``. Raises ``optuna.TrialPruned`` when the
    pruner stops it."""
    model_params, trainer_params = space.suggest(trial)
    trial_cfg = _with_settings(cfg, model_params, trainer_params, out=None)
    cls = get_model_class(cfg.model)
    model = cls(**trial_cfg.model_params)
    trainer_cfg = trainer_config(trial_cfg, cls, progress=False)
    check_trainer(trial_cfg, model, trainer_cfg)
    torch.manual_seed(model.config.seed)
    with epoch_callbacks(_pruning_callback(trial, metric)):
        if isinstance(model, CTRRecommender):
            assert isinstance(data.train, CTRData) and isinstance(data.valid, CTRData)
            run_key = data_fingerprint(data.train, data.valid)
            report = model.fit(
                data.train, data.valid, trainer=trainer_cfg, run_key=run_key, encoder=data.encoder
            )
            metrics = evaluate_ctr(model, data.valid)
        else:
            assert isinstance(data.train, Interactions) and isinstance(data.valid, Interactions)
            report, valid = fit_interactions(
                model,
                data.train,
                data.valid,
                trainer_cfg,
                items=data.items,
                users=data.users,
                item_features=data.item_features,
            )
            protocol = default_protocol(model, cfg.ks)
            if type(model).task is TaskKind.SEQUENTIAL:  # the run's own validation protocol
                protocol = sequential_protocols(data.train, data.valid, data.items)[0]
            metrics = evaluate(model, valid, protocol, exclude=data.train.csr())
    if metric not in metrics:
        raise ConfigError(
            f"the study's metric {metric!r} is not computed on validation; have {sorted(metrics)}"
        )
    return float(metrics[metric]), metrics, report


def finished(study: optuna.Study) -> int:
    """Trials that ended (complete, pruned or failed)."""
    optuna = require("optuna", "tune")
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=done))


def search(
    cfg: RunConfig,
    data: SearchData,
    space: SearchSpace,
    *,
    n_trials: int,
    study: optuna.Study | None = None,
    worker: int = 0,
    timeout: float | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    lock: Path | None = None,
) -> optuna.Study:
    """Run trials in ``study`` (default: a new in-memory one) until it holds ``n_trials`` trials, whoever ran them,
    or ``timeout`` seconds pass. A trial whose loss diverges (``FloatingPointError``) is recorded as failed and the
    search goes on; any other error fails the trial and stops the worker.

    ``lock``: a file the workers of one machine lock while they count the trials and ask for one, so that the study
    ends with exactly ``n_trials`` (``tune`` passes ``<db>.lock`` for SQLite). Workers on several machines sharing a
    database server have no common file: two that ask in the same instant for the last trial make one surplus
    trial, recorded as failed with the user attribute ``surplus``."""
    optuna = require("optuna", "tune")
    cls = get_model_class(cfg.model)
    space.check_model(cls)
    study = study if study is not None else open_study(cfg, space, worker=worker)
    metric = study.user_attrs.get("metric") or study_metric(cfg, space)[0]
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    try:
        while timeout is None or time.perf_counter() - t0 <= timeout:
            with asking(lock):
                if len(study.get_trials(deepcopy=False)) >= n_trials:
                    break
                trial = study.ask()
            if (
                trial.number >= n_trials
            ):  # a worker on another machine asked in the same instant: its trial counts
                trial.set_user_attr("surplus", f"the study had {n_trials} trials when this one was asked")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                break
            _tell(study, trial, cfg, data, space, metric, worker)
            if on_trial is not None:
                on_trial(study.get_trials(deepcopy=False)[trial.number])
    finally:
        torch.set_num_threads(threads)
    return study


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    cfg: RunConfig,
    data: SearchData,
    space: SearchSpace,
    metric: str,
    worker: int,
) -> None:
    optuna = require("optuna", "tune")
    state = optuna.trial.TrialState
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}:{worker}")
    t0 = time.perf_counter()
    try:
        value, metrics, report = run_trial(trial, cfg, data, space, metric)
    except optuna.TrialPruned as exc:
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        trial.set_user_attr("pruned", str(exc))
        study.tell(trial, state=state.PRUNED)
        return
    except FloatingPointError as exc:
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=state.FAIL)
        return
    except BaseException as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        study.tell(trial, state=state.FAIL)
        raise
    trial.set_user_attr("seconds", time.perf_counter() - t0)
    trial.set_user_attr("epochs", report.epochs_run)
    trial.set_user_attr("best_epoch", report.best_epoch)
    trial.set_user_attr("valid", {k: float(v) for k, v in metrics.items()})
    study.tell(trial, value)


def best_run_config(cfg: RunConfig, study: optuna.Study, out: Path | None) -> RunConfig:
    """``cfg`` with the best trial's settings, writing to ``out``: the run that retrains and tests it."""
    model_params, trainer_params = split_params(study.best_trial.params)
    return _with_settings(cfg, model_params, trainer_params, out=out)


def _with_settings(
    cfg: RunConfig, model_params: dict[str, Any], trainer_params: dict[str, Any], *, out: Path | None
) -> RunConfig:
    """``cfg`` with these model and trainer settings on top of its own, writing to ``out`` (a fresh run: neither
    overwrite nor resume). The model's config and the Trainer validate the settings when the run builds them."""
    return cfg.model_copy(
        update={
            "model_params": {**cfg.model_params, **model_params},
            "trainer": {**cfg.trainer, **trainer_params},
            "out": out,
            "overwrite": False,
            "resume": False,
        }
    )


@dataclass
class TuneResult:
    """What :func:`tune` did: the study, the report's files, and the retrained best run (None when another worker
    retrains it, it was tested before, or ``retrain`` was off — ``note`` says which)."""

    study: optuna.Study
    out: Path
    files: dict[str, Path]
    best: RunResult | None
    note: str


def tune(
    cfg: RunConfig,
    space: SearchSpace,
    *,
    n_trials: int,
    out: Path,
    storage: str | None = None,
    name: str | None = None,
    worker: int = 0,
    timeout: float | None = None,
    retrain: bool = True,
    plots: bool = True,
    progress: bool = False,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> TuneResult:
    """``attnrec tune``: join (or create) the study in ``storage`` (default ``sqlite:///<out>/study.db``), run trials
    until it holds ``n_trials``, then — once no worker is still running one — retrain the best trial into
    ``out/best`` and test it, once per study; last, write the report into ``out`` (``plots``: with its two PNGs)."""
    from attnrec.experiments.tune_report import write_report

    if n_trials < 1:
        raise ConfigError(f"--trials {n_trials}: expected at least 1")
    space.check_model(get_model_class(cfg.model))
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study = open_study(cfg, space, storage=storage, name=name, worker=worker)
    fail_dead_trials(study)
    if len(study.get_trials(deepcopy=False)) < n_trials:
        data = SearchData.from_run(cfg, progress=progress)
        search(
            cfg,
            data,
            space,
            n_trials=n_trials,
            study=study,
            worker=worker,
            timeout=timeout,
            on_trial=on_trial,
            lock=sqlite_lock(storage),
        )
        del data
    best, note = (
        _retrain_once(cfg, study, out / "best", progress=progress) if retrain else (None, "--no-retrain")
    )
    complete = study.get_trials(deepcopy=False, states=(require("optuna", "tune").trial.TrialState.COMPLETE,))
    best_run = best_run_config(cfg, study, out / "best") if complete else None
    files = write_report(study, out, storage=storage, n_trials=n_trials, best_run=best_run, plots=plots)
    return TuneResult(study, out, files, best, note)


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark failed the running trials of workers on this machine whose process is gone (killed mid-trial), so the
    study can finish; returns their numbers. Trials of other machines are left as they are."""
    optuna = require("optuna", "tune")
    host, dead = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker_host, _, rest = str(t.user_attrs.get("worker", "")).partition(":")
        pid = rest.partition(":")[0]
        if worker_host != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            dead.append(t.number)
        except PermissionError:  # alive, another user's
            continue
    if dead:
        log.warning("trial(s) %s: their worker process is gone; marked failed", dead)
    return dead


def _retrain_once(
    cfg: RunConfig, study: optuna.Study, out: Path, *, progress: bool
) -> tuple[RunResult | None, str]:
    """Retrain and test the best trial unless a trial is still running or the study was tested already. The claim
    is written, then read back a second later: of two workers that finish together, the last writer retrains."""
    from attnrec.experiments.run import run_experiment

    optuna = require("optuna", "tune")
    state = optuna.trial.TrialState
    running = study.get_trials(deepcopy=False, states=(state.RUNNING,))
    if running:
        return None, (
            f"{len(running)} trial(s) still running in other workers: the last worker to finish retrains and tests "
            "the best trial (or rerun this command once they are done)"
        )
    if not study.get_trials(deepcopy=False, states=(state.COMPLETE,)):
        return None, "no trial completed: nothing to retrain"
    tested = study.user_attrs.get("tested")
    if tested:
        return (
            None,
            f"the study's best trial was tested already ({tested.get('out', tested.get('claim'))}): not again",
        )
    claim = f"{socket.gethostname()}:{os.getpid()}:{time.time()}"
    study.set_user_attr("tested", {"claim": claim})
    time.sleep(1.0)
    if study.user_attrs.get("tested", {}).get("claim") != claim:
        return None, "another worker claimed the retraining"
    best = study.best_trial
    try:
        result = run_experiment(best_run_config(cfg, study, out), progress=progress)
    except BaseException:
        study.set_user_attr("tested", None)  # nothing was tested: a rerun may retrain
        raise
    study.set_user_attr(
        "tested",
        {
            "claim": claim,
            "trial": best.number,
            "out": str(out),
            "valid": result.metrics["valid"],
            "test": result.metrics["test"],
        },
    )
    return result, f"trial {best.number} retrained into {out} and tested once"
