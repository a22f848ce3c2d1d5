"""CTR benchmark: the nine attnrec CTR models, DeepCTR-Torch's DeepFM/xDeepFM/DCN and FuxiCTR's DeepFM/DCNv2 as
peers, on identical splits.

    .venv/bin/pip install --no-deps --target ../ctr-peers-lib deepctr-torch==0.3.0 fuxictr==2.3.10 h5py pyyaml
    git clone https://github.com/reczoo/FuxiCTR ../fuxictr-src       # FuxiCTR's model zoo (DeepFM, DCNv2)
    .venv/bin/python benchmarks/bench_ctr.py --datasets movielens,criteo,avazu --seeds 0,1,2 \\
        --peer-path ../ctr-peers-lib --fuxictr-zoo ../fuxictr-src/model_zoo --out bench_results/ctr.json

Protocol (details and reasons: docs/models/ctr_benchmarks.md):

* ``movielens``: MovieLens-100k as CTR (label = rating >= 4; fields user, item, age, gender, occupation, zip
  prefix, genres (multi-valued, mean), year), one seeded random 80/10/10 split (``--split-seed``, 2026) shared by
  every model and seed.
* ``criteo`` / ``avazu``: the 8k samples in ``--data-dir`` (default ``../shared/data/ctr-criteo-avazu-8k``),
  each with its own train/dev/test files; with ``--resplit`` the three files are pooled and redrawn at random
  (``--split-seed``) into parts of the files' sizes — a fresh split, for re-checking a choice made on the files'.
* Vocabularies (and Criteo's log2 buckets) are fitted on train only; valid/test values unseen in train map to
  the per-field OOV row.
* L2: ``--embedding-reg`` for every job (default 0), or ``--l2-grid`` (attnrec) / ``--peer-l2-grid`` (the peers' own
  penalty scale, same size): each job's weight chosen on validation logloss averaged over the model seeds
  ``--grid-seeds`` (default: the one seed ``--grid-seed``), test unread
  (:func:`select_l2`); ``--l2-extend`` tries larger values for a job while its largest one so far wins;
  ``--dropout-grid`` then chooses each attnrec model's dropout (:data:`DROPOUT_FIELDS`) at its chosen L2, again on
  validation logloss (:func:`select_dropout`), ``--dropout-extend`` widening it as ``--l2-extend`` does;
  ``--reuse`` takes identical earlier runs (and grid scores) from a record instead of rerunning them.
* Every model and the peers: embedding dim 16, Adam lr 1e-3, batch 256, early stopping by ``--stop``
  (default ``both``: keep the best validation logloss, stop when neither logloss nor AUC improved for 3 epochs;
  ``auc``: the old rule), at most ``--max-epochs`` — except LR, the baseline every goal compares against, which
  gets its own cap ``--baseline-max-epochs`` (default :data:`BASELINE_MAX_EPOCHS`, 200: under the others' 30 it
  was still improving at the cap on MovieLens-CTR); every run records its cap (``max_epochs``) and the
  table marks a run that trained to its cap (``†``: stopped by the cap, not by the rule) — restored epoch scored on
  test once — raw, and after
  temperature scaling fitted on the validation split (attnrec: the model's own ``calibration``; peers: the same
  fit on their validation probabilities). Model seeds vary, the data do not. DeepFM/xDeepFM/DCN use MLP [64, 32]
  with dropout 0.1 and CIN [16, 16] (split-half, linear) in every library.
* Seconds per epoch: the training pass only (no validation), median over the epochs run, then over seeds.
  ``--threads`` (default 1) torch threads for both libraries. Runs are interleaved (per seed: every attnrec model,
  then the peers) so background load hits both libraries alike.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from attnrec.evaluation.protocols import evaluate
from attnrec.models.ctr.base import CTRConfig, CTRRecommender
from attnrec.models.ctr.dcn import DCNConfig
from attnrec.training.trainer import TrainerConfig
from attnrec.training.types import config_digest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import git_state  # noqa: E402
from ctr_grid import (  # noqa: E402, F401 - re-exported: bench_ctr's public names since issue 18
    ADDED_SETTINGS,
    BASELINE,
    Job,
    RunCache,
    cached,
    check_grid_seeds,
    epoch_cap,
    load_grid_scores,
    load_reuse,
    select_dropout,
    select_l2,
)
from ctr_peer_common import DIRECTIONS, STOP_RULES  # noqa: E402 - the benchmark folder is not a package
from ctr_splits import (  # noqa: E402, F401 - re-exported: bench_ctr's public names before the split
    DATASETS,
    DEFAULT_DATA_DIR,
    NO_RESPLIT,
    PARTS,
    Splits,
    load_splits,
    redraw,
)

MODELS = ("lr", "fm", "nfm", "afm", "deepfm", "xdeepfm", "dcn", "autoint", "secn")
#: the baseline's epoch cap on the command line (``--baseline-max-epochs``): under the shared cap LR was still improving
#: when it stopped (the measurements: BENCHMARKS.md, "MovieLens-CTR's goal table against LR trained to convergence")
BASELINE_MAX_EPOCHS = 200


def model_defaults_stamp(defaults: dict[str, dict[str, Any]]) -> str:
    """12 hex digits of :func:`attnrec.training.types.config_digest` (the sha256 of sorted JSON) of ``{model: its
    default config dict}``: any changed default, added field or added model gives another stamp."""
    return config_digest(defaults)[:12]


def stamp_view(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Model ``name``'s default config as the stamp sees it: the fields added after records were stamped, at the
    value that reproduces the model before them (its config class's ``bundle_legacy``: ``linear_reg`` None,
    ``linear_init`` "zero", dcn's and secn's ``use_linear`` False), left out, so earlier records stay comparable;
    any other value changes the stamp."""
    legacy = model_class(name).config_class.bundle_legacy
    return {k: v for k, v in config.items() if k not in legacy or v != legacy[k]}


@functools.cache
def current_model_defaults() -> str:
    """:func:`model_defaults_stamp` of the default configs of :data:`MODELS` in this checkout (:func:`stamp_view`)."""
    return model_defaults_stamp({m: stamp_view(model_class(m).config_class().to_dict(), m) for m in MODELS})


def model_class(name: str) -> type[CTRRecommender]:
    """The attnrec CTR recommender class ``name`` (from the registry, or its module when the registry fails)."""
    try:
        from attnrec.models.base import get_model_class

        return get_model_class(name)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - the registry imports every family; fall back to the CTR module itself
        import importlib

        module = importlib.import_module(f"attnrec.models.ctr.{name}")
        classes = [
            c
            for c in vars(module).values()
            if isinstance(c, type) and issubclass(c, CTRRecommender) and getattr(c, "name", None) == name
        ]
        if not classes:
            raise
        return classes[0]


@dataclass
class BenchSettings:
    """Hyper-parameters shared by every model and the peer (chosen a priori; nothing is tuned on test)."""

    embedding_dim: int = 16
    lr: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 3
    embedding_reg: float = 0.0
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    cin_layers: list[int] = field(default_factory=lambda: [16, 16])
    split_seed: int = 2026
    #: criteo / avazu: pool the sample's train/dev/test files and redraw them with ``split_seed`` (same sizes)
    resplit: bool = False
    #: early-stopping rule (ctr_peer_common.STOP_RULES): both, logloss or auc
    stop: str = "both"
    #: FuxiCTR's model zoo folder (its DeepFM and DCNv2 sources)
    fuxictr_zoo: str = ""
    #: the Trainer's Adam kernel (fused since bfe1bbf): a record without this key ran the single-tensor kernel,
    #: whose rounding differs, so --reuse refuses it rather than mixing the two in one table
    adam_kernel: str = "fused"
    #: the first-order weights' own L2 weight (``linear_reg``) for every model with a first-order term except LR,
    #: the baseline (:func:`with_linear_reg`); None: they share ``embedding_reg``, as before the option existed
    linear_reg: float | None = None
    #: how the first-order term starts (``linear_init``) in every model with one except LR, the baseline
    #: (:func:`with_linear_init`): "zero" (as before the option) or "lr" (from an LR fitted first on the same
    #: train/valid, trainer and seed, at the L2 the model puts on its first-order weights)
    linear_init: Literal["zero", "lr"] = "zero"
    #: validate every model as it starts, before its first epoch ("epoch 0", ``TrainerConfig.validate_start``):
    #: a candidate for the restored state like any epoch (a warm-started model can fall back to where it started)
    validate_start: bool = False
    #: the epoch cap of :data:`BASELINE` (LR) alone (:func:`epoch_cap`); None: ``max_epochs``, as before the option
    #: (a value equal to ``max_epochs`` is stored as None, so such a run's settings match records from before it).
    #: The LR that ``linear_init = "lr"`` fits inside another model uses that model's trainer, i.e. ``max_epochs``
    baseline_max_epochs: int | None = None
    #: a hash of every CTR model's default config (:func:`model_defaults_stamp`): a record with another value ran
    #: models keyed by the same name under other defaults (e.g. NFM's and secn's dropout before issue 18), so
    #: --reuse and ctr_paired.py --record refuse it
    model_defaults: str = field(default_factory=lambda: current_model_defaults())

    def __post_init__(self) -> None:
        if self.baseline_max_epochs is not None and self.baseline_max_epochs < 1:
            raise SystemExit(f"baseline_max_epochs must be >= 1, got {self.baseline_max_epochs}")
        if self.baseline_max_epochs == self.max_epochs:
            self.baseline_max_epochs = None


def model_params(name: str, seed: int, s: BenchSettings) -> dict[str, Any]:
    """The config overrides of model ``name``: the shared settings where the model has the field; every other
    option keeps the model's documented default."""
    fields = model_class(name).config_class.model_fields
    params: dict[str, Any] = {"seed": seed, "embedding_reg": s.embedding_reg}
    if "embedding_dim" in fields:
        params["embedding_dim"] = s.embedding_dim
    # the models with a DeepFM-style MLP use the peer's MLP sizes
    if name in ("deepfm", "xdeepfm", "dcn"):
        params.update(hidden=list(s.hidden), dropout=s.dropout)
    if name == "xdeepfm":
        params["cin_layers"] = list(s.cin_layers)
    return params


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"secn:cross_product=first:cross_layers=2"`` -> ("secn", {"cross_product": "first", "cross_layers": 2}):
    a model name with config overrides (values read as JSON where they parse, else as strings)."""
    name, *pairs = spec.split(":")
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--models: {pair!r} in {spec!r} is not key=value")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


def with_linear_reg(name: str, params: dict[str, Any], s: BenchSettings) -> dict[str, Any]:
    """``params`` with ``linear_reg = s.linear_reg`` when that is set and model ``name`` (with ``params``) has a
    first-order term, except LR: the baseline keeps it unset, so it stays the same LR from run to run (its only
    weights are first-order, and ``embedding_reg``, the L2 grid's knob, already weighs them). An explicit
    ``linear_reg`` in ``params`` (a spec's override) wins."""
    if s.linear_reg is None or name == "lr" or "linear_reg" in params:
        return params
    config = model_class(name).config_class.parse(params, source=f"{name} config")
    assert isinstance(config, CTRConfig)
    return {**params, "linear_reg": s.linear_reg} if config.has_first_order() else params


def with_linear_init(name: str, params: dict[str, Any], s: BenchSettings) -> dict[str, Any]:
    """``params`` with ``linear_init = s.linear_init`` when that is not "zero" and model ``name`` (with ``params``)
    has a first-order term, except LR (the baseline, and the model the others start from). An explicit
    ``linear_init`` in ``params`` (a spec's override) wins."""
    if s.linear_init == "zero" or name == "lr" or "linear_init" in params:
        return params
    config = model_class(name).config_class.parse(params, source=f"{name} config")
    assert isinstance(config, CTRConfig)
    return {**params, "linear_init": s.linear_init} if config.has_first_order() else params


def fit_attnrec(spec: str, splits: Splits, seed: int, s: BenchSettings) -> tuple[CTRRecommender, Any]:
    """``(model, fit report)``: attnrec model ``spec`` (a name, optionally with ``:key=value`` config overrides, see
    :func:`parse_spec`) fitted on train with early stopping by ``s.stop`` on valid (test is not touched)."""
    train, valid, _ = splits
    name, overrides = parse_spec(spec)
    params = with_linear_reg(name, {**model_params(name, seed, s), **overrides}, s)
    model = model_class(name)(**with_linear_init(name, params, s))
    metric, also = STOP_RULES[s.stop]
    tc = TrainerConfig(
        epochs=epoch_cap(name, s),
        patience=s.patience,
        lr=s.lr,
        batch_size=s.batch_size,
        optimizer="adam",
        progress=False,
        device="cpu",
        valid_metric=metric,
        valid_mode=DIRECTIONS[metric],  # type: ignore[arg-type]
        valid_also={m: DIRECTIONS[m] for m in also},  # type: ignore[misc]
        validate_start=s.validate_start,
    )
    return model, model.fit(train, valid, trainer=tc)


def run_attnrec(spec: str, splits: Splits, seed: int, s: BenchSettings) -> dict[str, Any]:
    """Fit attnrec model ``spec`` (:func:`fit_attnrec`); score test once, raw (``auc``, ``logloss``, ``ece``) and
    with the model's calibrator fitted on valid (``cal_*``)."""
    test = splits[2]
    model, report = fit_attnrec(spec, splits, seed, s)
    raw, cal = evaluate(model.uncalibrated(), test), evaluate(model, test)
    # per-row test probabilities (7 decimals) let ctr_paired.py --record bootstrap these very runs without refitting
    probs = {
        "test_p": np.round(model.predict_proba(test), 7).tolist(),
        "test_p_raw": np.round(model.predict_proba(test, calibrated=False), 7).tolist(),
    }
    return {
        **{k: float(raw[k]) for k in ("auc", "logloss", "ece")},
        **{f"cal_{k}": float(cal[k]) for k in ("auc", "logloss", "ece")},
        "temperature": model.calibrator.temperature if model.calibrator is not None else 1.0,
        # trained epochs only: a validate_start run's epoch-0 row (no loss, 0 s) is no epoch of training
        "s_per_epoch": float(statistics.median(h["seconds"] for h in report.history if "loss" in h)),
        "best_epoch": report.best_epoch,
        "epochs_run": report.epochs_run,
        "max_epochs": epoch_cap(parse_spec(spec)[0], s),
        "valid_auc": float(report.best_valid.get("auc", float("nan"))),
        "valid_logloss": float(report.best_valid.get("logloss", float("nan"))),
        **probs,
    }


def peer_module(name: str = "ctr_deepctr_peer") -> Any:
    """``benchmarks/<name>.py`` (a peer runner) as a module (also when this file is imported from elsewhere)."""
    import importlib.util

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


#: the attnrec config fields a peer takes from a peer spec (``--peer dcn:cross_layers=2``), per peer model
PEER_FIELDS: dict[str, tuple[str, ...]] = {"dcn": ("cross_layers",)}


def peer_settings(spec: str) -> tuple[str, dict[str, Any]]:
    """``(peer model, its model-specific arguments)`` for a peer spec, written as ``--models`` writes attnrec's
    (:func:`parse_spec`): a DCN peer gets attnrec's dcn cross depth, ``cross_layers`` from the spec
    (``"dcn:cross_layers=2"``, to face ``--models dcn:cross_layers=2``) else :class:`DCNConfig`'s default, so no
    peer stands on a copied constant. An override a peer does not take is refused, naming it."""
    name, overrides = parse_spec(spec)
    fields = PEER_FIELDS.get(name, ())
    extra = sorted(set(overrides) - set(fields))
    if extra:
        raise SystemExit(
            f"peer {spec!r}: {', '.join(extra)} is not an option of the {name} peer "
            f"(it takes {', '.join(fields) or 'none'})"
        )
    if name == "dcn":
        config = DCNConfig.parse(overrides, source=f"peer {spec!r}")
        assert isinstance(config, DCNConfig)
        return name, {"cross_layers": config.cross_layers}
    return name, {}


def run_deepctr(spec: str, splits: Splits, seed: int, s: BenchSettings) -> dict[str, Any]:
    """The peer: DeepCTR-Torch's model of ``spec`` (deepfm/xdeepfm/dcn, :func:`peer_settings`) on the same encoded
    splits and settings."""
    train, valid, test = splits
    name, extra = peer_settings(spec)
    row = peer_module().run_peer(
        name,
        train,
        valid,
        test,
        seed=seed,
        embedding_dim=s.embedding_dim,
        hidden=list(s.hidden),
        dropout=s.dropout,
        cin_layers=list(s.cin_layers),
        lr=s.lr,
        batch_size=s.batch_size,
        max_epochs=s.max_epochs,
        patience=s.patience,
        stop=s.stop,
        embedding_reg=s.embedding_reg,
        **extra,
    )
    return {**row, **extra}  # the row records the settings it ran with (a DCN peer's cross_layers)


def run_fuxictr(spec: str, splits: Splits, seed: int, s: BenchSettings) -> dict[str, Any]:
    """The second peer: FuxiCTR's model of ``spec`` (deepfm/dcn, :func:`peer_settings`) on the same encoded splits
    and settings."""
    train, valid, test = splits
    name, extra = peer_settings(spec)
    if not s.fuxictr_zoo:
        raise SystemExit(
            "the FuxiCTR peer needs --fuxictr-zoo (FuxiCTR's model_zoo folder), or --fuxictr-peer ''"
        )
    row = peer_module("ctr_fuxictr_peer").run_peer(
        name,
        train,
        valid,
        test,
        zoo=Path(s.fuxictr_zoo),
        seed=seed,
        embedding_dim=s.embedding_dim,
        hidden=list(s.hidden),
        dropout=s.dropout,
        lr=s.lr,
        batch_size=s.batch_size,
        max_epochs=s.max_epochs,
        patience=s.patience,
        stop=s.stop,
        embedding_reg=s.embedding_reg,
        **extra,
    )
    return {**row, **extra}  # the row records the settings it ran with (a DCN peer's cross_layers)


SCORES = ("auc", "logloss", "ece", "cal_auc", "cal_logloss", "cal_ece", "temperature")
#: the config fields one ``--dropout-grid`` value sets, per attnrec model (NFM: its MLP's and the bi-interaction
#: vector's dropout together). AutoInt is absent: its ``dropout`` acts on the optional MLP, empty by default.
DROPOUT_FIELDS = {
    "nfm": ("dropout", "bi_dropout"),
    "afm": ("dropout",),
    "deepfm": ("dropout",),
    "xdeepfm": ("dropout",),
    "dcn": ("dropout",),
    "secn": ("dropout",),
}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (population) std over seeds of every test score (raw and calibrated), median seconds per epoch."""
    out: dict[str, Any] = {}
    for key in SCORES:
        v = np.array([r.get(key, float("nan")) for r in runs], dtype=float)
        out[f"{key}_mean"], out[f"{key}_std"] = float(v.mean()), float(v.std())
    caps = [r.get("max_epochs") for r in runs]
    return {
        **out,
        "s_per_epoch": float(np.median([r["s_per_epoch"] for r in runs])),
        "epochs_run": [r["epochs_run"] for r in runs],
        "best_epoch": [r["best_epoch"] for r in runs],
        # each run's epoch cap, and how many trained to it (stopped by the cap, not by the early-stopping rule)
        "max_epochs": caps,
        "at_cap": sum(1 for r in runs if at_cap(r)),
        "runs": runs,
    }


def at_cap(run: dict[str, Any]) -> bool:
    """Whether ``run`` trained to its epoch cap ``max_epochs`` (False when the run does not record it)."""
    cap = run.get("max_epochs")
    return cap is not None and int(run["epochs_run"]) >= int(cap)


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """dataset x (library, model) table: test AUC, logloss and ECE raw, logloss and ECE after temperature scaling
    (mean ± std), the mean fitted temperature, median s/epoch, epochs run (restored epoch), ``†`` on a run that
    trained to its epoch cap (a note below the table then names the caps)."""
    lines = [
        "| dataset | library | model | L2 | test AUC | logloss | ECE | calibrated logloss | calibrated ECE | T | "
        "s/epoch | epochs run (restored) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ms(r: dict[str, Any], key: str) -> str:
        return f"{r[key + '_mean']:.4f} ± {r[key + '_std']:.4f}"

    capped: dict[str, int] = {}
    for key, r in results.items():
        ds, lib, name = key.split("/")
        caps = r.get("max_epochs") or [None] * len(r["epochs_run"])
        cells = []
        for e, b, c in zip(r["epochs_run"], r["best_epoch"], caps, strict=True):
            hit = at_cap({"epochs_run": e, "max_epochs": c})
            if hit:
                capped[key] = int(c)
            cells.append(f"{e}{'†' if hit else ''} ({b})")
        runs = ", ".join(cells)
        lines.append(
            f"| {ds} | {lib} | {name} | {r.get('embedding_reg', 0.0):g} | {ms(r, 'auc')} | {ms(r, 'logloss')} | {ms(r, 'ece')} | "
            f"{ms(r, 'cal_logloss')} | {ms(r, 'cal_ece')} | {r['temperature_mean']:.2f} | "
            f"{r['s_per_epoch']:.3f} | {runs} |"
        )
    if capped:
        lines += [
            "",
            "† trained to its epoch cap (stopped by the cap, not by the early-stopping rule): "
            + ", ".join(f"{k} (cap {c})" for k, c in capped.items()),
        ]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """nproc, CPU model, OS and Python of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def dropout_spec(name: str, value: float, s: BenchSettings) -> str | None:
    """``"deepfm:dropout=0.3"``: model ``name`` with every field of :data:`DROPOUT_FIELDS` set to ``value``, or None
    when the model has no such field or already runs with that value in each (its bench setting or default)."""
    if name not in DROPOUT_FIELDS:
        return None
    fields = model_class(name).config_class.model_fields
    current = model_params(name, 0, s)
    if all(float(current.get(f, fields[f].default)) == float(value) for f in DROPOUT_FIELDS[name]):
        return None
    return ":".join([name, *(f"{f}={value:g}" for f in DROPOUT_FIELDS[name])])


def run_suite(
    datasets: Sequence[str],
    seeds: Sequence[int],
    models: Sequence[str] = MODELS,
    peers: Sequence[str] = ("deepfm", "xdeepfm"),
    settings: BenchSettings | None = None,
    fuxictr_peers: Sequence[str] = (),
    data_dir: Path = DEFAULT_DATA_DIR,
    log: Callable[[str], None] = print,
    l2_grid: Sequence[float] = (),
    grid_seeds: tuple[int, ...] = (0,),
    cache: RunCache | None = None,
    peer_l2_grid: Sequence[float] | None = None,
    l2_extend: Sequence[float] = (),
    dropout_grid: Sequence[float] = (),
    grid_cache: RunCache | None = None,
    dropout_extend: Sequence[float] = (),
) -> dict[str, Any]:
    """Run every (dataset, model, seed) and return the record: ``results["<dataset>/<library>/<model>"]`` with
    :func:`summarise`'s fields, plus ``datasets`` (split info) and ``settings``.

    With ``l2_grid``, each job's L2 weight is first chosen on validation (:func:`select_l2`, the mean over the
    seeds ``grid_seeds``), the seeds then run with it (``results[key]["embedding_reg"]``, the grid's scores in ``record["l2_grid"]``);
    ``l2_extend`` widens it upward where its top wins. With ``dropout_grid``, each attnrec model's dropout is then
    chosen at its L2 (:func:`select_dropout`, widened upward by ``dropout_extend`` where its top wins; scores in
    ``record["dropout_grid"]``) and the result's key carries the
    chosen override (``"criteo/attnrec/deepfm:dropout=0.3"``) unless the model's own setting won.
    Runs found in ``cache`` (:func:`load_reuse`) are taken from it, marked ``reused``; the grids also take earlier
    grid scores from ``grid_cache`` (:func:`load_grid_scores`)."""
    s = settings or BenchSettings()
    results: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] = {}
    grid_record: dict[str, Any] = {}
    dropout_record: dict[str, Any] = {}
    select_cache = {**(grid_cache or {}), **(cache or {})}  # a grid reads only the validation scores
    for ds in datasets:
        splits, info[ds] = load_splits(ds, data_dir, s.split_seed, s.resplit)
        log(f"# {ds}: {info[ds]['rows']} rows, positive rate {info[ds]['positive_rate']}")
        jobs: list[Job] = (
            [("attnrec", m, run_attnrec) for m in models]
            + [("deepctr-torch", m, run_deepctr) for m in peers]
            + [("fuxictr", m, run_fuxictr) for m in fuxictr_peers]
        )
        l2 = {f"{ds}/{lib}/{m}": s.embedding_reg for lib, m, _ in jobs}
        if l2_grid:
            l2, grid_record[ds] = select_l2(
                ds, jobs, splits, l2_grid, grid_seeds, s, log, select_cache, peer_l2_grid, l2_extend
            )
            log(f"# {ds}: L2 chosen on validation: {l2}")
        if dropout_grid:
            jobs, l2, dropout_record[ds] = select_dropout(
                ds,
                jobs,
                splits,
                dropout_grid,
                dropout_spec,
                l2,
                grid_record.get(ds, {}),
                grid_seeds,
                s,
                log,
                select_cache,
                dropout_extend,
            )
        runs: dict[str, list[dict[str, Any]]] = {f"{ds}/{lib}/{m}": [] for lib, m, _ in jobs}
        for seed in seeds:  # interleaved: background load affects every library alike
            for lib, m, fn in jobs:
                t0 = time.perf_counter()
                key = f"{ds}/{lib}/{m}"
                row = cached(cache, key, fn, m, splits, seed, replace(s, embedding_reg=l2[key]))
                row["seed"] = seed
                row.setdefault("wall_s", round(time.perf_counter() - t0, 2))
                # a peer's run: the cap it ran under (attnrec runs and reused runs carry theirs)
                row.setdefault("max_epochs", epoch_cap(parse_spec(m)[0], s, lib))
                runs[f"{ds}/{lib}/{m}"].append(row)
                log(
                    f"{ds}/{lib}/{m} seed {seed}: AUC {row['auc']:.4f} logloss {row['logloss']:.4f} "
                    f"ECE {row['ece']:.4f} calibrated logloss {row['cal_logloss']:.4f} ECE {row['cal_ece']:.4f} "
                    f"s/epoch {row['s_per_epoch']:.3f} epochs {row['epochs_run']} (best {row['best_epoch']}) "
                    f"of cap {row['max_epochs']}"
                )
                if at_cap(row):
                    log(
                        f"# {ds}/{lib}/{m} seed {seed} trained to its cap of {row['max_epochs']} epochs (best epoch "
                        f"{row['best_epoch']}): stopped by the cap, not by the early-stopping rule"
                    )
        for key, rows in runs.items():
            results[key] = {"embedding_reg": l2[key], **summarise(rows)}
    return {
        "results": results,
        "datasets": info,
        "settings": asdict(s),
        "l2_grid": grid_record,
        "dropout_grid": dropout_record,
        "grid_seeds": list(grid_seeds),
        # one seed: also under the old key, which load_grid_scores reads for rows without by_seed
        **({"grid_seed": grid_seeds[0]} if len(grid_seeds) == 1 else {}),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the suite, print the markdown table and write the JSON record (``--out``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated; a model may carry config overrides, e.g. secn:cross_product=first:cross_layers=2",
    )
    ap.add_argument(
        "--peer",
        default="deepfm,xdeepfm",
        help="DeepCTR-Torch models: deepfm, xdeepfm, dcn ('' for none); dcn:cross_layers=N as in --models "
        "(default: attnrec's dcn's)",
    )
    ap.add_argument(
        "--fuxictr-peer",
        default="deepfm,dcn",
        help="FuxiCTR models, run when --fuxictr-zoo is given ('' for none); dcn:cross_layers=N as --peer",
    )
    ap.add_argument(
        "--fuxictr-zoo", default="", help="FuxiCTR's model_zoo folder (its DeepFM and DCNv2 sources)"
    )
    ap.add_argument(
        "--peer-path",
        default="",
        help="a folder added to sys.path where the peers are installed (pip --target)",
    )
    ap.add_argument("--stop", default="both", choices=sorted(STOP_RULES), help="early-stopping rule")
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument(
        "--baseline-max-epochs",
        type=int,
        default=BASELINE_MAX_EPOCHS,
        help="the epoch cap of LR, the baseline every goal compares against (the other models and the peers: "
        "--max-epochs); a value equal to --max-epochs is the old single cap",
    )
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--embedding-reg", type=float, default=0.0, help="L2 weight of every job (without --l2-grid)"
    )
    ap.add_argument(
        "--l2-grid",
        default="",
        help="comma-separated L2 weights: each job's chosen on validation logloss (seed --grid-seed, test unread)",
    )
    ap.add_argument("--peer-l2-grid", default="", help="the peers' grid (same size; default --l2-grid)")
    ap.add_argument(
        "--l2-extend",
        default="",
        help="larger L2 weights tried in turn for an attnrec job while the largest tried so far wins on validation",
    )
    ap.add_argument(
        "--dropout-grid",
        default="",
        help="dropout values chosen per attnrec model on validation logloss at its chosen L2 (test unread)",
    )
    ap.add_argument(
        "--dropout-extend",
        default="",
        help="larger dropout values tried in turn for an attnrec model while the largest tried so far wins",
    )
    ap.add_argument(
        "--grid-seed", type=int, default=None, help="the one grid seed (without --grid-seeds; default 0)"
    )
    ap.add_argument(
        "--grid-seeds",
        default="",
        help="comma-separated model seeds of the grids: each point ranked by its mean validation logloss over them",
    )
    ap.add_argument(
        "--reuse",
        default="",
        help="comma-separated earlier --out records: their runs with the same settings, L2 and seed are not rerun",
    )
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument(
        "--resplit",
        action="store_true",
        help="criteo/avazu: pool the sample's files and redraw train/valid/test (same sizes) with --split-seed",
    )
    ap.add_argument(
        "--linear-reg",
        type=float,
        default=None,
        help="the first-order weights' own L2 weight (linear_reg) for every attnrec model with a first-order term "
        "except LR (with_linear_reg); unset: they share embedding_reg",
    )
    ap.add_argument(
        "--linear-init",
        choices=("zero", "lr"),
        default="zero",
        help="how the first-order term starts (linear_init) in every attnrec model with one except LR "
        "(with_linear_init): zero, or lr (from an LR each fit first fits on the same train/valid)",
    )
    ap.add_argument(
        "--validate-start",
        action="store_true",
        help="validate every attnrec model (LR included) as it starts, before epoch 1 "
        "(TrainerConfig.validate_start): epoch 0 is a candidate for the restored state",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both libraries)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.grid_seeds and args.grid_seed is not None:
        raise SystemExit("give --grid-seed or --grid-seeds, not both")
    datasets = [d for d in args.datasets.split(",") if d]
    if args.resplit and "movielens" in datasets:  # refused before any fit, not when its turn comes
        raise SystemExit(NO_RESPLIT)
    torch.set_num_threads(args.threads)
    if args.peer_path:
        sys.path.append(
            str(Path(args.peer_path).resolve())
        )  # appended: the venv's torch and NumPy stay first
    settings = BenchSettings(
        max_epochs=args.max_epochs,
        baseline_max_epochs=args.baseline_max_epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        embedding_reg=args.embedding_reg,
        split_seed=args.split_seed,
        resplit=args.resplit,
        stop=args.stop,
        fuxictr_zoo=args.fuxictr_zoo,
        linear_reg=args.linear_reg,
        linear_init=args.linear_init,
        validate_start=args.validate_start,
    )
    peers = [p for p in args.peer.split(",") if p]
    # FuxiCTR's models live in its model zoo, outside the package: its rows run when the zoo is given
    fuxictr_peers = [p for p in args.fuxictr_peer.split(",") if p] if args.fuxictr_zoo else []
    for p in peers + fuxictr_peers:  # a bad peer spec is refused before any fit, not when its turn comes
        peer_settings(p)
    reuse = [Path(x) for x in args.reuse.split(",") if x]

    def floats(text: str) -> list[float]:
        return [float(x) for x in text.split(",") if x]

    t0 = time.perf_counter()
    record = run_suite(
        datasets,
        [int(x) for x in args.seeds.split(",")],
        [m for m in args.models.split(",") if m],
        peers,
        settings,
        fuxictr_peers,
        args.data_dir,
        log=lambda msg: print(msg, flush=True),
        l2_grid=[float(x) for x in args.l2_grid.split(",") if x],
        grid_seeds=check_grid_seeds([int(x) for x in args.grid_seeds.split(",") if x])
        if args.grid_seeds
        else (0 if args.grid_seed is None else args.grid_seed,),
        peer_l2_grid=[float(x) for x in args.peer_l2_grid.split(",") if x] or None,
        cache=load_reuse(reuse, settings),
        l2_extend=floats(args.l2_extend),
        dropout_grid=floats(args.dropout_grid),
        dropout_extend=floats(args.dropout_extend),
        grid_cache=load_grid_scores(reuse, settings),
    )
    table = markdown_table(record["results"])
    print("\n" + table)
    versions: dict[str, Any] = {"torch": torch.__version__, "numpy": np.__version__}
    if peers:
        versions["deepctr-torch"] = peer_module().deepctr_version()
    if fuxictr_peers:
        versions["fuxictr"] = peer_module("ctr_fuxictr_peer").fuxictr_version()
    argv_used = list(sys.argv[1:] if argv is None else argv)
    record = {
        "bench": "ctr",
        "command": shlex.join([".venv/bin/python", "benchmarks/bench_ctr.py", *argv_used]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        # HEAD, "+dirty" when src/ or benchmarks/ differ from it: the tree is shared, so a bare commit may not be
        # the code that ran
        "commit": git_state(Path(__file__).resolve().parent),
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        "wall_s": round(time.perf_counter() - t0, 1),
        **record,
        "table": table,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
