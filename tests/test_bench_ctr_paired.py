"""benchmarks/ctr_paired.py: the paired bootstrap of a CTR model's test logloss against LR's, pooled over splits,
and ECE against its noise floor — on hand-made cases and a tiny generated Criteo-format sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnrec.errors import ConfigError
from attnrec.testing.data import write_criteo_sample
from attnrec.testing.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ctr_paired.py"


@pytest.fixture()
def criteo_dir(tmp_path: Path) -> Path:
    """The benchmark's Criteo folder layout with a few hundred generated rows."""
    return write_criteo_sample(tmp_path)


def _paired() -> Any:
    return load_script(SCRIPT)


def test_paired_bootstrap_by_hand() -> None:
    paired = _paired()
    y = np.array([1.0, 0.0])
    np.testing.assert_allclose(paired.row_logloss(y, np.array([0.8, 0.25])), [-np.log(0.8), -np.log(0.75)])
    clear = paired.paired_bootstrap(np.full(50, -0.01), 200)  # always better: interval is the point itself
    assert (
        clear["mean"] == pytest.approx(-0.01)
        and clear["hi"] == pytest.approx(-0.01)
        and clear["p_below_0"] == 1
    )
    mixed = paired.paired_bootstrap(np.array([-1.0, 1.0] * 25), 500)  # mean 0: the interval straddles it
    assert mixed["lo"] < 0 < mixed["hi"] and 0.3 < mixed["p_below_0"] < 0.7


def test_pooled_bootstrap_resamples_within_each_split() -> None:
    paired = _paired()
    # split A: every row 0.01 better than the baseline; split B (half the rows): every row 0.03 worse. Resampled
    # within each split every draw keeps 50 A rows and 25 B rows, so the pooled mean never moves:
    # (50 * -0.01 + 25 * 0.03) / 75 = +0.00333 (a pooled, unstratified resample would spread around it)
    a, b = np.full(50, -0.01), np.full(25, 0.03)
    pooled = paired.stratified_bootstrap([a, b], 300)
    assert pooled["mean"] == pytest.approx(0.25 / 75)
    assert pooled["lo"] == pytest.approx(0.25 / 75) and pooled["hi"] == pytest.approx(0.25 / 75)
    assert pooled["p_below_0"] == 0.0
    # one split is the paired bootstrap, draw for draw
    diff = np.random.default_rng(3).normal(0.0, 1.0, 40)
    assert paired.stratified_bootstrap([diff], 200, seed=5) == paired.paired_bootstrap(diff, 200, seed=5)
    # pooled_rows matches a model across splits by name, whatever dropout each split chose
    y = np.array([1.0, 0.0, 1.0, 0.0])
    half = np.full((1, 4), 0.5)
    better = np.array([[0.8, 0.2, 0.8, 0.2]])
    split7 = {"d": (y, {"lr": {"cal": half, "raw": half}, "nfm:dropout=0.7": {"cal": better, "raw": half}})}
    split11 = {"d": (y, {"lr": {"cal": half, "raw": half}, "nfm": {"cal": half, "raw": half}})}
    rows, lines, skipped = paired.pooled_rows([split7, split11], "lr", 100)
    assert rows["d/nfm"]["specs"] == ["nfm:dropout=0.7", "nfm"] and rows["d/nfm"]["rows"] == [4, 4]
    # split 7 gains log(0.5) - log(0.8) per row, split 11 nothing: the pooled mean is half of it
    assert rows["d/nfm"]["cal"]["mean"] == pytest.approx((np.log(0.5) - np.log(0.8)) / 2)
    assert rows["d/nfm"]["raw"]["mean"] == 0.0 and len(lines) == 3 and skipped == []
    # a model one split lacks, or has twice, gets no verdict and is named, whichever split it is missing from
    split7["d"][1]["fm"] = {"cal": half, "raw": half}
    split11["d"][1].update({"afm": {"cal": half, "raw": half}, "nfm:dropout=0.9": {"cal": half, "raw": half}})
    rows, _, skipped = paired.pooled_rows([split7, split11], "lr", 100)
    nfm9 = "nfm:dropout=0.9"
    assert set(rows) == set()
    assert skipped == [
        {"dataset": "d", "model": "nfm", "specs_per_split": [["nfm:dropout=0.7"], ["nfm", nfm9]]},
        {"dataset": "d", "model": "fm", "specs_per_split": [["fm"], []]},
        {"dataset": "d", "model": "afm", "specs_per_split": [[], ["afm"]]},
    ]
    with pytest.raises(paired.ConfigError, match=r"split\(s\) \[1\] are empty"):
        paired.stratified_bootstrap([a, np.array([])], 10)


def test_ece_bootstrap_by_hand() -> None:
    paired = _paired()
    # 200 rows, positive rate 0.5; seed 0 predicts 0.3 everywhere, seed 1 0.7: one tie group, so every equal-mass
    # bin holds the overall rate and each seed's ECE is |p - rate| = 0.2. A resample's rate r stays within
    # [0.3, 0.7] (5.7 standard errors), where (|0.3 - r| + |0.7 - r|) / 2 = 0.2: the interval is the point
    y = np.array([1.0, 0.0] * 100)
    probs = np.stack([np.full(200, 0.3), np.full(200, 0.7)])
    e = paired.ece_bootstrap(y, probs, 200)
    assert e["mean"] == pytest.approx(0.2) and e["lo"] == pytest.approx(0.2) and e["hi"] == pytest.approx(0.2)
    # the basic interval mirrors the resamples' percentiles about the estimate: 2 * ece - q97.5, 2 * ece - q2.5
    noisy = paired.ece_bootstrap(y, np.stack([np.linspace(0.3, 0.7, 200)]), 200)
    assert noisy["lo"] == pytest.approx(2 * noisy["mean"] - noisy["pct_hi"])
    assert noisy["hi"] == pytest.approx(2 * noisy["mean"] - noisy["pct_lo"])
    assert noisy["boot_mean"] > noisy["mean"]  # the resamples (fewer distinct rows) are noisier: ECE rises
    # a perfectly calibrated model's ECE is a draw from its own noise floor: over 5 label draws, P(floor >= it)
    # is spread over (0, 1), not stuck near 0 as for the miscalibrated seeds above
    rng = np.random.default_rng(1)
    p = rng.uniform(0.1, 0.5, 400)
    shares = [
        paired.ece_bootstrap((rng.random(400) < p).astype(float), p[None, :], 10, floor_draws=200)["floor_p"]
        for _ in range(5)
    ]
    assert sum(x > 0.05 for x in shares) >= 3 and max(shares) > 0.3
    # perfectly calibrated seeds (labels drawn from 0.3 and 0.7) on 200 rows: noise of a few hundredths, never 0.2
    assert 0.0 < e["floor_mean"] < e["floor_q95"] < 0.2 and e["floor_p"] == 0.0


def test_ece_floor_shares_the_label_noise_across_seeds() -> None:
    paired = _paired()
    # the measured ECE of identical seeds is one seed's ECE (all are scored against the same labels), so its noise
    # floor must be one seed's floor: labels drawn independently per seed would average their noise away and give
    # a visibly narrower floor (q95 ~0.006 lower here)
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.4, 400)
    y = (rng.random(400) < p).astype(float)
    one = paired.ece_bootstrap(y, p[None, :], 5, floor_draws=300)
    three = paired.ece_bootstrap(y, np.stack([p, p, p]), 5, floor_draws=300)
    assert three["mean"] == pytest.approx(one["mean"])
    assert three["floor_q95"] == pytest.approx(one["floor_q95"], abs=2e-3)
    assert three["floor_mean"] == pytest.approx(one["floor_mean"], abs=1e-3)
    assert three["floor_p"] == pytest.approx(one["floor_p"], abs=0.03)
    # the floor has its own generator: the number of row resamples does not move it
    more = paired.ece_bootstrap(y, np.stack([p, p, p]), 40, floor_draws=300)
    assert more["floor_q95"] == three["floor_q95"] and more["floor_p"] == three["floor_p"]
    # no resamples: the floor alone, the same draws
    bare = paired.ece_bootstrap(y, np.stack([p, p, p]), 0, floor_draws=300)
    assert bare["floor_q95"] == three["floor_q95"] and bare["mean"] == three["mean"]
    assert not {"lo", "hi", "boot_mean", "pct_lo", "pct_hi"} & bare.keys()
    with pytest.raises(ConfigError, match="n_boot -1"):
        paired.ece_bootstrap(y, p[None, :], -1)


def test_paired_bootstrap_reads_a_records_stored_probabilities() -> None:
    paired = _paired()
    y = np.array([1.0, 0.0])

    class Test:
        labels = y

    runs = [
        {"seed": 0, "test_p": [0.8, 0.25], "test_p_raw": [0.9, 0.5]},
        {"seed": 1, "test_p": [0.6, 0.25], "test_p_raw": [0.9, 0.5]},
    ]
    got = paired.mean_losses(
        y, paired.record_probs({"runs": runs}, "fm", (None, None, Test()), paired.BenchSettings())
    )
    np.testing.assert_allclose(got["cal"], [-(np.log(0.8) + np.log(0.6)) / 2, -np.log(0.75)])
    np.testing.assert_allclose(got["raw"], [-np.log(0.9), -np.log(0.5)])


def _record(settings: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A bench_ctr record on the ``criteo`` fixture with the same ``runs`` for lr and nfm."""
    results = {f"criteo/attnrec/{m}": {"runs": runs, "embedding_reg": 0.0} for m in ("lr", "nfm")}
    return {"settings": settings, "datasets": {"criteo": {}}, "results": results}


def test_paired_record_refuses_to_refit_runs_made_under_other_defaults(
    criteo_dir: Path, tmp_path: Path
) -> None:
    paired = _paired()
    today = {**paired.asdict(paired.BenchSettings()), "max_epochs": 1}
    path = tmp_path / "old.json"
    argv = ["--record", str(path), "--data-dir", str(criteo_dir), "--boot", "10"]
    no_probs = [{"seed": 0}]
    # a record from before the stamps (as bench_results/ctr18_avazu.json): its nfm ran other dropouts
    old = {k: v for k, v in today.items() if k not in ("model_defaults", "adam_kernel")}
    path.write_text(json.dumps(_record(old, no_probs)))
    with pytest.raises(
        SystemExit, match=r"old\.json.*criteo/attnrec/nfm.*lacks the settings \['adam_kernel'"
    ):
        paired.main(argv)
    # a stamp of other model defaults
    path.write_text(json.dumps(_record({**today, "model_defaults": "2026-12-06"}, no_probs)))
    with pytest.raises(SystemExit, match=r"model_defaults '2026-12-06' \(this code: '[0-9a-f]{12}'\)"):
        paired.main(argv)
    # stored probabilities need no refit: the old record is bootstrapped, and its runs' seeds are reported
    y = paired.load_splits("criteo", criteo_dir)[0][2].labels
    p = np.clip(np.where(y > 0, 0.7, 0.3), 0, 1).tolist()
    with_probs = [{"seed": s, "test_p": p, "test_p_raw": p} for s in (4, 5)]
    path.write_text(json.dumps(_record(old, with_probs)))
    out = paired.main([*argv, "--seeds", "0,1,2"])
    assert out["seeds"] == [4, 5]
    assert out["results"]["criteo/nfm"]["cal"]["mean"] == 0.0
    # pooled with a second record (another split's, here the same rows), and each model's ECE interval
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_record(old, with_probs)))
    out = paired.main([*argv, "--pool-with", str(other), "--ece-boot", "20"])
    assert (
        out["pooled"]["criteo/nfm"]["rows"] == [80, 80] and out["pooled"]["criteo/nfm"]["cal"]["mean"] == 0.0
    )
    assert out["pooled_skipped"] == [] and (out["commit"] is None or len(out["commit"].split("+")[0]) == 40)
    # --models names this record's spec; the other split chose another dropout for the model: matched by name
    moved = _record(old, with_probs)
    results = moved["results"]
    results["criteo/attnrec/nfm:dropout=0.7:bi_dropout=0.7"] = results.pop("criteo/attnrec/nfm")
    other.write_text(json.dumps(moved))
    by_name = paired.main([*argv, "--models", "nfm", "--pool-with", str(other)])
    assert by_name["pooled"]["criteo/nfm"]["specs"] == ["nfm", "nfm:dropout=0.7:bi_dropout=0.7"]
    assert set(out["ece"]) == {"criteo/lr", "criteo/nfm"}
    from attnrec.evaluation.calibration import expected_calibration_error

    # both seeds store p: the statistic is p's own ECE on these labels
    lr_ece = out["ece"]["criteo/lr"]["cal"]
    assert lr_ece["mean"] == pytest.approx(expected_calibration_error(y, np.asarray(p)))
    assert 0.0 < lr_ece["floor_mean"] <= lr_ece["floor_q95"] and 0.0 <= lr_ece["floor_p"] <= 1.0
    with pytest.raises(SystemExit, match="no results for 'criteo/attnrec/fm'"):
        paired.main([*argv, "--models", "fm"])
