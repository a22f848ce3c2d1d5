"""attnrec train / evaluate on a CTR model report the calibrated and the raw model, and evaluate writes the
reliability curve (--reliability .json or a plot)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from attnrec.cli import main
from attnrec.testing.cli import run_cli


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory) -> Path:
    """Plain CSV CTR rows: two categorical columns, the label planted on ``a``."""
    d = tmp_path_factory.mktemp("ctr-csv")
    rng = np.random.default_rng(3)
    for part, n in (("train", 900), ("valid", 300), ("test", 300)):
        a = rng.integers(0, 6, n)
        b = rng.integers(0, 4, n)
        y = (rng.random(n) < np.where(a < 3, 0.8, 0.15)).astype(int)
        lines = ["label,a,b"] + [f"{yi},a{ai},b{bi}" for yi, ai, bi in zip(y, a, b, strict=True)]
        (d / f"{part}.csv").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def run_dir(csv_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "fm"
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(sys, "argv", ["attnrec", "train", "--model", "fm", "--train", str(csv_dir / "train.csv"),
                                 "--valid", str(csv_dir / "valid.csv"), "--test", str(csv_dir / "test.csv"),
                                 "--format", "csv", "--out", str(run), "--no-progress", "--epochs", "3",
                                 "--lr", "0.05", "--set", "embedding_dim=4"])  # fmt: skip
        try:
            main()
        except SystemExit as exc:
            assert not exc.code
    finally:
        mp.undo()
    return run


def test_metrics_json_holds_calibrated_and_raw(run_dir) -> None:
    m = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert {"auc", "logloss", "ece", "raw_auc", "raw_logloss", "raw_ece"} <= set(m)
    assert m["auc"] == pytest.approx(m["raw_auc"], abs=1e-9)  # temperature scaling keeps the ranking
    assert m["logloss"] != m["raw_logloss"]


def test_evaluate_prints_both_and_writes_the_curve(run_dir, csv_dir, tmp_path, monkeypatch, capsys) -> None:
    out_json = tmp_path / "rel.json"
    args = ["evaluate", "--model-dir", str(run_dir / "model"), "--test", str(csv_dir / "test.csv")]
    code, out, err = run_cli([*args, "--format", "csv", "--reliability", str(out_json)], monkeypatch, capsys)
    assert code == 0, err
    m = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert "test (temperature)" in out and "test (raw)" in out and "ece" in out
    assert f"{m['logloss']:.4f}" in out and f"{m['raw_logloss']:.4f}" in out
    curves = json.loads(out_json.read_text())
    assert set(curves) == {"raw", "temperature"}
    assert curves["raw"]["ece"] == pytest.approx(m["raw_ece"], abs=1e-9)
    assert curves["temperature"]["ece"] == pytest.approx(m["ece"], abs=1e-9)
    assert sum(curves["raw"]["mass"]) == pytest.approx(300)
    pytest.importorskip("matplotlib")
    png = tmp_path / "rel.png"
    code, out, err = run_cli([*args, "--format", "csv", "--reliability", str(png)], monkeypatch, capsys)
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_predict_applies_the_calibration_and_raw_switches_it_off(
    run_dir, csv_dir, tmp_path, monkeypatch, capsys
):
    import polars as pl

    from attnrec.serving.bundle import load_bundle

    model = load_bundle(run_dir / "model")
    assert model.calibrator is not None and model.calibrator.temperature != 1.0
    args = ["predict", "--model-dir", str(run_dir / "model"), "--data", str(csv_dir / "test.csv")]
    cal_csv, raw_csv = tmp_path / "p.csv", tmp_path / "raw.csv"
    for extra, path in (([], cal_csv), (["--raw"], raw_csv)):
        code, _, err = run_cli([*args, *extra, "--out", str(path)], monkeypatch, capsys)
        assert code == 0, err
    cal, raw = pl.read_csv(cal_csv), pl.read_csv(raw_csv)
    assert cal.columns == ["row", "probability"] and raw.columns == ["row", "raw_probability"]
    # the two differ exactly by the bundle's temperature: logit(raw) / T = logit(calibrated)
    lr, lc = (np.log(p / (1 - p)) for p in (raw["raw_probability"].to_numpy(), cal["probability"].to_numpy()))
    np.testing.assert_allclose(lr / model.calibrator.temperature, lc, rtol=1e-4, atol=1e-5)


def test_predict_raw_on_a_rating_bundle_is_refused(tmp_path, monkeypatch, capsys) -> None:
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,rating"] + [
        f"u{u},i{i},{rng.integers(1, 6)}" for u in range(12) for i in range(8)
    ]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "svd"
    code, _, err = run_cli(
        ["train", "--model", "svd", "--data", str(tmp_path / "r.csv"), "--out", str(run)], monkeypatch, capsys
    )
    assert code == 0, err
    (tmp_path / "pairs.csv").write_text("user_id,item_id\nu1,i2\n")
    args = ["predict", "--model-dir", str(run / "model"), "--data", str(tmp_path / "pairs.csv"), "--raw"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code != 0 and "--raw applies to CTR bundles" in err and "svd" in err
