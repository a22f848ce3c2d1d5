"""benchmarks/cdsr_study.py and cdsr_report.py: the grid, parameter matching, record parsing, resumability,
tables, correlations and plots (on made-up records), and ABXI's per-epoch lines."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnrec.models.sequential.base import RECBOLE_SASREC
from attnrec.testing.scripts import load_script

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> Any:
    return load_script(BENCH_DIR / f"{name}.py")


study = _load("cdsr_study")
rep = _load("cdsr_report")


def test_grid_is_the_issues_grid() -> None:
    names = [v.name for v in study.grid(3)]
    assert names[:3] == ["sasrec-A", "sasrec-B", "sasrec-mixed"]
    gca = [v for v in study.grid(3) if v.family == "gca"]
    assert len(gca) == 4 * 2 * 2  # positions x activation x LayerNorm
    assert {tuple(v.params["positions"]) for v in gca} == {(0,), (1,), (2,), (0, 1, 2)}
    assert "gca[0,1,2]-tanh-noln" in names
    # a 2-block backbone: each block alone and both blocks, the 2-block form of GCA[0,1,2]
    two = [v for v in study.grid(2) if v.family == "gca"]
    assert {tuple(v.params["positions"]) for v in two} == {(0,), (1,), (0, 1)}
    assert len(two) == 3 * 2 * 2 and "gca[0,1]-sigmoid-noln" in {v.name for v in two}
    assert {tuple(v.params["positions"]) for v in study.grid(1) if v.family == "gca"} == {(0,)}


def test_one_matched_baseline_per_module_count_named_as_before() -> None:
    backbone = {"n_blocks": 2, "dim": 16}
    names = [mv.name for mv, *_ in study.matched_variants(study.grid(2), backbone, 500)]
    assert names == ["matched-gca[1]", "matched-gca[0,1]"]  # gca[0] shares gca[1]'s; the stack has its own
    one = study.matched_variants(study.grid(1), {"n_blocks": 1, "dim": 16}, 500)
    assert [mv.name for mv, *_ in one] == ["matched-gca[0]"]
    for mv, got, goal, _ in one:
        assert mv.params["positions"] == [] and abs(got - goal) <= 0.02 * goal


def test_matched_variant_is_within_two_percent() -> None:
    target = study.Variant(
        "gca[0,1,2]-sigmoid-ln", "gca", "gca", {"positions": [0, 1, 2], "gate_act": "sigmoid"}
    )
    mv, got, goal = study.matched_variant(target, {"n_blocks": 3, "dim": 16}, 500)
    assert mv.name == "matched-gca[0,1,2]" and mv.family == "matched" and mv.params["positions"] == []
    assert abs(got / goal - 1) <= 0.02 and got != goal  # widened, not the target itself
    assert mv.params["dim"] > 16 or mv.params.get("ffn_dim", 16) > 16


def test_run_key_changes_with_any_setting() -> None:
    v = study.Variant("sasrec-A", "sasrec", "sasrec", {"domain": "A"})
    k = study.run_key(v, 0, {"dim": 64}, {"epochs": 5}, "d")
    assert k == study.run_key(v, 0, {"dim": 64}, {"epochs": 5}, "d")
    assert k.startswith("sasrec-A|s0|")
    others = {
        study.run_key(v, 1, {"dim": 64}, {"epochs": 5}, "d"),
        study.run_key(v, 0, {"dim": 32}, {"epochs": 5}, "d"),
        study.run_key(v, 0, {"dim": 64}, {"epochs": 6}, "d"),
        study.run_key(v, 0, {"dim": 64}, {"epochs": 5}, "e"),
    }
    assert k not in others and len(others) == 4


def test_record_parsing() -> None:
    flat = {"A/ndcg@10": 0.2, "A/hit@10": 0.3, "B/mrr": 0.1, "ndcg@10": 0.15, "A/auc": 0.9}
    assert study.domain_metrics(flat) == {"A": {"ndcg@10": 0.2, "hr@10": 0.3, "auc": 0.9}, "B": {"mrr": 0.1}}
    modules, cos = study.cos_by_domain(
        {"abs_cos[A<-B@0]": 0.2, "abs_cos[A<-B@2]": 0.4, "abs_cos[B<-A@0]": 0.1}
    )
    assert modules == {"A<-B@0": 0.2, "A<-B@2": 0.4, "B<-A@0": 0.1}
    assert cos == pytest.approx({"A": 0.3, "B": 0.1})
    curve = study.curve_of(
        [
            {"epoch": 1, "seconds": 2.0, "valid_A/ndcg@10": 0.1, "valid_B/ndcg@10": 0.05},
            {"epoch": 2, "seconds": 3.0, "valid_A/ndcg@10": 0.2, "valid_B/ndcg@10": 0.04},
        ]
    )
    assert curve[1] == {"epoch": 2, "train_s_cum": 5.0, "valid": {"A": 0.2, "B": 0.04}}


def _records() -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate([0.1, 0.2, 0.3, 0.4, 0.5]):
        out.append(
            {
                "variant": f"gca-v{i % 2}",
                "family": "gca",
                "seed": i,
                "n_params": 1000 + i,
                "test": {"A": {"ndcg@10": 0.5 - c, "hr@10": 0.6, "mrr": 0.3, "auc": 0.9}},
                "cos": {"A": c},
                "s_per_epoch": 2.0,
                "curve": [{"epoch": 1, "train_s_cum": 2.0, "valid": {"A": 0.1}}],
            }
        )
    return out


def test_correlation_and_table() -> None:
    c = rep.correlation([1, 2, 3, 4], [2, 4, 6, 8.5])
    assert c["n"] == 4 and c["spearman"] == pytest.approx(1.0) and 0.99 < c["pearson"] <= 1.0
    assert math.isnan(rep.correlation([1, 2], [1, 2])["pearson"])  # below 3 pairs
    assert rep.correlation([1, np.nan, 3, 4, 5], [1, 2, 3, 4, 5])["n"] == 4
    table = rep.domain_table(_records(), "A")
    # gca-v0 = seeds 0, 2, 4: NDCG 0.4, 0.2, 0.0 -> mean 0.2, sample std 0.2
    assert "| gca-v0 | 3 | 0.6000 ± 0.0000 | 0.2000 ± 0.2000 |" in table
    assert "| gca-v1 | 2 |" in table


def test_report_written_with_plots_and_abxi(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "study"
    out.mkdir()
    with (out / "results.jsonl").open("w") as f:
        for r in _records():
            f.write(json.dumps(r) + "\n")
        f.write('{"variant": "torn')  # an interrupted write: skipped
    metrics = {"hr@1": 0.1, "hr@5": 0.2, "hr@10": 0.3, "ndcg@10": 0.15, "mrr": 0.12, "auc": 0.8, "n": 3}
    lines = [{"kind": "header", "commit": "abc", "command": "x", "n_params": 9, "threads": 1}]
    for e, sel in ((1, False), (2, True), (3, False)):
        ep = {d: {**metrics, "ndcg@10": 0.1 * e} for d in ("A", "B")}
        lines.append(
            {
                "kind": "epoch",
                "epoch": e,
                "train_s": 10.0,
                "loadavg_before": [1, 1, 1],
                "abxi_selected": sel,
                "val": ep,
                "test": ep,
            }
        )
    abxi_path = tmp_path / "abxi.jsonl"
    abxi_path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    summary = rep.abxi_summary(rep.read_jsonl(abxi_path))
    assert summary["selected_epoch"] == 2 and summary["test"]["A"]["ndcg@10"] == pytest.approx(0.2)
    assert rep.value_at(summary["curve"], "test", "A", seconds=25.0) == pytest.approx(0.2)  # 2 epochs in 25 s
    assert rep.value_at(summary["curve"], "test", "A", epoch=1) == pytest.approx(0.1)
    assert rep.value_at(summary["curve"], "test", "A", seconds=5.0) is None
    recbole = tmp_path / "recbole.jsonl"
    recbole.write_text(
        json.dumps({"domain": "A", "epochs_run": 4, "n_params": 7, "s_per_epoch": 1.0, "test": metrics})
        + "\n"
    )
    text = study.write_report(out, abxi_path, recbole)
    assert "| RecBole SASRec A only (peer, 4 ep) | 1 | 0.3000 | 0.1500 | 0.1200 | 0.8000 |" in text
    assert "Pearson -1.000" in text and "Spearman -1.000" in text  # NDCG = 0.5 - |cos| exactly
    assert "ABXI peer (3 ep, ABXI-selected ep 2)" in text
    assert (
        "ABXI (DiMarzioBian/ABXI at abc, 9 parameters, 1 thread(s)): `x`. Its run ended at epoch 3 (30 training s)"
        in text
    )
    # ABXI's test at our 1 epoch; none yet at our 2 s; ours stopped before ABXI's 3 epochs, ABXI's best valid 0.3
    assert "| gca-v0 s0 (1 ep, 2 s) | A | 0.4000 | 0.1000 | – | – / 0.3000 |" in text
    for png in ("cos_vs_ndcg.png", "ndcg_vs_params.png", "curves.png"):
        assert (out / png).stat().st_size > 1000


def test_study_runs_resumes_and_reports_on_planted_sequences(tmp_path: Path, capsys: Any) -> None:
    """The whole command on the planted two-domain sequences (1 epoch, tiny backbone): one JSON line per run, a
    second call runs nothing, single-domain sasrec reports its domain only, gca reports |cos| per domain."""
    pytest.importorskip("matplotlib")
    import polars as pl

    from attnrec.testing.sequences import planted_sequences

    parts = planted_sequences(n_users=40, n_items=24, length=10)
    data = tmp_path / "planted.csv"
    pl.concat([p.decode().select("user_id", "item_id", "timestamp", "domain") for p in parts]).write_csv(data)
    out = tmp_path / "study"
    argv = ["--data", str(data), "--out", str(out), "--seeds", "0", "--n-blocks", "2", "--epochs", "1"]
    argv += ["--set", "dim=8", "--variants", "sasrec-A,gca[1]-sigmoid-ln,matched-gca[1]"]
    study.main(argv)
    recs = rep.read_jsonl(out / "results.jsonl")
    assert sorted(r["variant"] for r in recs) == ["gca[1]-sigmoid-ln", "matched-gca[1]", "sasrec-A"]
    by = {r["variant"]: r for r in recs}
    assert set(by["sasrec-A"]["test"]) == {"A"} and by["sasrec-A"]["cos"] == {}
    assert set(by["gca[1]-sigmoid-ln"]["test"]) == {"A", "B"}
    assert set(by["gca[1]-sigmoid-ln"]["cos"]) == {"A", "B"}
    assert all(0.0 <= c <= 1.0 for c in by["gca[1]-sigmoid-ln"]["cos"].values())
    assert abs(by["matched-gca[1]"]["n_params"] / by["gca[1]-sigmoid-ln"]["n_params"] - 1) <= 0.02
    assert by["matched-gca[1]"]["n_params"] != by["gca[1]-sigmoid-ln"]["n_params"]
    for r in recs:
        m = r["test"]["A"]
        assert 0.0 <= m["ndcg@10"] <= m["hr@10"] <= 1.0 and 0.0 < m["mrr"] <= 1.0
        assert r["threads"] == 1 and r["epochs_run"] == 1 and len(r["curve"]) == 1
    capsys.readouterr()
    study.main(argv)  # resumed: everything is done
    assert "3 runs, 0 to do" in capsys.readouterr().out
    assert len(rep.read_jsonl(out / "results.jsonl")) == 3
    text = (out / "report.md").read_text()
    assert "## Domain A" in text and "Pearson nan" not in text
    assert "domain A, all: n=1, too few runs (or no spread) for a correlation" in text  # one gca run
    # names with commas inside brackets are one variant each
    dry = ["--data", str(data), "--out", str(tmp_path / "dry"), "--seeds", "0", "--dry-run"]
    study.main([*dry, "--variants", "gca[0,1,2]-sigmoid-ln,sasrec-A,matched-gca[0,1,2]"])
    text = capsys.readouterr().out
    assert "3 runs, 3 to do" in text and "gca[0,1,2]-sigmoid-ln seed 0" in text


def _cli_run(folder: Path, seed: int, positions: list[int], ndcg: dict[str, float]) -> Path:
    """A made-up `attnrec train --out` folder: the metrics.json fields import_run reads."""
    config = {"seed": seed, "dim": 8, "n_blocks": 2, "heads": 2, "positions": positions}
    history = [
        {"epoch": e, "seconds": 2.0, "valid_A/ndcg@10": 0.1 * e, "valid_B/ndcg@10": 0.05 * e}
        | ({"valid_abs_cos[A<-B@1]": 0.9 / e, "valid_abs_cos[B<-A@1]": 0.8 / e} if positions else {})
        for e in (1, 2, 3)
    ]
    best = {"A/ndcg@10": 0.3, "B/ndcg@10": 0.15}
    if positions:
        best |= {"abs_cos[A<-B@1]": 0.3, "abs_cos[B<-A@1]": 0.4}
    metrics = {
        "model": "gca",
        "config": config,
        "seed": seed,
        "trainer": {"epochs": 25, "patience": 5, "lr": 0.005, "batch_size": 128},
        "run": {"data": "planted"},
        "data": {"items": 30},
        "valid": {"A/ndcg@10": 0.3, "B/ndcg@10": 0.15, "ndcg@10": 0.2},
        "test": {f"{d}/ndcg@10": v for d, v in ndcg.items()} | {"A/hit@10": 0.5, "ndcg@10": 0.1},
        "fit": {"best_epoch": 3, "epochs_run": 3, "best_valid": best, "history": history},
        "timings": {"fit_s": 6.0 + seed},
        "threads": 1,
    }
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_import_cli_runs_and_pair_gca_with_its_baseline(tmp_path: Path, capsys: Any) -> None:
    """CLI run folders join the study once each; the report pairs gca with its matched baseline per seed."""
    pytest.importorskip("matplotlib")
    from attnrec.models.sequential.params import count_parameters

    runs = {
        "g0": (0, [1], {"A": 0.30, "B": 0.10}),
        "m0": (0, [], {"A": 0.28, "B": 0.12}),
        "g1": (1, [1], {"A": 0.31, "B": 0.14}),
        "m1": (1, [], {"A": 0.25, "B": 0.11}),
    }
    argv = ["--out", str(tmp_path / "study")]
    for name, (seed, pos, ndcg) in runs.items():
        variant = "gca[1]-sigmoid-ln [cap 25]" if pos else "matched-gca[1] [cap 25]"
        argv += ["--import-run", f"{variant}={_cli_run(tmp_path / name, seed, pos, ndcg)}"]
    study.main(argv)
    study.main(argv)  # a second import of the same folders adds nothing
    assert "already in" in capsys.readouterr().out
    recs = rep.read_jsonl(tmp_path / "study" / "results.jsonl")
    assert len(recs) == 4
    g0 = next(r for r in recs if r["seed"] == 0 and r["family"] == "gca")
    assert g0["test"] == {"A": {"ndcg@10": 0.30, "hr@10": 0.5}, "B": {"ndcg@10": 0.10}}
    assert g0["cos"] == pytest.approx({"A": 0.3, "B": 0.4}) and g0["trainer"]["epochs"] == 25
    assert g0["n_params"] == count_parameters("gca", {"dim": 8, "n_blocks": 2, "positions": [1]}, 30)
    assert g0["curve"][1]["cos"] == pytest.approx({"A": 0.45, "B": 0.4})  # epoch 2: 0.9 / 2, 0.8 / 2
    m0 = next(r for r in recs if r["seed"] == 0 and r["family"] == "matched")
    assert m0["cos"] == {} and m0["n_params"] < g0["n_params"]
    assert rep.matched_pairs(recs) == [("gca[1]-sigmoid-ln [cap 25]", "matched-gca[1] [cap 25]")]
    table = rep.paired_table(recs, "gca[1]-sigmoid-ln [cap 25]", "matched-gca[1] [cap 25]")
    assert "| 0 | B | 0.1000 | 0.1200 | -0.0200 |" in table
    assert "| mean | A | | | +0.0400 ± 0.0283 |" in table  # +0.02 and +0.06
    assert "gca ahead in 3 of 4 (seed, domain) pairs" in table
    text = (tmp_path / "study" / "report.md").read_text()
    assert "against its parameter-matched baseline" in text and "domain A, cap 25: n=2" in text
    assert (tmp_path / "study" / "cos_trajectories.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="no metrics.json"):
        study.main(["--out", str(tmp_path / "study"), "--import-run", f"x={tmp_path / 'nowhere'}"])


def test_value_at_is_none_past_the_end_of_a_curve() -> None:
    curve = [
        {"epoch": e, "train_s_cum": 10.0 * e, "valid": {"A": 0.1 * e}, "test": {"A": 0.2 * e}} for e in (1, 2)
    ]
    assert rep.value_at(curve, "test", "A", epoch=2) == pytest.approx(0.4)
    assert rep.value_at(curve, "test", "A", epoch=25) is None  # the peer stopped at epoch 2
    assert rep.value_at(curve, "test", "A", seconds=21.0) is None
    assert rep.value_at(curve, "test", "A", seconds=15.0) == pytest.approx(0.2)


def test_lr_and_batch_size_reach_the_trainer_and_the_run_key(tmp_path: Path) -> None:
    """--lr / --batch-size go into the run's trainer (recorded, part of the run key); unset, the record keeps only
    epochs and patience (earlier run keys unchanged); a value <= 0 is refused naming the flag."""
    import polars as pl

    from attnrec.testing.sequences import planted_sequences

    parts = planted_sequences(n_users=30, n_items=20, length=8)
    data = tmp_path / "planted.csv"
    pl.concat([p.decode().select("user_id", "item_id", "timestamp", "domain") for p in parts]).write_csv(data)
    base = ["--data", str(data), "--seeds", "0", "--n-blocks", "1", "--epochs", "1", "--set", "dim=8"]
    base += ["--variants", "sasrec-A"]
    study.main([*base, "--out", str(tmp_path / "a")])
    study.main([*base, "--out", str(tmp_path / "b"), "--lr", "0.01", "--batch-size", "7"])
    (plain,) = rep.read_jsonl(tmp_path / "a" / "results.jsonl")
    (set_,) = rep.read_jsonl(tmp_path / "b" / "results.jsonl")
    assert "lr" not in plain["trainer"] and "batch_size" not in plain["trainer"]
    assert set_["trainer"]["lr"] == 0.01 and set_["trainer"]["batch_size"] == 7
    assert plain["key"] != set_["key"]
    for flag in ("--lr", "--batch-size"):
        with pytest.raises(SystemExit, match=flag):
            study.main([*base, "--out", str(tmp_path / "c"), flag, "0"])


@pytest.mark.parametrize(
    ("name", "variant", "by_variant"),
    [
        ("gca-recbole.toml", "gca[0]-sigmoid-ln", "gate_act, layer_norm, positions"),
        ("sasrec-recbole.toml", "sasrec-A", "domain"),
    ],
)
def test_config_run_file_gives_the_same_runs_as_the_flags(
    name: str, variant: str, by_variant: str, tmp_path: Path, capsys: Any
) -> None:
    """--config benchmarks/configs/cdsr/<file> is the long flag form (--n-blocks 2, --set x 10, --lr,
    --batch-size, --epochs, --patience) of the measured runs: the same run key, so a run made one way is done for
    the other; the file's module settings and domain are the variants' (and said); flags override the file."""
    import polars as pl

    from attnrec.testing.sequences import planted_sequences

    parts = planted_sequences(n_users=30, n_items=20, length=8)
    data = tmp_path / "planted.csv"
    pl.concat([p.decode().select("user_id", "item_id", "timestamp", "domain") for p in parts]).write_csv(data)
    run_file = Path(__file__).parents[1] / "benchmarks" / "configs" / "cdsr" / name
    common = ["--data", str(data), "--out", str(tmp_path / "s"), "--seeds", "0", "--variants", variant]
    flags = ["--n-blocks", "2", "--epochs", "1", "--patience", "5", "--lr", "1e-3", "--batch-size", "205"]
    for key, value in (*RECBOLE_SASREC.items(), ("dim", 8)):
        flags += ["--set", f"{key}={json.dumps(value)}"]
    study.main([*common, *flags])
    (rec,) = rep.read_jsonl(tmp_path / "s" / "results.jsonl")
    assert (
        rec["trainer"]["lr"] == 1e-3 and rec["trainer"]["batch_size"] == 205 and rec["trainer"]["epochs"] == 1
    )
    capsys.readouterr()
    study.main([*common, "--config", str(run_file), "--epochs", "1", "--set", "dim=8"])
    text = capsys.readouterr().out
    assert "1 runs, 0 to do" in text
    assert f"set by each variant instead: {by_variant}" in text
    # a flag overrides the file: another run
    study.main(
        [*common, "--config", str(run_file), "--epochs", "1", "--set", "dim=8", "--dry-run", "--lr", "0.01"]
    )
    assert "1 runs, 1 to do" in capsys.readouterr().out


def test_config_run_file_blocks_data_and_bad_files(tmp_path: Path, capsys: Any) -> None:
    """--n-blocks overrides the file's 2 blocks; without --data the file's data is read; a typo in the file's
    model or trainer settings, or a non-sequential model, is refused before --out is made."""
    run_file = Path(__file__).parents[1] / "benchmarks" / "configs" / "cdsr" / "gca-recbole.toml"
    out = tmp_path / "s"
    late = ["--out", str(out), "--seeds", "0", "--variants", "gca[2]-sigmoid-ln", "--config", str(run_file)]
    late += ["--data", "x.csv", "--dry-run"]
    with pytest.raises(SystemExit, match="unknown variants"):  # the file's 2 blocks have no block 2
        study.main(late)
    study.main([*late, "--n-blocks", "3"])
    assert "gca[2]-sigmoid-ln seed 0" in capsys.readouterr().out
    # the file's data when --data is not given: the matched baseline's size needs it
    text = run_file.read_text().replace('data = "abxi-food-kitchen"', f'data = "{tmp_path / "nope.csv"}"')
    moved = tmp_path / "moved.toml"
    moved.write_text(text)
    with pytest.raises(Exception, match="nope.csv"):
        study.main(
            ["--out", str(out), "--seeds", "0", "--variants", "matched-gca[1]", "--config", str(moved)]
        )
    shutil.rmtree(out, ignore_errors=True)
    for typo, match in (("norm =", "norn"), ("patience =", "patiance")):
        bad = tmp_path / "typo.toml"
        bad.write_text(run_file.read_text().replace(typo, typo.replace(typo.split()[0], match)))
        with pytest.raises(SystemExit, match=match):
            study.main(["--out", str(out), "--seeds", "0", "--config", str(bad), "--dry-run"])
    svd = tmp_path / "svd.toml"
    svd.write_text('model = "svd"\ndata = "ml-100k"\n')
    with pytest.raises(SystemExit, match="the study runs sasrec and gca"):
        study.main(["--out", str(out), "--config", str(svd)])
    assert not out.exists()


def _rec(variant: str, seed: int, a: float, b: float, va: float = 0.0, vb: float = 0.0) -> dict[str, Any]:
    family = "matched" if variant.startswith("matched") else variant.split("[")[0].split("-")[0]
    return {
        "variant": variant,
        "family": family,
        "seed": seed,
        "test": {"A": {"ndcg@10": a}, "B": {"ndcg@10": b}},
        "valid": {"A": {"ndcg@10": va}, "B": {"ndcg@10": vb}},
    }


def test_module_count_and_the_baseline_of_each_variant() -> None:
    assert rep.module_count("gca[0,1]-tanh-ln") == 2 and rep.module_count("matched-gca[1]") == 1
    assert rep.module_count("gca[2]-sigmoid-noln") == 1 and rep.module_count("sasrec-mixed") is None
    names = ["matched-gca[1]", "matched-gca[0,1]", "gca[0]-tanh-ln", "sasrec-A"]
    assert rep.baseline_of("gca[0]-tanh-ln", names) == "matched-gca[1]"  # one module, whatever its position
    assert rep.baseline_of("gca[0,1]-sigmoid-noln", names) == "matched-gca[0,1]"
    assert rep.baseline_of("gca[0,1,2]-sigmoid-ln", names) is None  # no 3-module baseline ran
    assert rep.baseline_of("matched-gca[1]", names) is None and rep.baseline_of("sasrec-A", names) is None


def test_a_baseline_of_other_settings_is_never_paired() -> None:
    """An imported run's settings tail (``" [cap 25]"``) must match: a capped gca run against an uncapped baseline
    would compare two trainings, not two models; the per-seed tables follow the same rule."""
    names = ["matched-gca[1]", "matched-gca[1] [cap 25]", "gca[1]-sigmoid-ln [cap 25]", "gca[0]-tanh-ln"]
    assert rep.run_tail("gca[1]-sigmoid-ln [cap 25]") == " [cap 25]" and rep.run_tail("gca[0]-tanh-ln") == ""
    assert rep.baseline_of("gca[1]-sigmoid-ln [cap 25]", names) == "matched-gca[1] [cap 25]"
    assert rep.baseline_of("gca[0]-tanh-ln", names) == "matched-gca[1]"
    assert rep.baseline_of("gca[0]-tanh-ln [cap 25]", ["matched-gca[1]"]) is None
    recs = [{"variant": n, "seed": 0} for n in names]
    assert rep.matched_pairs(recs) == [("gca[1]-sigmoid-ln [cap 25]", "matched-gca[1] [cap 25]")]


def test_matched_summary_counts_seeds_ahead_on_every_domain_and_pairs_by_seed() -> None:
    recs = [
        _rec("matched-gca[1]", 0, 0.10, 0.10),
        _rec("matched-gca[1]", 1, 0.10, 0.10),
        _rec("matched-gca[1]", 2, 0.10, 0.10),
        # ahead on both domains in seeds 0 and 1, behind on B in seed 2: 2 of 3 -> "most"
        _rec("gca[0]-sigmoid-ln", 0, 0.12, 0.11),
        _rec("gca[0]-sigmoid-ln", 1, 0.11, 0.13),
        _rec("gca[0]-sigmoid-ln", 2, 0.13, 0.09),
        # ahead on A every seed, on B in seed 0 only: 1 of 3 on both
        _rec("gca[1]-tanh-ln", 0, 0.12, 0.11),
        _rec("gca[1]-tanh-ln", 1, 0.11, 0.09),
        _rec("gca[1]-tanh-ln", 2, 0.13, 0.08),
        _rec("gca[1]-tanh-ln", 7, 0.90, 0.90),  # a seed the baseline lacks: not compared
        _rec("gca[0,1]-sigmoid-ln", 0, 0.5, 0.5),  # no two-module baseline: not compared
    ]
    recs = recs[::-1]  # pairing is by seed, not by the order of the records
    table, most, compared = rep.matched_summary(recs)
    assert (most, compared) == (1, 2)
    from scipy import stats

    p = stats.ttest_rel([0.11, 0.13, 0.09], [0.10, 0.10, 0.10]).pvalue  # B of gca[0]: paired, two-sided
    assert f"| 2 of 3, +0.0100, p {p:.2g} |" in table
    assert "| gca[0]-sigmoid-ln | matched-gca[1] | 0,1,2 | 2 of 3 | 3 of 3, +0.0200, p " in table
    assert "| 2 of 3, +0.0100, p " in table  # B of gca[0]: +0.01, +0.03, -0.01
    assert "| gca[1]-tanh-ln | matched-gca[1] | 0,1,2 | 1 of 3 | 3 of 3, +0.0200," in table
    assert "| 1 of 3, -0.0067, p " in table  # B of gca[1]: +0.01, -0.01, -0.02
    assert "gca[0,1]" not in table
    # "most" is a strict majority: ahead on both domains in 1 of 2 seeds is not most; a seed the baseline lacks a
    # domain for counts as not ahead there, and that domain's cell pairs only the seeds it has
    two = [_rec("matched-gca[1]", 0, 0.1, 0.1), _rec("matched-gca[1]", 1, 0.1, 0.1)]
    two += [_rec("gca[1]-tanh-ln", 0, 0.2, 0.2), _rec("gca[1]-tanh-ln", 1, 0.0, 0.0)]
    assert rep.matched_summary(two)[1:] == (0, 1)
    del two[1]["test"]["B"]
    table, most, _ = rep.matched_summary([*two, {**_rec("matched-gca[1]", 0, 0, 0), "seed": None}])
    assert (
        "| gca[1]-tanh-ln | matched-gca[1] | 0,1 | 1 of 2 | 1 of 2, +0.0000, p 1 | 1 of 1, +0.1000, p nan |"
        in table
    )


def test_best_by_validation_ranks_on_the_mean_of_the_domains_then_of_the_seeds() -> None:
    recs = [
        _rec("sasrec-mixed", 0, 0.9, 0.9, va=0.20, vb=0.10),  # 0.15
        _rec("sasrec-mixed", 1, 0.9, 0.9, va=0.20, vb=0.12),  # 0.16 -> 0.155
        _rec("gca[0]-sigmoid-ln", 0, 0.1, 0.1, va=0.18, vb=0.14),  # 0.16
        {
            "variant": "sasrec-A",
            "family": "sasrec",
            "seed": 0,
            "test": {"A": {}},
            "valid": {"A": {"ndcg@10": 0.9}},
        },
    ]
    # a record without the metric for a domain is left out (no KeyError)
    recs.append({**_rec("gca[1]-tanh-ln", 0, 0.1, 0.1), "valid": {"A": {"ndcg@10": 0.9}, "B": {}}})
    ranked = rep.best_by_validation(recs)
    assert [v for v, _, _ in ranked] == [
        "gca[0]-sigmoid-ln",
        "sasrec-mixed",
    ]  # one-domain sasrec-A is left out
    assert ranked[1][1] == pytest.approx(0.155) and ranked[1][2] == 2


def test_import_table_keys_rows_as_runs_of_the_command_so_resuming_skips_them(
    tmp_path: Path, capsys: Any
) -> None:
    """Runs kept only as a published table join the study as runs of the command's settings: the same run key the
    command gives them (a resumed study does not run them again), the cells as record fields, an empty cell left
    out; a bad cell, an unknown variant or a repeated run is refused naming its line."""
    run_file = Path(__file__).parents[1] / "benchmarks" / "configs" / "cdsr" / "gca-recbole.toml"
    out = tmp_path / "s"
    cmd = ["--config", str(run_file), "--set", 'loss="sampled_softmax"', "--out", str(out), "--seeds", "0,1"]
    cmd += ["--variants", "gca[0]-sigmoid-ln,sasrec-A"]
    head = "variant,seed,n_params,valid/A/ndcg@10,valid/B/ndcg@10,test/A/ndcg@10,test/B/ndcg@10,cos/A,cos/B,"
    head += "s_per_epoch,source\n"
    table = tmp_path / "runs.csv"
    table.write_text(
        head
        + 'gca[0]-sigmoid-ln,1,"1,993,218",0.1834,0.1147,0.1587,0.1007,0.180,0.135,14.4,BENCHMARKS s24\n'
        + "sasrec-A,0,1851904,0.1629,–,0.1478,,,,3.9,\n"
    )
    study.main([*cmd, "--import-table", str(table), "--dry-run"])  # a preview: nothing written
    assert "2 runs would be added" in capsys.readouterr().out and not (out / "results.jsonl").exists()
    study.main([*cmd, "--import-table", str(table), "--report"])
    assert "## Best by validation" in (out / "report.md").read_text()
    recs = rep.read_jsonl(out / "results.jsonl")
    by = {(r["variant"], r["seed"]): r for r in recs}
    g, s = by[("gca[0]-sigmoid-ln", 1)], by[("sasrec-A", 0)]
    assert g["n_params"] == 1993218 and g["test"] == {"A": {"ndcg@10": 0.1587}, "B": {"ndcg@10": 0.1007}}
    assert g["cos"] == {"A": 0.180, "B": 0.135} and g["family"] == "gca" and g["source"] == "BENCHMARKS s24"
    assert (
        s["test"] == {"A": {"ndcg@10": 0.1478}}
        and s["valid"] == {"A": {"ndcg@10": 0.1629}}
        and s["cos"] == {}
    )
    assert s["source"] == str(table)
    capsys.readouterr()
    study.main([*cmd, "--dry-run"])  # the two imported runs are done; the other two are not
    text = capsys.readouterr().out
    assert "4 runs, 2 to do" in text
    assert "gca[0]-sigmoid-ln seed 0" in text and "sasrec-A seed 1" in text
    study.main([*cmd, "--import-table", str(table)])  # once each
    assert len(rep.read_jsonl(out / "results.jsonl")) == 2
    with pytest.raises(SystemExit, match="--import-table .*nope.csv: no such file"):
        study.main([*cmd, "--import-table", str(tmp_path / "nope.csv")])
    for body, match in (
        ("gca[0]-sigmoid-ln,0,x1,,,,,,,,\n", r"line 2, column 'n_params': not a number"),
        ("sasrec-B,0,1,,,,,,,,\n", r"line 2: variant 'sasrec-B' is not one"),
        ("sasrec-A,1,1,,,,,,,,\nsasrec-A,1,1,,,,,,,,\n", r"line 3: sasrec-A seed 1 is listed twice"),
    ):
        table.write_text(head + body)
        with pytest.raises(SystemExit, match=match):
            study.main([*cmd, "--import-table", str(table)])


def test_the_transcribed_runs_are_the_published_ones() -> None:
    """benchmarks/cdsr_results/recbole_backbone_sampled/runs_transcribed.csv parses into the 31 runs BENCHMARKS.md
    published (25 of the grid, 6 of the s24 probe), and the report's read-outs over them are the published ones."""
    path = BENCH_DIR / "cdsr_results" / "recbole_backbone_sampled" / "runs_transcribed.csv"
    variants = [*study.grid(2), study.Variant("matched-gca[1]", "matched", "gca", {"positions": []})]
    recs = study.table_records(path, variants, {"n_blocks": 2}, {"epochs": 80}, "abxi-food-kitchen")
    assert len(recs) == 31 and len({r["key"] for r in recs}) == 31
    by = {(r["variant"], r["seed"]): r for r in recs}
    assert by[("gca[0]-sigmoid-ln", 1)]["test"]["A"] == {"ndcg@10": 0.1587, "hr@10": 0.2637, "auc": 0.6898}
    assert by[("sasrec-B", 2)]["test"] == {"B": {"ndcg@10": 0.0889, "hr@10": 0.1602, "mrr": 0.0767}}
    assert by[("gca[1]-sigmoid-noln", 2)]["cos"] == {"A": 0.235, "B": 0.188}
    assert by[("gca[0,1]-sigmoid-ln", 0)]["n_params"] == 2027012
    table, most, compared = rep.matched_summary(recs)
    assert (most, compared) == (0, 6)  # BENCHMARKS.md: every 3-seed variant ahead on both domains in 1 of 3
    assert "| gca[0]-sigmoid-ln | matched-gca[1] | 0,1,2 | 1 of 3 | 2 of 3, +0.0049," in table
    assert rep.best_by_validation(recs)[0][0] == "sasrec-mixed"
