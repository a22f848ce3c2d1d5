"""The contracts every model follows.

* A typed :class:`ModelConfig` (pydantic; unknown keys are errors; round-trips to JSON/TOML; saved in bundles).
* :class:`Estimator` — the one base: typed config, ``fit(train, valid, side=, trainer=)``, state tensors and bundle
  JSON, a registry name. What a model can do beyond fitting is declared by the capabilities it inherits
  (:mod:`attnrec.models.capabilities`: :class:`RatingPredictor`, :class:`ItemScorer`, :class:`RowScorer`).
* :class:`Recommender` — an estimator over user/item vocabularies (rating and top-K models): it owns the
  vocabularies and the stored training matrix, the default source of "seen" items for a query.
* :class:`TorchRecommender` — a recommender whose parameters live in a :class:`TrainableModule` fitted by the one
  :class:`~attnrec.training.trainer.Trainer`. The module computes scores and losses from tensors; it knows no ids.
* A registry by plain name with an import-path fallback, so user models plug in.

Validation during fit goes through :mod:`attnrec.evaluation.protocols` (the same protocols the run reports on);
no model overrides evaluation.
"""

from __future__ import annotations

import importlib
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
import polars as pl
import scipy.sparse as sp
import tomli_w
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from attnrec.data.side import SideInputs
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError
from attnrec.models.capabilities import (
    DEFAULT_VALID_METRIC,
    ItemScorer,
    RatingPredictor,
    RowScorer,
    TaskKind,
)
from attnrec.models.query import Query
from attnrec.training.types import FitReport, TrainableModule

if TYPE_CHECKING:
    from attnrec.training.trainer import TrainerConfig

__all__ = [
    "DEFAULT_VALID_METRIC",
    "Estimator",
    "FitReport",
    "ItemScorer",
    "ModelConfig",
    "Query",
    "RatingPredictor",
    "Recommender",
    "RowScorer",
    "TaskKind",
    "TorchEstimator",
    "TorchRecommender",
    "TrainableModule",
    "available_models",
    "check_state_tensors",
    "get_model_class",
    "pop_rating_range",
    "register",
]


class ModelConfig(BaseModel):
    """Base of every model's typed config. Unknown keys raise (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    seed: int = 42

    #: fields added after bundles were already being written, with the value those bundles were trained under: a
    #: bundle's config that lacks one loads with this, not with today's default (save_bundle writes every field,
    #: so a missing one means an older bundle). A training checkpoint's run identity leaves them out at that value
    #: (``RunIdentity.legacy``), so a checkpoint written before a field existed stays resumable
    bundle_legacy: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_toml(self) -> str:
        return tomli_w.dumps({k: v for k, v in self.to_dict().items() if v is not None})

    @classmethod
    def parse(cls, data: dict[str, Any], *, source: str = "config") -> ModelConfig:
        """Validate a dict, turning pydantic's error into a :class:`ConfigError` naming the field and value."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            msgs = []
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"])
                if not loc:  # a check across fields (a model validator): its message names the fields itself
                    msgs.append(f"{source}: {err['msg']}")
                    continue
                value = err.get("input")
                msgs.append(f"{source}: field {loc!r}: {err['msg']} (got {value!r})")
            raise ConfigError("; ".join(msgs)) from None

    @classmethod
    def from_toml(cls, path: str | Path) -> ModelConfig:
        with open(path, "rb") as fh:
            return cls.parse(tomllib.load(fh), source=str(path))


ConfigT = TypeVar("ConfigT", bound=ModelConfig)
EpochBatches = Callable[[int, torch.Generator], Iterable[Any]]


class Estimator(ABC, Generic[ConfigT]):
    """Base of every model: a typed config, fit, and the tensors and JSON that make a bundle.

    Subclasses set ``name``, ``task``, ``config_class`` (and ``paper``, ``default_trainer``, ``side_inputs``) and
    inherit the capabilities they have. ``Estimator[SVDConfig]`` types ``self.config``.
    """

    name: ClassVar[str]
    task: ClassVar[TaskKind]
    config_class: ClassVar[type[ModelConfig]]
    paper: ClassVar[str] = ""
    #: Trainer settings this model's paper prescribes; the run starts from these, then applies its own
    default_trainer: ClassVar[dict[str, Any]] = {}
    #: the side inputs (:data:`attnrec.data.side.SIDE_INPUT_KINDS`) this model reads from ``fit(side=...)``
    side_inputs: ClassVar[frozenset[str]] = frozenset()
    #: the side inputs without which this model cannot fit
    required_side_inputs: ClassVar[frozenset[str]] = frozenset()

    config: ConfigT

    def __init__(self, config: ConfigT | None = None, **overrides: Any) -> None:
        if config is None:
            parsed = self.config_class.parse(overrides, source=f"{self.name} config")
        elif overrides:
            parsed = self.config_class.parse({**config.to_dict(), **overrides}, source=f"{self.name} config")
        elif not isinstance(config, self.config_class):
            raise ConfigError(
                f"{self.name} expects a {self.config_class.__name__}, got {type(config).__name__}"
            )
        else:
            parsed = config
        self.config = parsed  # type: ignore[assignment]
        self.device = torch.device("cpu")

    @abstractmethod
    def fit(
        self,
        train: Any,
        valid: Any = None,
        *,
        side: SideInputs | None = None,
        trainer: TrainerConfig | None = None,
        run_key: str | None = None,
    ) -> FitReport:
        """Fit on ``train``; ``valid`` (never test) drives early stopping where the model trains iteratively.

        ``side``: the side inputs the run built from the training split (only the kinds in ``side_inputs`` are
        read); ``trainer``: how to train (None: ``default_trainer``); ``run_key``: a fingerprint of the data the run
        read, stored in checkpoints so a resume only continues the same run (None: the model fingerprints ``train``
        and ``valid`` itself).
        """

    @property
    def leaky(self) -> bool:
        """True only in paper-literal modes that read a held-out row's own text (its results are never comparable;
        the run then passes validation and test text through and flags every result)."""
        return False

    def check_side(self, side: SideInputs | None) -> SideInputs:
        """``side`` (or an empty one) after checking the required kinds are present, naming what is missing."""
        side = side or SideInputs()
        missing = self.required_side_inputs - side.kinds()
        if missing:
            raise ConfigError(
                f"{self.name} needs side input(s) {sorted(missing)}: pass them in SideInputs (CLI: --items FILE)"
            )
        return side

    def make_trainer_config(self, trainer: TrainerConfig | None) -> TrainerConfig:
        from attnrec.training.trainer import TrainerConfig

        return trainer if trainer is not None else TrainerConfig(**self.default_trainer)

    def trainer_overrides(self) -> dict[str, Any]:
        """Trainer fields this model's solver sets itself: ``{field: (the value it uses, how to change it or why the
        field does not apply)}`` (svd's ALS sweeps, pop's one counting pass). The run refuses a different value."""
        return {}

    def unused_trainer_fields(self) -> dict[str, str]:
        """Trainer fields this model's solver never reads: ``{field: why}`` (svd's ALS has no learning rate, pop's
        counting no batches). The run refuses any value for them rather than record a setting that did nothing."""
        return {}

    def effective_trainer(self, trainer: TrainerConfig | None) -> TrainerConfig:
        """The TrainerConfig a fit with ``trainer`` really uses (recorded in the run's metrics): ``trainer`` (default:
        ``default_trainer``) with the fields of :meth:`trainer_overrides` set to the solver's values."""
        cfg = self.make_trainer_config(trainer)
        fixed = {k: v for k, (v, _) in self.trainer_overrides().items()}
        return cfg.model_copy(update=fixed) if fixed else cfg

    def train_module(
        self,
        module: TrainableModule,
        epoch_batches: EpochBatches,
        validate: Callable[[], dict[str, float]] | None,
        trainer: TrainerConfig,
        run_key: str | None,
        data: tuple[object, ...],
    ) -> FitReport:
        """Fit ``module`` with the one Trainer, early stopping on this task's validation metric.

        Checkpoints carry this model's config and ``run_key`` (else a fingerprint of ``data``, what fitting reads),
        so a resume only continues the same run."""
        from attnrec.training.trainer import Trainer
        from attnrec.training.types import RunIdentity, data_fingerprint

        metric, mode = DEFAULT_VALID_METRIC[self.task]
        tr = Trainer(trainer, valid_metric=trainer.valid_metric or metric, mode=trainer.valid_mode or mode)
        self.device = tr.device
        identity = RunIdentity(
            self.config.to_dict(), run_key or data_fingerprint(*data), self.config.bundle_legacy
        )
        report = tr.fit(module, epoch_batches, validate=validate, seed=self.config.seed, identity=identity)
        module.eval()
        return report

    def validator(self, valid: Any, exclude: sp.csr_matrix | None = None) -> Callable[[], dict[str, float]]:
        """A function returning metrics on ``valid`` under this model's default protocol (``exclude`` masked),
        sharded across ranks in a distributed fit (:mod:`attnrec.evaluation.sharded`).

        When the module holds self-attention layers (secn's and autoint's field attention, hybrid_csa's token
        attention; :func:`~attnrec.models.layers.diagnostics.has_self_attention`), the metrics add each layer's
        orthogonality diagnostic, ``abs_cos[<layer name>]`` (mean |cos(X, X')| over the positions the validation's
        own forward passes fed it, merged across ranks; a layer with no defined |cos| is left out): logged each
        validated epoch as ``valid_abs_cos[...]`` and kept with the best epoch's metrics. Extra keys only: the
        selection metric and its value are unchanged, and a module without such layers gets none."""
        from attnrec.evaluation.protocols import default_protocol
        from attnrec.evaluation.sharded import evaluate
        from attnrec.models.layers.diagnostics import (
            attention_orthogonality,
            has_self_attention,
            orthogonality_metrics,
        )
        from attnrec.training.distributed import all_gather_objects

        protocol = default_protocol(self)

        def run() -> dict[str, float]:
            module = getattr(self, "module", None)
            if not isinstance(module, torch.nn.Module) or not has_self_attention(module):
                return evaluate(self, valid, protocol, exclude=exclude)
            with attention_orthogonality(module) as meters:  # detached on exit, even on an error
                metrics = evaluate(self, valid, protocol, exclude=exclude)
            # each rank measured its shard of the rows: sums and counts merged across ranks (a no-op on one process)
            gather = partial(all_gather_objects, what="gathering the attention |cos|")
            return {**metrics, **orthogonality_metrics(meters, gather)}

        return run

    # ----------------------------------------------------------------- persistence
    def bundle_json(self) -> dict[str, Any]:
        """JSON-able artifacts besides tensors and vocabularies (e.g. a feature schema); saved as ``extra.json``."""
        return {}

    def load_bundle_json(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`bundle_json` wrote; called before :meth:`load_state_tensors`. Malformed content
        raises :class:`~attnrec.errors.DataError` naming the field (the bundle adds the file)."""
        return None

    def restrict_to_bundle(self) -> None:
        """Called by ``load_bundle`` for a bundle the caller did not mark as trusted, right after the config is
        parsed: refuse config values that would load code or files from outside the bundle or reach the network
        (e.g. a text encoder named by a path or a hub id), and keep what is built lazily later offline. Raises
        :class:`~attnrec.errors.DataError` naming the config field. Models with no such value need nothing."""
        return None

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every learned array, as CPU tensors (written to safetensors by the bundle)."""

    @abstractmethod
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_tensors` after vocabularies are set."""


class Recommender(Estimator[ConfigT], ItemScorer):
    """An estimator over user and item vocabularies; every one scores items for a query (:class:`ItemScorer`).

    It owns the vocabularies and the stored training matrix ``seen``: a query's default source of "seen" items
    for known users (a history given in the query adds to it).
    """

    def __init__(self, config: ConfigT | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.user_vocab: Vocabulary | None = None
        self.item_vocab: Vocabulary | None = None
        self.seen: sp.csr_matrix | None = None

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        side: SideInputs | None = None,
        trainer: TrainerConfig | None = None,
        run_key: str | None = None,
    ) -> FitReport:
        if not isinstance(train, Interactions):
            raise ConfigError(
                f"{self.name} fits Interactions (attnrec.data.table), not {type(train).__name__}"
            )
        if len(train) == 0:
            raise ConfigError("the training split is empty")
        side = self.check_side(side)
        self.user_vocab, self.item_vocab = train.user_vocab, train.item_vocab
        self.seen = train.csr()
        return self._fit(train, valid if valid is not None and len(valid) else None, side, trainer, run_key)

    @abstractmethod
    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        side: SideInputs,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport: ...

    @property
    def n_users(self) -> int:
        return len(self._vocabs()[0])

    @property
    def n_items(self) -> int:
        return len(self._vocabs()[1])

    def _vocabs(self) -> tuple[Vocabulary, Vocabulary]:
        if self.user_vocab is None or self.item_vocab is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        return self.user_vocab, self.item_vocab

    # ----------------------------------------------------------------- scoring (indices)
    @abstractmethod
    def score_users(self, users: np.ndarray) -> torch.Tensor:
        """Scores of every item for known users ``users`` (B,) int64: (B, n_items) float (a fresh tensor)."""

    def score_history(self, query: Query) -> torch.Tensor:
        """Scores for rows that carry a history (known or new users); models that take histories override."""
        raise ConfigError(f"{self.name} does not take a history in a query")

    def check_query(self, query: Query) -> None:
        super().check_query(query)
        if query.users is not None and len(query.users) and query.users.max() >= self.n_users:
            raise ConfigError(
                f"query users: index {int(query.users.max())} is out of range 0..{self.n_users - 1} (-1: a new user)"
            )

    def check_pairs(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``users``, ``items`` as int64 arrays of one length, every index in range (``-1`` is not a user here)."""
        u, i = np.asarray(users), np.asarray(items)
        for name, arr, n in (("users", u, self.n_users), ("items", i, self.n_items)):
            if arr.dtype.kind not in "iu":
                raise ConfigError(f"{self.name}: {name} must be integer indices, got dtype {arr.dtype}")
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                bad = int(arr[(arr < 0) | (arr >= n)][0])
                raise ConfigError(f"{self.name}: {name} index {bad} is out of range 0..{n - 1}")
        if u.shape != i.shape:
            raise ConfigError(f"{self.name}: users {u.shape} and items {i.shape} differ in shape")
        return u.astype(np.int64), i.astype(np.int64)

    def score(self, query: Query) -> torch.Tensor:
        """Scores (len(query), n_items). A row with a history is scored from it (the history "now" supersedes the
        stored state); a known user's row with an empty history, or a query without one, from the stored state."""
        self.check_query(query)
        if query.history is None:
            assert query.users is not None
            return self.score_users(query.users)
        scores = self.score_history(query)
        if query.users is not None:
            stored = np.flatnonzero((query.users >= 0) & (query.history.lengths() == 0))
            if len(stored):
                rows = torch.from_numpy(stored).to(scores.device)
                scores[rows] = self.score_users(query.users[stored]).to(scores)
        return scores

    def stored_seen(self, users: np.ndarray) -> sp.csr_matrix | None:
        if self.seen is None:
            return None
        known = users >= 0
        rows = self.seen[np.where(known, users, 0)]
        if not known.all():
            rows = sp.diags(known.astype(np.float32)) @ rows
            rows.eliminate_zeros()
        return sp.csr_matrix(rows)

    # ----------------------------------------------------------------- external ids
    def recommend(
        self, query: Query | Iterable[object], k: int = 10, *, exclude_seen: bool = True
    ) -> pl.DataFrame:
        """Top-``k`` items per query row: columns ``row`` (the query row), ``user_id`` (external id; null for a new
        user), ``rank`` (1-based), ``item_id``, ``score`` (the ranking score) and, for a model that predicts
        ratings (:class:`RatingPredictor`), ``predicted_rating``: the rating it predicts for the pair, clipped to
        the run's scale as :meth:`RatingPredictor.predict` gives it (``score`` is unclipped: on a 1-5 scale it can
        read 5.3). ``query``: a :class:`Query`, or external user ids.

        ``exclude_seen=False`` overrides the query's ``exclude`` with ``"none"``.
        """
        uv, iv = self._vocabs()
        if isinstance(query, str | bytes):
            raise ConfigError(f"recommend: give a list of user ids (or a Query), not the string {query!r}")
        if not isinstance(query, Query):
            query = Query(users=uv.lookup([str(u) for u in query]))
        if not exclude_seen:
            query = Query(query.users, query.history, query.domain, query.text, exclude="none")
        vals, idx = self.top_k(query, k)
        kk = vals.shape[1]
        if query.users is not None:
            labels = [str(uv.ids[u]) if u >= 0 else None for u in query.users]
        else:
            labels = [None] * len(query)
        keep = np.isfinite(vals).ravel()
        cols: dict[str, Any] = {
            "row": np.repeat(np.arange(len(query), dtype=np.int32), kk),
            "user_id": pl.Series(np.repeat(np.asarray(labels, dtype=object), kk).tolist(), dtype=pl.String),
            "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), len(query)),
            "item_id": iv.ids[idx.ravel()] if idx.size else np.array([], dtype=str),
            "score": vals.ravel(),
        }
        if isinstance(self, RatingPredictor):
            cols["predicted_rating"] = self.ratings_from_scores(vals.ravel())
        return pl.DataFrame(cols).filter(pl.Series(keep))


class TorchEstimator(Estimator[ConfigT]):
    """An estimator whose parameters live in a :class:`TrainableModule` (its bundle tensors are the state dict)."""

    module: TrainableModule | None = None
    #: loading builds the module once on the meta device to check the weights' shapes before allocating any;
    #: False for a module that computes at build (a sparse graph): its build_module_from_state checks the shapes
    shapes_on_meta: ClassVar[bool] = True

    @abstractmethod
    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> TrainableModule:
        """A fresh module shaped for a loaded bundle (vocabularies, ``seen`` and bundle JSON are already set)."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The module's state; a rating model (:class:`RatingPredictor`) adds ``_rating_range``, the scale its
        predictions are clipped to."""
        if self.module is None:
            raise ConfigError(f"{self.name} is not fitted: call fit() or load a bundle first")
        out = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        if isinstance(self, RatingPredictor):
            out["_rating_range"] = torch.tensor(self.rating_range, dtype=torch.float64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if isinstance(self, RatingPredictor):
            tensors = dict(tensors)
            self.rating_range = pop_rating_range(tensors)
        # shapes first, on the meta device: a config naming a huge size must not allocate it
        if self.shapes_on_meta:
            try:
                with torch.device("meta"):
                    expected = self.build_module_from_state(tensors).state_dict()
            except (RuntimeError, NotImplementedError) as exc:  # e.g. sizes whose product overflows
                raise DataError(
                    f"the config does not give a {self.name} model that can be built: {exc}", field="config"
                ) from None
            check_state_tensors(expected, tensors, self.name)
        module = self.build_module_from_state(tensors)
        check_state_tensors(module.state_dict(), tensors, self.name)
        module.load_state_dict(tensors, strict=True)
        self.module = module
        self.module.eval()


def check_state_tensors(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], model: str
) -> None:
    """Loaded ``given`` tensors against a freshly built module's state dict ``expected``: the same names, and per
    tensor the same shape and dtype (``load_state_dict`` alone would cast dtypes and widen a 1-element tensor to
    a scalar), and no negative BatchNorm variance (it makes every score NaN). Raises DataError naming the tensor."""
    for key, want in expected.items():
        got = given.get(key)
        if got is None:
            raise DataError(
                f"the weights have no tensor {key!r}", field=key, expected=f"the weights of a {model} model"
            )
        if got.shape != want.shape or got.dtype != want.dtype:
            raise DataError(
                f"shape {tuple(got.shape)} dtype {got.dtype}",
                field=key,
                expected=f"shape {tuple(want.shape)} dtype {want.dtype} for this {model} config",
            )
        if key.endswith("running_var") and bool((got < 0).any()):
            raise DataError("negative variance", field=key, expected="running variances >= 0")
    unexpected = sorted(set(given) - set(expected))
    if unexpected:
        raise DataError(
            f"{len(unexpected)} tensor(s) a {model} model does not have: {', '.join(unexpected[:5])}",
            field=unexpected[0],
        )


def pop_rating_range(tensors: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Remove and return the ``_rating_range`` tensor a rating model stores beside its module: (low, high) of the
    training ratings. Raises DataError unless it is two finite float64 values with low <= high."""
    t = tensors.pop("_rating_range", None)
    if t is None:
        raise DataError("the weights have no tensor '_rating_range'", field="_rating_range")
    if t.shape != (2,) or t.dtype != torch.float64:
        raise DataError(
            f"shape {tuple(t.shape)} dtype {t.dtype}", field="_rating_range", expected="(low, high) float64"
        )
    lo, hi = (float(v) for v in t.tolist())
    if not lo <= hi:
        raise DataError("low above high", field="_rating_range", value=(lo, hi), expected="low <= high")
    return lo, hi


class TorchRecommender(Recommender[ConfigT], TorchEstimator[ConfigT]):
    """A recommender whose parameters live in a :class:`TrainableModule` fitted by the one Trainer.

    Subclasses implement :meth:`build_module`, :meth:`build_module_from_state` and :meth:`train_batches`; the
    loop, devices, early stopping, checkpoints and logging live in the Trainer.
    """

    @abstractmethod
    def build_module(self, train: Interactions) -> TrainableModule: ...

    @abstractmethod
    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[Any]:
        """One epoch of typed batches, deterministic given ``generator``."""

    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        side: SideInputs,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport:
        cfg = self.make_trainer_config(trainer)
        torch.manual_seed(self.config.seed)
        self.module = self.build_module(train)
        return self.train_module(
            self.module,
            lambda epoch, gen: self.train_batches(train, epoch, gen, cfg.batch_size),
            self.validator(valid, self.seen) if valid is not None else None,
            cfg,
            run_key,
            (train.fingerprint(), None if valid is None else valid.fingerprint()),
        )


# --------------------------------------------------------------------- registry
EstimatorT = TypeVar("EstimatorT", bound="Estimator[Any]")
_REGISTRY: dict[str, type[Estimator[Any]]] = {}
_BUILTIN_MODULES = (
    "attnrec.models.topk.pop",
    "attnrec.models.rating.svd",
    "attnrec.models.rating.hybrid_csa",
    "attnrec.models.review.deepconn",
    "attnrec.models.review.transnet",
    "attnrec.models.review.safmr",
    "attnrec.models.topk.bpr",
    "attnrec.models.topk.lightgcn",
    "attnrec.models.multimodal.freedom",
    "attnrec.models.multimodal.vbpr",
    "attnrec.models.multimodal.lattice",
    "attnrec.models.multimodal.bm3",
    "attnrec.models.multimodal.mrcsaf",
    "attnrec.models.ctr.lr",
    "attnrec.models.ctr.fm",
    "attnrec.models.ctr.nfm",
    "attnrec.models.ctr.afm",
    "attnrec.models.ctr.deepfm",
    "attnrec.models.ctr.xdeepfm",
    "attnrec.models.ctr.dcn",
    "attnrec.models.ctr.autoint",
    "attnrec.models.ctr.secn",
    "attnrec.models.sequential.sasrec",
    "attnrec.models.sequential.gca",
)


def register(cls: type[EstimatorT]) -> type[EstimatorT]:
    """Class decorator adding a recommender to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ConfigError(
            f"model name {cls.name!r} is already registered by {_REGISTRY[cls.name].__module__}"
        )
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def available_models() -> dict[str, type[Estimator[Any]]]:
    """Every registered model by name (built-ins are imported on first call)."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get_model_class(name: str) -> type[Estimator[Any]]:
    """A model class by registered name, or by import path ``package.module:Class`` / ``package.module.Class``."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if "." in name or ":" in name:
        mod_name, _, cls_name = name.replace(":", ".").rpartition(".")
        try:
            obj = getattr(importlib.import_module(mod_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import model {name!r}: {exc}") from None
        if not (isinstance(obj, type) and issubclass(obj, Estimator)):
            raise ConfigError(f"{name!r} is not an Estimator subclass")
        return obj
    raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
