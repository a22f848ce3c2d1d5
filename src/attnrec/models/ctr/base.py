"""The shared CTR recommender wrapper and module base.

A CTR model scores *feature rows* (a :class:`~attnrec.data.ctr.CTRData`), not (user, item) pairs: it is a
:class:`~attnrec.models.capabilities.RowScorer` only, with no user/item vocabularies.

* :class:`CTRModule` — the ``nn.Module`` contract: ``forward(batch) -> logits (B,)`` and
  ``loss(batch) = BCE-with-logits + embedding_reg * ||E||^2 + linear_reg * ||W||^2`` (each the sum of squares of
  the rows looked up for the batch, divided by the batch size; ``E`` the embeddings, ``W`` the first-order
  weights), where subclasses implement :meth:`CTRModule.compute` returning the logits and the
  :class:`Penalised` tensors. ``linear_reg = None`` (the default) weighs ``W`` with ``embedding_reg`` too: one
  penalty over both, as before the option existed.
* :class:`CTRRecommender` — fit on CTRData (or streaming :class:`~attnrec.data.ctr_shards.ShardedCTRData`) with the one
  Trainer, early stopping on validation logloss and AUC (``default_trainer``), then temperature scaling fitted on
  the validation split (``config.calibration``); ``predict_proba``, ``predict_frame``; bundles carry the
  feature schema (and the encoder's vocabularies when one is attached) and the calibrator, so a bundle scores raw
  rows by itself.
* ``linear_init = "lr"``: before training, an LR is fitted on the same data with the same trainer and seed, and
  the model's first-order term starts from its weights and bias (:meth:`CTRRecommender.initial_module`) instead of
  0; the whole model is then trained jointly as usual.
"""

from __future__ import annotations

import copy
import json
import time
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, Protocol, TypeVar

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from scipy.special import expit

from attnrec.data.batches import CTRBatch
from attnrec.data.ctr import CTRData, FeatureEncoder, ctr_batches
from attnrec.data.ctr_shards import ShardedCTRData
from attnrec.data.schema import FeatureSchema
from attnrec.data.side import SideInputs
from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.calibration import Calibrator, fit_calibrator_logits
from attnrec.models.base import (
    FitReport,
    ModelConfig,
    RowScorer,
    TaskKind,
    TorchEstimator,
    TrainableModule,
    get_model_class,
)
from attnrec.models.layers.features import FeatureLinear, l2_per_row

if TYPE_CHECKING:
    from attnrec.training.trainer import TrainerConfig

CTRSource = CTRData | ShardedCTRData
#: the direction of each metric the CTR validator computes
CTR_METRIC_MODES: dict[str, Literal["min", "max"]] = {"auc": "max", "logloss": "min", "ece": "min"}


class CTRConfig(ModelConfig):
    """Options every CTR model has.

    ``linear_reg`` and ``linear_init = "lr"`` are for models with a first-order term (:meth:`has_first_order`); a
    model without one refuses them (a ConfigError naming the field) rather than ignoring what the user asked for.
    """

    embedding_reg: float = Field(
        0.0,
        ge=0,
        description="weight of the L2 penalty on the batch's embeddings (and on its first-order weights when "
        "linear_reg is None)",
    )
    linear_reg: float | None = Field(
        None,
        ge=0,
        description="weight of the L2 penalty on the batch's first-order (linear) weights alone; None: they share "
        "embedding_reg (one penalty over both, the behaviour before this option)",
    )
    linear_init: Literal["zero", "lr"] = Field(
        "zero",
        description="how the first-order term b + sum_f w_f(x_f) starts: zero (the behaviour before this option), "
        "or lr: copied from a logistic regression fitted first on the same training data, validation, trainer and "
        "seed, with the L2 weight this model's loss puts on its first-order weights (linear_reg when set, else "
        "embedding_reg); the whole model is then trained jointly",
    )
    #: the two first-order options came after bundles and checkpoints were written; these values are the model before
    bundle_legacy: ClassVar[dict[str, Any]] = {"linear_reg": None, "linear_init": "zero"}

    calibration: Literal["none", "temperature", "platt"] = Field(
        "temperature",
        description="post-hoc scaling of the logits fitted on the validation split after training "
        "(temperature: σ(z/T), keeps the ranking; platt: σ(a·z + b)); none, or no validation split: raw",
    )

    def has_first_order(self) -> bool:
        """Whether the model built from this config has a first-order term ``b + sum_f w_f(x_f)`` (a
        :class:`~attnrec.models.layers.features.FeatureLinear`), the part ``linear_reg`` weighs."""
        return True

    @model_validator(mode="after")
    def _linear_reg_needs_a_linear_term(self) -> CTRConfig:
        if self.linear_reg is not None and not self.has_first_order():
            raise ValueError(
                f"linear_reg = {self.linear_reg!r}: this model has no first-order term to penalise "
                f"({type(self).__name__}.has_first_order() is False; leave linear_reg None: embedding_reg weighs "
                "its embeddings)"
            )
        if self.linear_init == "lr" and not self.has_first_order():
            raise ValueError(
                f"linear_init = 'lr': this model has no first-order term to start from LR's weights "
                f"({type(self).__name__}.has_first_order() is False; leave linear_init 'zero')"
            )
        return self

    def first_order_l2(self) -> float:
        """The L2 weight this model's loss puts on its first-order weights: ``linear_reg`` when set, else
        ``embedding_reg`` (which then weighs them with the embeddings). The LR of ``linear_init = "lr"`` is fitted
        with it, so the model starts from the first-order optimum of its own penalty."""
        return self.linear_reg if self.linear_reg is not None else self.embedding_reg


class EmbeddingCTRConfig(CTRConfig):
    """Options of CTR models built on field embeddings."""

    embedding_dim: int = Field(16, ge=1)


class Penalised(NamedTuple):
    """What a batch's L2 penalty is taken over: the embeddings it looked up (tensors whose first axis is the batch)
    and its first-order terms ``w_f(x_f)`` (B, n_fields), None for a model without a first-order term."""

    embeddings: tuple[torch.Tensor, ...]
    linear: torch.Tensor | None = None


class CTRModule(TrainableModule):
    """Base of CTR modules: subclasses implement :meth:`compute`.

    ``embedding_reg`` weighs the embeddings' penalty; ``linear_reg`` the first-order terms' (None: ``embedding_reg``
    weighs both together, bit for bit the loss before ``linear_reg`` existed).

    A module with a first-order term keeps it, a
    :class:`~attnrec.models.layers.features.FeatureLinear`, as its ``linear`` attribute (:meth:`first_order`).
    """

    def __init__(self, embedding_reg: float = 0.0, linear_reg: float | None = None) -> None:
        super().__init__()
        self.embedding_reg = embedding_reg
        self.linear_reg = linear_reg

    @abstractmethod
    def compute(self, batch: CTRBatch) -> tuple[torch.Tensor, Penalised]:
        """``(logits (B,), penalised)``: the click logits and the tensors the L2 penalty is taken over."""

    def forward(self, batch: CTRBatch) -> torch.Tensor:
        """Click logits, (B,); ``sigmoid`` gives probabilities."""
        return self.compute(batch)[0]

    def first_order(self) -> FeatureLinear | None:
        """The first-order term ``b + sum_f w_f(x_f)`` (the submodule ``linear``), None for a module without one."""
        linear = self._modules.get("linear")
        return linear if isinstance(linear, FeatureLinear) else None

    def with_first_order(
        self, logits: torch.Tensor, batch: CTRBatch
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``logits`` plus the first-order term ``b + sum_f w_f(x_f)`` when the module has one (:meth:`first_order`;
        the opt-in ``use_linear`` of autoint, dcn and secn), with its per-field terms for :class:`Penalised`
        (None, and ``logits`` unchanged, without one)."""
        linear = self.first_order()
        if linear is None:
            return logits, None
        terms = linear.terms(batch)
        return logits + terms.sum(1) + linear.bias, terms

    def penalty(self, parts: Penalised) -> torch.Tensor | None:
        """The weighted L2 penalty of ``parts`` (:func:`~attnrec.models.layers.features.l2_per_row`: sums of
        squares divided by the batch size); None when every weight that applies is 0.

        ``linear_reg`` None: ``embedding_reg * l2(embeddings, linear)``, one penalty over both. A float:
        ``embedding_reg * l2(embeddings) + linear_reg * l2(linear)``, each part with its own weight (0 drops it).
        """
        linear = () if parts.linear is None else (parts.linear,)
        if self.linear_reg is None:
            tensors = (*parts.embeddings, *linear)
            return self.embedding_reg * l2_per_row(*tensors) if self.embedding_reg > 0 and tensors else None
        total = None
        if self.embedding_reg > 0 and parts.embeddings:
            total = self.embedding_reg * l2_per_row(*parts.embeddings)
        if self.linear_reg > 0 and linear:
            lin = self.linear_reg * l2_per_row(*linear)
            total = lin if total is None else total + lin
        return total

    def loss(self, batch: CTRBatch) -> torch.Tensor:
        """Mean binary cross-entropy of the logits against ``batch.labels``, plus the L2 penalty (:meth:`penalty`)."""
        logits, parts = self.compute(batch)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.labels.float())
        penalty = self.penalty(parts)
        if penalty is not None:
            loss = loss + penalty
        return loss


def check_data(schema: FeatureSchema, data: CTRData, *, source: str = "data") -> None:
    """Raise :class:`DataError` when ``data`` does not fit a model built for ``schema``.

    Checks the field lists (names and order per part) and every index being in ``0..vocab_size-1`` (an index
    out of range would silently read another field's embedding rows).
    """
    for part in ("categorical", "numeric", "multi"):
        want = [f.name for f in getattr(schema, part)]
        got = [f.name for f in getattr(data.schema, part)]
        arr = getattr(data, part)
        width = arr.shape[1] if arr.ndim > 1 else 0
        if got != want or width != len(want):
            raise DataError(
                f"{source} has {part} fields {got} ({width} columns)",
                field=part,
                value=got,
                expected=f"the model's {part} fields {want}",
            )
    if schema.multi and data.multi.shape[2] != schema.multi_len:
        raise DataError(
            f"{source} has multi-valued length {data.multi.shape[2]}",
            field="multi",
            value=data.multi.shape[2],
            expected=f"length {schema.multi_len}",
        )
    if len(data) == 0:
        return
    for part, specs in (("categorical", schema.categorical), ("multi", schema.multi)):
        arr = getattr(data, part)
        if not specs:
            continue
        flat = arr.reshape(len(data), len(specs), -1)
        hi = flat.max(axis=(0, 2))
        lo = flat.min(axis=(0, 2))
        sizes = np.array([f.vocab_size for f in specs])
        bad = np.flatnonzero((hi >= sizes) | (lo < 0))
        if bad.size:
            j = int(bad[0])
            value = int(hi[j]) if hi[j] >= sizes[j] else int(lo[j])
            raise DataError(
                f"{source} has an index out of range",
                field=specs[j].name,
                value=value,
                expected=f"indices 0..{sizes[j] - 1} (vocab_size {sizes[j]})",
            )


ConfigT = TypeVar("ConfigT", bound=CTRConfig)


class CTRModuleFactory(Protocol):
    """A CTR module class: built from the fitted schema and the model's config."""

    def __call__(self, schema: FeatureSchema, config: Any, /) -> CTRModule: ...


class CTRRecommender(TorchEstimator[ConfigT], RowScorer):
    """Base of CTR models: a :class:`RowScorer` fitted on feature rows. Subclasses set ``name``, ``config_class``,
    ``module_class`` (built as ``module_class(schema, config)``) and ``paper``."""

    task = TaskKind.CTR
    config_class: ClassVar[type[ModelConfig]] = CTRConfig
    #: the module, built as ``module_class(schema, config)``
    module_class: ClassVar[CTRModuleFactory]
    #: the CTR benchmark's settings (docs/models/ctr_benchmarks.md): Adam lr 1e-3, batch 256, at most 30 epochs;
    #: keep the epoch of the best validation logloss and stop when neither logloss nor AUC improved for 3 epochs
    #: (on AUC alone, training ran on while the logits grew and the probabilities became over-confident)
    default_trainer: ClassVar[dict[str, Any]] = {
        "epochs": 30,
        "patience": 3,
        "batch_size": 256,
        "lr": 1e-3,
        "valid_metric": "logloss",
        "valid_also": {"auc": "max"},
    }

    def __init__(self, config: ConfigT | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.schema: FeatureSchema | None = None
        self.encoder: FeatureEncoder | None = None
        #: post-hoc scaling of the logits fitted on validation after training (``config.calibration``); None: raw
        self.calibrator: Calibrator | None = None
        #: the fit report of the LR whose first-order weights the last fit started from (``linear_init = "lr"``);
        #: None otherwise. Not saved in bundles: it describes how training started, not the fitted model
        self.first_order_report: FitReport | None = None

    def make_trainer_config(self, trainer: TrainerConfig | None) -> TrainerConfig:
        """``trainer`` (None: ``default_trainer``) with ``valid_mode`` filled in from the CTR metric's direction when
        it is unset (``valid_metric = "auc"`` alone maximises, ``"logloss"`` or ``"ece"`` minimises).

        A ``trainer`` that names no ``valid_metric`` (``TrainerConfig(epochs=10)``) gets the stopping rule of
        ``default_trainer`` — select on validation logloss, AUC extends patience (``valid_also``, unless it sets its
        own) — not the task's generic fallback, early stopping on AUC alone, which lets the probabilities drift
        (docs/models/ctr_benchmarks.md, "Why CTR probabilities drifted")."""
        cfg = super().make_trainer_config(trainer)
        if cfg.valid_metric is None and "valid_metric" in self.default_trainer:
            rule = {"valid_metric": self.default_trainer["valid_metric"]}
            if not cfg.valid_also and "valid_also" in self.default_trainer:
                rule["valid_also"] = dict(self.default_trainer["valid_also"])
            cfg = cfg.model_copy(update=rule)
        if cfg.valid_metric in CTR_METRIC_MODES:
            mode = CTR_METRIC_MODES[cfg.valid_metric]
            if cfg.valid_mode is None:
                cfg = cfg.model_copy(update={"valid_mode": mode})
            elif cfg.valid_mode != mode:
                # e.g. an older run file's valid_mode = "max" (meant for AUC) against the logloss default
                raise ConfigError(
                    f"trainer valid_mode = {cfg.valid_mode!r} contradicts valid_metric = {cfg.valid_metric!r}, "
                    f"which is {'maximised' if mode == 'max' else 'minimised'}: set valid_metric too, or drop valid_mode"
                )
        return cfg

    def build_ctr_module(self, schema: FeatureSchema) -> CTRModule:
        """A fresh module for a fitted ``schema`` (parameters drawn from the current torch seed)."""
        return type(self).module_class(schema, self.config)

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        train: CTRSource,
        valid: CTRData | None = None,
        *,
        side: SideInputs | None = None,
        trainer: TrainerConfig | None = None,
        run_key: str | None = None,
        encoder: FeatureEncoder | None = None,
    ) -> FitReport:
        """Fit on ``train`` (in memory or sharded); ``valid`` (never test) drives early stopping (``default_trainer``)
        and then fits the calibrator of ``config.calibration`` on the restored model's validation logits.

        ``trainer`` is a :class:`~attnrec.training.trainer.TrainerConfig`; ``encoder``, the fitted
        :class:`FeatureEncoder` that produced the data, is kept so the bundle can encode raw rows
        (:meth:`predict_frame`).
        """
        if not isinstance(train, CTRData | ShardedCTRData):
            raise ConfigError(
                f"{self.name} fits CTRData or ShardedCTRData (attnrec.data.ctr), not {type(train).__name__}"
            )
        if len(train) == 0:
            raise ConfigError("the training split is empty")
        self.check_side(side)
        schema = train.schema
        if not schema.is_fitted:
            raise DataError(
                "the training data's schema is not fitted", expected="a schema from FeatureEncoder"
            )
        if isinstance(train, CTRData):
            check_data(schema, train, source="train")
        if valid is not None:
            check_data(schema, valid, source="valid")
        if encoder is not None and encoder.schema != schema:
            raise ConfigError("the encoder's schema differs from the training data's schema")
        self.schema, self.encoder, self.calibrator, self.first_order_report = schema, encoder, None, None
        cfg = self.make_trainer_config(trainer)
        t0 = time.perf_counter()
        self.module = self.initial_module(train, valid, cfg)
        report = self.train_module(
            self.module,
            lambda epoch, gen: self.train_batches(train, epoch, gen, cfg.batch_size),
            self.validator(valid) if valid is not None and len(valid) else None,
            cfg,
            run_key,
            (train, valid),
        )
        if valid is not None and len(valid) and self.config.calibration != "none":
            self.calibrator = self.fit_calibration(valid)
        report.seconds = time.perf_counter() - t0
        return report

    def initial_module(self, train: CTRSource, valid: CTRData | None, trainer: TrainerConfig) -> CTRModule:
        """The module training starts from: built for ``train.schema`` from ``config.seed``; with ``linear_init =
        "lr"``, its first-order term's weights and bias are then copied from an LR fitted first
        (:meth:`fit_first_order`). The LR is fitted *before* the seed is set and the module built, so every other
        parameter (and the training run's random draws) is the same as with ``linear_init = "zero"``."""
        lr = self.fit_first_order(train, valid, trainer) if self.config.linear_init == "lr" else None
        torch.manual_seed(self.config.seed)
        module = self.build_ctr_module(train.schema)
        if lr is not None:
            target, source = module.first_order(), lr.first_order()
            # the config's validator refuses "lr" for such a model: this is a module/config mismatch
            if target is None:
                raise ConfigError(
                    f"{self.name}: linear_init = 'lr' but the built module has no first-order term (submodule "
                    "'linear'); has_first_order() disagrees with the module"
                )
            target.copy_from(source)
        return module

    def fit_first_order(
        self, train: CTRSource, valid: CTRData | None, trainer: TrainerConfig
    ) -> CTRRecommender[Any]:
        """The LR a ``linear_init = "lr"`` fit starts from, fitted on ``train`` with early stopping on ``valid``
        (never test), the same ``trainer`` (checkpoints and log file left out: they belong to the model's own run)
        and ``config.seed``, with L2 :meth:`CTRConfig.first_order_l2` on its weights and no calibrator. Its report
        is kept in :attr:`first_order_report`."""
        from attnrec.training.trainer import inner_fit

        # by registered name, not by importing models/ctr/lr.py: that module imports this one (an import cycle)
        lr_class = get_model_class("lr")
        lr = lr_class(seed=self.config.seed, linear_reg=self.config.first_order_l2(), calibration="none")
        assert isinstance(lr, CTRRecommender)
        inner = trainer.model_copy(update={"checkpoint_dir": None, "log_path": None})
        with inner_fit():  # a tuner's epoch callbacks see this model's epochs, not the LR's
            self.first_order_report = lr.fit(train, valid, trainer=inner)
        return lr

    def first_order(self) -> FeatureLinear:
        """The fitted module's first-order term (ConfigError when the model is unfitted or has none)."""
        if not isinstance(self.module, CTRModule):
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        linear = self.module.first_order()
        if linear is None:
            raise ConfigError(f"{self.name} has no first-order term (config.has_first_order() is False)")
        return linear

    def fit_calibration(self, valid: CTRData) -> Calibrator | None:
        """The calibrator of ``config.calibration`` fitted on ``valid``'s raw probabilities (the VALIDATION split:
        test must never reach it); None when the labels hold one class (nothing to fit)."""
        labels = np.asarray(valid.labels)
        if labels.min() == labels.max():
            return None
        method = self.config.calibration
        assert method != "none"
        # on the logits themselves: float32 probabilities would cap |z| near 16 on the most confident rows
        return fit_calibrator_logits(labels, self.predict_logits(valid).astype(np.float64), method)

    def uncalibrated(self) -> CTRRecommender[ConfigT]:
        """A view of this model that scores raw probabilities (shares the module; no calibrator): evaluate both
        to report the raw model beside the calibrated one."""
        view = copy.copy(self)
        view.calibrator = None
        return view

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> TrainableModule:
        return self.build_ctr_module(self._schema())

    def train_batches(
        self, train: CTRSource, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[CTRBatch]:
        """One shuffled epoch of :class:`CTRBatch` (two-level shuffle for sharded data)."""
        if isinstance(train, ShardedCTRData):
            return train.iter_batches(batch_size, generator, shuffle=True)
        return ctr_batches(train, batch_size, generator=generator, shuffle=True)

    def _schema(self) -> FeatureSchema:
        if self.schema is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        return self.schema

    # ----------------------------------------------------------------- scoring
    def predict_logits(self, data: CTRSource, batch_size: int = 4096) -> np.ndarray:
        """Click logits of every row of ``data``, float32 (N,), in row order."""
        schema = self._schema()
        if self.module is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        parts: Iterable[CTRData] = data if isinstance(data, ShardedCTRData) else [data]
        module, out = self.module, []
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                for part in parts:
                    check_data(schema, part)
                    for batch in ctr_batches(part, batch_size, shuffle=False):
                        out.append(module(batch.to(self.device)).float().cpu())
        finally:
            module.train(was_training)
        if not out:
            return np.zeros(0, dtype=np.float32)
        return torch.cat(out).numpy()

    def predict_proba(
        self, data: CTRSource, batch_size: int = 4096, *, calibrated: bool = True
    ) -> np.ndarray:
        """Click probabilities of every row of ``data``, float32 (N,) in [0, 1], in row order: ``σ(a·z + b)`` of the
        logits ``z`` with the fitted calibrator's ``(a, b)``, or ``σ(z)`` when there is none or ``calibrated=False``."""
        z = self.predict_logits(data, batch_size).astype(np.float64)
        if calibrated and self.calibrator is not None:
            z = self.calibrator.a * z + self.calibrator.b
        return expit(z).astype(np.float32)

    def predict_frame(
        self, frame: pl.DataFrame, batch_size: int = 4096, *, calibrated: bool = True
    ) -> np.ndarray:
        """Click probabilities of raw rows (the reader's columns), using the attached encoder.

        A frame without the label column is scored too (the label is not used).
        """
        if self.encoder is None:
            raise ConfigError(
                f"{self.name} has no feature encoder: pass encoder= to fit() to score raw rows, "
                "or encode them yourself and call predict_proba"
            )
        label = self.encoder.schema.label
        if label not in frame.columns:
            frame = frame.with_columns(pl.lit(0.0).alias(label))
        return self.predict_proba(
            self.encoder.transform(frame, source="<frame>"), batch_size, calibrated=calibrated
        )

    # ----------------------------------------------------------------- persistence
    def bundle_json(self) -> dict[str, Any]:
        """The feature schema, the encoder (schema + vocabularies) when one is attached, and the calibrator."""
        return {
            "schema": self._schema().model_dump(mode="json"),
            "encoder": json.loads(self.encoder.to_json()) if self.encoder is not None else None,
            "calibrator": self.calibrator.to_json() if self.calibrator is not None else None,
        }

    def load_bundle_json(self, data: dict[str, Any]) -> None:
        if "schema" not in data:
            raise DataError(
                "the bundle's extra.json has no feature schema", field="schema", expected="a CTR bundle"
            )
        self.schema = FeatureSchema.model_validate(data["schema"])
        enc = data.get("encoder")
        if enc is not None and not (isinstance(enc, dict) and "schema" in enc):
            raise DataError("not a feature encoder", field="encoder", expected='{"schema", "vocabularies"}')
        self.encoder = FeatureEncoder.from_json(json.dumps(enc)) if enc else None
        # the encoder's indices address the model's tables: a different schema would read past them
        if self.encoder is not None and self.encoder.schema != self.schema:
            raise DataError(
                "the feature encoder's schema differs from the model's",
                field="encoder.schema",
                expected="the schema under 'schema'",
            )
        cal = data.get("calibrator")
        # a bundle written before calibration existed has no key: raw probabilities, as it was saved
        self.calibrator = (
            Calibrator.from_json(cal, source="extra.json: calibrator") if cal is not None else None
        )
