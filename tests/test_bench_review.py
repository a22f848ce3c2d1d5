"""bench_review's request building: trainer settings in a row's fixed settings or grid reach the Trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnrec.testing.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_review.py"


def test_grid_point_splits_into_model_and_trainer_settings() -> None:
    bench = load_script(BENCH)
    req = bench.model_request("safmr_tuned", {"lr": 0.002, "dropout": 0.7}, {})
    assert req == {"model": "safmr", "params": {"loss": "l2", "dropout": 0.7}, "trainer": {"lr": 0.002}}


def test_table3_row_runs_every_epoch() -> None:
    bench = load_script(BENCH)
    req = bench.model_request("safmr_table3", {}, {})
    assert req == {"model": "safmr", "params": {}, "trainer": {"patience": None}}


def test_rows_without_trainer_settings_send_none() -> None:
    bench = load_script(BENCH)
    assert bench.model_request("deepconn", {}, {}) == {"model": "deepconn", "params": {}}
    req = bench.model_request("hybrid_csa", {}, {"svd": {"reg": 0.6}})
    assert req["params"]["svd_reg"] == 0.6 and "trainer" not in req


def test_tuned_rows_share_one_grid() -> None:
    bench = load_script(BENCH)
    assert bench.MODELS["safmr_tuned"]["grid"] == bench.MODELS["deepconn_tuned"]["grid"]
    assert set(bench.MODELS["safmr_tuned"]["grid"]) & bench.TRAINER_KEYS == {"lr"}


def test_row_stamp_changes_with_the_rows_settings_and_model_defaults(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bench = load_script(BENCH)
    before = bench.row_stamp("safmr")
    assert bench.row_stamp("safmr") == before  # deterministic
    monkeypatch.setitem(bench.MODELS, "safmr", {**bench.MODELS["safmr"], "fixed": {"dropout": 0.1}})
    assert bench.row_stamp("safmr") != before
    monkeypatch.setitem(bench.MODELS, "safmr", {**bench.MODELS["safmr"], "fixed": {}})
    assert bench.row_stamp("safmr") == before
    monkeypatch.setattr(bench, "ADAM_KERNEL", "unfused")
    assert bench.row_stamp("safmr") != before

    from attnrec.models.base import get_model_class

    cfg = get_model_class("safmr").config_class
    field = next(iter(cfg.model_fields))
    monkeypatch.setattr(bench, "ADAM_KERNEL", "fused")
    monkeypatch.setattr(cfg, "to_dict", lambda self: {field: "changed default"})
    assert bench.row_stamp("safmr") != before


def test_every_row_has_a_stamp() -> None:
    """Each row of the table can be run: its stamp is computable (global_mean's, which no registered model makes,
    raised "unknown model" and stopped every run that included it)."""
    bench = load_script(BENCH)
    stamps = {label: bench.row_stamp(label) for label in bench.MODELS}
    assert len(stamps["global_mean"]) == 12 and stamps["global_mean"] != stamps["svd"]


def test_cached_row_under_another_stamp_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    bench = load_script(BENCH)
    stamp = bench.row_stamp("safmr")
    bench.check_stamp(tmp_path, {"key": "musical|safmr|0", "stamp": stamp}, stamp)  # same state: reused
    for row in ({"key": "musical|safmr|0", "stamp": "0123456789ab"}, {"key": "musical|safmr|0"}):
        with pytest.raises(SystemExit, match="musical\\|safmr\\|0"):
            bench.check_stamp(tmp_path, row, stamp)


def test_choose_ignores_points_no_longer_in_the_grid() -> None:
    bench = load_script(BENCH)

    def row(point: dict, mse: float) -> dict:  # type: ignore[type-arg]
        return {"kind": "grid", "dataset": "musical", "model": "svd", "point": point, "valid": {"mse": mse}}

    done = {"a": row({"reg": 0.6}, 0.9), "b": row({"reg": 99.0}, 0.1), "c": row({"reg": 1.0}, 0.8)}
    assert bench.choose(done, "musical", "svd") == {"reg": 1.0}


def test_trainer_keys_are_refused_for_peer_rows(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    bench = load_script(BENCH)
    monkeypatch.setitem(bench.MODELS, "surprise_svd", {**bench.MODELS["surprise_svd"], "fixed": {"lr": 0.1}})
    with pytest.raises(SystemExit, match="surprise_svd"):
        bench.model_request("surprise_svd", {}, {})


def test_wide_rows_share_the_narrow_rows_grid_fits_and_one_grid() -> None:
    bench = load_script(BENCH)
    wide = [bench.MODELS[f"{m}_tuned_wide"]["grid"] for m in ("safmr", "deepconn", "transnet")]
    assert wide[0] == wide[1] == wide[2] and min(wide[0]["lr"]) == 0.001
    assert bench.MODELS["transnet_tuned"]["grid"] == bench.MODELS["safmr_tuned"]["grid"]
    assert bench.grid_label("safmr_tuned_wide") == "safmr_tuned" and bench.grid_label("svd") == "svd"
    # a grid point's fit does not depend on the other points; the test rows' choice does
    assert bench.row_stamp("safmr_tuned_wide", with_grid=False) == bench.row_stamp(
        "safmr_tuned", with_grid=False
    )
    assert bench.row_stamp("safmr_tuned_wide") != bench.row_stamp("safmr_tuned")

    def row(point: dict, mse: float) -> dict:  # type: ignore[type-arg]
        return {
            "kind": "grid",
            "dataset": "musical",
            "model": "safmr_tuned",
            "point": point,
            "valid": {"mse": mse},
        }

    done = {"a": row({"dropout": 0.5, "lr": 0.002}, 0.77), "b": row({"dropout": 0.5, "lr": 0.001}, 0.76)}
    assert bench.choose(done, "musical", "safmr_tuned") == {"dropout": 0.5, "lr": 0.002}
    assert bench.choose(done, "musical", "safmr_tuned_wide") == {"dropout": 0.5, "lr": 0.001}


def test_grid_of_a_row_with_other_settings_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    bench = load_script(BENCH)
    spec = {**bench.MODELS["safmr_tuned_wide"], "fixed": {"loss": "l1"}}
    monkeypatch.setitem(bench.MODELS, "safmr_tuned_wide", spec)
    with pytest.raises(SystemExit, match="safmr_tuned_wide"):
        bench.grid_label("safmr_tuned_wide")


def test_a_split_of_another_seed_is_not_overwritten(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import pytest

    bench = load_script(BENCH)
    (tmp_path / "musical").mkdir()
    (tmp_path / "musical" / "split.json").write_text(json.dumps({"seed": 2026}))
    with pytest.raises(SystemExit, match="another seed"):
        bench.export_splits(["musical"], 7, tmp_path)


def test_tuned_rows_share_grid_loss_and_trainer_settings() -> None:
    """The "equal validation budget" of BENCHMARKS' review sections: for the narrow and the wide rows, safmr,
    deepconn and transnet get the same grid and the same fixed settings, and the wide grid has the baselines' 6."""
    from fair_common import grid_points

    bench = load_script(BENCH)
    for suffix in ("_tuned", "_tuned_wide"):
        specs = [bench.MODELS[f"{m}{suffix}"] for m in ("safmr", "deepconn", "transnet")]
        assert all(s["grid"] == specs[0]["grid"] and s["fixed"] == {"loss": "l2"} for s in specs), suffix
    assert len(grid_points(bench.MODELS["safmr_tuned_wide"]["grid"])) == 6
    assert len(grid_points(bench.MODELS["svd"]["grid"])) == 6


def _split(root: Path, seed: int) -> Path:
    """A 2-user split of ``seed`` under ``root/musical``: train/valid/test CSVs and split.json."""
    import json

    folder = root / "musical"
    folder.mkdir(parents=True)
    rows = "user_id,item_id,rating\nu1,i1,4\nu1,i2,2\nu2,i1,5\n"
    for part in ("train", "valid", "test"):
        (folder / f"{part}.csv").write_text(rows)
    (folder / "split.json").write_text(
        json.dumps({"seed": seed, "sizes": {"train": 3, "valid": 3, "test": 3}})
    )
    return root


class _FakeWorker:
    """Answers every fit with rating 3 for each row, and counts the fits."""

    def __init__(self) -> None:
        self.fits: list[tuple[str, int]] = []

    def call(self, op: str, dataset: str, seed: int, parts: list[str], **req: object) -> dict[str, object]:
        self.fits.append((str(req["model"]), seed))
        return {"fit_s": 0.0, "pred": {p: [3.0, 3.0, 3.0] for p in parts}, "info": {}}


def _args(tmp_path: Path, seeds: list[int]) -> object:
    import argparse

    return argparse.Namespace(
        split_root=tmp_path / "splits", results=tmp_path / "r.jsonl", seeds=seeds, grid_only=False
    )


def test_rows_record_their_split_and_a_row_of_another_split_is_refused(tmp_path: Path) -> None:
    import json

    import pytest

    bench = load_script(BENCH)
    _split(tmp_path / "splits", 7)
    args, worker = _args(tmp_path, [0]), _FakeWorker()
    bench.run_dataset("musical", ["svd"], args, {"ours": worker})
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and all(r["split_seed"] == 7 for r in rows) and len(worker.fits) == 7
    bench.run_dataset("musical", ["svd"], args, {"ours": worker})  # same split: every row reused
    assert len(worker.fits) == 7
    # a row written before rows named their split counts as split 2026, the only split then
    legacy = {k: v for k, v in rows[0].items() if k != "split_seed"}
    (tmp_path / "r.jsonl").write_text(json.dumps(legacy) + "\n")
    with pytest.raises(SystemExit, match=r"r\.jsonl.*musical\|svd\|grid.*seed 2026.*seed 7"):
        bench.run_dataset("musical", ["svd"], args, {"ours": worker})
    with pytest.raises(SystemExit, match=r"r\.jsonl.*musical\|svd\|grid.*seed 2026.*seed 7"):
        bench.print_tables(tmp_path / "r.jsonl", tmp_path / "splits")
    assert len(worker.fits) == 7


def test_grid_rows_of_another_model_seed_are_refused(tmp_path: Path) -> None:
    import pytest

    bench = load_script(BENCH)
    _split(tmp_path / "splits", 7)
    worker = _FakeWorker()
    bench.run_dataset("musical", ["svd"], _args(tmp_path, [0]), {"ours": worker})
    assert {s for _, s in worker.fits} == {0}
    with pytest.raises(SystemExit, match=r"grid row 'musical\|svd\|grid.*model seed 0.*grid seed.* is 1"):
        bench.run_dataset("musical", ["svd"], _args(tmp_path, [1, 2]), {"ours": worker})
    assert len(worker.fits) == 7  # nothing fitted, nothing reused


def test_git_state_marks_edits_under_src_or_benchmarks(tmp_path: Path) -> None:
    import shutil
    import subprocess

    import pytest

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    record = load_script(BENCH.parent / "_record.py")
    repo = tmp_path / "repo"
    for sub in ("src", "benchmarks", "docs"):
        (repo / sub).mkdir(parents=True)
        (repo / sub / "f.txt").write_text("a\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    head = record.git_commit(repo)
    assert head is not None and record.git_state(repo / "benchmarks") == head
    (repo / "docs" / "f.txt").write_text("b\n")  # outside the paths: still clean
    assert record.git_state(repo / "benchmarks") == head
    (repo / "src" / "f.txt").write_text("b\n")  # pathspecs are from the top, not from benchmarks/
    assert record.git_state(repo / "benchmarks") == f"{head}+dirty"
    assert record.git_state(repo, paths=("benchmarks",)) == head
    (repo / "benchmarks" / "new.py").write_text("")  # untracked counts too
    state = record.git_state(repo, short=True, paths=("benchmarks",))
    assert state.endswith("+dirty") and head.startswith(state.removesuffix("+dirty"))
    assert record.git_state(tmp_path / "nowhere") is None


def test_grid_only_fits_the_grid_prints_the_choice_and_reads_no_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    bench = load_script(BENCH)
    _split(tmp_path / "splits", 7)
    args, worker = _args(tmp_path, [0, 1]), _FakeWorker()
    args.grid_only = True  # type: ignore[attr-defined]
    bench.run_dataset("musical", ["svd"], args, {"ours": worker})
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rows and all(r["kind"] == "grid" for r in rows) and len(worker.fits) == len(rows)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["dataset"] == "musical" and set(printed["chosen"]) == {"svd"}
    args.grid_only = False  # type: ignore[attr-defined]
    bench.run_dataset(
        "musical", ["svd"], args, {"ours": worker}
    )  # the grid is reused; only the test fits run
    assert len(worker.fits) == len(rows) + 2
