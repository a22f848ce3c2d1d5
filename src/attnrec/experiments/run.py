"""One run, as a straight line: config -> data -> split -> encode (train only) -> fit -> evaluate -> record.

:class:`RunConfig` is the typed form of a TOML run file (and of the CLI's flags). The model's task picks the data
pipeline: interactions (:func:`prepare_data`: a dataset, filtered and split, or pre-split files; vocabularies from
train) or CTR rows (:func:`attnrec.experiments.ctr_run.prepare_ctr`: MovieLens as CTR, or Criteo / Avazu / CSV
files; a feature encoder fitted on train). Every input is read and checked before the model is fitted.
:func:`run_experiment` returns a :class:`RunResult` and writes, under ``out``: ``metrics.json`` (valid and test
metrics, config, data fingerprint, seed, versions, timings, split report), ``train_log.jsonl`` (one line per
epoch) and ``model/`` (the bundle; a CTR bundle carries its encoder). ``out`` is checked (a writable folder) and
locked against a second run before anything is read; every file is written atomically, the bundle before
``metrics.json``.

Model selection reads the validation split only; the test split is evaluated once, after fitting.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from pydantic import ValidationError

import attnrec
from attnrec.data.side import ItemFeatures, ReviewCorpus, SideInputs, strip_text
from attnrec.data.splits import SplitResult
from attnrec.data.table import Dataset, Interactions, frame_fingerprint
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, OutputError
from attnrec.evaluation.protocols import default_protocol
from attnrec.evaluation.sharded import (
    evaluate,  # protocols.evaluate, sharded across ranks in a distributed run
)
from attnrec.experiments.config import RunConfig
from attnrec.experiments.ctr_run import PreparedCTR, bundle_ctr_spec, evaluate_ctr, prepare_ctr
from attnrec.experiments.inputs import check_item_text, load_split, read_items
from attnrec.experiments.modalities_run import build_item_features, check_run_modalities
from attnrec.experiments.ranks import rank_session
from attnrec.experiments.seq_run import prepare_sequences, sequential_protocols
from attnrec.models.base import Estimator, TaskKind, get_model_class
from attnrec.models.ctr.base import CTRRecommender
from attnrec.paths import (
    DirLock,
    atomic_dir,
    atomic_write_text,
    check_output_dir,
    prepare_output_dir,
    remove_empty_dirs,
)
from attnrec.serving.bundle import save_bundle
from attnrec.training.trainer import CHECKPOINT_NAME, TrainerConfig, resolve_device
from attnrec.training.types import FitReport, data_fingerprint

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The encoded parts of a run and what was done to get them."""

    dataset: Dataset | None
    split: SplitResult
    train: Interactions
    valid: Interactions
    test: Interactions
    notes: dict[str, Any]
    #: item metadata keyed by ``item_id`` (``items`` file, else the dataset's table), or None
    items: pl.DataFrame | None = None
    #: item-feature modalities aligned to the training items (models taking ``item_features``), or None
    item_features: ItemFeatures | None = None


@dataclass
class RunResult:
    model: Estimator[Any]
    metrics: dict[str, Any]
    data: PreparedData | PreparedCTR
    out: Path | None


def prepare_data(cfg: RunConfig, *, implicit: bool, progress: bool = True) -> PreparedData:
    """Load, filter, split and encode with vocabularies built from the training part only."""
    if cfg.ctr.format is not None:
        raise ConfigError(
            f"--format {cfg.ctr.format}: model {cfg.model!r} reads interactions (user_id, item_id[, rating]); "
            "--format is for CTR models"
        )
    items = read_items(cfg.items, cfg.columns) if cfg.items is not None else None
    # the rating scale is inferred (and said) only for a model that predicts ratings; a declared one is always checked
    dataset, result, notes = load_split(cfg, progress=progress, rating_scale=not implicit)
    if items is None and dataset is not None:
        items = dataset.items
    train_df = result.train
    user_vocab = Vocabulary.from_ids(train_df["user_id"], kind="user")
    item_vocab = Vocabulary.from_ids(train_df["item_id"], kind="item")
    scale = notes.get("rating_range")  # declared or inferred: rating models clip predictions to it
    rr = (float(scale["range"][0]), float(scale["range"][1])) if scale else None
    train, _ = Interactions.encode(train_df, user_vocab, item_vocab, rating_range=rr)
    valid, drop_v = Interactions.encode(result.valid, user_vocab, item_vocab, unknown="drop", rating_range=rr)
    test, drop_t = Interactions.encode(result.test, user_vocab, item_vocab, unknown="drop", rating_range=rr)
    if drop_v or drop_t:
        notes["unknown_ids_dropped"] = {"valid": drop_v, "test": drop_t}
        log.warning(
            "model %r scores known users and items only: %d valid and %d test row(s) with a user or item not in "
            "train are not evaluated (cold start)",
            cfg.model,
            drop_v,
            drop_t,
        )
    if len(test) == 0:
        raise ConfigError("the test split is empty after encoding: nothing to evaluate")
    if not implicit and not train.has_ratings:
        raise ConfigError(f"model {cfg.model!r} predicts ratings but the data has no rating column")
    item_features = None
    # item features come from the item metadata and feature files only, never from a split
    if "item_features" in get_model_class(cfg.model).side_inputs:
        item_features, notes["modalities"] = build_item_features(
            cfg.modalities, items, item_vocab, progress=progress
        )
    return PreparedData(dataset, result, train, valid, test, notes, items, item_features)


def run_outputs(cfg: RunConfig) -> dict[str, Path]:
    """What a run with ``out`` writes, where it may already exist: ``metrics.json``, the log, the checkpoint file
    and the ``model/`` bundle (``overwrite`` deletes exactly these; a checkpoint folder is never removed whole,
    since ``trainer.checkpoint_dir`` may point anywhere)."""
    assert cfg.out is not None
    ckdir = Path(cfg.trainer.get("checkpoint_dir") or cfg.out / "checkpoints")
    log = Path(cfg.trainer.get("log_path") or cfg.out / "train_log.jsonl")
    ckpt = ckdir / CHECKPOINT_NAME
    outputs = {
        "metrics": cfg.out / "metrics.json",
        "log": log,
        "checkpoint": ckpt,
        "model": cfg.out / "model",
    }
    # what a run killed mid-write leaves: the temporary siblings of atomic writes (see attnrec.paths.temp_name)
    for name, p in list(outputs.items()):
        for i, left in enumerate(sorted(p.parent.glob(f".{p.name}.*.tmp")) if p.parent.is_dir() else []):
            outputs[f"partial {name} {i}"] = left
    return outputs


def check_out(cfg: RunConfig) -> None:
    """Say now, before any input is read, whether ``cfg.out`` can take this run; deletes nothing (see
    :func:`claim_out`): a directory that already holds a run needs ``overwrite`` or ``resume`` (whose checkpoint
    must exist); it is never silently resumed or overwritten."""
    out = cfg.out
    if out is None or cfg.overwrite:
        return
    outputs = run_outputs(cfg)
    held = [p for p in outputs.values() if p.exists()]
    if cfg.resume:
        if not outputs["checkpoint"].is_file():
            raise ConfigError(
                f"--resume: there is no checkpoint to resume ({outputs['checkpoint']} does not exist); "
                "run without --resume (or with --overwrite) to start fresh"
            )
    elif held:
        names = ", ".join(str(p.relative_to(out)) if p.is_relative_to(out) else str(p) for p in held)
        raise ConfigError(
            f"{out} already holds a run ({names}): pass --overwrite to delete it and "
            "start fresh, or --resume to continue it from its checkpoint (resumed only when the model config, "
            "trainer config and data match)"
        )


def claim_out(cfg: RunConfig) -> None:
    """Make ``cfg.out`` ready for this run: :func:`check_out`, then with ``overwrite`` delete the run it holds.
    The run calls it after every input has been read and checked, just before fitting, so a bad input never
    costs the old run."""
    check_out(cfg)
    if cfg.out is None:
        return
    for name, p in run_outputs(cfg).items():
        # the lock is held: a temporary file here was left by a killed run, and is garbage for resume too
        if p.exists() and (cfg.overwrite or name.startswith("partial")):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def write_log(path: Path, report: FitReport) -> None:
    """Write ``report``'s history as ``train_log.jsonl`` (one line per epoch; one line for a fit without epochs),
    atomically."""
    rows = report.history or [{"epoch": max(1, report.epochs_run), "seconds": report.seconds}]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows), what="training log")


def trainer_config(cfg: RunConfig, cls: type[Estimator[Any]], *, progress: bool) -> TrainerConfig:
    """The run's trainer: the model's ``default_trainer``, then the run's ``trainer`` table, then where it logs."""
    tr = {"progress": progress, **cls.default_trainer, **cfg.trainer, "resume": cfg.resume}
    if cfg.out is not None:
        tr.setdefault("log_path", cfg.out / "train_log.jsonl")
        tr.setdefault("checkpoint_dir", cfg.out / "checkpoints")
    try:
        return TrainerConfig(**tr)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ConfigError(
            f"trainer field {'.'.join(map(str, e['loc']))!r}: {e['msg']} (got {e.get('input')!r})"
        ) from None


def check_trainer(cfg: RunConfig, model: Estimator[Any], trainer_cfg: TrainerConfig) -> None:
    """Refuse a trainer field the run sets (``[trainer]``, ``--epochs``, ``--lr``...) that the model's solver
    overrides with another value or never reads: it would be silently ignored, yet recorded. Then check the device
    the fit would use exists (``--device cuda`` on a CPU build), before any data is read."""
    unused = model.unused_trainer_fields()
    for field in cfg.trainer:
        if field in unused:
            raise ConfigError(
                f"trainer field {field!r} = {cfg.trainer[field]!r} is not used: {unused[field]}"
            )
    for field, (value, why) in model.trainer_overrides().items():
        if field in cfg.trainer and cfg.trainer[field] != value:
            raise ConfigError(f"trainer field {field!r} = {cfg.trainer[field]!r} is not used: {why}")
    resolve_device(model.effective_trainer(trainer_cfg).device)


def effective_trainer(model: Estimator[Any], trainer_cfg: TrainerConfig) -> TrainerConfig:
    """What ``model.fit(trainer=trainer_cfg)`` trains with (recorded in metrics.json)."""
    return model.effective_trainer(trainer_cfg)


def check_side(cfg: RunConfig, cls: type[Estimator[Any]]) -> None:
    """Refuse ``items`` where nothing would read it: a model without item metadata among its ``side_inputs``
    keeps the table only in its bundle (for titles), so a run that saves no bundle would drop it."""
    check_run_modalities(cfg.modalities, "item_features" in cls.side_inputs, cls.name)
    if cfg.items is None or cls.side_inputs & {"items", "item_features"} or cls.task is TaskKind.CTR:
        return
    if cfg.out is None or not cfg.save_model:
        raise ConfigError(
            f"--items {cfg.items}: model {cls.name!r} reads no item metadata, and this run saves no bundle to "
            "keep it in (for titles): drop --items, or give --out"
        )
    log.info(
        "%s: model %r reads no item metadata; the table is kept in the bundle for titles", cfg.items, cls.name
    )


def _check_item_text(cfg: RunConfig, cls: type[Estimator[Any]], data: PreparedData) -> None:
    if "items" not in cls.side_inputs or data.items is None:
        return
    source = str(cfg.items) if cfg.items is not None else f"the item table of {cfg.data}"
    check_item_text(
        data.items,
        [str(i) for i in data.train.item_vocab.ids],
        source=source,
        has_reviews="review" in data.train.frame.columns,
    )


def run_experiment(cfg: RunConfig, *, progress: bool = True) -> RunResult:
    """Run ``cfg`` end to end; writes the results record when ``cfg.out`` is set (see :func:`claim_out`).

    ``cfg.threads`` sets torch's CPU threads for the run (restored afterwards). Launched by torchrun (or
    ``attnrec train --nproc``), every rank runs it and rank 0 alone writes ``out`` (:mod:`.ranks`)."""
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        with rank_session(cfg, progress) as (cfg, progress), _claimed_out(cfg.out):
            return _run(cfg, progress)
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _claimed_out(out: Path | None) -> Iterator[None]:
    """Before any work: ``out`` must be a folder this process can write (created if missing) and no other run may
    hold it (:class:`~attnrec.paths.DirLock`, held for the whole run). Folders created here and left empty by a
    failed run are removed again."""
    if out is None:
        yield
        return
    created = prepare_output_dir(out)
    try:
        with DirLock(out):
            yield
    finally:
        remove_empty_dirs(created)


def _check_trainer_paths(trainer_cfg: TrainerConfig) -> None:
    """Where the fit writes its checkpoints and log (``trainer.checkpoint_dir`` / ``trainer.log_path`` may point
    outside ``out``) must be writable: said now, not after the first epoch."""
    if trainer_cfg.checkpoint_dir is not None:
        check_output_dir(trainer_cfg.checkpoint_dir, flag="trainer field 'checkpoint_dir'")
    log = trainer_cfg.log_path
    if log is not None:
        if log.is_dir():
            raise OutputError(
                f"trainer field 'log_path' {log}: is a folder (give a file for the training log)"
            )
        check_output_dir(log.parent, flag=f"trainer field 'log_path' {log}: its folder")


def _run(cfg: RunConfig, progress: bool) -> RunResult:
    t_start = time.perf_counter()
    # 1. the model, its trainer and every input, built, read and checked before out is touched or anything fitted
    cls = get_model_class(cfg.model)
    model = cls(**cfg.model_params)
    trainer_cfg = trainer_config(cfg, cls, progress=progress)
    check_trainer(cfg, model, trainer_cfg)
    check_side(cfg, cls)
    check_out(cfg)
    _check_trainer_paths(trainer_cfg)
    torch.manual_seed(model.config.seed)
    t0 = time.perf_counter()
    data: PreparedData | PreparedCTR
    if cls.task is TaskKind.CTR:
        unused = [f for f in ("rating_range", "on_bad_lines") if f in cfg.model_fields_set]
        if unused:  # CTR rows have a 0/1 label and are read strictly: these would be silently ignored
            raise ConfigError(
                f"{', '.join(unused)} (--rating-range/--on-bad-lines): model {cls.name!r} reads CTR rows with a 0/1 "
                "label, read strictly; these apply to interaction data"
            )
        data = prepare_ctr(cfg, progress=progress)
    elif (
        cls.task is TaskKind.SEQUENTIAL
    ):  # leave-one-out sequences over the whole item catalogue (seq_run.py)
        data = PreparedData(**prepare_sequences(cfg, progress=progress))
    else:
        data = prepare_data(cfg, implicit=cls.task is not TaskKind.RATING, progress=progress)
        _check_item_text(cfg, cls, data)
    t_data = time.perf_counter() - t0
    claim_out(cfg)  # only now is an --overwrite'n run deleted
    # 2. fit on train (validation picks the epoch), 3. evaluate: validation, then test once
    if isinstance(data, PreparedCTR):
        report, valid_metrics, test_metrics, t_eval = _fit_rows(model, data, trainer_cfg)
        data_record = _ctr_record(cfg, data)
    else:
        report, valid_metrics, test_metrics, t_eval = _fit_interactions(model, data, trainer_cfg, cfg.ks)
        data_record = _interactions_record(cfg, data)
    if trainer_cfg.log_path is not None and not trainer_cfg.log_path.exists():
        # a model that trains outside the Trainer still leaves its log
        write_log(trainer_cfg.log_path, report)

    metrics: dict[str, Any] = {
        "valid": valid_metrics,
        "test": test_metrics,
        "model": cls.name,
        "task": str(cls.task),
        "config": model.config.to_dict(),
        # what the fit trained with, after the solver's own settings (svd's ALS sweeps, pop's one pass)
        "trainer": effective_trainer(model, trainer_cfg).model_dump(mode="json"),
        "run": cfg.model_dump(mode="json"),
        "seed": model.config.seed,
        "data": data_record,
        "fit": {
            "best_epoch": report.best_epoch,
            "epochs_run": report.epochs_run,
            "best_valid": report.best_valid,
            "history": report.history,
        },
        "timings": {
            "data_s": t_data,
            "fit_s": report.seconds,
            "eval_s": t_eval,
            "total_s": time.perf_counter() - t_start,
        },
        "versions": {
            "attnrec": attnrec.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "polars": pl.__version__,
            "python": platform.python_version(),
        },
        "threads": torch.get_num_threads(),
        "device": str(model.device),
        # True only for paper-literal modes that read the target's own review (hybrid_csa): never comparable
        "leaky": model.leaky,
    }
    if cfg.out is not None:
        # the bundle first, then metrics.json: each appears whole or not at all, and a metrics.json always has its
        # model beside it (a full disk fails the run with nothing half-written; the checkpoint lets --resume finish)
        if cfg.save_model:
            items = data.items if isinstance(data, PreparedData) else None
            extra: dict[str, Any] = {"run": cfg.model_dump(mode="json")}
            if isinstance(data, PreparedData) and data.notes.get("rating_range"):
                # the scale, and whether declared or inferred
                extra["rating_range"] = data.notes["rating_range"]
            if isinstance(data, PreparedCTR):  # `attnrec evaluate/predict` read rows as the run read them
                extra["ctr"] = bundle_ctr_spec(cfg)
            with atomic_dir(cfg.out / "model", what="model bundle") as tmp:
                save_bundle(model, tmp, items=items, extra=extra)
        atomic_write_text(
            cfg.out / "metrics.json", json.dumps(metrics, indent=2, default=str), what="metrics"
        )
    return RunResult(model, metrics, data, cfg.out)


def fit_interactions(
    model: Estimator[Any],
    train: Interactions,
    valid: Interactions,
    trainer_cfg: TrainerConfig,
    *,
    items: pl.DataFrame | None = None,
    users: pl.DataFrame | None = None,
    item_features: ItemFeatures | None = None,
) -> tuple[FitReport, Interactions]:
    """Fit ``model`` on ``train``, ``valid`` (possibly empty) driving early stopping; reads no test data (a run and
    every trial of ``attnrec tune`` fit through here). Returns the report and ``valid`` as the model may see it."""
    cls = type(model)
    # side inputs come from the training split (reviews) and the metadata tables; validation and test reach the
    # model without their review text, so none of it can leak into fitting or scoring
    side = SideInputs(
        items=items if "items" in cls.side_inputs else None,
        users=users if "users" in cls.side_inputs else None,
        reviews=ReviewCorpus.from_split(train) if "reviews" in cls.side_inputs else None,
        item_features=item_features if "item_features" in cls.side_inputs else None,
    )
    valid = valid if model.leaky else strip_text(valid)
    fit_valid = valid if len(valid) else None
    run_key = data_fingerprint(train, fit_valid)  # the data part of what a checkpoint must match
    return model.fit(train, fit_valid, side=side, trainer=trainer_cfg, run_key=run_key), valid


def _fit_interactions(
    model: Estimator[Any], data: PreparedData, trainer_cfg: TrainerConfig, ks: tuple[int, ...]
) -> tuple[FitReport, dict[str, float], dict[str, float], float]:
    """Fit on encoded interactions and evaluate: ``(report, valid metrics, test metrics, evaluation seconds)``."""
    users = data.dataset.users if data.dataset is not None else None
    report, valid = fit_interactions(
        model,
        data.train,
        data.valid,
        trainer_cfg,
        items=data.items,
        users=users,
        item_features=data.item_features,
    )
    test = data.test if model.leaky else strip_text(data.test)

    # select on validation, report test once: valid masks train; test masks train + valid
    t0 = time.perf_counter()
    protocol = test_protocol = default_protocol(model, ks)
    if (
        type(model).task is TaskKind.SEQUENTIAL
    ):  # per target domain; test scored from train + valid (seq_run.py)
        protocol, test_protocol = sequential_protocols(data.train, data.valid, data.items)
    valid_metrics = evaluate(model, valid, protocol, exclude=data.train.csr()) if len(valid) else {}
    seen_tv = data.train.csr() + (
        data.valid.csr() if len(data.valid) else sp.csr_matrix(data.train.csr().shape)
    )
    test_metrics = evaluate(model, test, test_protocol, exclude=seen_tv)
    return report, valid_metrics, test_metrics, time.perf_counter() - t0


def _fit_rows(
    model: Estimator[Any], data: PreparedCTR, trainer_cfg: TrainerConfig
) -> tuple[FitReport, dict[str, float], dict[str, float], float]:
    """Fit a CTR model on encoded rows (keeping the encoder for the bundle) and evaluate with the CTR protocol."""
    if not isinstance(model, CTRRecommender):
        raise ConfigError(f"model {model.name!r} has task ctr but is not a CTRRecommender")
    run_key = data_fingerprint(data.train, data.valid)
    report = model.fit(data.train, data.valid, trainer=trainer_cfg, run_key=run_key, encoder=data.encoder)
    t0 = time.perf_counter()
    valid_metrics = evaluate_ctr(model, data.valid) if data.valid is not None else {}
    test_metrics = evaluate_ctr(model, data.test)
    return report, valid_metrics, test_metrics, time.perf_counter() - t0


def _interactions_record(cfg: RunConfig, data: PreparedData) -> dict[str, Any]:
    return {
        "source": cfg.data or str(cfg.train),
        "fingerprint": frame_fingerprint(
            pl.concat([data.split.train, data.split.valid, data.split.test], how="diagonal_relaxed")
        ),
        "split": data.split.report,
        "sizes": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
        "users": data.train.n_users,
        "items": data.train.n_items,
        "notes": data.notes,
    }


def _ctr_record(cfg: RunConfig, data: PreparedCTR) -> dict[str, Any]:
    schema = data.encoder.schema
    return {
        "source": cfg.data or str(cfg.train),
        "fingerprint": data.fingerprint,
        "split": data.report,
        "sizes": data.report["sizes"],
        "fields": schema.names,
        "label": schema.label,
        "notes": data.notes,
    }
