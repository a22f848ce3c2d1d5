"""Runs that cannot lie: an --out holding a run is refused unless --overwrite or --resume; a resume continues only
a checkpoint of the same run (model config, trainer config, data); every run writes train_log.jsonl."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attnrec.cli import app
from attnrec.errors import ConfigError
from attnrec.experiments.run import RunConfig, run_experiment
from attnrec.models.rating import svd as svd_mod


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory) -> Path:
    """A MovieLens-100k-format folder (u.data), 60 users x 40 items, two planted taste groups."""
    d = tmp_path_factory.mktemp("ml-runs")
    rng = np.random.default_rng(1)
    rows = []
    for u in range(1, 61):
        for i in range(1, 41):
            if rng.random() < 0.35:
                r = 5 if (u % 2) == (i % 2) else 2
                rows.append(f"{u}\t{i}\t{r}\t{880000000 + len(rows)}")
    (d / "u.data").write_text("\n".join(rows) + "\n")
    return d


ALS = {"factors": 4, "iterations": 4, "patience": 4}


def run(ml_dir: Path, out: Path, model: str = "svd", **kw):
    params = kw.pop("model_params", ALS if model == "svd" else {})
    cfg = RunConfig.parse(
        {"model": model, "data": str(ml_dir), "out": str(out), "model_params": params, **kw}
    )
    return run_experiment(cfg, progress=False)


def log_rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


def test_pop_and_als_runs_write_train_log(ml_dir, tmp_path):
    pop = run(ml_dir, tmp_path / "pop", model="pop")
    rows = log_rows(tmp_path / "pop")
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    assert rows[0]["interactions"] == pop.metrics["data"]["sizes"]["train"]
    als = run(ml_dir, tmp_path / "als")
    rows = log_rows(tmp_path / "als")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["valid_rmse"] for r in rows] == [r["valid_rmse"] for r in als.metrics["fit"]["history"]]


def test_an_out_holding_a_run_is_refused_without_a_flag(ml_dir, tmp_path):
    out = tmp_path / "run"
    run(ml_dir, out)
    before = (out / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="already holds a run.*--overwrite.*--resume"):
        run(ml_dir, out, model_params={**ALS, "reg": 0.5})
    assert (out / "metrics.json").read_text() == before


def test_overwrite_starts_fresh_with_a_new_log(ml_dir, tmp_path):
    out = tmp_path / "run"
    run(ml_dir, out)
    second = run(ml_dir, out, model_params={**ALS, "factors": 8, "iterations": 2}, overwrite=True)
    assert [r["epoch"] for r in log_rows(out)] == [1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["factors"] == 8
    assert [r["epoch"] for r in metrics["fit"]["history"]] == [1, 2]
    assert second.model.mf.p.shape[1] == 8


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_params": {**ALS, "factors": 8}}, r"model config differs \(factors 4 -> 8\)"),
        # (ALS reads no learning rate: --lr is refused outright, see tests/robustness/test_runs.py)
        ({"trainer": {"valid_every": 2}}, r"trainer config differs \(valid_every 1 -> 2\)"),
        ({"split": {"seed": 7}}, r"data differs"),
    ],
)
def test_resume_refuses_another_runs_checkpoint(ml_dir, tmp_path, change, message):
    out = tmp_path / "run"
    run(ml_dir, out)
    with pytest.raises(ConfigError, match=message):
        run(ml_dir, out, resume=True, **change)


class Killed(Exception):
    pass


def test_resume_after_a_kill_continues_the_same_run(ml_dir, tmp_path, monkeypatch):
    straight = run(ml_dir, tmp_path / "straight")
    original = svd_mod.ALSSolver.train_epoch

    def dies_at_3(self, epoch, generator):
        if epoch == 3:
            raise Killed
        return original(self, epoch, generator)

    out = tmp_path / "run"
    monkeypatch.setattr(svd_mod.ALSSolver, "train_epoch", dies_at_3)
    with pytest.raises(Killed):
        run(ml_dir, out)
    monkeypatch.setattr(svd_mod.ALSSolver, "train_epoch", original)
    with pytest.raises(ConfigError, match="already holds a run"):  # a killed run is a run too
        run(ml_dir, out)
    resumed = run(ml_dir, out, resume=True)
    assert [r["epoch"] for r in log_rows(out)] == [1, 2, 3, 4]  # appended to the killed run's log
    assert resumed.metrics["valid"] == straight.metrics["valid"]
    assert resumed.metrics["test"] == straight.metrics["test"]


def test_resume_needs_a_checkpoint_and_flags_are_checked(ml_dir, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        run(ml_dir, tmp_path / "empty", resume=True)
    with pytest.raises(ConfigError, match="not both"):
        run(ml_dir, tmp_path / "x", resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="give `out`"):
        RunConfig.parse({"model": "pop", "data": str(ml_dir), "resume": True})
    with pytest.raises(ConfigError, match="run's `resume`"):
        RunConfig.parse({"model": "pop", "data": str(ml_dir), "trainer": {"resume": True}})


def cli(args: list[str]):
    return CliRunner().invoke(app, ["train", "--no-progress", *args])


def test_cli_overwrite_and_resume(ml_dir, tmp_path):
    out = tmp_path / "run"
    base = [
        "--model",
        "svd",
        "--data",
        str(ml_dir),
        "--out",
        str(out),
        "--set",
        "solver=sgd",
        "--epochs",
        "2",
    ]
    first = cli(base)
    assert first.exit_code == 0, first.output
    again = cli([*base, "--lr", "0.5"])
    assert isinstance(again.exception, ConfigError) and "--overwrite" in str(again.exception)
    # the reproduction of issue 12: a resume with another learning rate must not pass for the same run
    other = cli([*base, "--lr", "0.5", "--resume"])
    assert isinstance(other.exception, ConfigError)
    assert "trainer config differs (lr 0.02 -> 0.5)" in str(other.exception)
    sized = cli([*base, "--set", "factors=8", "--resume"])
    assert isinstance(sized.exception, ConfigError) and "model config differs (factors 50 -> 8)" in str(
        sized.exception
    )
    same = cli([*base, "--resume"])
    assert same.exit_code == 0, same.output
    assert [r["epoch"] for r in log_rows(out)] == [1, 2]  # nothing left to train: nothing appended
    fresh = cli([*base, "--lr", "0.5", "--overwrite"])
    assert fresh.exit_code == 0, fresh.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainer"]["lr"] == 0.5
    assert [r["lr"] for r in log_rows(out)] == [0.5, 0.5]


def test_overwrite_deletes_only_the_runs_own_files(ml_dir, tmp_path):
    out, shared = tmp_path / "run", tmp_path / "shared"
    shared.mkdir()
    (shared / "keep.txt").write_text("not the run's")
    (tmp_path / "run").mkdir()
    (out / "notes.md").write_text("mine")
    run(ml_dir, out, trainer={"checkpoint_dir": str(shared)})
    assert (shared / "checkpoint.pt").is_file()
    run(ml_dir, out, trainer={"checkpoint_dir": str(shared)}, overwrite=True)
    assert (shared / "keep.txt").read_text() == "not the run's"
    assert (out / "notes.md").read_text() == "mine"
    assert [r["epoch"] for r in log_rows(out)] == [1, 2, 3, 4]
