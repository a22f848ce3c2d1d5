"""FREEDOM: the conformance suite, the frozen graph and the pruned training graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnrec.data.side import ItemFeatures, SideInputs
from attnrec.errors import ConfigError, DataError
from attnrec.models.multimodal.freedom import Freedom, FreedomModule, modality_weights
from attnrec.serving.bundle import load_bundle, save_bundle
from attnrec.testing import ConformanceTests, checkerboard, planted_item_features


def item_side(train, seed: int = 0) -> SideInputs:  # type: ignore[no-untyped-def]
    feats = planted_item_features(len(train.item_vocab), seed)
    return SideInputs(item_features=ItemFeatures(train.item_vocab, feats))


class TestFreedomConformance(ConformanceTests):
    model_class = Freedom
    config = {"dim": 16, "feat_dim": 16, "knn_k": 5, "dropout": 0.3}
    trainer = {"epochs": 30, "lr": 0.02, "batch_size": 128}

    @classmethod
    def side_inputs(cls) -> SideInputs:
        return item_side(cls.data()[0])


def _fit(**config):  # type: ignore[no-untyped-def]
    train, valid, _ = checkerboard(implicit=True)
    from attnrec.training.trainer import TrainerConfig

    model = Freedom(**{"dim": 8, "feat_dim": 8, "knn_k": 4, **config})
    model.fit(
        train,
        valid,
        side=item_side(train),
        trainer=TrainerConfig(epochs=2, batch_size=256, progress=False, device="cpu"),
    )
    return model, train


def test_frozen_graph_is_the_weighted_sum_of_the_normalised_modality_graphs():
    from attnrec.models.layers.item_graph import modality_graph, weighted_sum

    model, train = _fit(modality_weights={"meta": 0.25})
    m = model.module
    assert isinstance(m, FreedomModule)
    feats = planted_item_features(len(train.item_vocab))
    want = weighted_sum(
        [modality_graph(feats["meta"], 4), modality_graph(feats["text"], 4)], [0.25, 0.75]
    ).dense()
    a, _ = m.item_graph(0)
    assert torch.allclose(a.to_dense(), want)
    # sorted modality order, and the graph is frozen (a buffer, no gradient)
    assert m.modalities == ["meta", "text"] and not m.graph_values.requires_grad


def test_training_uses_a_pruned_graph_and_scoring_the_full_one():
    model, train = _fit(dropout=0.5)
    m = model.module
    assert isinstance(m, FreedomModule)
    gen = torch.Generator().manual_seed(1)
    model.train_batches(train, 1, gen, 64)
    assert m.train_adj is not None
    full_edges = m.full_adj.to_dense().count_nonzero().item()
    assert m.train_adj.to_dense().count_nonzero().item() == 2 * int(
        len(train.frame.unique(["user", "item"])) * 0.5
    )
    assert full_edges == 2 * train.csr().nnz
    m.train()
    assert m.ui_graph() is m.train_adj
    m.eval()
    assert m.ui_graph() is m.full_adj


def test_scores_are_id_embeddings_plus_item_graph_term():
    model, _ = _fit(n_layers=0, n_mm_layers=1)
    m = model.module
    assert isinstance(m, FreedomModule)
    eu, ei = m.compute_embeddings()
    s = m.item_graph(0)[0].to_dense()
    assert torch.allclose(eu, m.user.weight)
    assert torch.allclose(ei, m.item.weight + s @ m.item.weight, atol=1e-6)


def test_bundle_keeps_graph_and_features(tmp_path):  # type: ignore[no-untyped-def]
    model, _ = _fit()
    save_bundle(model, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert isinstance(loaded, Freedom)
    assert loaded.modality_dims == model.modality_dims
    users = np.arange(5)
    assert torch.equal(loaded.score_users(users), model.score_users(users))


def test_bad_modalities_are_clear_errors():
    train, _, _ = checkerboard(implicit=True)
    n = len(train.item_vocab)
    same = ItemFeatures(train.item_vocab, {"text": np.ones((n, 3), dtype=np.float32)})
    with pytest.raises(DataError, match="zero-variance"):
        Freedom(dim=8, feat_dim=8).fit(train, side=SideInputs(item_features=same))
    ok = ItemFeatures(train.item_vocab, planted_item_features(n))
    with pytest.raises(ConfigError, match="unknown modality"):
        Freedom(dim=8, feat_dim=8, modalities=["image"]).fit(train, side=SideInputs(item_features=ok))
    with pytest.raises(ConfigError, match="item_features"):
        Freedom(dim=8, feat_dim=8).fit(train)
    with pytest.raises(ConfigError, match="feat_dim"):
        Freedom(dim=8, feat_dim=4)


def test_modality_weights():
    assert modality_weights(["image", "text"], {"image": 0.1}) == pytest.approx([0.1, 0.9])
    assert modality_weights(["a", "b", "c"], {}) == pytest.approx([1 / 3] * 3)
    with pytest.raises(ConfigError):
        modality_weights(["a", "b"], {"c": 0.5})
    with pytest.raises(ConfigError):
        modality_weights(["a", "b"], {"a": 0.5, "b": 0.2})


def test_trained_features_move_and_leave_the_callers_matrix_alone():
    train, valid, _ = checkerboard(implicit=True)
    from attnrec.training.trainer import TrainerConfig

    side = item_side(train)
    before = {k: v.copy() for k, v in side.item_features.matrices.items()}  # type: ignore[union-attr]
    model = Freedom(dim=8, feat_dim=8, knn_k=4, train_features=True, reg_weight=1.0)
    model.fit(
        train, valid, side=side, trainer=TrainerConfig(epochs=2, batch_size=256, progress=False, device="cpu")
    )
    m = model.module
    assert isinstance(m, FreedomModule)
    assert not torch.equal(
        m.feature("text"), torch.from_numpy(before["text"])
    )  # fine-tuned (MMRec's default)
    for k, v in side.item_features.matrices.items():  # type: ignore[union-attr]
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"modalities": [["bad name", 3]], "graph_shape": [1, 5]}, "modalities"),
        ({"modalities": [["text", 0]], "graph_shape": [1, 5]}, "modalities"),
        ({"modalities": [["text", 3]], "graph_shape": [1]}, "graph_shape"),
    ],
)
def test_malformed_bundle_json_names_the_field(extra, field):  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=f"field '{field}'"):
        Freedom().load_bundle_json(extra)


def test_bundle_with_wrong_feature_width_is_refused(tmp_path):  # type: ignore[no-untyped-def]
    import json

    model, _ = _fit()
    save_bundle(model, tmp_path / "b")
    state = {k: v.clone() for k, v in model.state_tensors().items()}
    state["feat_text"] = torch.zeros(state["feat_text"].shape[0], 3)
    fresh = Freedom(**model.config.to_dict())
    fresh.user_vocab, fresh.item_vocab, fresh.seen = model.user_vocab, model.item_vocab, model.seen
    fresh.load_bundle_json(json.loads(json.dumps(model.bundle_json())))
    with pytest.raises(DataError, match="feat_text"):
        fresh.load_state_tensors(state)
