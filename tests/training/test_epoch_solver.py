"""The Trainer driving an EpochSolver (the non-SGD form): early stopping, best-epoch restore, log, exact resume;
and the run identity a checkpoint must match (model config, trainer config, data) before it is resumed."""

import json

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError
from attnrec.training.trainer import CHECKPOINT_NAME, Trainer, TrainerConfig
from attnrec.training.types import EpochSolver, RunIdentity, data_fingerprint

#: the planted validation curve: best at epoch 2, then worse for two epochs, then (too late) better
CURVE = {1: 5.0, 2: 3.0, 3: 4.0, 4: 4.5, 5: 2.0, 6: 1.0}


class Planted:
    """Sets its one weight to the epoch number; its own state (a counter) must survive a checkpoint."""

    def __init__(self) -> None:
        self.module = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.module.weight.zero_()
        self.calls: list[int] = []
        self.counter = 0

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        self.calls.append(epoch)
        self.counter += 10
        with torch.no_grad():
            self.module.weight.fill_(float(epoch))
        return {"loss": 1.0 / epoch}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"counter": torch.tensor(self.counter)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.counter = int(state["counter"])

    def validate(self) -> dict[str, float]:
        return {"rmse": CURVE[int(self.module.weight.item())]}


def cfg(**kw) -> TrainerConfig:
    return TrainerConfig(**{"progress": False, "device": "cpu", "epochs": 6, "patience": 2, **kw})


IDENT = RunIdentity({"factors": 4, "seed": 1}, "data-a")


def fit(solver: Planted, c: TrainerConfig, identity: RunIdentity | None = IDENT, **kw):
    return Trainer(c, valid_metric="rmse", mode="min").fit(
        solver, validate=solver.validate, seed=1, identity=identity, **kw
    )


class Killed(Exception):
    pass


def kill_at(n: int):
    def hook(epoch, row):
        if epoch == n:
            raise Killed

    return hook


def test_planted_solver_is_an_epoch_solver():
    assert isinstance(Planted(), EpochSolver)


def test_early_stopping_restores_the_best_epoch_and_logs_every_epoch(tmp_path):
    s = Planted()
    log = tmp_path / "log.jsonl"
    report = fit(s, cfg(log_path=log))
    assert s.calls == [1, 2, 3, 4]  # epochs 3 and 4 were worse than 2: patience 2 stops there
    assert report.best_epoch == 2 and report.epochs_run == 4
    assert report.best_valid == {"rmse": 3.0}
    assert s.module.weight.item() == 2.0
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["valid_rmse"] for r in rows] == [5.0, 3.0, 4.0, 4.5]
    assert rows[2]["loss"] == pytest.approx(1 / 3)


def test_no_validation_runs_every_epoch_and_keeps_the_last():
    s = Planted()
    report = Trainer(cfg()).fit(s, seed=1)
    assert s.calls == [1, 2, 3, 4, 5, 6] and report.best_epoch is None
    assert s.module.weight.item() == 6.0


def test_resume_after_kill_is_exact_and_appends_to_the_log(tmp_path):
    straight = fit(Planted(), cfg(patience=None))
    c = cfg(patience=None, checkpoint_dir=tmp_path / "ck", log_path=tmp_path / "log.jsonl")
    with pytest.raises(Killed):
        fit(Planted(), c, on_epoch_end=kill_at(3))
    resumed = Planted()
    report = fit(resumed, c)
    assert resumed.calls == [4, 5, 6]
    assert resumed.counter == 60  # 30 restored from the checkpoint's solver state + 3 epochs here
    assert report.best_epoch == straight.best_epoch == 6
    assert [r["valid_rmse"] for r in report.history] == [r["valid_rmse"] for r in straight.history]
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    torch.load(tmp_path / "ck" / CHECKPOINT_NAME, weights_only=True)


def test_an_early_stopped_run_stays_stopped_when_resumed(tmp_path):
    c = cfg(checkpoint_dir=tmp_path / "ck")
    fit(Planted(), c)  # stops after epoch 4 (epoch 5 would have been better)
    again = Planted()
    report = fit(again, c)
    assert again.calls == []
    assert report.epochs_run == 4 and report.best_epoch == 2
    assert again.module.weight.item() == 2.0  # the best weights come back from the checkpoint


def test_a_fresh_fit_starts_a_new_log_and_ignores_the_checkpoint(tmp_path):
    c = cfg(patience=None, checkpoint_dir=tmp_path / "ck", log_path=tmp_path / "log.jsonl")
    with pytest.raises(Killed):
        fit(Planted(), c, on_epoch_end=kill_at(2))
    fresh = Planted()
    fit(fresh, c.model_copy(update={"resume": False, "epochs": 3}))
    assert fresh.calls == [1, 2, 3]
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


@pytest.mark.parametrize(
    ("identity", "trainer_change", "message"),
    [
        (RunIdentity({"factors": 8, "seed": 1}, "data-a"), {}, r"model config differs \(factors 4 -> 8\)"),
        (IDENT, {"patience": 3}, r"trainer config differs \(patience 2 -> 3\)"),
        (RunIdentity({"factors": 4, "seed": 1}, "data-b"), {}, r"data differs \('data-a' -> 'data-b'\)"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(
    tmp_path, identity, trainer_change, message
):
    c = cfg(checkpoint_dir=tmp_path / "ck")
    with pytest.raises(Killed):
        fit(Planted(), c, on_epoch_end=kill_at(2))
    other = Planted()
    with pytest.raises(ConfigError, match=message) as err:
        fit(other, c.model_copy(update=trainer_change), identity=identity)
    assert "--overwrite" in str(err.value) and str(tmp_path / "ck" / CHECKPOINT_NAME) in str(err.value)
    assert other.calls == []
    # only that part is named
    assert sum(part in str(err.value) for part in ("model config", "trainer config", "data differs")) == 1


def test_logging_progress_and_paths_are_not_part_of_the_identity(tmp_path):
    c = cfg(patience=None, checkpoint_dir=tmp_path / "ck", log_path=tmp_path / "a.jsonl")
    with pytest.raises(Killed):
        fit(Planted(), c, on_epoch_end=kill_at(2))
    resumed = Planted()
    fit(resumed, c.model_copy(update={"log_path": tmp_path / "b.jsonl", "progress": True}))
    assert resumed.calls == [3, 4, 5, 6]


def test_a_checkpoint_without_identity_is_refused(tmp_path):
    c = cfg(checkpoint_dir=tmp_path / "ck")
    with pytest.raises(Killed):
        fit(Planted(), c, on_epoch_end=kill_at(1))
    path = tmp_path / "ck" / CHECKPOINT_NAME
    saved = torch.load(path, weights_only=True)
    del saved["identity"]
    torch.save(saved, path)
    with pytest.raises(ConfigError, match="records no run identity"):
        fit(Planted(), c)


def test_fit_checks_its_arguments():
    with pytest.raises(ConfigError, match="make_batches"):
        Trainer(cfg()).fit(nn.Linear(1, 1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="EpochSolver"):
        Trainer(cfg()).fit(Planted(), lambda e, g: [])


def _interactions(ratings: list[float]) -> Interactions:
    df = pl.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["x", "x", "y"], "rating": ratings})
    uv = Vocabulary.from_ids(df["user_id"], kind="user")
    iv = Vocabulary.from_ids(df["item_id"], kind="item")
    return Interactions.encode(df, uv, iv)[0]


def test_data_fingerprint_follows_the_data_only():
    a, b = _interactions([1.0, 2.0, 3.0]), _interactions([1.0, 2.0, 3.0])
    assert data_fingerprint(a, None) == data_fingerprint(b, None)
    assert data_fingerprint(a, None) != data_fingerprint(_interactions([1.0, 2.0, 4.0]), None)
    assert data_fingerprint(a, None) != data_fingerprint(a, b)  # a validation split is part of the data
    x = np.arange(6, dtype=np.int64)
    assert data_fingerprint(torch.arange(6)) == data_fingerprint(torch.arange(6))
    assert data_fingerprint(torch.arange(6)) != data_fingerprint(torch.arange(1, 7))
    assert data_fingerprint(x) != data_fingerprint(x.reshape(2, 3))
    assert data_fingerprint({"b": 1, "a": [1, 2]}) == data_fingerprint({"a": [1, 2], "b": 1})
    assert len(data_fingerprint(x)) == 16
