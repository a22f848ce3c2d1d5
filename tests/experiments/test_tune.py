"""attnrec tune: the space file, validation-only search (a poisoned test split changes nothing until the one test),
pruning through the Trainer's epoch callbacks, workers sharing one study, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

optuna = pytest.importorskip("optuna")

import attnrec.evaluation.protocols as protocols  # noqa: E402
import attnrec.experiments.run as run_module  # noqa: E402
import attnrec.experiments.tune as tune_module  # noqa: E402
from attnrec.errors import ConfigError  # noqa: E402
from attnrec.experiments.config import RunConfig  # noqa: E402
from attnrec.experiments.tune import SearchData, SearchSpace, open_study, search, tune  # noqa: E402
from attnrec.testing import checkerboard  # noqa: E402
from attnrec.training.trainer import Trainer, TrainerConfig, epoch_callbacks  # noqa: E402
from attnrec.training.types import TrainableModule  # noqa: E402

SPACE: dict[str, Any] = {
    "study": {"startup_trials": 2, "seed": 3},
    "model": {
        "reg": {"type": "float", "low": 0.01, "high": 3.0, "log": True},
        "factors": {"type": "int", "low": 2, "high": 8},
    },
}
SVD = {"factors": 4, "iterations": 4, "patience": 4}
#: the poison: every test rating moved far off the scale, so any read of the test split is visible
POISON = 100.0


def _write(folder: Path, *, poison: bool = False, n_users: int = 60, n_items: int = 40) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in zip(("train", "valid", "test"), checkerboard(n_users, n_items), strict=True):
        frame = part.decode()
        if poison and name == "test":
            frame = frame.with_columns(pl.col("rating") + POISON)
        paths[name] = folder / f"{name}.csv"
        frame.write_csv(paths[name])
    return paths


def _cfg(paths: dict[str, Path], **model: Any) -> RunConfig:
    return RunConfig(model="svd", **paths, model_params={**SVD, **model}, threads=1)


# ------------------------------------------------------------------------------------------------ the space file


def test_space_file_round_trip_and_suggest(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(
        '[study]\nmetric = "mae"\npruner = "none"\n'
        '[model.reg]\ntype = "float"\nlow = 0.1\nhigh = 1.0\nlog = true\n'
        '[model.factors]\ntype = "int"\nlow = 8\nhigh = 64\nstep = 8\n'
        '[model.solver]\ntype = "categorical"\nchoices = ["als", "sgd"]\n'
        '[trainer.lr]\ntype = "float"\nlow = 0.001\nhigh = 0.1\n'
    )
    space = SearchSpace.from_toml(path)
    assert space.study.metric == "mae" and space.study.pruner == "none"
    model, trainer = space.suggest(
        optuna.trial.FixedTrial(
            {"model.reg": 0.5, "model.factors": 24, "model.solver": "sgd", "trainer.lr": 0.01}
        )
    )
    assert model == {"reg": 0.5, "factors": 24, "solver": "sgd"} and trainer == {"lr": 0.01}
    metric, direction = tune_module.study_metric(RunConfig(model="svd", data="x"), space)
    assert (metric, direction) == ("mae", "minimize")


@pytest.mark.parametrize(
    ("study", "trainer", "expected"),
    [
        # no choice: what every trial's epochs are selected on (CTRRecommender.make_trainer_config's rule)
        ({}, {}, ("logloss", "minimize")),
        # an explicit choice is kept, in the space file or in the run's trainer table
        ({"metric": "auc"}, {}, ("auc", "maximize")),
        ({}, {"valid_metric": "auc"}, ("auc", "maximize")),
        ({}, {"valid_metric": "ece", "valid_mode": "min"}, ("ece", "minimize")),
        ({"metric": "auc", "direction": "minimize"}, {}, ("auc", "minimize")),
    ],
)
def test_a_ctr_study_optimises_what_its_trials_select_epochs_on(
    study: dict[str, Any], trainer: dict[str, Any], expected: tuple[str, str]
) -> None:
    from attnrec.experiments.run import trainer_config
    from attnrec.models.base import get_model_class

    cfg = RunConfig(model="deepfm", data="x", trainer=trainer)
    space = SearchSpace.parse(
        {"study": study, "trainer": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}}
    )
    assert tune_module.study_metric(cfg, space) == expected
    if not study:
        # the trial's own Trainer selects on that metric, in that direction
        cls = get_model_class("deepfm")
        tr = cls().make_trainer_config(trainer_config(cfg, cls, progress=False))
        assert (tr.valid_metric, tr.valid_mode) == (expected[0], expected[1][:3])


def test_a_study_follows_a_models_default_trainer_metric() -> None:
    # the multimodal family stops on recall@20 (MMREC_TRAINER), not the top-k task's ndcg@20
    space = SearchSpace.parse({"model": {"reg": {"type": "float", "low": 0.1, "high": 1.0}}})
    assert tune_module.study_metric(RunConfig(model="freedom", data="x"), space) == ("recall@20", "maximize")
    assert tune_module.study_metric(RunConfig(model="bpr", data="x"), space) == ("ndcg@20", "maximize")


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ({"model": {"reg": {"type": "float", "low": 2.0, "high": 1.0}}}, "low 2.0 is above high 1.0"),
        ({"model": {"reg": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}}, "needs low > 0"),
        ({"model": {"k": {"type": "int", "low": 1.5, "high": 4}}}, "whole numbers"),
        ({"model": {"k": {"type": "categorical"}}}, "non-empty `choices`"),
        ({"model": {"k": {"type": "categorical", "choices": [1], "low": 0}}}, "takes `choices` only"),
        ({"model": {"k": {"type": "uniform", "low": 0, "high": 1}}}, "model.k.type"),
        (
            {"trainer": {"lrate": {"type": "float", "low": 0.1, "high": 1}}},
            "[trainer.lrate]: not a trainer field",
        ),
        ({"trainer": {"device": {"type": "categorical", "choices": ["cpu"]}}}, "set by the tuner"),
        (
            {
                "trainer": {
                    "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
                    "adam_eps": {"type": "float", "low": 1e-12, "high": 1e-8, "log": True},
                }
            },
            "[trainer.optimizer] may then choose adam / adamw only",
        ),
        ({"study": {"pruner": "median"}}, "nothing to search"),
    ],
)
def test_space_file_errors_name_the_file_and_field(tmp_path: Path, table: dict[str, Any], said: str) -> None:
    import tomli_w

    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(table))
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_toml(path)
    assert str(path) in str(err.value) and said in str(err.value)


def test_a_field_the_model_lacks_is_refused_before_any_trial(tmp_path: Path) -> None:
    space = SearchSpace.parse({"model": {"regg": {"type": "float", "low": 0.1, "high": 1.0}}})
    with pytest.raises(ConfigError, match=r"\[model.regg\]: svd has no such field"):
        tune(_cfg(_write(tmp_path)), space, n_trials=2, out=tmp_path / "out")
    assert not (tmp_path / "out" / "study.db").exists()


# ------------------------------------------------------------------------------------------------ the Trainer hook


class _Line(TrainableModule):
    def __init__(self) -> None:
        super().__init__()
        import torch

        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(self, batch: Any) -> Any:
        return ((self.w - 1.0) ** 2).sum()


class _Batch:
    def to(self, device: Any) -> _Batch:
        return self


def test_epoch_callbacks_see_every_epoch_and_can_stop_the_fit() -> None:
    seen: list[tuple[int, float]] = []

    def record(epoch: int, row: dict[str, float]) -> None:
        seen.append((epoch, row["valid_loss"]))
        if epoch == 3:
            raise KeyboardInterrupt  # stands for optuna.TrialPruned: any exception ends the fit

    trainer = Trainer(TrainerConfig(epochs=6, lr=0.1, progress=False, device="cpu", patience=None))
    module = _Line()
    with epoch_callbacks(record), pytest.raises(KeyboardInterrupt):
        trainer.fit(module, lambda e, g: [_Batch()], validate=lambda: {"loss": float((module.w - 1) ** 2)})
    assert [e for e, _ in seen] == [1, 2, 3]
    assert seen[0][1] > seen[2][1]  # the rows carry the validation metric as it improves
    # outside the block nothing is called
    Trainer(TrainerConfig(epochs=2, progress=False, device="cpu")).fit(_Line(), lambda e, g: [_Batch()])
    assert len(seen) == 3


# ------------------------------------------------------------------------------------------------ validation only


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every evaluation anywhere (fit-time validation, trials, the run): the largest rating it was given."""
    seen: list[float] = []
    real = protocols.evaluate

    def spy(model: Any, data: Any, *args: Any, **kw: Any) -> dict[str, float]:
        seen.append(float(data.ratings.max()))
        return real(model, data, *args, **kw)

    for module in (protocols, run_module, tune_module):
        monkeypatch.setattr(module, "evaluate", spy)
    return seen


def test_search_never_reads_test_and_the_best_trial_is_tested_once(tmp_path: Path, monkeypatch) -> None:
    space = SearchSpace.parse(SPACE)

    def run(name: str, poison: bool) -> Any:
        out = tmp_path / name / "out"
        return tune(_cfg(_write(tmp_path / name, poison=poison)), space, n_trials=5, out=out, plots=False)

    clean = run("clean", poison=False)
    seen = _spy(monkeypatch)
    poisoned = run("poison", poison=True)

    def trials(study: Any) -> list[tuple[Any, ...]]:
        return [(t.number, t.state, t.value, t.params, t.intermediate_values) for t in study.trials]

    # the search does not notice the poison: same trials, same values, same pruning, same best
    assert trials(clean.study) == trials(poisoned.study)
    assert clean.study.best_trial.number == poisoned.study.best_trial.number
    # test is read exactly once, last (the retrained best run's report) — and the poison is live there
    poisoned_reads = [i for i, top in enumerate(seen) if top > POISON / 2]
    assert poisoned_reads == [len(seen) - 1]
    assert len(seen) > 10  # every trial validated every sweep
    assert poisoned.best is not None and clean.best is not None
    assert poisoned.best.metrics["test"]["rmse"] > 50 > clean.best.metrics["test"]["rmse"]
    assert clean.best.metrics["valid"] == poisoned.best.metrics["valid"]
    tested = poisoned.study.user_attrs["tested"]
    assert tested["trial"] == poisoned.study.best_trial.number and tested["test"]["rmse"] > 50

    # a second call on the tested study runs no trial and tests nothing again
    before = len(seen)
    again = run("poison", poison=True)
    assert again.best is None and "tested already" in again.note
    assert len(seen) == before and len(again.study.trials) == 5


def test_search_data_holds_no_test_split(tmp_path: Path) -> None:
    data = SearchData.from_run(_cfg(_write(tmp_path)))
    assert not hasattr(data, "test")
    assert len(data.train) > len(data.valid) > 0


def test_a_run_without_validation_cannot_be_tuned(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    paths.pop("valid")
    with pytest.raises(ConfigError, match="selects on the validation split"):
        tune(_cfg(paths), SearchSpace.parse(SPACE), n_trials=1, out=tmp_path / "out")


# ------------------------------------------------------------------------------------------------ pruning


def test_the_pruner_stops_a_trial_at_the_epoch_it_reports(tmp_path: Path) -> None:
    cfg = _cfg(_write(tmp_path), iterations=6, patience=6)
    space = SearchSpace.parse(SPACE)
    # any rmse above 0 is pruned at the first validated sweep: the fit must stop there, not run its 6 sweeps
    study = open_study(cfg, space, pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    search(cfg, SearchData.from_run(cfg), space, n_trials=3, study=study)
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.PRUNED
        assert list(t.intermediate_values) == [1]
        assert "epoch 1: valid rmse" in t.user_attrs["pruned"]


def test_median_pruning_cuts_trials_that_trail(tmp_path: Path) -> None:
    cfg = _cfg(_write(tmp_path), iterations=5, patience=5)
    space = SearchSpace.parse(
        {
            "study": {"startup_trials": 1, "warmup_epochs": 0, "sampler": "random", "seed": 0},
            "model": {"reg": {"type": "categorical", "choices": [0.1, 30.0]}},
        }
    )
    study = search(cfg, SearchData.from_run(cfg), space, n_trials=8)
    states = {(t.params["model.reg"], t.state.name) for t in study.trials[1:]}
    # the heavy penalty trails at the first sweep and is pruned there; the light one is never pruned
    assert ("model.reg" in study.trials[0].params) and (30.0, "PRUNED") in states
    assert (0.1, "PRUNED") not in states
    assert all(len(t.intermediate_values) == 1 for t in study.trials if t.state.name == "PRUNED")


# ------------------------------------------------------------------------------------------------ the report


def test_report_table_plots_and_best_run_file(tmp_path: Path) -> None:
    result = tune(_cfg(_write(tmp_path)), SearchSpace.parse(SPACE), n_trials=4, out=tmp_path / "out")
    files = result.files
    for name in ("trials", "report", "best_run", "history", "importance"):
        assert files[name].is_file() and files[name].stat().st_size > 0, name
    assert files["history"].read_bytes()[:4] == b"\x89PNG"
    table = pl.read_csv(files["trials"])
    assert table["trial"].to_list() == [0, 1, 2, 3]
    assert {"model.reg", "model.factors", "value", "state"} <= set(table.columns)
    report = files["report"].read_text()
    assert f"best: trial {result.study.best_trial.number}" in report and "tested once" in report
    best = RunConfig.parse(tomllib.loads(files["best_run"].read_text()))
    assert best.model_params["reg"] == pytest.approx(result.study.best_trial.params["model.reg"])
    assert best.model_params["iterations"] == SVD["iterations"]  # the fixed settings stay
    metrics = json.loads((tmp_path / "out" / "best" / "metrics.json").read_text())
    assert metrics["config"]["factors"] == result.study.best_trial.params["model.factors"]


# ------------------------------------------------------------------------------------------------ many workers


def _cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "from attnrec.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_two_worker_processes_finish_n_trials_together_on_one_sqlite_file(tmp_path: Path) -> None:
    paths = _write(tmp_path, n_users=200, n_items=100)
    run = "model = 'svd'\n" + "".join(f"{k} = '{v}'\n" for k, v in paths.items())
    run += "[model_params]\nfactors = 8\niterations = 8\npatience = 8\n"
    (tmp_path / "run.toml").write_text(run)
    (tmp_path / "space.toml").write_text(
        '[study]\npruner = "none"\n[model.reg]\ntype = "float"\nlow = 0.01\nhigh = 3.0\nlog = true\n'
    )
    db = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["tune", "--config", "run.toml", "--space", "space.toml", "--trials", "8", "--storage", db]
    workers = [
        _cli(*common, "--no-retrain", "--no-plots", "--worker", str(w), "--out", f"w{w}", cwd=tmp_path)
        for w in (0, 1)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    names = optuna.study.get_all_study_names(db)
    assert len(names) == 1  # both joined the study named after the same files
    study = optuna.load_study(study_name=names[0], storage=db)
    assert [t.number for t in study.trials] == list(range(8))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    by_worker = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in study.trials}
    assert by_worker == {"0", "1"}, outputs  # each worker ran some of the eight
    assert "tested" not in study.user_attrs

    # one more call (here in-process) finds the study full: no trial, the best retrained and tested once
    cfg = RunConfig.from_toml(tmp_path / "run.toml")
    space = SearchSpace.from_toml(tmp_path / "space.toml")
    final = tune(cfg, space, n_trials=8, out=tmp_path / "final", storage=db, plots=False)
    assert final.best is not None and "tested once" in final.note
    assert len(final.study.trials) == 8
    assert (tmp_path / "final" / "best" / "metrics.json").is_file()
    again = tune(cfg, space, n_trials=8, out=tmp_path / "final2", storage=db, plots=False)
    assert again.best is None and "tested already" in again.note
    assert not (tmp_path / "final2" / "best").exists()


def test_cli_refuses_a_run_file_with_out(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from attnrec.cli import app

    paths = _write(tmp_path)
    (tmp_path / "run.toml").write_text(
        f"model = 'svd'\ntrain = '{paths['train']}'\ntest = '{paths['test']}'\nout = 'x'\n"
    )
    (tmp_path / "space.toml").write_text('[model.reg]\ntype = "float"\nlow = 0.1\nhigh = 1.0\n')
    args = [
        "tune",
        "--config",
        str(tmp_path / "run.toml"),
        "--space",
        str(tmp_path / "space.toml"),
        "--trials",
        "2",
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "`out` is for `attnrec train`" in str(result.output) + str(result.exception)


def test_a_trial_whose_worker_died_is_marked_failed(tmp_path: Path) -> None:
    import socket

    from attnrec.experiments.tune import fail_dead_trials

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    study = optuna.create_study()
    host = socket.gethostname()
    for worker in (f"{host}:{gone.pid}:0", f"{host}:{os.getpid()}:1", f"elsewhere:{gone.pid}:2"):
        study.ask().set_user_attr("worker", worker)
    assert fail_dead_trials(study) == [0]
    assert [t.state.name for t in study.trials] == ["FAIL", "RUNNING", "RUNNING"]


def test_workers_opening_a_new_sqlite_storage_together_all_succeed(tmp_path: Path) -> None:
    """Creating Optuna's schema is a race (its version row is unique): on SQLite the workers take turns."""
    code = "import sys; from attnrec.experiments.tune_storage import open_storage; open_storage(sys.argv[1]); print('ok')"
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
