"""The multimodal family's defaults are MMRec's protocol (issue 15), and FREEDOM's / mrcsaf's pruned user-item graph
is drawn afresh every epoch of a real fit."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from attnrec.data.side import ItemFeatures, SideInputs
from attnrec.experiments.config import RunConfig
from attnrec.experiments.run import trainer_config
from attnrec.models.base import get_model_class
from attnrec.models.multimodal.base import MultimodalModule
from attnrec.testing import checkerboard, planted_item_features
from attnrec.training.trainer import TrainerConfig

FAMILY = ["vbpr", "lattice", "bm3", "freedom", "mrcsaf"]


@pytest.mark.parametrize("name", FAMILY)
def test_a_run_with_no_trainer_flags_uses_mmrecs_protocol(name: str) -> None:
    # embedding 64, Xavier init, Adam lr 1e-3, batch 2048, early stopping on validation Recall@20 with patience
    # 20, at most 1000 epochs — what `attnrec train --model NAME` resolves to without flags
    cls = get_model_class(name)
    model = cls()
    run = RunConfig(model=name, train=Path("t.csv"), test=Path("s.csv"))
    tr = model.effective_trainer(trainer_config(run, cls, progress=False))
    assert (tr.epochs, tr.batch_size, tr.optimizer, tr.lr) == (1000, 2048, "adam", 1e-3)
    assert (tr.valid_metric, tr.patience) == ("recall@20", 20)
    cfg: Any = model.config
    assert (cfg.dim, cfg.feat_dim, cfg.init, cfg.knn_k) == (64, 64, "xavier", 10)


def _side(train: Any) -> SideInputs:
    return SideInputs(
        item_features=ItemFeatures(train.item_vocab, planted_item_features(len(train.item_vocab)))
    )


@pytest.mark.parametrize("name", ["freedom", "mrcsaf"])
def test_id_tables_start_glorot_uniform(name: str) -> None:
    # fitted for one step at a negligible rate: the tables are (to 1e-9) their initial draw, which must be
    # U(-b, b) with b = √(6 / (rows + width)) (Glorot / Xavier uniform, MMRec's), not N(0, 0.1²)
    train, _, _ = checkerboard(implicit=True)
    model = get_model_class(name)(dim=16, feat_dim=16, knn_k=4)
    model.fit(
        train,
        side=_side(train),
        trainer=TrainerConfig(epochs=1, batch_size=4096, lr=1e-12, progress=False, device="cpu"),
    )
    module = model.module
    assert isinstance(module, MultimodalModule)
    w = module.user.weight.detach()
    bound = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
    assert float(w.abs().max()) <= bound * (1 + 1e-6)
    assert float(w.std()) == pytest.approx(
        bound / math.sqrt(3.0), rel=0.1
    )  # uniform's std, not a narrower draw


@pytest.mark.parametrize("name", ["freedom", "mrcsaf"])
def test_the_pruned_user_item_graph_is_drawn_afresh_every_epoch(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FREEDOM's degree-sensitive pruning is resampled each epoch (mrcsaf inherits it): record the graph the
    # trainer installs at every epoch of a real fit; three epochs, three different edge sets of the same size
    cls = get_model_class(name)
    drawn: list[torch.Tensor] = []
    original = cls.epoch_graph  # type: ignore[attr-defined]

    def recording(self: Any, train: Any, generator: torch.Generator) -> torch.Tensor | None:
        adj = original(self, train, generator)
        assert adj is not None
        drawn.append(adj.to_dense())
        return adj

    monkeypatch.setattr(cls, "epoch_graph", recording)
    train, _, _ = checkerboard(implicit=True)
    model = cls(dim=8, feat_dim=8, knn_k=4, dropout=0.5)
    model.fit(
        train,
        side=_side(train),
        trainer=TrainerConfig(epochs=3, batch_size=4096, progress=False, device="cpu"),
    )
    assert len(drawn) == 3
    kept = [(g != 0).numpy() for g in drawn]
    assert len({int(k.sum()) for k in kept}) == 1  # the same share of the edges every epoch
    assert not np.array_equal(kept[0], kept[1]) and not np.array_equal(kept[1], kept[2])
