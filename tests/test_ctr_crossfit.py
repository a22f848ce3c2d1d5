"""benchmarks/ctr_crossfit.py: folds partition the rows, a fold's test rows never reach its training, validation or
vocabularies, out-of-fold predictions land at their rows, and the bootstrap resamples within folds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnrec.errors import ConfigError
from attnrec.testing.data import write_criteo_sample
from attnrec.testing.scripts import load_script

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _cf() -> Any:
    return load_script(BENCH_DIR / "ctr_crossfit.py")


@pytest.mark.parametrize(("n", "k"), [(100, 10), (103, 10), (9, 3), (8000, 10)])
def test_every_row_is_in_exactly_one_test_fold(n: int, k: int) -> None:
    cf = _cf()
    folds = cf.fold_indices(n, k, seed=18)
    assert len(folds) == k
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    tests = np.concatenate([cf.fold_roles(folds, j)[2] for j in range(k)])
    assert np.array_equal(np.sort(tests), np.arange(n))  # each row once over the K test folds
    # the permutation seed matters, and the same seed gives the same folds
    assert all(np.array_equal(a, b) for a, b in zip(folds, cf.fold_indices(n, k, seed=18), strict=True))
    assert not np.array_equal(folds[0], cf.fold_indices(n, k, seed=19)[0])


def test_a_folds_train_and_valid_never_hold_its_test_rows() -> None:
    cf = _cf()
    folds = cf.fold_indices(57, 5, seed=0)
    for j in range(5):
        train, valid, test = cf.fold_roles(folds, j)
        assert not set(train) & set(test) and not set(valid) & set(test) and not set(train) & set(valid)
        assert len(train) + len(valid) + len(test) == 57
        assert np.array_equal(valid, folds[(j + 1) % 5])  # validation is the next fold, wrapping at the end
    assert np.array_equal(cf.fold_roles(folds, 4)[1], folds[0])
    with pytest.raises(ConfigError, match="3 <= K"):
        cf.fold_indices(10, 2, seed=0)


def test_vocabularies_are_fitted_on_the_folds_training_rows_only(tmp_path: Path) -> None:
    import polars as pl

    cf = _cf()
    frame, schema, _ = cf.pooled_frame("criteo", write_criteo_sample(tmp_path, sizes=(60, 20, 20)))
    assert frame.height == 100
    folds = cf.fold_indices(frame.height, 5, seed=3)
    train, valid, test = cf.fold_roles(folds, 2)
    field = "C2"  # hex tokens 0..5 (or missing): every value is seen in training
    assert field in [f.name for f in schema.categorical]
    planted_test, planted_valid = int(test[0]), int(valid[0])
    col = frame[field].to_list()
    col[planted_test], col[planted_valid] = "feedbeef", "deadbeef"
    # a token shared by one training row and one test row is in the vocabulary (it was seen in training)
    col[int(train[0])] = col[int(test[1])] = "cafe0001"
    frame = frame.with_columns(pl.Series(field, col))
    tr, va, te = cf.fold_splits(frame, schema, folds, 2)
    j = [f.name for f in tr.schema.categorical].index(field)
    assert te.categorical[0, j] == 0 and va.categorical[0, j] == 0  # seen only outside training: OOV
    assert te.categorical[1, j] != 0 and te.categorical[1, j] == tr.categorical[0, j]
    assert tr.schema.vocab_sizes[j] == len(set(frame[field][train].drop_nulls().to_list())) + 1
    # in fold 0 the planted row is a training row, so its token gets an index there
    train0 = cf.fold_roles(folds, 0)[0]
    at = int(np.flatnonzero(train0 == planted_test)[0])
    assert cf.fold_splits(frame, schema, folds, 0)[0].categorical[at, j] != 0
    assert len(tr) == len(train) and len(te) == len(test)
    assert np.array_equal(te.labels, frame["label"].to_numpy()[test].astype(te.labels.dtype))


def test_out_of_fold_assembly_puts_each_prediction_at_its_row() -> None:
    cf = _cf()
    folds = cf.fold_indices(23, 4, seed=5)
    truth = np.arange(23) * 0.01 + np.arange(2)[:, None]  # (2 seeds, 23 rows): value = row / 100 + seed
    parts = [truth[:, f] for f in folds]
    oof = cf.assemble_oof(23, folds, parts)
    assert oof.shape == (2, 23) and np.array_equal(oof, truth)
    # a row in two test folds, or none, is refused
    with pytest.raises(ConfigError, match="filled"):
        cf.assemble_oof(23, [folds[0], folds[0], folds[2], folds[3]], parts)


def test_the_bootstrap_resamples_rows_within_each_fold() -> None:
    cf = _cf()
    rng = np.random.default_rng(0)
    sizes = [40, 41, 39]
    y = [rng.integers(0, 2, n).astype(float) for n in sizes]
    base = [np.full((3, n), 0.5) for n in sizes]
    # per fold a constant per-row difference (different between folds): resampling within a fold cannot change
    # its mean, so the stratified interval has zero width; resampling across folds would not
    prob = [
        np.where(yy == 1, 0.5 + 0.1 * (k + 1), 0.5 - 0.1 * (k + 1))[None].repeat(3, 0)
        for k, yy in enumerate(y)
    ]
    d = cf.fold_delta(y, prob, base, n_boot=300)
    losses = [-np.log(0.5 + 0.1 * (k + 1)) + np.log(0.5) for k in range(3)]
    want = sum(n * x for n, x in zip(sizes, losses, strict=True)) / sum(sizes)
    assert d["mean"] == pytest.approx(want)
    assert d["lo"] == pytest.approx(want) and d["hi"] == pytest.approx(want) and d["p_below_0"] == 1.0
    pooled = load_script(BENCH_DIR / "ctr_paired.py").paired_bootstrap(
        np.concatenate([np.full(n, x) for n, x in zip(sizes, losses, strict=True)]), 300
    )
    assert pooled["hi"] - pooled["lo"] > 1e-3  # unstratified: the folds' mix varies per draw


def test_verdict_rules() -> None:
    cf = _cf()
    assert cf.logloss_verdict(-0.01, -0.001) == "met"
    assert cf.logloss_verdict(0.001, 0.01) == "missed"
    assert cf.logloss_verdict(-0.01, 0.01) == "too close to call"
    assert cf.ece_verdict(0.02, 0.0) == "met"
    assert cf.ece_verdict(0.03, 0.01) == "missed"
    assert cf.ece_verdict(0.021, 0.2) == "too close to call"


def _fake_folds(n: int, k: int, seed: int = 0) -> list[dict[str, Any]]:
    """Fold records as ``run`` writes them, for models lr and fm, 2 seeds: lr predicts the base rate, fm the true
    click probability of each row (labels drawn from it), so fm's logloss is below lr's by far."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.05, 0.6, n)
    y = (rng.random(n) < truth).astype(int)
    cf = _cf()
    folds = cf.fold_indices(n, k, seed=1)
    proto = {"folds": k, "models": ["lr", "fm"]}
    out = []
    for j, idx in enumerate(folds):
        runs = {
            m: [
                {
                    "test_p": p.tolist(),
                    "test_p_raw": p.tolist(),
                    "auc": 0.5,
                    "cal_auc": 0.5,
                    "temperature": 1.0,
                }
                | {"epochs_run": 3}
                for p in (np.full(len(idx), y.mean()), np.full(len(idx), y.mean()))
            ]
            if m == "lr"
            else [
                {"test_p": truth[idx].tolist(), "test_p_raw": truth[idx].tolist(), "auc": 0.7, "cal_auc": 0.7}
                | {"temperature": 1.0, "epochs_run": 3}
                for _ in range(2)
            ]
            for m in ("lr", "fm")
        }
        out.append(
            {
                "fold": j,
                "protocol": proto,
                "test_idx": idx.tolist(),
                "test_y": y[idx].tolist(),
                "chosen_l2": {"lr": 0.0, "fm": 0.01},
                "runs": runs,
            }
        )
    return out


def test_report_scores_the_assembled_rows_and_gives_verdicts() -> None:
    from attnrec.evaluation.calibration import expected_calibration_error
    from attnrec.evaluation.metrics import logloss

    cf = _cf()
    folds = _fake_folds(3000, 5)
    rec = cf.report(folds, n_boot=200, floor_draws=50, ece_boot=5)
    fm, lr = rec["models"]["fm"], rec["models"]["lr"]
    assert rec["rows"] == 3000
    # pooled scores are those of the assembled vectors, computed here from the rows directly
    idx = np.concatenate([f["test_idx"] for f in folds])
    y = np.empty(3000)
    p = np.empty(3000)
    y[idx] = np.concatenate([f["test_y"] for f in folds])
    p[idx] = np.concatenate([f["runs"]["fm"][0]["test_p"] for f in folds])
    assert fm["cal_logloss"]["mean"] == pytest.approx(logloss(y, p))
    assert fm["cal_ece"]["mean"] == pytest.approx(expected_calibration_error(y, p))
    assert fm["cal_logloss"]["std"] == 0.0 and fm["fold_auc"] == pytest.approx(0.7)
    assert fm["chosen_l2"] == [0.01] * 5
    # the truth beats the base rate by a wide margin: met; its ECE is label noise only, so P(floor >= it) is not small
    assert fm["delta_cal"]["hi"] < 0 and fm["logloss_verdict"] == "met"
    assert fm["delta_cal"]["mean"] == pytest.approx(fm["cal_logloss"]["mean"] - lr["cal_logloss"]["mean"])
    assert fm["ece_floor"]["floor_p"] > 0.05 and fm["ece_verdict"] != "missed"
    assert "logloss_verdict" not in lr and "| lr |" in rec["table"] and "| met |" in rec["table"]


class _Stub:
    """A fitted model as ``run_fold`` uses it: probabilities that encode the L2 weight and seed it was fitted with,
    and a record of the data it was asked to score."""

    calibrator = None

    def __init__(
        self,
        reg: float,
        seed: int,
        scored: list[Any],
        linear_reg: float | None = None,
        linear_init: str = "zero",
    ) -> None:
        from types import SimpleNamespace

        self.reg, self.seed, self.scored = reg, seed, scored
        self.config = SimpleNamespace(linear_reg=linear_reg, linear_init=linear_init)
        self.first_order_report = (
            SimpleNamespace(best_valid={"logloss": 0.45, "auc": 0.7}, best_epoch=9, epochs_run=12)
            if linear_init == "lr"
            else None
        )

    def predict_proba(self, data: Any, calibrated: bool = True) -> np.ndarray:
        self.scored.append(data)
        return np.full(len(data), 0.3 + self.reg + 0.01 * self.seed + (0.0 if calibrated else 0.05))


def _fake_fit(calls: list[tuple[str, tuple[Any, ...], int, float]], scored: list[Any]) -> Any:
    """A fit that records ``(spec, parts, seed, L2)`` and returns a stub: validation logloss lowest at L2 0 for lr,
    at the largest L2 for every other model, so the chosen values are known."""
    from types import SimpleNamespace

    started = []  # fm fits with validate_start: the first one keeps epoch 0, so the report has one to count

    def fit(spec: str, parts: Any, seed: int, s: Any) -> tuple[Any, Any]:
        reg = float(s.embedding_reg)
        calls.append((spec, tuple(parts), seed, reg))
        valid = 0.5 + (reg if spec == "lr" else -reg)
        if spec == "fm" and getattr(s, "validate_start", False):
            started.append(seed)
        best = 0 if len(started) == 1 and spec == "fm" and getattr(s, "validate_start", False) else 2
        report = SimpleNamespace(best_valid={"logloss": valid, "auc": 0.6}, best_epoch=best, epochs_run=4)
        first_order = spec != "lr"
        return _Stub(
            reg,
            seed,
            scored,
            s.linear_reg if first_order else None,
            s.linear_init if first_order else "zero",
        ), report

    return fit


def _fold_one(cf: Any, tmp_path: Path) -> Any:
    """Fold 1 of 5 (permutation seed 3) of a generated 100-row Criteo sample: its (train, valid, test) parts."""
    frame, schema, _ = cf.pooled_frame("criteo", write_criteo_sample(tmp_path, sizes=(60, 20, 20)))
    return cf.fold_splits(frame, schema, cf.fold_indices(frame.height, 5, seed=3), 1)


def test_run_fold_grid_fits_see_no_test_rows_and_the_kept_fit_is_at_the_chosen_l2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cf = _cf()
    splits = _fold_one(cf, tmp_path)
    train, valid, test = splits
    calls: list[tuple[str, tuple[Any, ...], int, float]] = []
    scored: list[Any] = []
    monkeypatch.setattr(cf, "fit_attnrec", _fake_fit(calls, scored))
    out = cf.run_fold(
        "criteo", splits, ["lr", "fm"], [0, 1], cf.BenchSettings(), [0.0, 0.1], (0,), log=lambda _: None
    )
    assert out["chosen_l2"] == {"lr": 0.0, "fm": 0.1}
    # the grid: both models at both values, grid seed 0 only, on (train, valid, valid): the test rows never reach it
    grid = calls[:4]
    want = [("lr", 0, 0.0), ("fm", 0, 0.0), ("lr", 0, 0.1), ("fm", 0, 0.1)]
    assert [(c[0], c[2], c[3]) for c in grid] == want
    for _, parts, _, _ in grid:
        assert parts[0] is train and parts[1] is valid and parts[2] is valid
        assert all(p is not test for p in parts)
    # seed 0's grid fit at the chosen value is reused; only seed 1 is fitted again, at the chosen value
    assert [(c[0], c[2], c[3]) for c in calls[4:]] == [("lr", 1, 0.0), ("fm", 1, 0.1)]
    for m, reg in (("lr", 0.0), ("fm", 0.1)):
        r0, r1 = out["runs"][m]
        assert r0["from_grid"] and not r1["from_grid"]
        assert r0["embedding_reg"] == r1["embedding_reg"] == reg
        # the kept model is the one fitted at the chosen L2 (its probabilities say so), not the grid's other fit
        assert r0["test_p"] == pytest.approx([0.3 + reg] * len(test))
        assert r1["test_p_raw"] == pytest.approx([0.3 + reg + 0.01 + 0.05] * len(test))
        y = test.labels.astype(np.float64)
        assert r1["logloss"] == pytest.approx(cf.scores(y, np.full(len(test), 0.3 + reg + 0.06))["logloss"])
    # test is scored once per seed and model (calibrated and raw), and nothing else is scored
    assert len(scored) == 2 * 2 * 2 and all(d is test for d in scored)


def _small_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    calls: list[tuple[str, tuple[Any, ...], int, float]],
    *,
    seeds: str,
    l2_grid: str,
) -> tuple[Any, Path, Path, list[str]]:
    """The script with a faked fit on a generated 100-row Criteo sample: (module, data dir, out dir, run argv for
    3 folds of lr and fm)."""
    import torch

    cf = _cf()
    data = write_criteo_sample(tmp_path / "data", sizes=(60, 20, 20))
    out = tmp_path / "out"
    monkeypatch.setattr(cf, "fit_attnrec", _fake_fit(calls, []))
    threads = str(torch.get_num_threads())  # run sets torch's threads: keep this process's
    argv = ["run", "--dataset", "criteo", "--data-dir", str(data), "--folds", "3", "--models", "lr,fm"]
    argv += ["--seeds", seeds, "--l2-grid", l2_grid, "--out-dir", str(out), "--threads", threads]
    return cf, data, out, argv


def test_run_writes_a_fold_file_per_fold_and_load_folds_refuses_a_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    calls: list[tuple[str, tuple[Any, ...], int, float]] = []
    cf, data, out, argv = _small_run(tmp_path, monkeypatch, calls, seeds="0,1", l2_grid="0,0.1")
    cf.main(argv)
    assert len(calls) == 3 * 6  # per fold: 4 grid fits + seed 1 of each model
    folds = cf.load_folds(out / "criteo")
    assert [f["fold"] for f in folds] == [0, 1, 2] and folds[0]["protocol"]["perm_seed"] == 19
    idx = np.concatenate([f["test_idx"] for f in folds])
    assert np.array_equal(np.sort(idx), np.arange(100))
    frame, _, _ = cf.pooled_frame("criteo", data)
    assert np.array_equal(np.concatenate([f["test_y"] for f in folds]), frame["label"].to_numpy()[idx])
    assert cf.report(folds, n_boot=50, floor_draws=20, ece_boot=5)["rows"] == 100
    # no row bootstrap of ECE (the default): the same floor and verdicts, without the untrusted interval
    bare = cf.report(folds, n_boot=50, floor_draws=20, ece_boot=0)
    assert "pct_lo" not in bare["models"]["fm"]["ece_floor"] and bare["table"]
    cf.main(argv)  # a rerun with the same protocol skips the finished folds
    assert len(calls) == 18
    with pytest.raises(SystemExit, match="another protocol"):
        cf.main([*argv, "--perm-seed", "7"])
    path = out / "criteo" / "fold_2.json"
    rec = json.loads(path.read_text())
    rec["protocol"]["l2_grid"] = [0.0]
    path.write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match="fold_2.json.*another protocol"):
        cf.load_folds(out / "criteo")
    path.write_text(json.dumps(rec)[:50])  # a truncated fold file names itself
    with pytest.raises(SystemExit, match="fold_2.json: not a fold record"):
        cf.load_folds(out / "criteo")
    path.unlink()
    with pytest.raises(SystemExit, match=r"fold\(s\) \[2\] of 3 missing"):
        cf.load_folds(out / "criteo")


def test_grid_for_gives_a_model_its_own_grid_and_linear_reg_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cf = _cf()
    splits = _fold_one(cf, tmp_path)
    calls: list[tuple[str, tuple[Any, ...], int, float]] = []
    monkeypatch.setattr(cf, "fit_attnrec", _fake_fit(calls, []))
    s = cf.BenchSettings(linear_reg=0.0)
    out = cf.run_fold(
        "criteo", splits, ["lr", "fm"], [0], s, [0.0, 0.1, 0.5], (0,), lambda _: None, {"lr": [0.0, 0.1]}
    )
    # lr runs its own grid {0, 0.1} only; fm the common {0, 0.1, 0.5} (its largest wins in the fake)
    assert sorted((c[0], c[3]) for c in calls) == [
        ("fm", 0.0),
        ("fm", 0.1),
        ("fm", 0.5),
        ("lr", 0.0),
        ("lr", 0.1),
    ]
    assert out["chosen_l2"] == {"lr": 0.0, "fm": 0.5}
    assert set(out["l2_grid"]["criteo/attnrec/lr"]) == {"0.0", "0.1"}
    assert out["runs"]["fm"][0]["linear_reg"] == 0.0 and out["runs"]["lr"][0]["linear_reg"] is None


def test_with_linear_reg_reaches_the_first_order_models_but_not_lr_or_the_others(tmp_path: Path) -> None:
    import sys

    cf = _cf()
    bench = sys.modules["bench_ctr"]
    s = cf.BenchSettings(linear_reg=0.0, max_epochs=1)
    frame, schema, _ = cf.pooled_frame("criteo", write_criteo_sample(tmp_path, sizes=(60, 20, 20)))
    splits = cf.fold_splits(frame, schema, cf.fold_indices(frame.height, 5, seed=3), 1)
    for spec, want in [
        ("fm", 0.0),
        ("deepfm", 0.0),
        ("lr", None),
        ("dcn", None),
        ("secn", None),
        ("autoint", None),
        ("autoint:use_linear=true", 0.0),
        ("fm:linear_reg=0.5", 0.5),  # a spec's own value wins
    ]:
        model, _ = cf.fit_attnrec(spec, splits, 0, s)
        assert model.config.linear_reg == want, spec
    assert bench.with_linear_reg("fm", {"embedding_reg": 0.1}, cf.BenchSettings()) == {"embedding_reg": 0.1}
    # the defaults stamp ignores linear_reg and linear_init at their neutral values (earlier records stay comparable)
    fm_defaults = bench.model_class("fm").config_class().to_dict()
    assert fm_defaults["linear_reg"] is None and fm_defaults["linear_init"] == "zero"
    assert not {"linear_reg", "linear_init"} & set(bench.stamp_view(fm_defaults, "fm"))


def test_with_linear_init_reaches_the_first_order_models_but_not_lr_or_the_others(tmp_path: Path) -> None:
    import sys

    cf = _cf()
    bench = sys.modules["bench_ctr"]
    s = cf.BenchSettings(linear_reg=0.0, linear_init="lr", max_epochs=1)
    frame, schema, _ = cf.pooled_frame("criteo", write_criteo_sample(tmp_path, sizes=(60, 20, 20)))
    splits = cf.fold_splits(frame, schema, cf.fold_indices(frame.height, 5, seed=3), 1)
    for spec, want in [
        ("fm", "lr"),
        ("xdeepfm", "lr"),
        ("lr", "zero"),
        ("dcn", "zero"),
        ("secn", "zero"),
        ("autoint", "zero"),
        ("autoint:use_linear=true", "lr"),
        ("fm:linear_init=zero", "zero"),  # a spec's own value wins
    ]:
        model, _ = cf.fit_attnrec(spec, splits, 0, s)
        assert model.config.linear_init == want, spec
        assert (model.first_order_report is not None) == (want == "lr"), spec
    assert bench.with_linear_init("fm", {"seed": 0}, cf.BenchSettings()) == {"seed": 0}


def test_linear_init_is_part_of_the_protocol_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cf, _, out, argv = _small_run(tmp_path, monkeypatch, [], seeds="0", l2_grid="0,0.5")
    cf.main([*argv, "--linear-reg", "0", "--linear-init", "lr"])
    folds = cf.load_folds(out / "criteo")
    assert folds[0]["protocol"]["settings"]["linear_init"] == "lr"
    fm_run, lr_run = folds[0]["runs"]["fm"][0], folds[0]["runs"]["lr"][0]
    assert fm_run["linear_init"] == "lr" and fm_run["first_order"]["best_epoch"] == 9
    assert lr_run["linear_init"] == "zero" and lr_run["first_order"] is None
    rep = cf.report(folds, n_boot=20, floor_draws=10, ece_boot=0)
    assert rep["models"]["fm"]["linear_init"] == "lr" and rep["models"]["lr"]["linear_init"] == "zero"
    assert "| fm (linear_reg 0.0, linear_init lr) |" in rep["table"] and "| lr |" in rep["table"]
    for other in (["--linear-reg", "0"], ["--linear-reg", "0", "--linear-init", "zero"]):
        with pytest.raises(SystemExit, match="another protocol"):
            cf.main([*argv, *other])
    # a fold file written before the option reads as linear_init "zero" (another protocol than "lr")
    old = {"settings": {"stop": "both"}, "dataset": "criteo"}
    assert cf.same_protocol(old, {**old, "settings": {"stop": "both", "linear_init": "zero"}})
    assert not cf.same_protocol(old, {**old, "settings": {"stop": "both", "linear_init": "lr"}})


def test_linear_reg_and_grid_for_are_part_of_the_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    cf, _, out, argv = _small_run(tmp_path, monkeypatch, [], seeds="0", l2_grid="0,0.5")
    cf.main([*argv, "--linear-reg", "0", "--grid-for", "lr=0,0.1"])
    folds = cf.load_folds(out / "criteo")
    assert folds[0]["protocol"]["settings"]["linear_reg"] == 0.0
    assert folds[0]["protocol"]["model_grids"] == {"lr": [0.0, 0.1]}
    rep = cf.report(folds, n_boot=20, floor_draws=10, ece_boot=0)
    assert rep["models"]["fm"]["linear_reg"] == 0.0 and rep["models"]["lr"]["linear_reg"] is None
    assert "| fm (linear_reg 0.0) |" in rep["table"]
    for other in (
        ["--grid-for", "lr=0,0.1"],
        ["--linear-reg", "0.1", "--grid-for", "lr=0,0.1"],
        ["--linear-reg", "0"],
    ):
        with pytest.raises(SystemExit, match="another protocol"):
            cf.main([*argv, *other])
    # a fold file of another linear_reg is never mixed into the report
    path = out / "criteo" / "fold_1.json"
    rec = json.loads(path.read_text())
    rec["protocol"]["settings"]["linear_reg"] = None
    path.write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match="fold_1.json.*another protocol"):
        cf.load_folds(out / "criteo")
    # a fold file written before the keys existed reads as linear_reg None and no per-model grids
    old = {"settings": {"stop": "both"}, "dataset": "criteo"}
    assert cf.same_protocol(old, {**old, "model_grids": {}, "settings": {"stop": "both", "linear_reg": None}})
    for bad in (
        ["--grid-for", "dcn=0,1"],
        ["--grid-for", "lr"],
        ["--grid-for", "lr=0", "--grid-for", "lr=1"],
        ["--grid-for", "lr=0,-0.1"],
    ):
        with pytest.raises(SystemExit, match="--grid-for"):
            cf.main([*argv, *bad])


def test_validate_start_is_part_of_the_protocol_and_reaches_every_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cf = _cf()
    splits = _fold_one(cf, tmp_path / "fold")
    s = cf.BenchSettings(validate_start=True, max_epochs=2, linear_reg=0.0, linear_init="lr")
    for spec in ("lr", "fm", "dcn:use_linear=true", "secn:use_linear=true"):
        model, report = cf.fit_attnrec(spec, splits, 0, s)
        assert report.history[0]["epoch"] == 0 and "valid_logloss" in report.history[0], spec
        scores = cf._fit_scores(report)
        assert scores["start_valid_logloss"] == report.history[0]["valid_logloss"], spec
        # use_linear makes dcn/secn first-order models: linear_reg and linear_init reach them
        if spec != "lr":
            assert model.config.linear_reg == 0.0 and model.config.linear_init == "lr", spec
            # the warm start's own LR validated its (zero) start too: the same trainer
            assert model.first_order_report.history[0]["epoch"] == 0, spec
    _, report = cf.fit_attnrec("fm", splits, 0, cf.BenchSettings(max_epochs=2))
    assert report.history[0]["epoch"] == 1 and cf._fit_scores(report)["start_valid_logloss"] is None
    # the flag is recorded in the protocol; a fold file without the key ran without it
    cf2, _, out, argv = _small_run(tmp_path, monkeypatch, [], seeds="0", l2_grid="0")
    cf2.main([*argv, "--validate-start"])
    folds = cf2.load_folds(out / "criteo")
    assert folds[0]["protocol"]["settings"]["validate_start"] is True
    with pytest.raises(SystemExit, match="another protocol"):
        cf2.main(argv)
    old = {"settings": {"stop": "both"}, "dataset": "criteo"}
    assert cf2.same_protocol(old, {**old, "settings": {"stop": "both", "validate_start": False}})
    assert not cf2.same_protocol(old, {**old, "settings": {"stop": "both", "validate_start": True}})
    assert cf2.report(folds, n_boot=20, floor_draws=10, ece_boot=0)["models"]["fm"]["restored_start"] == {
        "runs": 1,
        "of": 3,
    }
