"""The multimodal top-K family's shared base: item-feature modalities as a required side input, BPR sampling,
per-modality projection layers, frozen item-graph buffers, the user-item graph (full, or pruned per epoch), and
scoring by dot products (with history fold-in inherited from :class:`PairwiseRecommender`).

A model of the family (FREEDOM, mrcsaf, VBPR, LATTICE, BM3) subclasses

* :class:`MultimodalConfig` for its options;
* :class:`MultimodalModule` for the math: it gets the user/item ID tables, the feature matrices (``feature(m)``),
  the projections (``projected(m)``), the frozen item graph(s) (``item_graph(g)``) and the user-item graph
  (``ui_graph()``, the pruned one while training when the estimator set it), and implements
  ``compute_embeddings()`` → (users (U, d), items (I, d)) and ``loss(batch)``;
* :class:`MultimodalRecommender` for the wrapper: it implements ``new_module(train_matrix, features)`` (features
  is None when a bundle is loaded: the buffers are then filled from the weights), and may override
  ``epoch_graph`` (FREEDOM: degree-sensitive pruning) and ``item_graphs`` (which frozen graphs to store).

Bundles are self-contained: the feature matrices and the frozen item graphs are module buffers (saved with the
weights), and ``extra.json`` records the modality names, widths and graph sizes needed to shape the module on
load. The user-item graph is derived from the bundle's ``seen`` matrix, never saved.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import PairwiseBatch
from attnrec.data.modalities import select_modalities
from attnrec.data.side import SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError
from attnrec.models.base import TrainableModule
from attnrec.models.layers.graph import normalized_adjacency, propagate_mean
from attnrec.models.layers.item_graph import ItemGraph, modality_graph, spmm, to_sparse, union_values
from attnrec.models.topk.bpr import BPRConfig, PairwiseRecommender, bpr_loss, init_embedding, pair_scores
from attnrec.training.types import FitReport

if TYPE_CHECKING:
    from attnrec.training.trainer import TrainerConfig

log = logging.getLogger(__name__)

#: a modality name becomes part of tensor names: letters, digits, underscores
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

#: the MMRec protocol the family's papers follow: batch 2048, Adam lr 1e-3, early stopping on validation
#: Recall@20 with patience 20 (at most 1000 epochs, MMRec's cap)
MMREC_TRAINER: dict[str, Any] = {
    "epochs": 1000,
    "patience": 20,
    "batch_size": 2048,
    "lr": 1e-3,
    "valid_metric": "recall@20",
}


class MultimodalConfig(BPRConfig):
    """Options shared by the family: BPR-MF's (``dim``, ``reg``, ``n_negatives``, ...; Xavier init and no L2
    by default, as MMRec) plus the modalities to read and the feature projection width.

    ``modalities``: names of the ``item_features`` matrices to use, in order (empty: every matrix given, sorted
    by name). ``feat_dim``: width of each modality's linear projection. ``knn_k``: neighbours per item in the
    frozen item-item graphs. ``train_features``: fine-tune the raw feature matrices (MMRec's
    ``nn.Embedding.from_pretrained(freeze=False)``); off by default (frozen buffers: less memory and time).
    """

    init: Literal["normal", "xavier"] = "xavier"
    reg: float = Field(0.0, ge=0)
    modalities: list[str] = Field(default_factory=list)
    feat_dim: int = Field(64, ge=1)
    knn_k: int = Field(10, ge=1)
    train_features: bool = False


class MultimodalModule(TrainableModule):
    """Shared state of a multimodal model; subclasses add parameters and implement :meth:`compute_embeddings`
    and :meth:`loss`.

    ``feat_dims`` (ordered name → width) shapes the feature buffers ``feat_<name>`` (n_items, width) and the
    projections ``proj[name]`` (width → ``feat_dim``); ``features`` fills them (None: zeros, to be loaded).
    ``graph_nnz`` > 0 adds the frozen item-graph buffers ``graph_indices`` (2, nnz) and ``graph_values``
    (n_graphs, nnz) on one shared sparsity pattern (:func:`union_values`); ``graph`` fills them.
    ``ui_adj`` is the full normalised user-item adjacency (a plain attribute moved with the module).
    """

    graph_indices: torch.Tensor
    graph_values: torch.Tensor

    def __init__(
        self,
        n_users: int,
        n_items: int,
        config: MultimodalConfig,
        feat_dims: dict[str, int],
        ui_adj: torch.Tensor,
        *,
        features: dict[str, np.ndarray] | None = None,
        graph: tuple[torch.Tensor, torch.Tensor] | None = None,
        graph_shape: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.config = n_users, n_items, config
        self.modalities = list(feat_dims)
        self.user = nn.Embedding(n_users, config.dim)
        self.item = nn.Embedding(n_items, config.dim)
        init_embedding(self.user.weight, config.init, config.init_std)
        init_embedding(self.item.weight, config.init, config.init_std)
        for name, width in feat_dims.items():
            value = (
                torch.from_numpy(np.ascontiguousarray(features[name], dtype=np.float32))
                if features is not None
                else torch.zeros(n_items, width)
            )
            if config.train_features:  # a copy: training must not write into the caller's feature matrix
                self.register_parameter(f"feat_{name}", nn.Parameter(value.clone()))
            else:
                self.register_buffer(f"feat_{name}", value)
        self.proj = nn.ModuleDict({m: nn.Linear(w, config.feat_dim) for m, w in feat_dims.items()})
        n_graphs, nnz = graph_shape
        if graph is not None:
            n_graphs, nnz = int(graph[1].shape[0]), int(graph[1].shape[1])
        if nnz > 0:
            idx, val = (
                graph
                if graph is not None
                else (torch.zeros(2, nnz, dtype=torch.long), torch.zeros(n_graphs, nnz))
            )
            self.register_buffer("graph_indices", idx.long().contiguous())
            self.register_buffer("graph_values", val.float().contiguous())
        self.full_adj = ui_adj
        self.train_adj: torch.Tensor | None = None
        self._item_adj: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._cache_key: tuple[int, ...] | None = None

    # ---------------------------------------------------------------- plumbing
    def _apply(self, fn: Any, recurse: bool = True) -> MultimodalModule:
        out = super()._apply(fn, recurse)
        self.full_adj = fn(self.full_adj)
        self.train_adj = None if self.train_adj is None else fn(self.train_adj)
        self._item_adj, self._cache = {}, None
        return out  # type: ignore[return-value]

    def train(self, mode: bool = True) -> MultimodalModule:
        self._cache = None
        return super().train(mode)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._item_adj, self._cache = {}, None  # the graph buffers may change
        super()._load_from_state_dict(*args, **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.user.weight.device

    # ---------------------------------------------------------------- what subclasses read
    def feature(self, name: str) -> torch.Tensor:
        """The raw feature matrix of modality ``name``: (n_items, width)."""
        return getattr(self, f"feat_{name}")  # type: ignore[no-any-return]

    def projected(self, name: str, items: torch.Tensor | None = None) -> torch.Tensor:
        """``proj[name](feature(name))`` for all items (n_items, feat_dim), or for ``items`` (B, feat_dim)."""
        x = self.feature(name)
        return self.proj[name](x if items is None else x[items])  # type: ignore[no-any-return]

    def item_graph(self, g: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen item graph ``g`` as (CSR (n_items, n_items), its transpose), built once from the buffers;
        multiply with :func:`attnrec.models.layers.item_graph.spmm`."""
        if g not in self._item_adj:
            idx, val = self.graph_indices, self.graph_values[g]
            keep = val != 0
            a = to_sparse(idx[:, keep], val[keep], self.n_items)
            at = to_sparse(idx[:, keep].flip(0), val[keep], self.n_items)
            self._item_adj[g] = (a, at)
        return self._item_adj[g]

    def item_graph_mm(self, x: torch.Tensor, g: int = 0) -> torch.Tensor:
        """S_g @ x for items × d ``x``, differentiable in ``x``."""
        a, at = self.item_graph(g)
        return spmm(a, at, x)

    def ui_graph(self) -> torch.Tensor:
        """The user-item adjacency to propagate on: the epoch's pruned graph while training (if set), else full."""
        if self.training and self.train_adj is not None:
            return self.train_adj
        return self.full_adj

    def propagate_ui(self, e0: torch.Tensor, n_layers: int) -> torch.Tensor:
        """LightGCN's layer mean on :meth:`ui_graph`: (n_users + n_items, d)."""
        return propagate_mean(self.ui_graph(), e0, n_layers)

    def feature_bpr(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Σ_m BPR(u, f_m(pos), f_m(neg)) over the modalities, f_m the projection (FREEDOM's feature loss, mrcsaf
        eq. 28): ``users`` (B, feat_dim) user vectors, ``pos``/``neg`` (B,) item indices."""
        total = users.new_zeros(())
        # only the batch's distinct items are projected (at most min(n_items, |pos| + |neg|) rows): the same
        # values as projecting every item, a fraction of the work on wide modalities or large catalogues
        rows, inverse = torch.unique(torch.cat([pos.reshape(-1), neg.reshape(-1)]), return_inverse=True)
        inv_pos, inv_neg = inverse[: pos.numel()].view(pos.shape), inverse[pos.numel() :].view(neg.shape)
        for m in self.modalities:
            f = self.projected(m, rows)
            total = total + bpr_loss(*pair_scores(users, f[inv_pos], f[inv_neg]))
        return total

    def set_train_adj(self, adj: torch.Tensor | None) -> None:
        """Set the user-item graph used while training (the estimator's per-epoch graph)."""
        self.train_adj = None if adj is None else adj.to(self.device)

    # ---------------------------------------------------------------- scoring
    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - interface
        """(users (n_users, d), items (n_items, d)) that scores are dot products of."""
        raise NotImplementedError

    def _weights_key(self) -> tuple[int, ...]:
        ps = list(self.parameters())
        return tuple(p._version for p in ps) + tuple(p.data_ptr() for p in ps)

    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`compute_embeddings`, cached in eval mode without grad while the weights are unchanged."""
        cacheable = not self.training and not torch.is_grad_enabled()
        key = self._weights_key()
        if cacheable and self._cache is not None and self._cache_key == key:
            return self._cache
        out = self.compute_embeddings()
        if cacheable:
            self._cache, self._cache_key = out, key
        return out


class MultimodalRecommender(PairwiseRecommender):
    """Wrapper of the family: reads ``item_features`` (required), trains on BPR triples with the MMRec protocol's
    trainer settings, scores by dot products, folds a new user in by ridge on the item vectors."""

    side_inputs: ClassVar[frozenset[str]] = frozenset({"item_features"})
    required_side_inputs: ClassVar[frozenset[str]] = frozenset({"item_features"})
    default_trainer: ClassVar[dict[str, Any]] = MMREC_TRAINER
    #: the user-item graph cannot be built on the meta device: build_module_from_state checks shapes itself
    shapes_on_meta = False
    config: MultimodalConfig

    def __init__(self, config: MultimodalConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)  # type: ignore[arg-type]
        self.modality_dims: dict[str, int] = {}
        self.graph_shape: tuple[int, int] = (0, 0)
        self.featureless: dict[str, int] = {}
        self._features: dict[str, np.ndarray] | None = None

    # ---------------------------------------------------------------- what subclasses implement
    def new_module(
        self, train_matrix: sp.csr_matrix, features: dict[str, np.ndarray] | None
    ) -> MultimodalModule:  # pragma: no cover - interface
        """A fresh module for ``train_matrix`` (U × I); ``features`` None when shaping it for a loaded bundle."""
        raise NotImplementedError

    def epoch_graph(self, train: Interactions, generator: torch.Generator) -> torch.Tensor | None:
        """The user-item graph to train on this epoch (None: the full graph). FREEDOM prunes it."""
        return None

    # ---------------------------------------------------------------- helpers for subclasses
    def ui_adjacency(self, train_matrix: sp.csr_matrix) -> torch.Tensor:
        """The full normalised user-item adjacency of ``train_matrix``, checked against the vocabularies."""
        if train_matrix.shape != (self.n_users, self.n_items):
            raise ConfigError(
                f"training matrix is {train_matrix.shape[0]} x {train_matrix.shape[1]} but the vocabularies have "
                f"{self.n_users} users and {self.n_items} items"
            )
        return normalized_adjacency(train_matrix)

    def modality_graphs(self, features: dict[str, np.ndarray]) -> list[ItemGraph]:
        """The normalised cosine kNN graph (k = ``knn_k``) of every modality, in ``modality_dims`` order; the
        featureless items (all-zero rows: self-loop only) are counted in ``self.featureless`` and logged."""
        graphs = []
        for m in self.modality_dims:
            g = modality_graph(features[m], self.config.knn_k, name=m)
            self.featureless[m] = g.featureless
            if g.featureless:
                log.warning(
                    "%s: %d item(s) without %s features keep only a self-loop in its item graph",
                    self.name,
                    g.featureless,
                    m,
                )
            graphs.append(g)
        return graphs

    def stacked_graphs(self, graphs: list[ItemGraph]) -> tuple[torch.Tensor, torch.Tensor]:
        """``graphs`` on their union pattern (indices (2, nnz), values (G, nnz)) for the module's graph buffers;
        records their shape for the bundle."""
        idx, val = union_values(graphs)
        self.graph_shape = (int(val.shape[0]), int(val.shape[1]))
        return idx, val

    # ---------------------------------------------------------------- fitting
    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        side: SideInputs,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport:
        assert side.item_features is not None  # check_side ran
        feats = select_modalities(side.item_features, train.item_vocab, self.config.modalities)
        for name in feats:
            if not _NAME.match(name):
                raise ConfigError(
                    f"modality name {name!r} cannot name a tensor: use letters, digits and underscores"
                )
        self.modality_dims = {m: int(x.shape[1]) for m, x in feats.items()}
        self._features = feats
        try:
            return super()._fit(train, valid, side, trainer, run_key)
        finally:
            self._features = None  # the module holds them now

    def build_module(self, train: Interactions) -> MultimodalModule:
        self._sampler = self.build_sampler(train)
        if self._features is None:
            raise ConfigError(f"{self.name}: build_module() needs the item features (call fit())")
        return self.new_module(train.csr(), self._features)

    def id_table_shapes(self) -> dict[str, tuple[int, int]]:
        """The shapes of the module's ID tables in a bundle, checked on load: d-wide user and item tables (a model
        with other tables overrides this)."""
        return {
            "user.weight": (self.n_users, self.config.dim),
            "item.weight": (self.n_items, self.config.dim),
        }

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> MultimodalModule:
        if self.seen is None:
            raise ConfigError(
                f"a {self.name} bundle needs its training matrix to rebuild the user-item graph"
            )
        want: dict[str, tuple[int, ...]] = dict(self.id_table_shapes())
        want.update({f"feat_{m}": (self.n_items, w) for m, w in self.modality_dims.items()})
        if self.graph_shape[1]:
            want["graph_indices"] = (2, self.graph_shape[1])
            want["graph_values"] = self.graph_shape
        for key, shape in want.items():
            t = tensors.get(key)
            if t is None or tuple(t.shape) != shape:
                raise DataError(
                    "missing" if t is None else f"shape {tuple(t.shape)}",
                    field=key,
                    expected=f"shape {shape} for this {self.name} bundle",
                )
        return self.new_module(self.seen, None)

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[PairwiseBatch]:
        module = self.module
        if isinstance(module, MultimodalModule):
            module.set_train_adj(self.epoch_graph(train, generator))
        return super().train_batches(train, epoch, generator, batch_size)

    # ---------------------------------------------------------------- persistence
    def bundle_json(self) -> dict[str, Any]:
        return {
            "modalities": [[m, w] for m, w in self.modality_dims.items()],
            "graph_shape": list(self.graph_shape),
            "featureless": dict(self.featureless),
        }

    def load_bundle_json(self, data: dict[str, Any]) -> None:
        mods = data.get("modalities")
        if not isinstance(mods, list) or not all(
            isinstance(x, list)
            and len(x) == 2
            and isinstance(x[0], str)
            and _NAME.match(x[0])
            and isinstance(x[1], int)
            and x[1] >= 1
            for x in mods
        ):
            raise DataError(
                "bad modalities", field="modalities", value=mods, expected="[[name, width >= 1], ...]"
            )
        shape = data.get("graph_shape", [0, 0])
        if not (
            isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v >= 0 for v in shape)
        ):
            raise DataError("bad graph shape", field="graph_shape", value=shape, expected="[n_graphs, nnz]")
        self.modality_dims = {m: w for m, w in mods}
        self.graph_shape = (shape[0], shape[1])
        fl = data.get("featureless", {})
        self.featureless = {str(k): int(v) for k, v in fl.items()} if isinstance(fl, dict) else {}
