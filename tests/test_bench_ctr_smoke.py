"""Smoke test of benchmarks/bench_ctr.py: the suite's code path on a tiny generated Criteo-format sample, 1 epoch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from attnrec.testing.data import write_criteo_sample
from attnrec.testing.scripts import load_script

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> Any:
    return load_script(BENCH_DIR / f"{name}.py")


@pytest.fixture()
def criteo_dir(tmp_path: Path) -> Path:
    return write_criteo_sample(tmp_path)


def test_suite_runs_every_model_and_writes_the_record(criteo_dir: Path, tmp_path: Path) -> None:
    bench = _load("bench_ctr")
    out = tmp_path / "ctr.json"
    threads = torch.get_num_threads()
    try:
        argv = ["--datasets", "criteo", "--seeds", "0", "--peer", "", "--max-epochs", "1"]
        argv += ["--baseline-max-epochs", "1"]
        bench.main([*argv, "--data-dir", str(criteo_dir), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    record = json.loads(out.read_text())
    assert set(record["results"]) == {f"criteo/attnrec/{m}" for m in bench.MODELS}
    assert len(bench.MODELS) == 9
    for key, r in record["results"].items():
        assert math.isfinite(r["auc_mean"]) and 0.0 <= r["auc_mean"] <= 1.0, key
        assert math.isfinite(r["logloss_mean"]) and r["logloss_mean"] > 0, key
        assert r["auc_std"] == 0.0 and r["epochs_run"] == [1] and r["best_epoch"] == [1], key
        assert r["s_per_epoch"] > 0, key
    assert record["datasets"]["criteo"]["rows"] == {"train": 300, "valid": 80, "test": 80}
    assert record["settings"]["embedding_dim"] == 16 and record["settings"]["batch_size"] == 256
    assert record["machine"]["nproc"] >= 1 and record["versions"]["torch"] == torch.__version__
    assert "--datasets criteo" in record["command"]
    assert record["table"].count("| criteo | attnrec |") == 9


def test_dropout_extend_flag_reaches_the_dropout_grid(
    criteo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load("bench_ctr")
    seen: list[Any] = []
    real = bench.select_dropout

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("extend", args[11] if len(args) > 11 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "select_dropout", spy)
    threads = torch.get_num_threads()
    try:
        argv = ["--datasets", "criteo", "--seeds", "0", "--peer", "", "--max-epochs", "1", "--models", "dcn"]
        grid = ["--dropout-grid", "0,0.1", "--dropout-extend", "0.2,0.4", "--data-dir", str(criteo_dir)]
        record = bench.main([*argv, *grid, "--out", str(tmp_path / "ctr.json")])
    finally:
        torch.set_num_threads(threads)
    assert [list(x) for x in seen] == [[0.2, 0.4]]  # parsed and passed on, once per dataset
    assert "dcn:dropout=0" in record["dropout_grid"]["criteo"]["criteo/attnrec/dcn"]
    assert record["commit"] is None or len(record["commit"].split("+")[0]) == 40


def test_vocabularies_come_from_train_only(criteo_dir: Path) -> None:
    bench = _load("bench_ctr")
    # a token seen only in test must encode as the OOV index 0
    test_file = criteo_dir / "criteo" / "test.csv"
    lines = test_file.read_text().splitlines()
    fields = lines[0].split("\t")
    fields[14] = "ffffeeee"  # C1 of the first test row: never in train
    test_file.write_text("\n".join(["\t".join(fields), *lines[1:]]) + "\n")
    (train, valid, test), info = bench.load_splits("criteo", criteo_dir)
    c1 = [f.name for f in train.schema.categorical].index("C1")
    assert test.categorical[0, c1] == 0
    assert train.schema.field("C1").vocab_size == 5  # 4 train tokens + the OOV row
    assert info["rows"]["test"] == 80


def test_peer_runner_on_identical_inputs(criteo_dir: Path) -> None:
    peer = _load("ctr_deepctr_peer")
    if peer.deepctr_version() is None:
        pytest.skip("deepctr-torch is not installed")
    bench = _load("bench_ctr")
    (train, valid, test), _ = bench.load_splits("criteo", criteo_dir)
    x = peer.model_inputs(train)
    assert list(x) == [f.name for f in train.schema.categorical]
    c1 = [f.name for f in train.schema.categorical].index("C1")
    np.testing.assert_array_equal(x["C1"], train.categorical[:, c1])
    threads = torch.get_num_threads()
    try:
        row = peer.run_peer("deepfm", train, valid, test, seed=0, max_epochs=1)
    finally:
        torch.set_num_threads(threads)
    assert 0.0 <= row["auc"] <= 1.0 and math.isfinite(row["logloss"])
    assert row["epochs_run"] == 1 and row["best_epoch"] == 1


def test_l2_grid_selects_on_validation_and_never_reads_test() -> None:
    bench = _load("bench_ctr")
    train, valid, test = object(), object(), object()
    seen: list[tuple[object, ...]] = []
    # validation logloss per (model, L2): "a" is best at 1e-3, "b" at 0 (ties keep the first, smaller value)
    curve = {
        "a": {0.0: 0.50, 1e-4: 0.48, 1e-3: 0.47, 1e-2: 0.49},
        "b": {0.0: 0.40, 1e-4: 0.40, 1e-3: 0.41, 1e-2: 0.45},
    }

    def job(name: str, splits: tuple[object, ...], seed: int, s: object) -> dict[str, float]:
        seen.append(splits)
        assert seed == 7
        reg = s.embedding_reg  # type: ignore[attr-defined]
        return {"valid_logloss": curve[name][reg], "valid_auc": 0.7, "best_epoch": 2, "epochs_run": 5}

    jobs = [("attnrec", "a", job), ("peer", "b", job)]
    chosen, scores = bench.select_l2(
        "d",
        jobs,
        (train, valid, test),
        [0.0, 1e-4, 1e-3, 1e-2],
        (7,),
        bench.BenchSettings(),
        log=lambda m: None,
    )
    assert chosen == {"d/attnrec/a": 1e-3, "d/peer/b": 0.0}
    assert scores["d/attnrec/a"][repr(1e-3)]["valid_logloss"] == 0.47
    # the test split never reaches a run
    assert len(seen) == 8 and all(s == (train, valid, valid) for s in seen)
    # the peers may have their own grid of the same size (another penalty's scale)
    curve["b"] = {1e-5: 0.43, 1e-4: 0.42, 1e-3: 0.44, 1e-2: 0.45}
    settings = bench.BenchSettings()
    splits = (train, valid, test)
    grid = [0.0, 1e-4, 1e-3, 1e-2]
    chosen, _ = bench.select_l2("d", jobs, splits, grid, (7,), settings, peer_grid=[1e-5, 1e-4, 1e-3, 1e-2])
    assert chosen == {"d/attnrec/a": 1e-3, "d/peer/b": 1e-4}
    with pytest.raises(SystemExit, match="size"):
        bench.select_l2("d", jobs, splits, grid, (7,), settings, peer_grid=[0.0])


def test_reuse_takes_earlier_runs_with_the_same_settings_only(tmp_path: Path) -> None:
    bench = _load("bench_ctr")
    s = bench.BenchSettings()
    run = {"seed": 1, "valid_logloss": 0.42, "auc": 0.7}
    record = {"settings": bench.asdict(s), "results": {"d/attnrec/fm": {"runs": [run]}}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(record))
    cache = bench.load_reuse(
        [path], bench.replace(s, embedding_reg=1e-3)
    )  # the L2 weight keys runs, may differ
    assert set(cache) == {("d/attnrec/fm", 0.0, 1)}

    def fresh(*args: object) -> dict[str, float]:
        return {"valid_logloss": 0.5}

    # reused, with the epoch cap it ran under (its record's; runs before the field do not store it)
    assert bench.cached(cache, "d/attnrec/fm", fresh, "fm", None, 1, s) == {
        **run,
        "max_epochs": 30,
        "reused": True,
    }
    assert bench.cached(cache, "d/attnrec/fm", fresh, "fm", None, 2, s) == {
        "valid_logloss": 0.5
    }  # other seed
    other_l2 = bench.replace(s, embedding_reg=1e-4)
    assert bench.cached(cache, "d/attnrec/fm", fresh, "fm", None, 1, other_l2) == {"valid_logloss": 0.5}
    with pytest.raises(SystemExit, match="patience"):
        bench.load_reuse([path], bench.replace(s, patience=5))


def test_speed_script_times_interleaved_epochs(criteo_dir: Path) -> None:
    speed = _load("ctr_speed")
    threads = torch.get_num_threads()
    try:
        argv = ["--datasets", "criteo", "--pairs", "deepfm", "--libraries", "attnrec", "--rounds", "2"]
        record = speed.main([*argv, "--epochs", "2", "--drop-first", "--data-dir", str(criteo_dir)])
    finally:
        torch.set_num_threads(threads)
    r = record["results"]["criteo"]
    assert set(r) == {"attnrec/deepfm", "ratios"} and r["ratios"] == {}
    # 2 rounds x (2 epochs - the first)
    assert len(r["attnrec/deepfm"]["epochs"]) == 2 and r["attnrec/deepfm"]["median_s"] > 0
    assert record["torch_threads"] == 1 and record["load_average"]["start"]


def test_l2_grid_widens_upward_only_while_its_top_value_wins() -> None:
    bench = _load("bench_ctr")
    ran: list[tuple[str, float]] = []
    # "a" keeps improving up to 0.3 and is worse at 1 (so 3 is never run); "b" is best at 0: no extension;
    # the peer "c" is best at its top but extension is for attnrec jobs only
    curve = {
        "a": {0.0: 0.50, 0.1: 0.48, 0.3: 0.46, 1.0: 0.47, 3.0: 0.40},
        "b": {0.0: 0.40, 0.1: 0.45},
        "c": {0.0: 0.50, 0.1: 0.45},
    }

    def job(name: str, splits: tuple[object, ...], seed: int, s: Any) -> dict[str, float]:
        ran.append((name, s.embedding_reg))
        return {
            "valid_logloss": curve[name][s.embedding_reg],
            "valid_auc": 0.7,
            "best_epoch": 2,
            "epochs_run": 5,
        }

    jobs = [("attnrec", "a", job), ("attnrec", "b", job), ("peer", "c", job)]
    splits = (object(), object(), object())
    chosen, scores = bench.select_l2(
        "d", jobs, splits, [0.0, 0.1], (0,), bench.BenchSettings(), log=lambda m: None, extend=[0.3, 1.0, 3.0]
    )
    assert chosen == {"d/attnrec/a": 0.3, "d/attnrec/b": 0.0, "d/peer/c": 0.1}
    assert [reg for name, reg in ran if name == "a"] == [0.0, 0.1, 0.3, 1.0]
    assert [reg for name, reg in ran if name != "a"] == [0.0, 0.0, 0.1, 0.1]
    assert set(scores["d/attnrec/a"]) == {repr(v) for v in (0.0, 0.1, 0.3, 1.0)}


def test_dropout_spec_sets_each_models_own_dropout_fields() -> None:
    bench = _load("bench_ctr")
    s = bench.BenchSettings()
    assert bench.dropout_spec("deepfm", 0.1, s) is None  # the bench's own setting: the plain model runs it
    assert bench.dropout_spec("deepfm", 0.3, s) == "deepfm:dropout=0.3"
    assert bench.dropout_spec("secn", 0.5, s) is None  # secn's default is 0.5
    assert bench.dropout_spec("secn", 0.0, s) == "secn:dropout=0"
    # NFM: one value sets the MLP's and the bi-interaction's dropout (its default is 0.5 / 0.5)
    assert bench.dropout_spec("nfm", 0.5, s) is None
    assert bench.dropout_spec("nfm", 0.1, s) == "nfm:dropout=0.1:bi_dropout=0.1"
    assert bench.dropout_spec("autoint", 0.3, s) is None and bench.dropout_spec("lr", 0.3, s) is None
    name, overrides = bench.parse_spec(bench.dropout_spec("nfm", 0.3, s))
    model = bench.model_class(name)(**overrides)
    assert (model.config.dropout, model.config.bi_dropout) == (0.3, 0.3)


def test_dropout_grid_chooses_on_validation_at_the_chosen_l2() -> None:
    bench = _load("bench_ctr")
    train, valid, test = object(), object(), object()
    seen: list[tuple[str, float, tuple[object, ...]]] = []
    curve = {"deepfm:dropout=0": 0.47, "deepfm:dropout=0.3": 0.45, "deepfm:dropout=0.5": 0.46}

    def job(spec: str, splits: tuple[object, ...], seed: int, s: Any) -> dict[str, float]:
        seen.append((spec, s.embedding_reg, splits))
        return {"valid_logloss": curve[spec], "valid_auc": 0.7, "best_epoch": 2, "epochs_run": 5}

    jobs = [("attnrec", "deepfm", job), ("attnrec", "lr", job), ("peer", "deepfm", job)]
    l2 = {"d/attnrec/deepfm": 0.1, "d/attnrec/lr": 0.0, "d/peer/deepfm": 1e-4}
    # the plain model's score at its chosen L2 comes from the L2 grid: not rerun
    l2_scores = {"d/attnrec/deepfm": {repr(0.1): {"valid_logloss": 0.455}}}
    out_jobs, out_l2, scores = bench.select_dropout(
        "d",
        jobs,
        (train, valid, test),
        [0.0, 0.1, 0.3, 0.5],
        bench.dropout_spec,
        l2,
        l2_scores,
        (0,),
        bench.BenchSettings(),
        log=lambda m: None,
    )
    assert [(lib, spec) for lib, spec, _ in out_jobs] == [
        ("attnrec", "deepfm:dropout=0.3"),
        ("attnrec", "lr"),
        ("peer", "deepfm"),
    ]
    assert out_l2 == {"d/attnrec/deepfm:dropout=0.3": 0.1, "d/attnrec/lr": 0.0, "d/peer/deepfm": 1e-4}
    assert sorted(scores["d/attnrec/deepfm"]) == [
        "deepfm",
        "deepfm:dropout=0",
        "deepfm:dropout=0.3",
        "deepfm:dropout=0.5",
    ]
    assert [spec for spec, _, _ in seen] == ["deepfm:dropout=0", "deepfm:dropout=0.3", "deepfm:dropout=0.5"]
    assert all(reg == 0.1 and splits == (train, valid, valid) for _, reg, splits in seen)


def test_dropout_extend_widens_the_grid_only_while_its_top_wins() -> None:
    bench = _load("bench_ctr")
    seen: list[tuple[str, int]] = []
    # mean validation logloss over grid seeds 0 and 1 (seed 1 adds 0.02 everywhere, so the ranking is the mean's).
    # deepfm: the grid's top 0.5 wins, so 0.7 is tried and wins, so 0.8 is tried and loses: 0.9 must not run.
    # afm: 0.3 wins inside the grid, so nothing is extended. nfm: its own setting is the grid's top (0.5, spec
    # "nfm") and wins, so 0.7 runs (and loses).
    curve = {
        "deepfm:dropout=0": 0.47,
        "deepfm:dropout=0.3": 0.46,
        "deepfm:dropout=0.5": 0.45,
        "deepfm:dropout=0.7": 0.44,
        "deepfm:dropout=0.8": 0.445,
        "afm:dropout=0.3": 0.43,
        "afm:dropout=0.5": 0.44,
        "nfm:dropout=0:bi_dropout=0": 0.50,
        "nfm:dropout=0.3:bi_dropout=0.3": 0.49,
        "nfm:dropout=0.7:bi_dropout=0.7": 0.49,
    }

    def job(spec: str, splits: tuple[object, ...], seed: int, s: Any) -> dict[str, float]:
        seen.append((spec, seed))
        return {
            "valid_logloss": curve[spec] + 0.02 * seed,
            "valid_auc": 0.7,
            "best_epoch": 2,
            "epochs_run": 5,
        }

    jobs = [("attnrec", m, job) for m in ("deepfm", "afm", "nfm")]
    l2 = {f"d/attnrec/{m}": 0.0 for m in ("deepfm", "afm", "nfm")}
    own = {"valid_logloss": 0.48, "valid_auc": 0.7, "best_epoch": 2, "epochs_run": 5}
    l2_scores = {"d/attnrec/deepfm": {repr(0.0): own}, "d/attnrec/afm": {repr(0.0): own}}
    l2_scores["d/attnrec/nfm"] = {repr(0.0): {**own, "valid_logloss": 0.48}}
    out_jobs, _, scores = bench.select_dropout(
        "d",
        jobs,
        (object(), object(), object()),
        [0.0, 0.3, 0.5],
        bench.dropout_spec,
        l2,
        l2_scores,
        (0, 1),
        bench.BenchSettings(),
        log=lambda m: None,
        extend=[0.7, 0.8, 0.9],
    )
    assert [spec for _, spec, _ in out_jobs] == ["deepfm:dropout=0.7", "afm:dropout=0.3", "nfm"]
    assert list(scores["d/attnrec/deepfm"])[-2:] == ["deepfm:dropout=0.7", "deepfm:dropout=0.8"]
    assert scores["d/attnrec/deepfm"]["deepfm:dropout=0.7"]["valid_logloss"] == pytest.approx(0.45)
    ran = {spec for spec, _ in seen}
    assert "deepfm:dropout=0.9" not in ran and not any(x.startswith("afm:dropout=0.7") for x in ran)
    assert "nfm:dropout=0.7:bi_dropout=0.7" in ran and "nfm:dropout=0.8:bi_dropout=0.8" not in ran
    assert sorted(seed for spec, seed in seen if spec == "deepfm:dropout=0.8") == [0, 1]  # both grid seeds


def test_grid_scores_of_an_earlier_record_are_reused_by_the_grid(tmp_path: Path) -> None:
    bench = _load("bench_ctr")
    s = bench.BenchSettings()
    row = {"valid_logloss": 0.44, "valid_auc": 0.7, "best_epoch": 2, "epochs_run": 5}
    record = {
        "settings": bench.asdict(s),
        "results": {},
        "grid_seed": 3,
        "l2_grid": {"d": {"d/attnrec/fm": {repr(0.1): row}}},
        "dropout_grid": {
            "d": {
                "d/attnrec/nfm": {
                    "nfm:dropout=0.3": {**row, "embedding_reg": 0.01, "spec_key": "d/attnrec/nfm:dropout=0.3"}
                }
            }
        },
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(record))
    cache = bench.load_grid_scores([path], s)
    assert set(cache) == {("d/attnrec/fm", 0.1, 3), ("d/attnrec/nfm:dropout=0.3", 0.01, 3)}
    assert (
        bench.load_reuse([path], s) == {}
    )  # grid runs never stand in for a seed's run (they hold no test score)


def test_reuse_refuses_records_from_before_the_model_defaults_changed(tmp_path: Path) -> None:
    bench = _load("bench_ctr")
    s = bench.BenchSettings()
    # a record from before the stamp
    old = {k: v for k, v in bench.asdict(s).items() if k != "model_defaults"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"settings": old, "results": {}}))
    with pytest.raises(SystemExit, match="model_defaults"):
        bench.load_reuse([path], s)


def test_model_defaults_stamp_follows_every_ctr_models_default_config(tmp_path: Path) -> None:
    bench = _load("bench_ctr")
    full = {m: bench.model_class(m).config_class().to_dict() for m in bench.MODELS}
    defaults = {m: bench.stamp_view(c, m) for m, c in full.items()}
    stamp = bench.model_defaults_stamp(defaults)
    assert bench.BenchSettings().model_defaults == stamp and len(stamp) == 12
    # dcn's and secn's use_linear (added later) at its neutral False is left out, autoint's (there from the start)
    # is not: the stamp of the session-19/20 records (da492432d314) still matches
    assert "use_linear" not in defaults["dcn"] and "use_linear" not in defaults["secn"]
    assert defaults["autoint"]["use_linear"] is False and stamp == "da492432d314"
    on = {**full, "dcn": {**full["dcn"], "use_linear": True}}
    assert bench.model_defaults_stamp({m: bench.stamp_view(c, m) for m, c in on.items()}) != stamp
    # linear_reg at its neutral None (the behaviour before it existed) is left out: records stamped before it
    # stay comparable; a non-neutral default would change the stamp
    assert full["fm"]["linear_reg"] is None and "linear_reg" not in defaults["fm"]
    lin = {**full, "fm": {**full["fm"], "linear_reg": 0.0}}
    assert bench.model_defaults_stamp({m: bench.stamp_view(c, m) for m, c in lin.items()}) != stamp
    assert defaults["nfm"]["dropout"] == 0.5 and defaults["secn"]["dropout"] == 0.5
    # NFM's old dropout default, or a new field on any model, gives another stamp
    old_nfm = {**defaults, "nfm": {**defaults["nfm"], "dropout": 0.1}}
    assert bench.model_defaults_stamp(old_nfm) != stamp
    assert bench.model_defaults_stamp({**defaults, "fm": {**defaults["fm"], "new": 1}}) != stamp
    # --reuse refuses a record stamped with other defaults (the hand-bumped date of the first stamp)
    path = tmp_path / "dated.json"
    path.write_text(json.dumps({"settings": bench.asdict(bench.BenchSettings(model_defaults="2026-12-06"))}))
    with pytest.raises(SystemExit, match=r"dated\.json.*\['model_defaults'\]"):
        bench.load_reuse([path], bench.BenchSettings())


def test_grid_never_chooses_a_nan_validation_logloss() -> None:
    bench = _load("bench_ctr")
    train, valid = object(), object()
    # the first grid value diverged (NaN): min() over raw floats would keep it
    curve = {0.0: float("nan"), 1e-2: 0.47, 1e-1: 0.45}

    def job(name: str, splits: tuple[object, ...], seed: int, s: object) -> dict[str, float]:
        reg = s.embedding_reg  # type: ignore[attr-defined]
        return {"valid_logloss": curve[reg], "valid_auc": 0.7, "best_epoch": 1, "epochs_run": 1}

    jobs = [("attnrec", "a", job)]
    settings = bench.BenchSettings()
    grid = [0.0, 1e-2, 1e-1]
    chosen, _ = bench.select_l2("d", jobs, (train, valid, None), grid, (0,), settings, log=lambda m: None)
    assert chosen == {"d/attnrec/a": 0.1}
    curve.update({1e-2: float("nan"), 1e-1: float("nan")})
    chosen, _ = bench.select_l2("d", jobs, (train, valid, None), grid, (0,), settings, log=lambda m: None)
    assert chosen == {"d/attnrec/a": 0.0}  # all diverged: the first, and its NaN shows in the scores


def test_grids_rank_each_point_by_its_mean_validation_logloss_over_the_grid_seeds() -> None:
    bench = _load("bench_ctr")
    train, valid, test = object(), object(), object()
    seen: list[tuple[float, int, tuple[object, ...]]] = []
    # validation logloss per (L2, seed): seed 0 alone would choose 0.0 (0.40); the mean over seeds 0 and 1 is
    # 0.45 at 0.0, 0.43 at 0.01 and NaN at 0.1 (seed 1 diverged there; seed 0's 0.30 must not win it)
    curve = {
        (0.0, 0): 0.40,
        (0.0, 1): 0.50,
        (0.01, 0): 0.42,
        (0.01, 1): 0.44,
        (0.1, 0): 0.30,
        (0.1, 1): float("nan"),
    }

    def job(name: str, splits: tuple[object, ...], seed: int, s: Any) -> dict[str, float]:
        seen.append((s.embedding_reg, seed, splits))
        return {
            "valid_logloss": curve[(s.embedding_reg, seed)],
            "valid_auc": 0.7,
            "best_epoch": 2,
            "epochs_run": 5,
        }

    jobs = [("attnrec", "a", job)]
    settings = bench.BenchSettings()
    splits = (train, valid, test)
    one, _ = bench.select_l2("d", jobs, splits, [0.0, 0.01, 0.1], (0,), settings, log=lambda m: None)
    assert one == {"d/attnrec/a": 0.1}  # the one-seed case, as before: seed 0's lowest
    seen.clear()
    chosen, scores = bench.select_l2(
        "d", jobs, splits, [0.0, 0.01, 0.1], (0, 1), settings, log=lambda m: None
    )
    assert chosen == {"d/attnrec/a": 0.01}
    point = scores["d/attnrec/a"][repr(0.01)]
    assert point["valid_logloss"] == pytest.approx(0.43) and point["grid_seeds"] == [0, 1]
    assert point["epochs_run"] == [5, 5] and set(point["by_seed"]) == {"0", "1"}
    assert point["by_seed"]["1"]["valid_logloss"] == 0.44
    assert math.isnan(scores["d/attnrec/a"][repr(0.1)]["valid_logloss"])
    assert sorted((reg, seed) for reg, seed, _ in seen) == sorted(curve)  # each point at each seed, once
    assert all(sp == (train, valid, valid) for _, _, sp in seen)  # test never read
    # the dropout grid ranks by the same mean: at L2 0.01, dropout 0.3 is worse on seed 0 but better on the mean
    drop = {("deepfm:dropout=0", 0): 0.41, ("deepfm:dropout=0", 1): 0.47, ("deepfm:dropout=0.3", 0): 0.43}
    drop[("deepfm:dropout=0.3", 1)] = 0.42

    def djob(spec: str, splits: tuple[object, ...], seed: int, s: Any) -> dict[str, float]:
        assert s.embedding_reg == 0.01 and splits == (train, valid, valid)
        return {"valid_logloss": drop[(spec, seed)], "valid_auc": 0.7, "best_epoch": 2, "epochs_run": 5}

    own = {
        "valid_logloss": 0.44,
        "valid_auc": 0.7,
        "best_epoch": 2,
        "epochs_run": 5,
    }  # deepfm's own, from the L2 grid
    out_jobs, _, dscores = bench.select_dropout(
        "d",
        [("attnrec", "deepfm", djob)],
        splits,
        [0.0, 0.3],
        bench.dropout_spec,
        {"d/attnrec/deepfm": 0.01},
        {"d/attnrec/deepfm": {repr(0.01): own}},
        (0, 1),
        settings,
        log=lambda m: None,
    )
    assert [spec for _, spec, _ in out_jobs] == ["deepfm:dropout=0.3"]
    assert dscores["d/attnrec/deepfm"]["deepfm:dropout=0"]["valid_logloss"] == pytest.approx(0.44)


def test_grid_seeds_are_recorded_and_reused_by_seed(criteo_dir: Path, tmp_path: Path) -> None:
    bench = _load("bench_ctr")
    out = tmp_path / "ctr.json"
    threads = torch.get_num_threads()
    argv = ["--datasets", "criteo", "--seeds", "0", "--peer", "", "--max-epochs", "1", "--models", "lr,afm"]
    argv += ["--baseline-max-epochs", "1", "--l2-grid", "0,0.1", "--dropout-grid", "0,0.3"]
    argv += ["--data-dir", str(criteo_dir)]
    try:
        record = bench.main([*argv, "--grid-seeds", "0,1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert record["grid_seeds"] == [0, 1] and "grid_seed" not in record
    point = record["l2_grid"]["criteo"]["criteo/attnrec/lr"][repr(0.1)]
    runs = [point["by_seed"][x]["valid_logloss"] for x in ("0", "1")]
    assert point["valid_logloss"] == pytest.approx(sum(runs) / 2)
    assert runs[0] != runs[1]  # else taking seed 1's run below could not be told from taking seed 0's
    # reused, every grid run is keyed by its own seed; a one-seed rerun at seed 1 takes seed 1's runs, not seed 0's
    cache = bench.load_grid_scores([out], bench.BenchSettings(max_epochs=1))
    assert cache[("criteo/attnrec/lr", 0.1, 1)]["valid_logloss"] == runs[1]
    afm = record["dropout_grid"]["criteo"]["criteo/attnrec/afm"]["afm:dropout=0.3"]
    assert {k[2] for k in cache} == {0, 1}
    # the reused grid run carries the epoch cap it ran under (the record's)
    expected = {"max_epochs": 1, **afm["by_seed"]["1"]}
    assert cache[("criteo/attnrec/afm:dropout=0.3", afm["embedding_reg"], 1)] == expected
    try:
        again = bench.main([*argv, "--grid-seed", "1", "--reuse", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert again["grid_seeds"] == [1] and again["grid_seed"] == 1
    one = again["l2_grid"]["criteo"]["criteo/attnrec/lr"][repr(0.1)]
    assert one["valid_logloss"] == runs[1] and one["by_seed"]["1"]["reused"] is True


def test_options_the_record_would_misstate_are_refused_before_any_fit(tmp_path: Path) -> None:
    bench = _load("bench_ctr")
    # movielens is always a random split: "resplit: true" in its record would claim a redraw that never ran
    with pytest.raises(SystemExit, match="--resplit is for criteo/avazu only"):
        bench.load_splits("movielens", tmp_path, split_seed=7, resplit=True)
    argv = ["--peer", "", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x.json")]
    with pytest.raises(SystemExit, match="--resplit is for criteo/avazu only"):
        bench.main([*argv, "--datasets", "criteo,movielens", "--resplit"])
    # a repeated grid seed would be recorded twice while the mean runs over one run
    with pytest.raises(SystemExit, match=r"--grid-seeds 0,1,0: seed\(s\) \[0\] given more than once"):
        bench.main([*argv, "--datasets", "criteo", "--grid-seeds", "0,1,0"])
    with pytest.raises(SystemExit, match="give --grid-seed or --grid-seeds, not both"):
        bench.main([*argv, "--datasets", "criteo", "--grid-seed", "1", "--grid-seeds", "0,1"])
    assert bench.check_grid_seeds([2, 0]) == (2, 0) and bench.check_grid_seeds([3]) == (3,)
    with pytest.raises(SystemExit, match="at least one grid seed"):
        bench.check_grid_seeds([])
    assert not (tmp_path / "x.json").exists()


def test_resplit_redraws_the_samples_rows_into_parts_of_the_same_sizes(
    criteo_dir: Path, tmp_path: Path
) -> None:
    bench = _load("bench_ctr")
    files, _ = bench.load_splits("criteo", criteo_dir)
    drawn, info = bench.load_splits("criteo", criteo_dir, split_seed=7, resplit=True)
    again, _ = bench.load_splits("criteo", criteo_dir, split_seed=7, resplit=True)
    other, _ = bench.load_splits("criteo", criteo_dir, split_seed=8, resplit=True)
    assert [len(d) for d in drawn] == [len(d) for d in files] == [300, 80, 80]
    assert info["source"]["redrawn"].startswith("pooled, shuffled with seed 7")
    # through the encoder: the label count is kept (the rows themselves: test_redraw_is_a_seeded_permutation...)
    assert sum(float(d.labels.sum()) for d in drawn) == sum(float(d.labels.sum()) for d in files)
    np.testing.assert_array_equal(drawn[2].labels, again[2].labels)
    assert not np.array_equal(drawn[2].labels, files[2].labels)
    assert not np.array_equal(drawn[2].labels, other[2].labels)
    # records from before the setting ran the files' split: --reuse takes them unless this run redraws
    s = bench.BenchSettings()
    old = {k: v for k, v in bench.asdict(s).items() if k != "resplit"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"settings": old, "results": {}}))
    assert bench.load_reuse([path], s) == {}
    with pytest.raises(SystemExit, match=r"old\.json.*\['resplit'\]"):
        bench.load_reuse([path], bench.replace(s, resplit=True))


def test_redraw_is_a_seeded_permutation_of_the_pooled_rows() -> None:
    import polars as pl

    bench = _load("bench_ctr")
    # rows told apart by id, so a dropped or duplicated row shows (a label count would not)
    sizes = (12, 5, 4)
    frames = [
        pl.DataFrame({"id": range(a, a + n), "label": [i % 2 for i in range(n)]})
        for a, n in zip((0, 12, 17), sizes, strict=True)
    ]
    drawn = bench.redraw(frames, 7)
    assert [f.height for f in drawn] == list(sizes)
    ids = [f["id"].to_list() for f in drawn]
    assert sorted(sum(ids, [])) == list(range(21))  # every row exactly once
    # the exact draw: the pooled rows taken in NumPy's permutation for the seed, cut at the files' sizes
    order = np.random.default_rng(7).permutation(21).tolist()
    assert ids == [order[:12], order[12:17], order[17:]]
    assert all(f.columns == ["id", "label"] for f in drawn)
    assert [f["id"].to_list() for f in bench.redraw(frames, 7)] == ids
    assert [f["id"].to_list() for f in bench.redraw(frames, 8)] != ids


def test_warm_start_flags_reach_every_fit_and_the_record(
    criteo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load("bench_ctr")
    seen: dict[str, dict[str, Any]] = {}
    real = bench.fit_attnrec

    def spy(spec: str, splits: Any, seed: int, s: Any) -> Any:
        model, report = real(spec, splits, seed, s)
        seen[spec] = {"config": model.config, "history": report.history, "best": report.best_epoch}
        return model, report

    monkeypatch.setattr(bench, "fit_attnrec", spy)
    threads = torch.get_num_threads()
    try:
        argv = ["--datasets", "criteo", "--seeds", "0", "--peer", "", "--max-epochs", "1"]
        flags = ["--models", "lr,fm", "--linear-reg", "0", "--linear-init", "lr", "--validate-start"]
        flags += ["--baseline-max-epochs", "1"]
        record = bench.main(
            [*argv, *flags, "--data-dir", str(criteo_dir), "--out", str(tmp_path / "ctr.json")]
        )
    finally:
        torch.set_num_threads(threads)
    assert record["settings"]["linear_init"] == "lr" and record["settings"]["validate_start"] is True
    assert record["settings"]["linear_reg"] == 0.0
    # fm starts from an LR at its own first-order L2; LR, the baseline, keeps the plain start and its shared L2
    assert seen["fm"]["config"].linear_init == "lr" and seen["fm"]["config"].linear_reg == 0.0
    assert seen["lr"]["config"].linear_init == "zero" and seen["lr"]["config"].linear_reg is None
    for spec in ("lr", "fm"):  # epoch 0 validated before the one trained epoch
        assert [h["epoch"] for h in seen[spec]["history"]] == [0, 1], spec
        assert record["results"][f"criteo/attnrec/{spec}"]["best_epoch"] == [seen[spec]["best"]], spec


def test_the_lr_baseline_has_its_own_epoch_cap_recorded_and_marked(
    criteo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load("bench_ctr")
    threads = torch.get_num_threads()
    argv = ["--datasets", "criteo", "--seeds", "0", "--peer", "", "--models", "lr,fm", "--max-epochs", "1"]
    try:
        # patience 3 cannot stop a run before epoch 4, so a cap of 3 is reached: LR trains 3 epochs, FM 1
        argv += ["--baseline-max-epochs", "3", "--data-dir", str(criteo_dir)]
        record = bench.main([*argv, "--out", str(tmp_path / "c.json")])
    finally:
        torch.set_num_threads(threads)
    lr, fm = record["results"]["criteo/attnrec/lr"], record["results"]["criteo/attnrec/fm"]
    assert record["settings"]["max_epochs"] == 1 and record["settings"]["baseline_max_epochs"] == 3
    assert lr["epochs_run"] == [3] and lr["max_epochs"] == [3] and lr["runs"][0]["max_epochs"] == 3
    assert fm["epochs_run"] == [1] and fm["max_epochs"] == [1]
    assert lr["at_cap"] == 1 and fm["at_cap"] == 1
    assert "| 3† (" in record["table"] and "| 1† (" in record["table"]
    assert "criteo/attnrec/lr (cap 3), criteo/attnrec/fm (cap 1)" in record["table"]
    assert "criteo/attnrec/lr seed 0 trained to its cap of 3 epochs" in capsys.readouterr().out
    # the default: LR gets BASELINE_MAX_EPOCHS, every other model and the peers --max-epochs
    s = bench.BenchSettings(baseline_max_epochs=bench.BASELINE_MAX_EPOCHS)
    assert bench.epoch_cap("lr", s) == 200 and bench.epoch_cap("fm", s) == 30
    assert bench.epoch_cap("deepfm", s, "deepctr-torch") == 30
    # a cap equal to --max-epochs is the old single cap, stored as None like a record's from before the option
    assert bench.BenchSettings(baseline_max_epochs=30).baseline_max_epochs is None
    with pytest.raises(SystemExit, match="baseline_max_epochs"):
        bench.BenchSettings(baseline_max_epochs=0)
    # --reuse under another LR cap: the record matches, its other models are reused, its LR runs are not — also
    # in a record from before runs stored their cap (the record's settings give it)
    path = tmp_path / "c.json"
    old = json.loads(path.read_text())
    for r in old["results"].values():
        for run in r["runs"]:
            del run["max_epochs"]
    path.write_text(json.dumps(old))
    other = bench.BenchSettings(max_epochs=1, baseline_max_epochs=5)
    cache = bench.load_reuse([path], other)

    def refit(*args: Any) -> dict[str, Any]:
        return {"refit": True}

    assert bench.cached(cache, "criteo/attnrec/lr", refit, "lr", None, 0, other) == {"refit": True}
    assert bench.cached(cache, "criteo/attnrec/fm", refit, "fm", None, 0, other)["reused"] is True
    same = bench.BenchSettings(max_epochs=1, baseline_max_epochs=3)
    assert bench.cached(bench.load_reuse([path], same), "criteo/attnrec/lr", refit, "lr", None, 0, same)[
        "reused"
    ]
