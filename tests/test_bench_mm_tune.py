"""benchmarks/mm_tune.py: equal tuning budgets, selection on validation only, and the fitted-model diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def _rec(model: str, point: dict, seed: int, valid: float, test: float | None, role: str) -> dict:  # type: ignore[type-arg]
    rec = {
        "model": model,
        "tune_point": point,
        "seed": seed,
        "best_epoch": 5,
        "valid": {"recall@20": valid},
        "settings": {"dataset": "d", "split_seed": 1, "epochs": 9, "patience": 2, "diagnostic": None},
        "role": role,
    }
    if test is not None:
        rec["test"] = {"recall@10": test, "recall@20": test, "ndcg@10": test, "ndcg@20": test}
    return rec


def test_report_chooses_on_validation_never_on_test(tune, tmp_path, capsys):  # type: ignore[no-untyped-def]
    a, b = {"dropout": 0.8, "reg_weight": 0.0}, {"dropout": 0.9, "reg_weight": 0.0}
    recs = [
        _rec("freedom", a, 0, 0.50, None, "grid"),  # higher validation: must be chosen
        _rec("freedom", a, 1, 0.52, None, "grid"),
        _rec("freedom", b, 0, 0.40, None, "grid"),
        _rec("freedom", b, 1, 0.41, None, "grid"),
        _rec("freedom", a, 0, 0.50, 0.10, "test"),  # the chosen point's fits after the choice
        _rec("freedom", a, 1, 0.52, 0.12, "test"),
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tune.report(path)
    out = capsys.readouterr().out
    chosen = [line for line in out.splitlines() if "**yes**" in line]
    assert len(chosen) == 1 and '"dropout": 0.8' in chosen[0]
    summary = out.split("chosen setting")[1]
    assert "0.1100 ± 0.0100" in summary and "fit after the choice" in summary
    # restricted to the wide grid, none of these points is left
    tune.report(path, "wide")
    assert "freedom" not in capsys.readouterr().out


def test_report_never_prints_a_losing_points_test_numbers(tune, tmp_path, capsys):  # type: ignore[no-untyped-def]
    # legacy records (before the grid/test split) hold test at every point: only the chosen point's is shown
    a, b = {"dropout": 0.8}, {"dropout": 0.9}
    recs = [_rec("freedom", a, 0, 0.50, 0.1234, "grid"), _rec("freedom", b, 0, 0.40, 0.9876, "grid")]
    for r in recs:
        del r["role"], r["settings"]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tune.report(path)
    out = capsys.readouterr().out
    assert "0.1234" in out and "0.9876" not in out and "legacy" in out


def test_report_labels_test_only_fits_as_chosen_before_in_rows_of_their_own(tune, tmp_path, capsys):  # type: ignore[no-untyped-def]
    a, b = {"fused_norm": 1.0}, {"fusion_bias_init": "zero"}
    before = _rec("mrcsaf", b, 0, 0.30, 0.3359, "test")  # --test-only: b was chosen on another data set
    before["chosen_before"] = True
    recs = [_rec("mrcsaf", a, 0, 0.33, None, "grid"), before]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tune.report(path)
    summary = capsys.readouterr().out.split("chosen setting")[1].splitlines()
    # the validation winner a has no test fit, and b's fit is neither dropped nor passed off as a's
    assert [line for line in summary if "not fitted on test yet" in line] == [
        line for line in summary if '"fused_norm": 1.0' in line
    ]
    rows = [line for line in summary if "0.3359" in line]
    assert len(rows) == 1 and '"fusion_bias_init": "zero"' in rows[0] and "chosen before" in rows[0]
    assert "fit after the choice" not in "\n".join(summary)
    # a file of --test-only fits alone: no point is marked as chosen here
    path.write_text(json.dumps(before) + "\n")
    tune.report(path)
    out = capsys.readouterr().out
    assert "**yes**" not in out and "chosen before (another seed / data set)" in out
    assert "not fitted on test yet" not in out


def test_report_keeps_a_diagnostic_run_out_of_the_choice(tune, tmp_path, capsys):  # type: ignore[no-untyped-def]
    a, b = {"dropout": 0.8}, {"dropout": 0.9}
    patched = _rec("mrcsaf", b, 0, 0.99, None, "grid")  # best validation, but under --zero-fusion-bias
    patched["settings"] = {**patched["settings"], "diagnostic": "zero_fusion_bias"}
    recs = [_rec("mrcsaf", a, 0, 0.50, None, "grid"), _rec("mrcsaf", b, 0, 0.40, None, "grid"), patched]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tune.report(path)
    rows = [line for line in capsys.readouterr().out.splitlines() if "**yes**" in line]
    plain = [line for line in rows if "zero_fusion_bias" not in line]
    assert len(plain) == 1 and '"dropout": 0.8' in plain[0] and "0.5000" in plain[0]


def test_choose_never_picks_a_nan_mean(tune):  # type: ignore[no-untyped-def]
    recs = [_rec("mrcsaf", {"dropout": 0.8}, 0, float("nan"), None, "grid")]
    recs.append(_rec("mrcsaf", {"dropout": 0.9}, 0, 0.1, None, "grid"))
    assert tune.choose(recs) == json.dumps({"dropout": 0.9})
    assert tune.choose(recs[:1]) is None


def test_choose_compares_points_on_the_seeds_they_share(tune):  # type: ignore[no-untyped-def]
    # {0.8} has seeds 0 and 1 (mean 0.35), {0.9} seed 0 only: on seed 0, 0.8 (0.40) beats 0.9 (0.38)
    recs = [_rec("mrcsaf", {"dropout": 0.8}, s, v, None, "grid") for s, v in ((0, 0.40), (1, 0.30))]
    recs.append(_rec("mrcsaf", {"dropout": 0.9}, 0, 0.38, None, "grid"))
    assert tune.choose(recs) == json.dumps({"dropout": 0.8})


def _run_main(tune, monkeypatch, out, *extra):  # type: ignore[no-untyped-def]
    calls = []

    def fake_fit(model, seed, split, feats, epochs, patience, valid_every, point, look, score_test=True):  # type: ignore[no-untyped-def]
        calls.append((model, json.dumps(point, sort_keys=True), seed, score_test))
        rec = {
            "model": model,
            "seed": seed,
            "best_epoch": 1,
            "valid": {"recall@20": point.get("dropout", 0.5)},
        }
        if score_test:
            rec["test"] = {"recall@20": 0.3}
        return rec

    monkeypatch.setattr(tune, "fit_ours", fake_fit)
    monkeypatch.setattr(tune, "load", lambda dataset, seed: (None, None, None, 0, None))
    monkeypatch.setattr(tune, "modalities", lambda dataset, ds, train: {})
    argv = ["mm_tune.py", "--dataset", "ml-100k", "--models", "mrcsaf", "--seeds", "0,1", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv + ["--grid", "dropout=0.8|dropout=0.9", *extra])
    tune.main()
    return calls


def test_grid_fits_never_read_test_only_the_chosen_point_does(tune, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    out = tmp_path / "t.jsonl"
    calls = _run_main(tune, monkeypatch, out)
    grid = [c for c in calls if not c[3]]
    assert len(grid) == 4  # 2 points x 2 seeds, validation only
    assert [c for c in calls if c[3]] == [("mrcsaf", '{"dropout": 0.9}', s, True) for s in (0, 1)]
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all("test" not in r for r in recs if r["role"] == "grid")
    assert sorted(r["seed"] for r in recs if r["role"] == "test") == [0, 1]
    # resumed with the same settings: nothing refitted
    assert _run_main(tune, monkeypatch, out) == []


def test_a_single_point_run_chooses_among_every_point_so_far(tune, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    out = tmp_path / "t.jsonl"
    calls = _run_main(tune, monkeypatch, out, "--grid", "dropout=0.95", "--no-test")
    assert calls == [("mrcsaf", '{"dropout": 0.95}', s, False) for s in (0, 1)]  # no test read
    calls = _run_main(tune, monkeypatch, out)  # the two other points, then the best of all three on test
    assert [c for c in calls if c[3]] == [("mrcsaf", '{"dropout": 0.95}', s, True) for s in (0, 1)]


def test_resume_key_includes_the_run_settings(tune, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    out = tmp_path / "t.jsonl"
    _run_main(tune, monkeypatch, out)
    # another patience finds the first run's records and must not take them for its own
    assert len(_run_main(tune, monkeypatch, out, "--patience", "3")) == 6
    assert _run_main(tune, monkeypatch, out, "--patience", "3") == []
    # the former --zero-fusion-bias patch is a model option now: a grid point of its own, same settings
    calls = _run_main(tune, monkeypatch, out, "--grid", 'dropout=0.8;fusion_bias_init="zero"', "--no-test")
    assert calls == [("mrcsaf", '{"dropout": 0.8, "fusion_bias_init": "zero"}', s, False) for s in (0, 1)]
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["settings"]["diagnostic"] is None for r in recs)


def test_test_only_fits_the_given_point_once_per_seed_reading_test(tune, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    out = tmp_path / "t.jsonl"
    calls = _run_main(tune, monkeypatch, out, "--grid", "dropout=0.8", "--test-only")
    assert calls == [("mrcsaf", '{"dropout": 0.8}', s, True) for s in (0, 1)]  # no grid fit
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["role"], r["chosen_before"]) for r in recs] == [("test", True)] * 2
    assert _run_main(tune, monkeypatch, out, "--grid", "dropout=0.8", "--test-only") == []  # resumed
    with pytest.raises(SystemExit, match="one point"):
        _run_main(tune, monkeypatch, out, "--grid", "dropout=0.8|dropout=0.9", "--test-only")


def _rewrite(out, change):  # type: ignore[no-untyped-def]
    """Apply ``change`` to the first record of the jsonl file ``out``, in place."""
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    change(recs[0])
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_records_hold_the_commit_and_the_full_resolved_config_and_a_matching_one_is_reused(
    tune, tmp_path, monkeypatch
):  # type: ignore[no-untyped-def]
    out = tmp_path / "t.jsonl"
    _run_main(tune, monkeypatch, out)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 6
    for r in recs:
        # the config the model was built with, every default filled in (not only the row's settings)
        assert r["config"]["selector_input"] == "raw" and r["config"]["seed"] == r["seed"]
        assert r["config"]["dropout"] == r["tune_point"]["dropout"] and r["config"]["reg_weight"] == 1e-5
        assert r["commit"] == tune.git_state(tune.HERE, short=True)
    assert _run_main(tune, monkeypatch, out) == []  # same config: every fit reused


def test_a_record_fitted_under_another_config_is_refused_not_reused(tune, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    out = tmp_path / "t.jsonl"
    _run_main(tune, monkeypatch, out)
    # as fitted before the selector read eq. 4's raw features (setdefault: the test must fail, not error, on
    # code that records no config)
    _rewrite(out, lambda r: r.setdefault("config", {}).update(selector_input="unit"))
    before = out.read_text()
    with pytest.raises(SystemExit, match=r"t\.jsonl:1: mrcsaf .*selector_input: recorded 'unit', now 'raw'"):
        _run_main(tune, monkeypatch, out)
    assert out.read_text() == before  # refused before any fit


def test_a_record_without_a_config_is_refused(tune, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    out = tmp_path / "t.jsonl"
    _run_main(tune, monkeypatch, out)
    _rewrite(out, lambda r: r.pop("config", None))
    with pytest.raises(SystemExit, match=r"t\.jsonl:1: .*records no model config"):
        _run_main(tune, monkeypatch, out)


def test_a_malformed_record_line_names_the_file_and_line(tune, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    out = tmp_path / "t.jsonl"
    _run_main(tune, monkeypatch, out)
    lines = out.read_text().splitlines()
    out.write_text("\n".join([lines[0], lines[1][:30], *lines[2:]]) + "\n")  # a line cut short (a killed run)
    with pytest.raises(SystemExit, match=r"t\.jsonl:2: not a JSON record"):
        _run_main(tune, monkeypatch, out)


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


@pytest.mark.parametrize("n_mm_layers", [1, 2])
def test_inspect_splits_the_item_vector_into_its_two_terms(tune, n_mm_layers):  # type: ignore[no-untyped-def]
    model = _fit(Freedom, n_mm_layers=n_mm_layers)
    out = tune.inspect(model)
    terms = out["item_terms"]["all"]
    # computed here by dense numpy algebra from the graphs' raw entries, not through the module's propagation:
    # ṗ = mean_k A^k [U; I] (items' rows), h = S^L I, with L = n_mm_layers
    m = model.module
    n_users, n_items = m.n_users, m.n_items
    s = np.zeros((n_items, n_items))
    idx, val = m.graph_indices.numpy(), m.graph_values[0].numpy()
    np.add.at(s, (idx[0], idx[1]), val)
    a = m.full_adj.to_dense().numpy().astype(np.float64)
    u0, i0 = (
        m.user.weight.detach().numpy().astype(np.float64),
        m.item.weight.detach().numpy().astype(np.float64),
    )
    e, layers = np.concatenate([u0, i0]), []
    for _ in range(m.config.n_layers + 1):
        layers.append(e)
        e = a @ e
    mean = np.mean(layers, axis=0)
    users, p_dot = mean[:n_users], mean[n_users:]
    h = np.linalg.matrix_power(s, n_mm_layers) @ i0
    for label, t in (("p_dot", p_dot), ("h", h)):
        assert terms[label]["norm"] == pytest.approx(float(np.linalg.norm(t, axis=1).mean()), rel=1e-4)
        spread = float((users @ t.T).std(axis=1, ddof=1).mean())
        assert terms[label]["score_spread"] == pytest.approx(spread, rel=1e-3)
    # and the two terms add up to the item vector the model scores with
    with torch.no_grad():
        _, items = m.compute_embeddings()
    np.testing.assert_allclose(p_dot + h, items.numpy(), rtol=1e-4, atol=1e-5)


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


def test_score_spread_in_blocks_equals_the_whole_matrix(tune):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    u, t = torch.randn(7, 3, generator=g), torch.randn(5, 3, generator=g)
    whole = float((u @ t.T).std(dim=1).mean())
    assert tune.score_spread(u, t, block=2) == pytest.approx(whole, rel=1e-6)
