"""Query and History: validation, slicing, ids; and the fold-in maths of every model that takes a history."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from attnrec.errors import ConfigError, UnknownIdError
from attnrec.models.query import History, Query
from attnrec.models.rating.svd import SVD, ALSSide, als_half_step
from attnrec.models.topk.bpr import BPR
from attnrec.models.topk.lightgcn import LightGCN, LightGCNModule
from attnrec.testing import checkerboard
from attnrec.training.trainer import TrainerConfig

FAST = TrainerConfig(epochs=15, lr=0.02, batch_size=128, progress=False, device="cpu")


# ------------------------------------------------------------------------------------------ History
def test_history_from_lists_layout():
    h = History.from_lists([[3, 1], [], [2, 2, 0]], values=[[5.0, 4.0], [], [1.0, 2.0, 3.0]])
    assert len(h) == 3
    np.testing.assert_array_equal(h.items, [3, 1, 2, 2, 0])
    np.testing.assert_array_equal(h.offsets, [0, 2, 2, 5])
    np.testing.assert_array_equal(h.lengths(), [2, 0, 3])
    np.testing.assert_array_equal(h.row_ids(), [0, 0, 2, 2, 2])
    np.testing.assert_array_equal(h.row(2), [2, 2, 0])
    assert h.values is not None and h.values.dtype == np.float32
    np.testing.assert_array_equal(h.values, [5.0, 4.0, 1.0, 2.0, 3.0])
    # the 0/1 matrix counts a repeated item once
    np.testing.assert_array_equal(h.csr(4).toarray(), [[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"items": [1, 2], "offsets": [1, 2]}, "start at 0"),
        ({"items": [1, 2], "offsets": [0, 1]}, "end at len"),
        ({"items": [1, 2, 3], "offsets": [0, 2, 1, 3]}, "non-decreasing"),
        ({"items": [1, 2], "offsets": [0, 2], "values": [1.0]}, "values has 1 entries for 2 items"),
        ({"items": [1, 2], "offsets": [0, 2], "timestamps": [1, 2, 3]}, "timestamps has 3"),
    ],
)
def test_history_validation_names_the_problem(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        History(**kwargs)


def test_history_values_must_match_the_rows_and_items_must_be_in_range():
    with pytest.raises(ConfigError, match="one entry per item"):
        History.from_lists([[1, 2]], values=[[5.0]])
    h = History.from_lists([[0, 7]])
    with pytest.raises(ConfigError, match="item index 7 is out of range 0..4"):
        h.csr(5)
    with pytest.raises(ConfigError, match="item index -2"):
        History.from_lists([[-2]]).check_range(5)


# ------------------------------------------------------------------------------------------ Query
def test_query_validation():
    with pytest.raises(ConfigError, match="needs users, a history or a text"):
        Query()
    with pytest.raises(ConfigError, match="different numbers of rows"):
        Query(users=np.array([0, 1]), history=History.from_lists([[1]]))
    with pytest.raises(ConfigError, match="different numbers of rows"):
        Query(users=np.array([0]), text=["a", "b"])
    with pytest.raises(ConfigError, match="index -2 is invalid"):
        Query(users=np.array([0, -2]))
    with pytest.raises(ConfigError, match="new user .* needs a history or a text"):
        Query(users=np.array([0, -1]))
    with pytest.raises(ConfigError, match="exclude"):
        Query(users=np.array([0]), exclude="train")  # type: ignore[arg-type]
    # -1 is fine with a history or a text; a query of new users only does not carry "users"
    q = Query(users=np.array([-1]), history=History.from_lists([[1]]))
    assert q.inputs == {"history"}
    assert Query(users=np.array([-1, 3]), text=["x", "y"], domain="books").inputs == {
        "users",
        "text",
        "domain",
    }
    assert len(Query(text=["a", "b", "c"])) == 3
    assert Query(users=[[1, 2]]).users.shape == (2,)  # type: ignore[arg-type, union-attr]


def test_take_slices_every_part_and_rebases_offsets():
    h = History(
        np.array([3, 1, 2, 2, 0]),
        np.array([0, 2, 2, 5]),
        np.array([5.0, 4.0, 1.0, 2.0, 3.0], dtype=np.float32),
        np.array([10, 11, 12, 13, 14]),
    )
    excl = sp.csr_matrix(np.eye(3, 4))
    q = Query(users=np.array([4, -1, 6]), history=h, text=["a", "b", "c"], domain="d", exclude=excl)
    part = q.take(slice(1, 3))
    assert len(part) == 2 and part.domain == "d" and list(part.text or []) == ["b", "c"]
    np.testing.assert_array_equal(part.users, [-1, 6])
    assert part.history is not None
    np.testing.assert_array_equal(part.history.offsets, [0, 0, 3])
    np.testing.assert_array_equal(part.history.items, [2, 2, 0])
    np.testing.assert_array_equal(part.history.values, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(part.history.timestamps, [12, 13, 14])
    assert isinstance(part.exclude, sp.spmatrix)
    np.testing.assert_array_equal(part.exclude.toarray(), np.eye(3, 4)[1:3])
    # a slice past the end stops at the last row
    tail = q.take(slice(2, 10))
    assert len(tail) == 1 and tail.history is not None and tail.history.row(0).tolist() == [2, 2, 0]
    assert q.take(slice(0, 1)).exclude.shape == (1, 4)  # type: ignore[union-attr]


def test_from_ids_maps_users_and_history_and_names_unknown_ids():
    train, _, _ = checkerboard()
    uv, iv = train.user_vocab, train.item_vocab
    q = Query.from_ids(uv, iv, user_ids=["u3", "u0"], history_ids=[["i5", "i1"], []], exclude="history")
    np.testing.assert_array_equal(q.users, [3, 0])
    assert q.history is not None and q.history.items.tolist() == [5, 1] and q.exclude == "history"
    with pytest.raises(UnknownIdError, match="nobody"):
        Query.from_ids(uv, iv, user_ids=["u1", "nobody"])
    new = Query.from_ids(uv, iv, user_ids=["u1", "nobody"], history_ids=[["i1"], ["i2"]], unknown_users="new")
    np.testing.assert_array_equal(new.users, [1, -1])
    with pytest.raises(ConfigError, match="needs a history or a text"):
        Query.from_ids(uv, iv, user_ids=["nobody"], unknown_users="new")
    with pytest.raises(UnknownIdError, match="no-such-item"):
        Query.from_ids(uv, iv, history_ids=[["i1", "no-such-item"]])
    with pytest.raises(ConfigError, match="no user vocabulary"):
        Query.from_ids(None, iv, user_ids=["u1"])


# ------------------------------------------------------------------------------------------ fold-in maths
def _own_history(train, users: np.ndarray, *, with_values: bool) -> History:
    rows = [np.flatnonzero(train.users == u) for u in users]
    values = [train.ratings[r] for r in rows] if with_values else None
    return History.from_lists([train.items[r] for r in rows], values)


@pytest.fixture(scope="module")
def svd() -> SVD:
    train, valid, _ = checkerboard()
    m = SVD(factors=4, iterations=3, reg=0.1, reg_bias=2.0)
    m.fit(train, valid)
    return m


def test_svd_fold_in_is_one_als_half_step_on_the_history(svd: SVD):
    train, _, _ = checkerboard()
    users = np.array([0, 3, 8])
    hist = _own_history(train, users, with_values=True)
    got = svd.score(Query(users=users, history=hist)).numpy()
    m, c = svd.mf, svd.config
    mu = float(m.mu)
    # the user side of the training problem restricted to these users' own rows: one ridge solve per user
    side = ALSSide(
        np.repeat(np.arange(len(users)), hist.lengths()),
        hist.items,
        hist.values - np.float32(mu),  # type: ignore[operator]
        (len(users), svd.n_items),
    )
    p, bu, _ = als_half_step(
        side,
        m.q.detach(),
        m.bi.detach(),
        c.reg,
        c.reg_bias,
        weighted=c.weighted_reg,
        weighted_bias=c.weighted_reg_bias,
        prior=c.reg_prior,
    )
    want = (mu + bu[:, None] + m.bi.detach()[None, :] + p @ m.q.detach().T).clamp(*svd.rating_range)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    # the folded-in vector differs from the stored one only by the last item step of the fit: a converged ALS fit
    # folds its own users back in close to their stored rows
    stored = svd.score(Query(users=users)).numpy()
    assert np.abs(got - stored).max() < 0.5
    # the rows are solved independently: one user at a time gives the same scores
    one = svd.score(
        Query(users=users[1:2], history=_own_history(train, users[1:2], with_values=True))
    ).numpy()
    np.testing.assert_allclose(one[0], got[1], rtol=1e-5, atol=1e-5)


def test_svd_history_without_values_counts_each_item_as_the_top_rating(svd: SVD):
    items = [[0, 2, 4, 6], [1, 3]]
    plain = svd.score(Query(users=np.array([-1, -1]), history=History.from_lists(items))).numpy()
    top = svd.rating_range[1]
    rated = History.from_lists(items, values=[[top] * 4, [top] * 2])
    np.testing.assert_array_equal(plain, svd.score(Query(users=np.array([-1, -1]), history=rated)).numpy())
    # an empty history folds in to the bias-only user (p = 0, b_u = 0): μ + b_i
    empty = svd.score(Query(users=np.array([-1]), history=History.from_lists([[]]))).numpy()[0]
    m = svd.mf
    np.testing.assert_allclose(
        empty, (float(m.mu) + m.bi.detach()).clamp(*svd.rating_range).numpy(), rtol=1e-6
    )


def test_bpr_fold_in_is_the_ridge_closed_form():
    train, _, _ = checkerboard(implicit=True)
    m = BPR(dim=6, fold_in_reg=0.3)
    m.fit(train, None, trainer=FAST)
    e_items = m.module.item.weight.detach().double().numpy()  # type: ignore[union-attr]
    rows = [[0, 2, 4, 6, 8], [1, 3], [5, 5, 7], []]
    got = m.score(Query(users=np.full(4, -1), history=History.from_lists(rows))).numpy()
    for r, items in enumerate(rows):
        if not items:
            np.testing.assert_array_equal(got[r], np.zeros(m.n_items))  # empty history: the zero vector
            continue
        eh = e_items[items]  # a repeated item counts twice, as a repeated interaction
        lam = 0.3 * len(items)
        e = np.linalg.solve(eh.T @ eh + lam * np.eye(6), eh.T @ np.ones(len(items)))
        np.testing.assert_allclose(got[r], e @ e_items.T, rtol=1e-4, atol=1e-5)
    # a known user with a history is folded in from the history, not read from the stored table
    known = m.score(Query(users=np.array([0]), history=History.from_lists([rows[0]]))).numpy()
    np.testing.assert_allclose(known[0], got[0], rtol=1e-6)


def test_lightgcn_fold_in_of_a_users_own_row_is_their_propagated_embedding_less_layer_zero():
    train, _, _ = checkerboard(implicit=True)
    k = 2
    m = LightGCN(dim=8, n_layers=k)
    m.fit(train, None, trainer=FAST)
    module = m.module
    assert isinstance(module, LightGCNModule)
    users = np.arange(train.n_users)
    hist = _own_history(train, users, with_values=False)
    with torch.no_grad():
        folded = m.fold_in(hist)
        eu, ei = module.user_item_embeddings()
        layer0 = module.user.weight.detach()
    # the propagation rule with e_u⁽⁰⁾ = 0 over the user's own edges: every layer k ≥ 1 is the trained graph's,
    # so the fold-in is the propagated embedding minus the layer-0 share e_u⁽⁰⁾ / (K + 1), exactly
    torch.testing.assert_close(folded, eu - layer0 / (k + 1), rtol=1e-4, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(folded, eu, dim=1)
    assert float(cos.min()) > 0.9, float(cos.min())
    # the scores of a history query are that vector against the propagated items
    scores = m.score(Query(users=np.full(3, -1), history=_own_history(train, users[:3], with_values=False)))
    torch.testing.assert_close(scores, folded[:3] @ ei.T)


# ------------------------------------------------------------------ review findings (2026-12-05)
def test_inputs_that_would_be_silently_reinterpreted_are_refused(svd: SVD):
    train, _, _ = checkerboard()
    with pytest.raises(ConfigError, match="not the string"):
        svd.recommend("u1", k=2)  # would iterate as users "u", "1"
    with pytest.raises(ConfigError, match="one text per row"):
        Query(text="comedy")
    with pytest.raises(ConfigError, match="integer indices"):
        Query(users=np.array([0.7]))
    with pytest.raises(ConfigError, match="integer indices"):
        Query(users=np.array(["3"]))
    with pytest.raises(ConfigError, match="not the string"):
        Query.from_ids(train.user_vocab, train.item_vocab, user_ids="u1")
    with pytest.raises(ConfigError, match="sparse matrix"):
        Query(users=np.arange(2), exclude=np.ones((2, svd.n_items)))  # type: ignore[arg-type]
    # any scipy sparse type is an exclusion matrix
    arr = sp.csr_array(([1.0], ([0], [3])), shape=(1, svd.n_items))
    vals, idx = svd.top_k(Query(users=np.array([0]), exclude=arr), svd.n_items)
    assert set(idx[0][~np.isfinite(vals[0])].tolist()) == {3}


def test_out_of_range_indices_are_clear_errors(svd: SVD):
    h = History.from_lists([[1, 2]])
    with pytest.raises(ConfigError, match="out of range"):
        svd.top_k(Query(users=np.array([10**6]), history=h), 3)
    with pytest.raises(ConfigError, match="users index -1 is out of range"):
        svd.predict(np.array([-1]), np.array([3]))  # -1 would read the last user's row
    with pytest.raises(ConfigError, match="items index 99 is out of range"):
        svd.predict(np.array([0]), np.array([99]))


def test_a_known_user_with_an_empty_history_row_keeps_the_stored_profile():
    train, valid, _ = checkerboard(implicit=True)
    for model in (BPR(dim=8), LightGCN(dim=8, n_layers=2)):
        model.fit(train, valid, trainer=TrainerConfig(epochs=3, progress=False))
        q = Query(users=np.array([0, -1, 3]), history=History.from_lists([[], [1, 3], [5]]))
        got = model.score(q)
        torch.testing.assert_close(got[0], model.score_users(np.array([0]))[0])
        torch.testing.assert_close(got[1:2], model.score(Query(history=History.from_lists([[1, 3]]))))
        # a known user WITH a history is scored from the history ("now"), not the stored profile
        assert not torch.allclose(got[2], model.score_users(np.array([3]))[0])


def test_svd_ranks_on_unclipped_scores_and_predicts_clipped(svd: SVD):
    import copy

    narrow = copy.copy(svd)
    narrow.rating_range = (2.0, 4.0)  # as if training had seen ratings 2..4: most predictions leave the range
    scores = narrow.score_users(np.arange(3))
    assert float(scores.max()) > 4.0 and float(scores.min()) < 2.0
    # the ranking distinguishes items that clipping would tie at 4.0
    top = torch.topk(scores[0], 5).values
    assert len(set(top.tolist())) == 5
    users, items = np.repeat(np.arange(3), svd.n_items), np.tile(np.arange(svd.n_items), 3)
    np.testing.assert_allclose(
        narrow.predict(users, items), np.clip(scores.numpy().ravel(), 2.0, 4.0), rtol=1e-5, atol=1e-5
    )


def test_lightgcn_without_layers_folds_in_to_zero():
    train, valid, _ = checkerboard(implicit=True)
    model = LightGCN(dim=8, n_layers=0)
    model.fit(train, valid, trainer=TrainerConfig(epochs=1, progress=False))
    assert torch.count_nonzero(model.fold_in(History.from_lists([[1, 2, 3]]))) == 0
