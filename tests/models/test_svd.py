"""svd: conformance for both solvers, and checks that would catch a wrong equation."""

import numpy as np
import polars as pl
import pytest
import torch

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.evaluation.protocols import evaluate
from attnrec.models.rating.svd import SVD, ALSSide, als_half_step, als_refit
from attnrec.testing import ConformanceTests, checkerboard
from attnrec.training.trainer import TrainerConfig


class TestSVDALSConformance(ConformanceTests):
    model_class = SVD
    config = {"factors": 8, "iterations": 4}


class TestSVDSGDConformance(ConformanceTests):
    model_class = SVD
    config = {"factors": 8, "solver": "sgd", "reg": 0.01, "reg_bias": 0.01}
    trainer = {"epochs": 40, "lr": 0.05, "batch_size": 256, "patience": 40}


def _interactions(users, items, ratings, n_users, n_items):
    df = pl.DataFrame(
        {
            "user_id": np.asarray(users).astype(str),
            "item_id": np.asarray(items).astype(str),
            "rating": np.asarray(ratings, dtype=np.float32),
        }
    )
    uv = Vocabulary([str(x) for x in range(n_users)], kind="user")
    iv = Vocabulary([str(x) for x in range(n_items)], kind="item")
    return Interactions.encode(df, uv, iv)[0]


@pytest.mark.parametrize(
    ("weighted", "weighted_bias", "prior"),
    [(True, True, 0.0), (False, False, 0.0), (True, False, 0.0), (True, False, 7.0), (False, False, 7.0)],
)
def test_als_half_step_is_the_closed_form_ridge_solution(weighted, weighted_bias, prior):
    rng = np.random.default_rng(0)
    n_users, n_items, k = 6, 7, 3
    mask = rng.random((n_users, n_items)) < 0.6
    mask[:, 0] = True
    mask[5] = False  # a user without ratings: ridge on nothing gives zeros
    u, i = np.nonzero(mask)
    u, i = np.append(u, 1), np.append(i, 0)  # a repeated (user, item) pair counts as two ratings
    y = rng.normal(size=len(u)).astype(np.float32)  # already centred (r - mu)
    q = rng.normal(size=(n_items, k)).astype(np.float32)
    bi = rng.normal(size=n_items).astype(np.float32)
    lam, lam_b = 0.3, 0.05
    side = ALSSide(u, i, y, (n_users, n_items))
    p, bu, objective = als_half_step(
        side,
        torch.from_numpy(q),
        torch.from_numpy(bi),
        lam,
        lam_b,
        weighted=weighted,
        weighted_bias=weighted_bias,
        prior=prior,
    )
    expect_obj = 0.0
    for user in range(n_users):
        sel = u == user
        qt = np.hstack([q[i[sel]], np.ones((sel.sum(), 1))]).astype(np.float64)
        target = y[sel] - bi[i[sel]]
        n = max(sel.sum(), 1)
        # the prior n₀ adds λn₀ to a weighted factor ridge only (a plain λ is already a fixed ridge)
        reg = np.diag([lam * (n + prior if weighted else 1)] * k + [lam_b * (n if weighted_bias else 1)])
        x = np.linalg.solve(qt.T @ qt + reg, qt.T @ target)
        np.testing.assert_allclose(p[user].numpy(), x[:k], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bu[user].item(), x[k], rtol=1e-4, atol=1e-4)
        expect_obj += np.sum((target - qt @ x) ** 2) + x @ reg @ x
    np.testing.assert_array_equal(p[5].numpy(), np.zeros(k))
    assert objective == pytest.approx(expect_obj, rel=1e-4)


def test_als_history_loss_is_the_training_objective():
    train, _, _ = checkerboard()
    m = SVD(factors=4, iterations=3)
    report = m.fit(train)
    u, i, r = (torch.tensor(a) for a in (train.users, train.items, train.ratings))
    with torch.no_grad():
        direct = float(m.mf.objective(u, i, r))
    assert report.history[-1]["loss"] == pytest.approx(direct, rel=1e-4)
    losses = [row["loss"] for row in report.history]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:], strict=False))  # ALS never goes uphill


@pytest.mark.parametrize("solver", ["als", "sgd"])
def test_prediction_is_mu_plus_biases_plus_dot(solver):
    train, _, test = checkerboard()
    m = SVD(factors=4, iterations=3, clip=False, solver=solver)
    m.fit(train, trainer=TrainerConfig(epochs=2, progress=False, device="cpu"))
    P, Q, bu, bi, mu = m.user_factors, m.item_factors, m.user_biases, m.item_biases, m.global_mean
    expect = mu + bu[test.users] + bi[test.items] + np.sum(P[test.users] * Q[test.items], axis=1)
    np.testing.assert_allclose(m.predict(test.users, test.items), expect, rtol=1e-5, atol=1e-5)
    assert mu == pytest.approx(float(train.ratings.mean()), abs=1e-5)
    full = m.score_users(np.array([0, 3])).numpy()
    np.testing.assert_allclose(
        full, mu + bu[[0, 3], None] + bi[None, :] + P[[0, 3]] @ Q.T, rtol=1e-5, atol=1e-5
    )
    # both solvers leave the same tensors, so bundles and hybrid models do not depend on the solver
    # (+ the rating counts of the damped bias penalty, the default, so a loaded model keeps its objective)
    assert set(m.state_tensors()) == {"p", "q", "bu", "bi", "mu", "_rating_range", "user_count", "item_count"}


def test_clipping_to_training_rating_range():
    data = _interactions([0, 0, 1, 1], [0, 1, 0, 1], [1.0, 5.0, 5.0, 1.0], 2, 2)
    m = SVD(factors=2, iterations=3, reg=0.0, reg_bias=0.0)
    m.fit(data)
    users, items = np.array([0, 1, 0, 1]), np.array([0, 1, 1, 0])
    raw = SVD(factors=2, iterations=3, reg=0.0, reg_bias=0.0, clip=False)
    raw.fit(data)
    np.testing.assert_allclose(m.predict(users, items), np.clip(raw.predict(users, items), 1.0, 5.0))
    assert m.rating_range == (1.0, 5.0)


def _biased_data(seed=0):
    """Ratings generated by biases only: r = 3 + b_u + b_i (+ small noise)."""
    rng = np.random.default_rng(seed)
    bu_true = rng.normal(0, 0.8, 40)
    bi_true = rng.normal(0, 0.8, 30)
    u, i = np.nonzero(rng.random((40, 30)) < 0.7)
    r = 3 + bu_true[u] + bi_true[i] + rng.normal(0, 0.05, len(u))
    return _interactions(u, i, r, 40, 30), bu_true, bi_true


@pytest.mark.parametrize("solver", ["als", "sgd"])
def test_biases_recovered(solver):
    data, bu_true, bi_true = _biased_data()
    # factors pinned near zero (tiny init, heavy factor penalty): a biases-only model
    m = SVD(factors=1, solver=solver, reg=10.0, reg_bias=1e-4, init_std=1e-3, iterations=5, clip=False)
    trainer = TrainerConfig(epochs=120, lr=0.05, batch_size=512, progress=False, device="cpu")
    m.fit(data, None, trainer=trainer)
    assert np.abs(m.user_factors).max() < 0.05
    pred = m.predict(data.users, data.items)
    assert np.sqrt(np.mean((pred - data.ratings) ** 2)) < 0.1
    # biases are identified up to a constant shared between users and items: compare centred values
    np.testing.assert_allclose(m.user_biases - m.user_biases.mean(), bu_true - bu_true.mean(), atol=0.1)
    np.testing.assert_allclose(m.item_biases - m.item_biases.mean(), bi_true - bi_true.mean(), atol=0.1)


def test_validation_picks_the_best_iteration():
    train, _, _ = checkerboard()
    # a validation split that contradicts the training ratings (6 - r): the better ALS fits train, the worse
    # validation gets, so the best sweep is an early one and keeping the last sweep would be caught
    contrary = Interactions(
        train.frame.with_columns((6.0 - pl.col("rating")).cast(pl.Float32).alias("rating")),
        train.user_vocab,
        train.item_vocab,
    )
    m = SVD(factors=4, iterations=6, patience=6, init="random")
    report = m.fit(train, contrary)
    curve = [row["valid_rmse"] for row in report.history]
    assert len(curve) == 6
    assert report.best_epoch == int(np.argmin(curve)) + 1 < 6
    assert evaluate(m, contrary)["rmse"] == pytest.approx(min(curve), abs=1e-6)
    assert evaluate(m, contrary)["rmse"] < curve[-1] - 1e-3
    assert report.best_valid["rmse"] == pytest.approx(min(curve), abs=1e-12)
    # patience stops the sweeps once validation stops improving
    short = SVD(factors=4, iterations=6, patience=1, init="random").fit(train, contrary)
    assert short.epochs_run == report.best_epoch + 1


def test_als_beats_the_global_mean_on_train():
    train, _, _ = checkerboard()
    m = SVD(factors=4)
    m.fit(train)
    mean_rmse = np.sqrt(np.mean((train.ratings - train.ratings.mean()) ** 2))
    assert evaluate(m, train)["rmse"] < 0.25 * mean_rmse


def test_sgd_fills_unset_trainer_fields_with_its_defaults():
    train, _, _ = checkerboard()
    m = SVD(factors=4, solver="sgd")
    report = m.fit(train, trainer=TrainerConfig(epochs=2, progress=False, device="cpu"))
    assert report.epochs_run == 2  # set by the caller: kept
    assert report.history[0]["lr"] == SVD.sgd_trainer_defaults["lr"]  # unset: the solver's default
    report = SVD(factors=4, solver="sgd").fit(
        train, trainer=TrainerConfig(epochs=1, lr=0.003, progress=False, device="cpu")
    )
    assert report.history[0]["lr"] == 0.003


def test_factors_exposed_for_hybrid_models():
    train, _, _ = checkerboard()
    m = SVD(factors=5, iterations=2)
    m.fit(train)
    assert m.user_factors.shape == (train.n_users, 5) and m.item_factors.shape == (train.n_items, 5)
    assert SVD().config.factors == 50


def test_damped_bias_penalty_counts_each_bias_once_in_the_sgd_objective():
    train, _, _ = checkerboard()
    u, i, r = (torch.tensor(a) for a in (train.users, train.items, train.ratings))
    for weighted_bias in (True, False):
        m = SVD(factors=3, reg=0.2, reg_bias=2.0, weighted_reg_bias=weighted_bias, reg_prior=5.0)
        mf = m.build_module(train)
        seen_u, seen_i = np.unique(train.users), np.unique(train.items)
        with torch.no_grad():
            mf.bu.normal_()
            mf.bi.normal_()
            total = float(mf.objective(u, i, r)) * len(r)
            err = float((r - mf(u, i)).square().sum())
            factors = 0.2 * float((mf.p[u].square().sum(-1) + mf.q[i].square().sum(-1)).sum())
            # the factor prior λn₀‖p_u‖² once per user and item with ratings
            factors += 0.2 * 5.0 * float(mf.p[seen_u].square().sum() + mf.q[seen_i].square().sum())
        if weighted_bias:  # λ_b per rating
            biases = 2.0 * float((mf.bu[u].square() + mf.bi[i].square()).sum().detach())
        else:  # λ_b once per user and per item that has ratings
            biases = 2.0 * float((mf.bu[seen_u].square().sum() + mf.bi[seen_i].square().sum()).detach())
        assert total == pytest.approx(err + factors + biases, rel=1e-5)


def test_a_loaded_bundle_keeps_the_damped_objective(tmp_path):
    from attnrec.serving.bundle import load_bundle, save_bundle

    train, valid, _ = checkerboard()
    m = SVD(factors=4, iterations=2)
    m.fit(train, valid)
    save_bundle(m, tmp_path / "svd")
    loaded = load_bundle(tmp_path / "svd")
    u, i, r = (torch.tensor(a) for a in (train.users, train.items, train.ratings))
    assert loaded.mf.damped
    with torch.no_grad():
        assert float(loaded.mf.objective(u, i, r)) == pytest.approx(float(m.mf.objective(u, i, r)), rel=1e-6)
    np.testing.assert_array_equal(
        loaded.predict(train.users, train.items), m.predict(train.users, train.items)
    )


def test_a_bundle_from_before_the_factor_prior_loads_without_it(tmp_path):
    from attnrec.serving.bundle import load_bundle, save_bundle
    from attnrec.testing.tamper import manifest, write_manifest

    train, valid, _ = checkerboard()
    m = SVD(factors=4, iterations=2)
    m.fit(train, valid)
    save_bundle(m, tmp_path / "svd")
    # today's bundles keep what they were saved with
    assert load_bundle(tmp_path / "svd").config.reg_prior == 10.0
    data = manifest(tmp_path / "svd")
    del data["config"]["reg_prior"]  # what a bundle written before the prior existed holds
    write_manifest(tmp_path / "svd", data)
    old = load_bundle(tmp_path / "svd")
    assert old.config.reg_prior == 0.0  # the ridge it was trained with, not today's default (fold-in uses it)
    assert old.mf.reg_prior == 0.0


def test_the_factor_prior_is_ignored_without_the_weighted_ridge_in_both_solvers():
    train, valid, _ = checkerboard()
    for solver in ("als", "sgd"):
        m = SVD(factors=4, iterations=1, solver=solver, weighted_reg=False, reg_prior=10.0)
        m.fit(train, valid, trainer=TrainerConfig(epochs=1))
        assert m.mf.reg_prior == 0.0, solver


def test_als_refit_stays_in_the_full_fit_coordinates_and_never_sees_left_out_rows():
    train, _, _ = checkerboard()
    m = SVD(factors=8, iterations=6, patience=6)
    m.fit(train)
    everything = np.ones(len(train), dtype=bool)
    p, bu, q, bi = als_refit(m, train, everything, sweeps=1)
    # on all rows, one more sweep from a converged fit barely moves it: same coordinates (no rotation)
    full = torch.from_numpy(m.user_factors) @ torch.from_numpy(m.item_factors).T
    assert float((p @ q.T - full).abs().max()) < 0.05
    cos = torch.nn.functional.cosine_similarity(q, torch.from_numpy(m.item_factors), dim=1)
    assert float(cos[torch.from_numpy(m.item_factors).norm(dim=1) > 1e-3].min()) > 0.95
    # leave out some rows: the result does not depend on their ratings at all
    keep = np.arange(len(train)) % 5 != 0
    a = als_refit(m, train, keep)
    changed = Interactions(
        train.frame.with_columns(
            pl.when(pl.Series(~keep)).then(6.0 - pl.col("rating")).otherwise(pl.col("rating")).alias("rating")
        ),
        train.user_vocab,
        train.item_vocab,
    )
    b = als_refit(m, changed, keep)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    # a user whose every rating is left out has no vector and no bias
    u0 = train.users == 0
    p, bu, _, _ = als_refit(m, train, ~u0)
    assert not p[0].any() and float(bu[0]) == 0.0


def _sparse_ratings(n_items: int, seed: int) -> tuple[Interactions, Interactions]:
    """A catalogue of bench_svd_scaling's shape (users = 3 × items, 27 ratings per item, ~7 per training user,
    power-law users and items, 8 latent factors + N(0, 0.8²) noise, 1-5): (train, valid), 90/10 at random."""
    rng = np.random.default_rng(seed)
    n_users, n = 3 * n_items, 27 * n_items
    wu, wi = (np.arange(n_users) + 10.0) ** -0.6, (np.arange(n_items) + 10.0) ** -0.8
    u, i = rng.choice(n_users, n, p=wu / wu.sum()), rng.choice(n_items, n, p=wi / wi.sum())
    p, q = rng.normal(0, 0.5, (n_users, 8)), rng.normal(0, 0.5, (n_items, 8))
    bu, bi = rng.normal(0, 0.4, n_users), rng.normal(0, 0.4, n_items)
    r = np.clip(np.rint(3.6 + bu[u] + bi[i] + (p[u] * q[i]).sum(1) + rng.normal(0, 0.8, n)), 1, 5)
    va = rng.random(n) < 0.1
    return (
        _interactions(u[~va], i[~va], r[~va], n_users, n_items),
        _interactions(u[va], i[va], r[va], n_users, n_items),
    )


def test_the_factor_prior_stops_short_rows_over_fitting_on_a_sparse_catalogue():
    # issue 19's 1.6k-item miss: pure weighted-λ (n₀ = 0) gives a user with 2 ratings the same relative shrinkage
    # as one with 200, and its 50 factors over-fit the many short rows of an Amazon-shaped catalogue. The prior
    # must make validation RMSE clearly better there, and the one-rating rows' vectors clearly shorter
    train, valid = _sparse_ratings(500, seed=2)
    rmse = {}
    norms = {}
    for prior in (0.0, 10.0):
        m = SVD(seed=0, reg_prior=prior)
        m.fit(train, valid)
        rmse[prior] = evaluate(m, valid)["rmse"]
        once = np.flatnonzero(np.bincount(train.users, minlength=train.n_users) == 1)
        norms[prior] = float(np.linalg.norm(m.user_factors[once], axis=1).mean())
    assert rmse[10.0] < rmse[0.0] - 0.004, rmse  # measured: 1.0559 -> 1.0483
    assert norms[10.0] < 0.5 * norms[0.0], norms
