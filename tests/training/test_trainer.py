"""The Trainer: loss goes down, early stopping watches validation only, best epoch restored, exact resume."""

import json

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from attnrec.data.batches import RatingBatch, rating_batches
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError
from attnrec.models.base import TrainableModule
from attnrec.training.trainer import CHECKPOINT_NAME, Trainer, TrainerConfig


class Toy(TrainableModule):
    """rating ≈ w_u + w_i, with dropout so that resume must restore the dropout RNG stream too."""

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.u = nn.Embedding(n_users, 4)
        self.i = nn.Embedding(n_items, 4)
        self.drop = nn.Dropout(0.3)

    def loss(self, batch: RatingBatch) -> torch.Tensor:
        pred = (self.drop(self.u(batch.users)) * self.i(batch.items)).sum(-1)
        return ((pred - batch.ratings) ** 2).mean()


@pytest.fixture(scope="module")
def data() -> Interactions:
    rng = np.random.default_rng(0)
    n = 400
    u, i = rng.integers(0, 20, n), rng.integers(0, 15, n)
    df = pl.DataFrame(
        {"user_id": u.astype(str), "item_id": i.astype(str), "rating": (u % 3 + i % 2).astype(np.float32)}
    )
    uv = Vocabulary.from_ids(df["user_id"], kind="user")
    iv = Vocabulary.from_ids(df["item_id"], kind="item")
    return Interactions.encode(df, uv, iv)[0]


def make_batches(data):
    return lambda epoch, gen: rating_batches(data, 64, generator=gen)


def cfg(**kw) -> TrainerConfig:
    return TrainerConfig(**{"progress": False, "device": "cpu", "lr": 0.05, **kw})


def test_loss_decreases_and_history(data):
    torch.manual_seed(0)
    model = Toy(data.n_users, data.n_items)
    report = Trainer(cfg(epochs=8)).fit(model, make_batches(data), seed=1)
    losses = [r["loss"] for r in report.history]
    assert len(losses) == 8 and report.epochs_run == 8
    assert losses[-1] < 0.5 * losses[0]


def test_early_stopping_restores_best_epoch(data):
    # a validation curve that improves until epoch 3 and then worsens: the Trainer must stop after
    # `patience` bad epochs and restore the epoch-3 weights.
    curve = iter([5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9])
    snapshots = {}
    torch.manual_seed(0)
    model = Toy(data.n_users, data.n_items)

    def validate():
        return {"rmse": next(curve)}

    def remember(epoch, row):
        snapshots[epoch] = model.u.weight.detach().clone()

    trainer = Trainer(cfg(epochs=8, patience=2), valid_metric="rmse", mode="min")
    report = trainer.fit(model, make_batches(data), validate=validate, seed=1, on_epoch_end=remember)
    assert report.best_epoch == 3
    assert report.epochs_run == 5  # epochs 4 and 5 were bad, patience 2
    assert report.best_valid == {"rmse": 3.0}
    assert torch.equal(model.u.weight, snapshots[3])


def test_unknown_valid_metric_is_named(data):
    model = Toy(data.n_users, data.n_items)
    trainer = Trainer(cfg(epochs=1), valid_metric="ndcg@20", mode="max")
    with pytest.raises(ConfigError, match="ndcg@20"):
        trainer.fit(model, make_batches(data), validate=lambda: {"rmse": 1.0})


def test_config_typo_is_an_error():
    with pytest.raises(Exception, match="epoch"):
        TrainerConfig(epoch=3)


def test_same_seed_same_weights(data):
    def run():
        torch.manual_seed(0)
        m = Toy(data.n_users, data.n_items)
        Trainer(cfg(epochs=3)).fit(m, make_batches(data), seed=7)
        return m.u.weight.detach().clone()

    assert torch.equal(run(), run())


def test_exact_resume_after_kill(data, tmp_path):
    epochs = 6
    torch.manual_seed(0)
    straight = Toy(data.n_users, data.n_items)
    Trainer(cfg(epochs=epochs, lr_schedule="cosine", patience=None), valid_metric="rmse").fit(
        straight, make_batches(data), validate=lambda: {"rmse": 1.0}, seed=3
    )

    class Killed(Exception):
        pass

    def kill_after_3(epoch, row):
        if epoch == 3:
            raise Killed

    ckdir = tmp_path / "ck"
    log = tmp_path / "log.jsonl"
    torch.manual_seed(0)
    first = Toy(data.n_users, data.n_items)
    c = cfg(epochs=epochs, lr_schedule="cosine", checkpoint_dir=ckdir, log_path=log, patience=None)
    with pytest.raises(Killed):
        Trainer(c, valid_metric="rmse").fit(
            first, make_batches(data), validate=lambda: {"rmse": 1.0}, seed=3, on_epoch_end=kill_after_3
        )
    assert (ckdir / CHECKPOINT_NAME).exists()

    torch.manual_seed(123)  # a fresh process would start from different weights: the checkpoint must win
    resumed = Toy(data.n_users, data.n_items)
    report = Trainer(c, valid_metric="rmse").fit(
        resumed, make_batches(data), validate=lambda: {"rmse": 1.0}, seed=3
    )
    assert report.epochs_run == epochs
    assert [r["epoch"] for r in report.history] == list(range(1, epochs + 1))
    assert torch.equal(resumed.u.weight, straight.u.weight)
    assert torch.equal(resumed.i.weight, straight.i.weight)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    # the checkpoint is loadable with weights_only=True (nothing pickled beyond tensors and plain data)
    torch.load(ckdir / CHECKPOINT_NAME, weights_only=True)


KILLED_RUN = """
import os, signal, sys
import numpy as np, polars as pl, torch
from torch import nn
from attnrec.data.batches import RatingBatch, rating_batches
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.training.trainer import Trainer, TrainerConfig
from attnrec.training.types import RunIdentity, TrainableModule

{toy}

rng = np.random.default_rng(0)
n = 400
u, i = rng.integers(0, 20, n), rng.integers(0, 15, n)
df = pl.DataFrame({{"user_id": u.astype(str), "item_id": i.astype(str), "rating": (u % 3 + i % 2).astype(np.float32)}})
uv = Vocabulary.from_ids(df["user_id"], kind="user")
iv = Vocabulary.from_ids(df["item_id"], kind="item")
data = Interactions.encode(df, uv, iv)[0]
torch.manual_seed(0)
model = Toy(data.n_users, data.n_items)
c = TrainerConfig(progress=False, device="cpu", lr=0.05, epochs=6, lr_schedule="cosine", patience=None,
                  checkpoint_dir=sys.argv[1], log_path=sys.argv[2])

def die(epoch, row):
    if epoch == 3:
        os.kill(os.getpid(), signal.SIGKILL)

Trainer(c, valid_metric="rmse").fit(model, lambda e, g: rating_batches(data, 64, generator=g),
    validate=lambda: {{"rmse": 1.0}}, seed=3, on_epoch_end=die, identity=RunIdentity({{"dim": 4}}, "toy"))
"""


def test_exact_resume_after_kill_9(data, tmp_path):
    """A real SIGKILL of a training process after epoch 3; a new process's fit resumes it bit for bit."""
    import inspect
    import signal
    import subprocess
    import sys

    from attnrec.training.types import RunIdentity

    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN.format(toy=inspect.getsource(Toy)))
    ckdir, log = tmp_path / "ck", tmp_path / "log.jsonl"
    proc = subprocess.run(
        [sys.executable, str(script), str(ckdir), str(log)], capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert [json.loads(x)["epoch"] for x in log.read_text().splitlines()] == [1, 2, 3]

    c = cfg(epochs=6, lr_schedule="cosine", patience=None)
    torch.manual_seed(0)
    straight = Toy(data.n_users, data.n_items)
    Trainer(c, valid_metric="rmse").fit(straight, make_batches(data), validate=lambda: {"rmse": 1.0}, seed=3)
    torch.manual_seed(99)
    resumed = Toy(data.n_users, data.n_items)
    Trainer(c.model_copy(update={"checkpoint_dir": ckdir, "log_path": log}), valid_metric="rmse").fit(
        resumed,
        make_batches(data),
        validate=lambda: {"rmse": 1.0},
        seed=3,
        identity=RunIdentity({"dim": 4}, "toy"),
    )
    assert torch.equal(resumed.u.weight, straight.u.weight)
    assert torch.equal(resumed.i.weight, straight.i.weight)
    assert [json.loads(x)["epoch"] for x in log.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
