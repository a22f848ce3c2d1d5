"""benchmarks/mm_tune.py: equal tuning budgets, selection on validation only, and the fitted-model diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnrec.data.side import ItemFeatures, SideInputs
from attnrec.models.multimodal.freedom import Freedom
from attnrec.models.multimodal.mrcsaf import MRCSAF
from attnrec.testing import checkerboard, planted_item_features
from attnrec.testing.scripts import load_script
from attnrec.training.trainer import TrainerConfig

TUNE = Path(__file__).resolve().parents[1] / "benchmarks" / "mm_tune.py"


@pytest.fixture(scope="module")
def tune():  # type: ignore[no-untyped-def]
    return load_script(TUNE)


def test_every_model_gets_the_same_number_of_grid_points(tune):  # type: ignore[no-untyped-def]
    for spec in ("grid", "wide"):
        sizes = {m: len(tune.grid_points(m, spec)) for m in ("lightgcn", "freedom", "mrcsaf")}
        assert set(sizes.values()) == {8}, (spec, sizes)
    # the two grids do not overlap (the wide grid adds new points)
    for m in ("lightgcn", "freedom", "mrcsaf"):
        grid = {json.dumps(p, sort_keys=True) for p in tune.grid_points(m, "grid")}
        assert not grid & {json.dumps(p, sort_keys=True) for p in tune.grid_points(m, "wide")}
    assert tune.grid_points("freedom", "default") == [{}]
    assert tune.grid_points("mrcsaf", "dropout=0.9;reg_weight=1e-3|dropout=0.5") == [
        {"dropout": 0.9, "reg_weight": 1e-3},
        {"dropout": 0.5},
    ]


def _rec(model: str, point: dict, seed: int, valid: float, test: float) -> dict:  # type: ignore[type-arg]
    metrics = {"recall@10": test, "recall@20": test, "ndcg@10": test, "ndcg@20": test}
    return {
        "model": model,
        "tune_point": point,
        "seed": seed,
        "best_epoch": 5,
        "valid": {"recall@20": valid},
        "test": metrics,
    }


def test_report_chooses_on_validation_never_on_test(tune, tmp_path, capsys):  # type: ignore[no-untyped-def]
    a, b = {"dropout": 0.8, "reg_weight": 0.0}, {"dropout": 0.9, "reg_weight": 0.0}
    recs = [
        _rec("freedom", a, 0, 0.50, 0.10),  # higher validation, lower test: must be chosen
        _rec("freedom", a, 1, 0.52, 0.12),
        _rec("freedom", b, 0, 0.40, 0.90),
        _rec("freedom", b, 1, 0.41, 0.92),
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tune.report(path)
    out = capsys.readouterr().out
    chosen = [line for line in out.splitlines() if "**yes**" in line]
    assert len(chosen) == 1 and '"dropout": 0.8' in chosen[0]
    summary = out.split("chosen setting")[1]
    assert "0.1100 ± 0.0100" in summary and "0.91" not in summary
    # restricted to the wide grid, none of these points is left
    tune.report(path, "wide")
    assert "freedom" not in capsys.readouterr().out


def _fit(cls, **config):  # type: ignore[no-untyped-def]
    train, valid, _ = checkerboard(implicit=True)
    feats = planted_item_features(len(train.item_vocab), 0)
    model = cls(**{"dim": 8, "feat_dim": 8, "knn_k": 4, **config})
    model.fit(
        train,
        valid,
        side=SideInputs(item_features=ItemFeatures(train.item_vocab, feats)),
        trainer=TrainerConfig(epochs=2, batch_size=256, progress=False, device="cpu"),
    )
    return model


def test_inspect_splits_the_item_vector_into_its_two_terms(tune):  # type: ignore[no-untyped-def]
    model = _fit(Freedom)
    out = tune.inspect(model)
    terms = out["item_terms"]["all"]
    # freedom's item vector is ṗ + h: the two norms recorded are those of the two parts of compute_embeddings
    with torch.no_grad():
        _, items = model.module.compute_embeddings()
        h = model.module.item_graph_mm(model.module.item.weight)
    assert terms["h"]["norm"] == pytest.approx(float(h.norm(dim=1).mean()), rel=1e-5)
    assert terms["p_dot"]["norm"] == pytest.approx(float((items - h).norm(dim=1).mean()), rel=1e-5)
    assert terms["h"]["score_spread"] > 0 and terms["p_dot"]["score_spread"] > 0


def test_inspect_mrcsaf_reports_each_modality(tune):  # type: ignore[no-untyped-def]
    model = _fit(MRCSAF)
    out = tune.inspect(model)
    names = model.diagnostics()["modalities"]
    assert set(out["item_terms"]) == set(names) == set(out["selector"]) == set(out["fusion_scale"])
    # the selector's weights sum to one per item, so their means over items do too
    assert sum(s["mean"] for s in out["selector"].values()) == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():
        _, items = model.module.compute_embeddings()
        h = model.module.item_graph_part()
    d = model.config.dim
    for j, m in enumerate(names):
        assert out["item_terms"][m]["h"]["norm"] == pytest.approx(
            float(h[:, j * d : (j + 1) * d].norm(dim=1).mean()), rel=1e-5
        )
        p_dot = (items - h)[:, j * d : (j + 1) * d]
        assert out["item_terms"][m]["p_dot"]["norm"] == pytest.approx(
            float(p_dot.norm(dim=1).mean()), rel=1e-4
        )


def test_zero_fusion_bias_patch_is_undone(tune):  # type: ignore[no-untyped-def]
    from attnrec.models.multimodal.mrcsaf_module import CrossSelfAttentionFusion

    torch.manual_seed(0)
    assert (
        float(CrossSelfAttentionFusion(8, 2, "knn").fuse.bias.detach().abs().sum()) > 0
    )  # PyTorch's default init
    restore = tune.zero_fusion_bias()
    try:
        assert float(CrossSelfAttentionFusion(8, 2, "knn").fuse.bias.detach().abs().sum()) == 0.0
    finally:
        restore()
    assert float(CrossSelfAttentionFusion(8, 2, "knn").fuse.bias.detach().abs().sum()) > 0
