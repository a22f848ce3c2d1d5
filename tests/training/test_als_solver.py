"""svd's ALS sweeps as the epochs of the one Trainer: the same maths as the loop it replaced (validation RMSE per
sweep unchanged), the Trainer's early stopping / best restore / log, and exact resume after a kill."""

import json

import numpy as np
import polars as pl
import pytest
import torch

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.models.rating import svd as svd_mod
from attnrec.models.rating.svd import SVD, ALSSide, als_half_step, svd_init
from attnrec.training.trainer import TrainerConfig


@pytest.fixture(scope="module")
def split() -> tuple[Interactions, Interactions]:
    rng = np.random.default_rng(0)
    n = 900
    u, i = rng.integers(0, 40, n), rng.integers(0, 30, n)
    r = np.clip(np.round(3 + (u % 3 - 1) * (i % 2 * 2 - 1) + rng.normal(0, 0.7, n)), 1, 5)
    df = pl.DataFrame({"user_id": u.astype(str), "item_id": i.astype(str), "rating": r.astype(np.float32)})
    tr, va = df[:750], df[750:]
    uv = Vocabulary.from_ids(tr["user_id"], kind="user")
    iv = Vocabulary.from_ids(tr["item_id"], kind="item")
    return Interactions.encode(tr, uv, iv)[0], Interactions.encode(va, uv, iv, unknown="drop")[0]


#: per-sweep validation RMSE and loss of svd's own ALS early-stopping loop (svd._fit_als before the Trainer took it
#: over, commit 7a2db2f), on the fixture's data; that loop had no factor prior (reg_prior=0)
OLD_LOOP = {
    "svd_init": (
        {"factors": 4, "iterations": 5, "patience": 5, "reg": 0.05, "reg_bias": 1.0, "reg_prior": 0.0},
        [0.8870926448096779, 0.8912782157988721, 0.8991816766014769, 0.908216845523698, 0.9163435457435991],
        [
            0.465037687734296,
            0.44468225553812046,
            0.4387587399745262,
            0.43536068893201174,
            0.43291129941180634,
        ],
        1,
    ),
    "random_init_early_stop": (
        {"factors": 3, "iterations": 6, "patience": 1, "init": "random", "seed": 3, "reg_prior": 0.0},
        [1.0181397379833899, 0.8227589997367469, 0.823973496198722],
        [0.9486608807145256, 0.6421763042247579, 0.6259832430336619],
        2,
    ),
}


@pytest.mark.parametrize("case", sorted(OLD_LOOP))
def test_validation_rmse_per_sweep_is_the_old_loops(split, case):
    train, valid = split
    params, rmse, loss, best = OLD_LOOP[case]
    model = SVD(**params)
    report = model.fit(train, valid)
    assert [r["valid_rmse"] for r in report.history] == pytest.approx(rmse, rel=1e-6)
    assert [r["loss"] for r in report.history] == pytest.approx(loss, rel=1e-6)
    assert report.best_epoch == best and report.epochs_run == len(rmse)
    # the best sweep is restored
    assert report.best_valid["rmse"] == pytest.approx(rmse[best - 1], rel=1e-6)


def explicit_als(params: dict, train: Interactions, valid: Interactions) -> list[float]:
    """The sweep-and-stop loop written out from the ALS building blocks: the validation RMSE of each sweep."""
    model = SVD(**params)
    c = model.config
    torch.manual_seed(c.seed)
    m = model.build_module(train)
    mu = float(m.mu)
    centred = train.ratings.astype(np.float32) - np.float32(mu)
    shape = (train.n_users, train.n_items)
    by_user = ALSSide(train.users, train.items, centred, shape)
    by_item = ALSSide(train.items, train.users, centred, (shape[1], shape[0]))
    kw = {"weighted": c.weighted_reg, "weighted_bias": c.weighted_reg_bias}
    prior = {"prior": c.reg_prior}
    if c.init == "svd":
        q, bi = svd_init(by_user, by_item, c.factors, c.reg_bias, init_std=c.init_std, **kw)
    else:
        q, bi = m.q.detach().clone(), torch.zeros(train.n_items)
    lo, hi = float(train.ratings.min()), float(train.ratings.max())
    out, best, stale = [], np.inf, 0
    for _ in range(c.iterations):
        p, bu, _ = als_half_step(by_user, q, bi, c.reg, c.reg_bias, **kw, **prior)
        q, bi, _ = als_half_step(by_item, p, bu, c.reg, c.reg_bias, **kw, **prior)
        uu, ii = torch.tensor(valid.users), torch.tensor(valid.items)
        pred = (mu + bu[uu] + bi[ii] + (p[uu] * q[ii]).sum(-1)).clamp(lo, hi).double().numpy()
        rmse = float(np.sqrt(np.mean((pred - valid.ratings.astype(np.float64)) ** 2)))
        out.append(rmse)
        best, stale = (rmse, 0) if rmse < best else (best, stale + 1)
        if stale >= c.patience:
            break
    return out


@pytest.mark.parametrize("case", sorted(OLD_LOOP))
def test_validation_rmse_per_sweep_matches_an_explicit_loop(split, case):
    train, valid = split
    params = OLD_LOOP[case][0]
    report = SVD(**params).fit(train, valid)
    assert [r["valid_rmse"] for r in report.history] == pytest.approx(
        explicit_als(params, train, valid), rel=1e-6
    )


def test_als_writes_the_trainers_log(split, tmp_path):
    train, valid = split
    log = tmp_path / "train_log.jsonl"
    params = OLD_LOOP["random_init_early_stop"][0]
    report = SVD(**params).fit(
        train, valid, trainer=TrainerConfig(device="cpu", progress=False, log_path=log)
    )
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["valid_rmse"] for r in rows] == [r["valid_rmse"] for r in report.history]


class Killed(Exception):
    pass


def test_als_resumes_exactly_after_a_kill(split, tmp_path, monkeypatch):
    train, valid = split
    params = {"factors": 4, "iterations": 5, "patience": 5, "reg": 0.05, "reg_bias": 1.0}
    straight = SVD(**params)
    straight_report = straight.fit(train, valid)
    c = TrainerConfig(
        device="cpu", progress=False, checkpoint_dir=tmp_path / "ck", log_path=tmp_path / "log.jsonl"
    )

    original = svd_mod.ALSSolver.train_epoch

    def dies_at_3(self, epoch, generator):
        if epoch == 3:
            raise Killed
        return original(self, epoch, generator)

    monkeypatch.setattr(svd_mod.ALSSolver, "train_epoch", dies_at_3)
    with pytest.raises(Killed):
        SVD(**params).fit(train, valid, trainer=c)
    monkeypatch.setattr(svd_mod.ALSSolver, "train_epoch", original)
    resumed = SVD(**params)
    report = resumed.fit(train, valid, trainer=c)
    assert [r["valid_rmse"] for r in report.history] == [r["valid_rmse"] for r in straight_report.history]
    for name in ("p", "q", "bu", "bi"):
        assert torch.equal(getattr(resumed.mf, name), getattr(straight.mf, name))
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
