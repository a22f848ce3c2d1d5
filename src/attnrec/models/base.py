"""The contracts every model follows.

* A typed :class:`ModelConfig` (pydantic; unknown keys are errors; round-trips to JSON/TOML; saved in bundles).
* The *module* (``torch.nn.Module``) computes scores and losses from tensors and typed batches; it knows nothing of ids.
* The *recommender* (:class:`Recommender`) owns vocabularies, the seen-items matrix, fit, predict/recommend and the
  tensors that make a bundle. Torch-trained recommenders subclass :class:`TorchRecommender` and hand their module to the
  one :class:`~attnrec.training.trainer.Trainer`.
* A registry by plain name with an import-path fallback, so user models plug in.
"""

from __future__ import annotations

import importlib
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp
import tomli_w
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError
from attnrec.training.types import FitReport, TrainableModule


class TaskKind(StrEnum):
    """What a model predicts; decides batches, losses and the default evaluation."""

    RATING = "rating"
    CTR = "ctr"
    TOPK = "topk"
    SEQUENTIAL = "sequential"


#: the validation metric early stopping watches by default, and whether larger is better
DEFAULT_VALID_METRIC: dict[TaskKind, tuple[str, str]] = {
    TaskKind.RATING: ("rmse", "min"),
    TaskKind.CTR: ("auc", "max"),
    TaskKind.TOPK: ("ndcg@20", "max"),
    TaskKind.SEQUENTIAL: ("ndcg@10", "max"),
}


class ModelConfig(BaseModel):
    """Base of every model's typed config. Unknown keys raise (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    seed: int = 42

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
                value = err.get("input")
                msgs.append(f"{source}: field {loc!r}: {err['msg']} (got {value!r})")
            raise ConfigError("; ".join(msgs)) from None

    @classmethod
    def from_toml(cls, path: str | Path) -> ModelConfig:
        with open(path, "rb") as fh:
            return cls.parse(tomllib.load(fh), source=str(path))


class Recommender(ABC):
    """A trained-or-trainable recommender addressed by external ids. Subclasses set the class attributes."""

    name: ClassVar[str]
    task: ClassVar[TaskKind]
    config_class: ClassVar[type[ModelConfig]]
    paper: ClassVar[str] = ""

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.config_class.parse(overrides, source=f"{self.name} config")
        elif overrides:
            config = self.config_class.parse({**config.to_dict(), **overrides}, source=f"{self.name} config")
        elif not isinstance(config, self.config_class):
            raise ConfigError(
                f"{self.name} expects a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.user_vocab: Vocabulary | None = None
        self.item_vocab: Vocabulary | None = None
        self.seen: sp.csr_matrix | None = None
        self.device = torch.device("cpu")

    # ----------------------------------------------------------------- fitting
    def fit(self, train: Interactions, valid: Interactions | None = None, **kw: Any) -> FitReport:
        """Fit on ``train``; ``valid`` (never test) drives early stopping where the model trains iteratively."""
        if len(train) == 0:
            raise ConfigError("the training split is empty")
        self.user_vocab, self.item_vocab = train.user_vocab, train.item_vocab
        self.seen = train.csr()
        return self._fit(train, valid, **kw)

    @abstractmethod
    def _fit(self, train: Interactions, valid: Interactions | None, **kw: Any) -> FitReport: ...

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
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores (ratings for the rating task) for aligned index arrays ``users``, ``items`` of shape (N,)."""

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        """Scores of every item for each user in ``users``: (len(users), n_items). Override with a matmul."""
        n = self.n_items
        uu = np.repeat(users, n)
        ii = np.tile(np.arange(n, dtype=np.int64), len(users))
        return torch.from_numpy(self.predict(uu, ii).astype(np.float32)).view(len(users), n)

    # ----------------------------------------------------------------- external ids
    def predict_ids(self, user_ids: Iterable[object], item_ids: Iterable[object]) -> np.ndarray:
        """Scores for external id pairs; unknown ids raise :class:`~attnrec.errors.UnknownIdError`."""
        uv, iv = self._vocabs()
        return self.predict(uv.lookup(list(user_ids)), iv.lookup(list(item_ids)))

    def recommend(
        self, user_ids: Iterable[object], k: int = 10, *, exclude_seen: bool = True
    ) -> pl.DataFrame:
        """Top-``k`` items for each user: columns ``user_id``, ``rank`` (1-based), ``item_id``, ``score``."""
        uv, iv = self._vocabs()
        ext = [str(u) for u in user_ids]
        users = uv.lookup(ext)
        k = min(k, self.n_items)
        parts = []
        for start in range(0, len(users), 1024):
            batch = users[start : start + 1024]
            with torch.no_grad():
                scores = self.score_users(batch).float().cpu().clone()
            if exclude_seen and self.seen is not None:
                sub = self.seen[batch].tocoo()
                scores[
                    torch.from_numpy(sub.row.astype(np.int64)), torch.from_numpy(sub.col.astype(np.int64))
                ] = -torch.inf
            top = torch.topk(scores, k, dim=1)
            parts.append((top.values.numpy(), top.indices.numpy()))
        vals = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, k), np.float32)
        idx = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, k), np.int64)
        keep = np.isfinite(vals).ravel()
        return pl.DataFrame(
            {
                "user_id": np.repeat(np.asarray(ext, dtype=str), k),
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(ext)),
                "item_id": iv.ids[idx.ravel()] if idx.size else np.array([], dtype=str),
                "score": vals.ravel(),
            }
        ).filter(pl.Series(keep))

    # ----------------------------------------------------------------- evaluation
    def evaluate(
        self,
        data: Interactions,
        *,
        exclude: sp.csr_matrix | None = None,
        ks: tuple[int, ...] = (10, 20),
        batch_size: int = 1024,
    ) -> dict[str, float]:
        """Metrics of this model on a split: RMSE/MAE for rating models, full ranking for the others.

        ``exclude`` masks items at ranking time (train for validation; train + valid for test).
        """
        from attnrec.evaluation import evaluators

        if self.task is TaskKind.RATING:
            return evaluators.evaluate_rating(self.predict, data.users, data.items, data.ratings)
        truth = data.csr()
        return evaluators.evaluate_full_ranking(
            self.score_users,
            truth,
            exclude if exclude is not None else self.seen,
            ks=ks,
            batch_size=batch_size,
        )

    # ----------------------------------------------------------------- persistence
    def bundle_json(self) -> dict[str, Any]:
        """JSON-able artifacts besides tensors and vocabularies (e.g. a feature schema); saved as ``extra.json``."""
        return {}

    def load_bundle_json(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`bundle_json` wrote; called before :meth:`load_state_tensors`."""
        return None

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every learned array, as CPU tensors (written to safetensors by the bundle)."""

    @abstractmethod
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_tensors` after vocabularies are set."""


class TorchRecommender(Recommender):
    """A recommender whose parameters live in a :class:`TrainableModule` fitted by the one Trainer.

    Subclasses implement :meth:`build_module` and :meth:`train_batches`; the loop, devices, early stopping,
    checkpoints and logging live in the Trainer.
    """

    module: TrainableModule | None = None
    #: Trainer settings this model's paper prescribes; run_experiment starts from these, then applies the run's own
    default_trainer: ClassVar[dict[str, Any]] = {}

    @abstractmethod
    def build_module(self, train: Interactions) -> TrainableModule: ...

    @abstractmethod
    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[Any]:
        """One epoch of typed batches, deterministic given ``generator``."""

    def _fit(self, train: Interactions, valid: Interactions | None, **kw: Any) -> FitReport:
        from attnrec.training.trainer import Trainer, TrainerConfig

        cfg = kw.pop("trainer", None) or TrainerConfig()
        if kw:
            raise ConfigError(f"unknown fit() argument(s): {sorted(kw)}")
        torch.manual_seed(self.config.seed)
        self.module = self.build_module(train)
        metric, mode = DEFAULT_VALID_METRIC[self.task]
        trainer = Trainer(cfg, valid_metric=cfg.valid_metric or metric, mode=cfg.valid_mode or mode)
        self.device = trainer.device
        validate = None
        if valid is not None and len(valid):
            validate = lambda: self.evaluate(valid, exclude=self.seen)  # noqa: E731
        report = trainer.fit(
            self.module,
            lambda epoch, gen: self.train_batches(train, epoch, gen, cfg.batch_size),
            validate=validate,
            seed=self.config.seed,
        )
        self.module.eval()
        return report

    def state_tensors(self) -> dict[str, torch.Tensor]:
        assert self.module is not None
        return {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.module = self.build_module_from_state(tensors)
        self.module.load_state_dict(tensors, strict=True)
        self.module.eval()

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> TrainableModule:
        """A fresh module shaped for a loaded bundle (vocabularies are already set). Override if shapes need data."""
        raise NotImplementedError


# --------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Recommender]] = {}
_BUILTIN_MODULES = (
    "attnrec.models.topk.pop",
    "attnrec.models.rating.svd",
    "attnrec.models.rating.hybrid_csa",
    "attnrec.models.topk.bpr",
    "attnrec.models.topk.lightgcn",
    "attnrec.models.ctr.lr",
    "attnrec.models.ctr.fm",
    "attnrec.models.ctr.nfm",
    "attnrec.models.ctr.afm",
    "attnrec.models.ctr.deepfm",
    "attnrec.models.ctr.xdeepfm",
    "attnrec.models.ctr.dcn",
    "attnrec.models.ctr.autoint",
    "attnrec.models.ctr.secn",
)


def register(cls: type[Recommender]) -> type[Recommender]:
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


def available_models() -> dict[str, type[Recommender]]:
    """Every registered model by name (built-ins are imported on first call)."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get_model_class(name: str) -> type[Recommender]:
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
        if not (isinstance(obj, type) and issubclass(obj, Recommender)):
            raise ConfigError(f"{name!r} is not a Recommender subclass")
        return obj
    raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
