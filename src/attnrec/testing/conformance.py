"""The one conformance suite every registered model's test class inherits (STYLE.md convention 8).

Inherit :class:`ConformanceTests` in a pytest class and set ``model_class`` (and, to keep the test fast,
``config`` overrides and ``trainer`` settings)::

    class TestSVD(ConformanceTests):
        model_class = SVD
        config = {"factors": 8}

The shared tests dispatch on what a model declares (``isinstance`` :class:`RatingPredictor`, :class:`ItemScorer`,
:class:`RowScorer`), never on its name. Hooks, overridden where a model needs more than the defaults:

* :meth:`ConformanceTests.data` — (train, valid, test): :func:`checkerboard` for rating / top-K models (implicit
  unless the task is rating), :func:`planted_ctr` for CTR models;
* :meth:`ConformanceTests.fit_kwargs` — extra keyword arguments of ``fit`` (e.g. hybrid_csa's ``encoder``);
* :meth:`ConformanceTests.side_inputs` — the :class:`SideInputs` passed as ``fit(side=...)``;
* :meth:`ConformanceTests.history_query` — a :class:`Query` with a history (default: the training rows of a few
  users, for models whose ``query_inputs`` include ``"history"``).
"""

from __future__ import annotations

import tempfile
import tomllib
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from attnrec.data.side import SIDE_INPUT_KINDS, SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError, DataError, UnknownIdError
from attnrec.evaluation.protocols import CTR, FullRanking, Rating, default_protocol, evaluate
from attnrec.models.base import (
    DEFAULT_VALID_METRIC,
    Estimator,
    FitReport,
    ItemScorer,
    RatingPredictor,
    Recommender,
    RowScorer,
    TaskKind,
    TorchEstimator,
    available_models,
    get_model_class,
)
from attnrec.models.ctr.base import CTRRecommender
from attnrec.models.query import QUERY_INPUTS, History, Query
from attnrec.testing.data import checkerboard, planted_ctr
from attnrec.testing.sequences import planted_sequence_items, planted_sequences
from attnrec.training.trainer import TrainerConfig

#: a query part the model does not declare, one per kind (users are declared by every id-based model)
_UNDECLARED_PARTS: dict[str, dict[str, Any]] = {
    "history": {"history": History.from_lists([[0, 2]])},
    "text": {"text": ["group a item"]},
    "domain": {"domain": "books"},
}


#: tests that exist only for a model with the capability (a model without it has no such test, not a skip)
_CAPABILITY_TESTS: dict[type, tuple[str, ...]] = {
    ItemScorer: (
        "test_recommend_excludes_seen_and_ranks",
        "test_unknown_id_is_a_clear_error",
        "test_undeclared_query_part_is_a_config_error",
        "test_new_user_history_recovers_planted_pattern",
        "test_exclude_history",
    ),
    RowScorer: (
        "test_row_scorer_has_no_id_space",
        "test_validation_drives_early_stopping",
        "test_wrong_data_is_a_clear_error",
    ),
}


def assert_same_outputs(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    """Every output array of ``a`` equals ``b``'s, bit for bit (the message names the output)."""
    assert a.keys() == b.keys(), what
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what}: output {key!r} differs")


class ConformanceTests:
    """Shared tests every registered model passes. Subclasses set the class attributes, and override the hooks
    (:meth:`data`, :meth:`fit_kwargs`, :meth:`side_inputs`, :meth:`history_query`) where needed."""

    model_class: ClassVar[type[Estimator[Any]]]
    config: ClassVar[dict[str, Any]] = {}
    #: Trainer settings of the fits (None: by task, see :meth:`trainer_settings`)
    trainer: ClassVar[dict[str, Any] | None] = None
    #: the shorter fits of the refit / determinism tests (merged over :meth:`trainer_settings`)
    short_trainer: ClassVar[dict[str, Any]] = {"epochs": 2}
    #: set False for models that cannot, by design, personalise (e.g. popularity)
    recovers_planted_pattern: ClassVar[bool] = True
    #: CTR: the planted pattern ("first_order" for models that cannot represent interactions) and the AUC floor
    pattern: ClassVar[str] = "interaction"
    min_auc: ClassVar[float] = 0.75
    #: rating models: predicted in-group minus out-of-group mean on test pairs (truth: 5 vs 1)
    min_rating_gap: ClassVar[float] = 2.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model_class = getattr(cls, "model_class", None)
        if model_class is None:
            return
        for capability, names in _CAPABILITY_TESTS.items():
            if not issubclass(model_class, capability):
                for name in names:
                    setattr(cls, name, None)  # not a test of this class (pytest collects only functions)

    # ------------------------------------------------------------------ hooks
    @classmethod
    def data(cls) -> tuple[Any, Any, Any]:
        """(train, valid, test) by task: planted CTR rows, planted two-domain sequences (sequential), or a
        checkerboard (implicit unless rating)."""
        if cls.model_class.task is TaskKind.CTR:
            return planted_ctr(pattern=cls.pattern)
        if cls.model_class.task is TaskKind.SEQUENTIAL:
            return planted_sequences(noise=1.0)  # random order within the group: the group is what is learnt
        return checkerboard(implicit=cls.model_class.task is not TaskKind.RATING)

    @classmethod
    def fit_kwargs(cls) -> dict[str, Any]:
        """Extra keyword arguments of ``fit`` (fresh objects per call)."""
        return {}

    @classmethod
    def side_inputs(cls) -> SideInputs | None:
        """The side inputs passed to ``fit`` (built from the training split only); a sequential model gets the
        item catalogue with its domains."""
        if cls.model_class.task is TaskKind.SEQUENTIAL:
            return SideInputs(items=planted_sequence_items())
        return None

    @classmethod
    def history_query(cls) -> Query | None:
        """A query whose rows carry histories: users 0-5 with their own training rows (ratings as values for
        rating models). None for models that take no history."""
        mc = cls.model_class
        if not issubclass(mc, ItemScorer) or "history" not in mc.query_inputs:
            return None
        train = cls.data()[0]
        users = np.arange(6)
        rows = [np.flatnonzero(train.users == u) for u in users]
        values = [train.ratings[r] for r in rows] if mc.task is TaskKind.RATING else None
        return Query(users=users, history=History.from_lists([train.items[r] for r in rows], values))

    # ------------------------------------------------------------------ helpers
    @classmethod
    def trainer_settings(cls) -> dict[str, Any]:
        if cls.trainer is not None:
            return cls.trainer
        if cls.model_class.task is TaskKind.CTR:
            return {"epochs": 8, "batch_size": 256, "lr": 0.01, "patience": 3}
        return {"epochs": 20}

    @classmethod
    def trainer_config(cls, **overrides: Any) -> TrainerConfig:
        return TrainerConfig(**{"progress": False, "device": "cpu", **cls.trainer_settings(), **overrides})

    @classmethod
    def make(cls, **overrides: Any) -> Estimator[Any]:
        return cls.model_class(**{**cls.config, **overrides})

    @classmethod
    def fit(
        cls, model: Estimator[Any] | None = None, *, with_valid: bool = True, **trainer: Any
    ) -> tuple[Estimator[Any], FitReport]:
        """Fit ``model`` (default: a fresh one) on :meth:`data` with the hooks' side inputs and arguments."""
        train, valid, _ = cls.data()
        model = model if model is not None else cls.make()
        report = model.fit(
            train,
            valid if with_valid else None,
            side=cls.side_inputs(),
            trainer=cls.trainer_config(**trainer),
            **cls.fit_kwargs(),
        )
        return model, report

    @classmethod
    def scoring_query(cls) -> Query:
        """Every training user (exclude: seen), or :meth:`history_query` for models that take no user ids."""
        if "users" in cls.model_class.query_inputs:  # type: ignore[attr-defined]
            return Query(users=np.arange(cls.data()[0].n_users))
        hq = cls.history_query()
        assert hq is not None, "a model that takes no user ids needs a history_query()"
        return hq

    @classmethod
    def outputs(cls, model: Estimator[Any]) -> dict[str, np.ndarray]:
        """What the model computes, by capability: test ratings, item scores and top-10 (for known users and for
        the history query), test click probabilities."""
        _, _, test = cls.data()
        out: dict[str, np.ndarray] = {}
        if isinstance(model, RatingPredictor):
            out["predict"] = np.asarray(model.predict(test.users, test.items))
        if isinstance(model, ItemScorer):
            queries = {"users": cls.scoring_query(), "history": cls.history_query()}
            for name, q in queries.items():
                if q is None:
                    continue
                with torch.no_grad():
                    out[f"score[{name}]"] = model.score(q).float().cpu().numpy()
                out[f"top_k_scores[{name}]"], out[f"top_k_items[{name}]"] = model.top_k(q, 10)
        if isinstance(model, RowScorer):
            out["proba"] = model.predict_proba(test)
        assert out, f"{cls.model_class.__name__} declares no capability"
        return out

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def fit_result(cls) -> tuple[Estimator[Any], FitReport]:
        return cls.fit()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, fit_result: tuple[Estimator[Any], FitReport]) -> Estimator[Any]:
        return fit_result[0]

    @pytest.fixture(scope="class")
    @classmethod
    def short_fits(cls) -> dict[str, dict[str, np.ndarray]]:
        """Outputs of: one object fitted once, the same object fitted again, and a fresh object (short fits)."""
        model, _ = cls.fit(**cls.short_trainer)
        once = cls.outputs(model)
        cls.fit(model, **cls.short_trainer)
        twice = cls.outputs(model)
        fresh = cls.outputs(cls.fit(**cls.short_trainer)[0])
        return {"once": once, "twice": twice, "fresh": fresh}

    # ------------------------------------------------------------------ every model
    def test_registered_metadata(self) -> None:
        mc = self.model_class
        assert get_model_class(mc.name) is mc
        assert available_models()[mc.name] is mc
        assert isinstance(mc.task, TaskKind)
        assert issubclass(mc, RatingPredictor | ItemScorer | RowScorer), "declares no capability"
        assert (mc.task is TaskKind.CTR) == issubclass(mc, RowScorer)
        assert mc.side_inputs <= SIDE_INPUT_KINDS and mc.required_side_inputs <= mc.side_inputs
        if issubclass(mc, ItemScorer):
            assert mc.query_inputs and mc.query_inputs <= QUERY_INPUTS

    def test_config_roundtrip_and_typo(self) -> None:
        cfg = self.make().config
        assert self.model_class.config_class.parse(tomllib.loads(cfg.to_toml())) == cfg
        with pytest.raises(ConfigError, match="no_such_option"):
            self.model_class(no_such_option=1)

    def test_outputs_finite_and_shaped(self, fitted: Estimator[Any]) -> None:
        train, _, test = self.data()
        if isinstance(fitted, RatingPredictor):
            pred = fitted.predict(test.users, test.items)
            assert pred.shape == (len(test),) and np.isfinite(pred).all()
        if isinstance(fitted, ItemScorer):
            q = self.scoring_query()
            scores = fitted.score(q)
            assert tuple(scores.shape) == (len(q), fitted.n_items) and torch.isfinite(scores).all()
            vals, idx = fitted.top_k(q, 7)
            assert (
                vals.shape == idx.shape == (len(q), 7) and vals.dtype == np.float32 and idx.dtype == np.int64
            )
            if q.users is not None:
                # score_pairs reads the same scores; for rating models they are the predicted ratings
                users = np.repeat(q.users[:3], fitted.n_items)
                items = np.tile(np.arange(fitted.n_items), 3)
                flat = scores[:3].float().cpu().numpy().ravel()
                np.testing.assert_allclose(fitted.score_pairs(users, items), flat, rtol=1e-5, atol=1e-5)
                if isinstance(fitted, RatingPredictor):
                    np.testing.assert_allclose(fitted.predict(users, items), flat, rtol=1e-4, atol=1e-4)
            hq = self.history_query()
            if hq is not None:
                hs = fitted.score(hq)
                assert tuple(hs.shape) == (len(hq), fitted.n_items) and torch.isfinite(hs).all()
        if isinstance(fitted, RowScorer):
            p = fitted.predict_proba(test, batch_size=97)
            assert p.shape == (len(test),) and p.dtype == np.float32
            assert np.all((p >= 0) & (p <= 1))

    def test_deterministic_under_seed(self, short_fits: dict[str, dict[str, np.ndarray]]) -> None:
        assert_same_outputs(short_fits["once"], short_fits["fresh"], "two fresh fits with one seed")

    def test_refit_twice_equals_a_fresh_fit(self, short_fits: dict[str, dict[str, np.ndarray]]) -> None:
        assert_same_outputs(short_fits["twice"], short_fits["fresh"], "an object fitted twice vs a fresh fit")

    def test_batch_size_invariance(self, fitted: Estimator[Any]) -> None:
        _, _, test = self.data()
        # the same items in the same order, values equal up to float rounding: a one-row product and a many-row
        # one sum in different orders (BLAS gemv vs gemm). Each product is a few ulps off, and a score summing
        # several (vbpr: factors, a projected feature vector and a feature bias) can land ~10 ulps (1.3e-6) apart;
        # a batch that changed the computation would differ far more
        rtol, atol = 5e-6, 1e-7
        if isinstance(fitted, ItemScorer):
            for q in (self.scoring_query(), self.history_query()):
                if q is None:
                    continue
                many = fitted.top_k(q, 10, batch_size=4096)
                for size in (1, 7):
                    vals, idx = fitted.top_k(q, 10, batch_size=size)
                    np.testing.assert_array_equal(idx, many[1], err_msg=f"top_k items, batch_size={size}")
                    np.testing.assert_allclose(
                        vals, many[0], rtol=rtol, atol=atol, err_msg=f"top_k scores, batch_size={size}"
                    )
        if isinstance(fitted, RatingPredictor):
            whole = fitted.predict(test.users, test.items)
            rows = np.array([5, 0, 17, 3, 3])
            np.testing.assert_allclose(
                fitted.predict(test.users[rows], test.items[rows]), whole[rows], rtol=rtol, atol=atol
            )
            a = evaluate(fitted, test, Rating(batch_size=7))
            b = evaluate(fitted, test, Rating())
            assert a.keys() == b.keys()
            # the error metrics are sums over rows: equal up to rounding. The graded ndcg ranks each user's rows by
            # prediction, so an exact tie at one batch size (a tiny model scores cold items alike) can become a
            # few-ulp order at another and move it by ~1e-3: its inputs, the predictions, are compared above
            rank_keys = {key for key in a if key.startswith("graded_ndcg@")}
            assert {key: v for key, v in a.items() if key not in rank_keys} == pytest.approx(
                {key: v for key, v in b.items() if key not in rank_keys}, rel=1e-6
            )
            for key in rank_keys:  # a loose bound still catches a ranking within a batch instead of a user
                assert a[key] == pytest.approx(b[key], abs=5e-3), key
        if isinstance(fitted, RowScorer):
            p = fitted.predict_proba(test, batch_size=4096)
            np.testing.assert_allclose(fitted.predict_proba(test, batch_size=7), p, rtol=rtol, atol=atol)
            rows = np.array([5, 0, 17, 3])
            np.testing.assert_allclose(
                fitted.predict_proba(test.subset(rows), batch_size=2), p[rows], rtol=rtol, atol=atol
            )

    def test_loss_decreases(self, fit_result: tuple[Estimator[Any], FitReport]) -> None:
        if not issubclass(self.model_class, TorchEstimator):
            pytest.skip("not trained by minimising a loss")
        _, report = fit_result
        losses = [row["loss"] for row in report.history]
        assert len(losses) >= 2 and losses[-1] < losses[0]

    def test_validation_selects_the_best_epoch(self, fit_result: tuple[Estimator[Any], FitReport]) -> None:
        """The reported best epoch is the best validation score, and the fitted model is that epoch's."""
        model, report = fit_result
        metric, mode = DEFAULT_VALID_METRIC[self.model_class.task]
        # what the fit ran: the model fills the fields the config leaves unset
        cfg = model.make_trainer_config(self.trainer_config())
        metric, mode = cfg.valid_metric or metric, cfg.valid_mode or mode
        curve = [row.get(f"valid_{metric}") for row in report.history]
        if not any(v is not None for v in curve):
            pytest.skip("fits in one pass without a validation curve")
        assert all(v is not None for v in curve)
        best = min(curve) if mode == "min" else max(curve)  # type: ignore[type-var]
        assert report.best_valid[metric] == best
        assert report.best_epoch is not None and curve[report.best_epoch - 1] == best
        train, valid, _ = self.data()
        exclude = train.csr() if isinstance(train, Interactions) else None
        # epochs were selected on the raw model; a calibrated CTR model's own view rescales logloss (not AUC)
        raw = model.uncalibrated() if isinstance(model, CTRRecommender) else model
        again = evaluate(raw, valid, default_protocol(model), exclude=exclude)
        assert again[metric] == pytest.approx(best, rel=1e-5, abs=1e-7)

    def test_bundle_roundtrip_exact(self, fitted: Estimator[Any]) -> None:
        from attnrec.serving.bundle import load_bundle, save_bundle

        with tempfile.TemporaryDirectory() as tmp:
            save_bundle(fitted, tmp)
            loaded = load_bundle(tmp)
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        assert_same_outputs(self.outputs(loaded), self.outputs(fitted), "bundle round trip")
        if isinstance(fitted, Recommender):
            assert isinstance(loaded, Recommender)
            assert loaded.seen is not None and fitted.seen is not None
            assert (loaded.seen != fitted.seen).nnz == 0
        if isinstance(fitted, RowScorer):
            assert loaded.schema == fitted.schema  # type: ignore[attr-defined]

    def test_planted_pattern_recovered(self, fitted: Estimator[Any]) -> None:
        if not self.recovers_planted_pattern:
            pytest.skip("model does not personalise by design")
        train, _, test = self.data()
        if isinstance(fitted, RowScorer):
            metrics = evaluate(fitted, test)
            assert metrics["n"] == len(test)
            assert metrics["auc"] > self.min_auc, metrics
            assert np.isfinite(metrics["logloss"]) and metrics["logloss"] < np.log(2), metrics
        elif isinstance(fitted, RatingPredictor) and fitted.task is TaskKind.RATING:
            pred = fitted.predict(test.users, test.items)
            same = (test.users % 2) == (test.items % 2)
            assert pred[same].mean() - pred[~same].mean() > self.min_rating_gap
        else:
            assert isinstance(fitted, ItemScorer)
            users = np.arange(train.n_users)
            scores = fitted.score(Query(users=users, exclude="none")).float().cpu().numpy()
            in_group = (np.arange(fitted.n_items) % 2)[None, :] == (users % 2)[:, None]
            gap = (scores * in_group).sum(1) / in_group.sum(1) - (scores * ~in_group).sum(1) / (
                ~in_group
            ).sum(1)
            # every user's mean in-group score beats the mean out-of-group score
            assert (gap > 0).mean() >= 0.95

    def test_protocols_follow_capabilities(self, fitted: Estimator[Any]) -> None:
        """A protocol needing a capability the model lacks is a ConfigError naming the capability."""
        train, _, test = self.data()
        checks = [(RatingPredictor, Rating()), (ItemScorer, FullRanking()), (RowScorer, CTR())]
        ids = checkerboard()[2]
        for cap, protocol in checks:
            if isinstance(fitted, cap):
                continue
            data = planted_ctr()[2] if cap is RowScorer else ids
            with pytest.raises(ConfigError, match=cap.__name__):
                evaluate(fitted, data, protocol)

    # ------------------------------------------------------------------ ItemScorer
    def _item_scorer(self, fitted: Estimator[Any]) -> ItemScorer:
        if not isinstance(fitted, ItemScorer):
            pytest.skip("not an ItemScorer")
        return fitted

    def _history_model(self, fitted: Estimator[Any]) -> ItemScorer:
        model = self._item_scorer(fitted)
        if "history" not in model.query_inputs:
            pytest.skip("takes no history in a query")
        return model

    def test_recommend_excludes_seen_and_ranks(self, fitted: Estimator[Any]) -> None:
        model = self._item_scorer(fitted)
        train, _, _ = self.data()
        seen = train.csr().toarray() > 0
        # top_k: exactly the stored training items are excluded (-inf), for every user
        q = Query(users=np.arange(train.n_users))
        vals, idx = model.top_k(q, model.n_items)
        excluded = np.zeros_like(seen)
        np.put_along_axis(excluded, idx, ~np.isfinite(vals), axis=1)
        np.testing.assert_array_equal(excluded, seen)
        # an explicit exclusion matrix replaces the stored items; a wrong shape or k < 1 is an error
        mask = sp.csr_matrix(([1.0, 1.0], ([0, 1], [3, 5])), shape=(2, model.n_items))
        vals, idx = model.top_k(Query(users=np.arange(2), exclude=mask), model.n_items)
        assert [set(idx[r][~np.isfinite(vals[r])].tolist()) for r in range(2)] == [{3}, {5}]
        with pytest.raises(ConfigError, match="exclude: the matrix has 2 rows for 3 query rows"):
            model.top_k(Query(users=np.arange(3), exclude=mask), 3)
        wide = sp.csr_matrix((2, model.n_items + 1))
        with pytest.raises(ConfigError, match=r"exclude: matrix is \(2, \d+\)"):
            model.top_k(Query(users=np.arange(2), exclude=wide), 3)
        with pytest.raises(ConfigError, match="k must be >= 1"):
            model.top_k(q, 0)
        if not isinstance(model, Recommender):
            return
        users = ["u0", "u1", "u7"]
        recs = model.recommend(users, k=5)
        rating = ["predicted_rating"] if isinstance(model, RatingPredictor) else []
        assert recs.columns == ["row", "user_id", "rank", "item_id", "score", *rating]
        assert recs["user_id"].to_list() == [u for u in users for _ in range(5)]
        assert recs["row"].to_list() == [r for r in range(3) for _ in range(5)]
        pairs = set(
            zip(train.decode()["user_id"].to_list(), train.decode()["item_id"].to_list(), strict=True)
        )
        assert not any((u, i) in pairs for u, i in zip(recs["user_id"], recs["item_id"], strict=True))
        uidx = train.user_vocab.lookup(recs["user_id"].to_list())
        iidx = train.item_vocab.lookup(recs["item_id"].to_list())
        np.testing.assert_allclose(recs["score"].to_numpy(), model.score_pairs(uidx, iidx), rtol=1e-6)
        if isinstance(model, RatingPredictor):  # the rating shown is the one predict gives for the pair
            np.testing.assert_allclose(
                recs["predicted_rating"].to_numpy(), model.predict(uidx, iidx), rtol=1e-5
            )
        for _, grp in recs.group_by("row"):
            assert grp["rank"].to_list() == list(range(1, grp.height + 1))
            assert np.all(np.diff(grp.sort("rank")["score"].to_numpy()) <= 1e-6)
        every = model.recommend(["u0"], k=model.n_items, exclude_seen=False)
        assert every.height == model.n_items  # nothing excluded

    def test_unknown_id_is_a_clear_error(self, fitted: Estimator[Any]) -> None:
        model = self._item_scorer(fitted)
        train, _, _ = self.data()
        if isinstance(model, Recommender):
            with pytest.raises(UnknownIdError, match="nobody"):
                model.recommend(["nobody"], k=3)
        with pytest.raises(UnknownIdError, match="no-such-item"):
            Query.from_ids(
                train.user_vocab, train.item_vocab, user_ids=["u0"], history_ids=[["i0", "no-such-item"]]
            )
        with pytest.raises(ConfigError, match="out of range"):
            model.score(Query(users=np.array([train.n_users])))
        if "history" in model.query_inputs:
            with pytest.raises(ConfigError, match="out of range"):
                model.score(Query(users=np.array([-1]), history=History.from_lists([[0, model.n_items]])))

    def test_undeclared_query_part_is_a_config_error(self, fitted: Estimator[Any]) -> None:
        model = self._item_scorer(fitted)
        parts = sorted(QUERY_INPUTS - model.query_inputs - {"users"})
        assert parts, "every model leaves some query part undeclared (no model takes a domain yet)"
        for part in parts:
            q = Query(users=np.array([0]), **_UNDECLARED_PARTS[part])
            with pytest.raises(ConfigError, match=rf"does not take {part}\b"):
                model.score(q)
            with pytest.raises(ConfigError, match=rf"does not take {part}\b"):
                model.top_k(q, 3)

    def test_new_user_history_recovers_planted_pattern(self, fitted: Estimator[Any]) -> None:
        """A user the model never saw (-1), given six items of one group, ranks the rest of that group first."""
        model = self._history_model(fitted)
        if not self.recovers_planted_pattern:
            pytest.skip("model does not personalise by design")
        n = model.n_items
        rows = [[g + 2 * j for j in range(6)] for g in (0, 1)]
        values = [[5.0] * 6, [5.0] * 6] if self.model_class.task is TaskKind.RATING else None
        q = Query(users=np.array([-1, -1]), history=History.from_lists(rows, values))
        scores = model.score(q).float().cpu().numpy()
        for g, row in enumerate(rows):
            rest = np.setdiff1d(np.arange(n), row)
            inside, outside = rest[rest % 2 == g], rest[rest % 2 != g]
            wins = scores[g, inside][:, None] > scores[g, outside][None, :]
            assert wins.mean() >= 0.95, (
                f"group {g}: in-group items beat out-group items in {wins.mean():.0%} of pairs"
            )
        vals, idx = model.top_k(q, 5)
        assert np.isfinite(vals).all() and np.all(idx % 2 == np.array([[0], [1]]))

    def test_exclude_history(self, fitted: Estimator[Any]) -> None:
        model = self._history_model(fitted)
        train, _, _ = self.data()
        n = model.n_items
        stored = set(train.items[train.users == 0].tolist())
        hist = [1, 4, 9]

        def excluded(users: list[int], exclude: str) -> set[int]:
            q = Query(users=np.array(users), history=History.from_lists([hist]), exclude=exclude)  # type: ignore[arg-type]
            vals, idx = model.top_k(q, n)
            return set(idx[0][~np.isfinite(vals[0])].tolist())

        assert excluded([-1], "history") == set(hist)
        assert excluded([-1], "seen") == set(hist)  # a new user has no stored items
        assert excluded([0], "history") == set(hist)
        assert excluded([0], "seen") == stored | set(hist)
        assert excluded([0], "none") == set()

    # ------------------------------------------------------------------ RowScorer
    def _row_scorer(self, fitted: Estimator[Any]) -> RowScorer:
        if not isinstance(fitted, RowScorer):
            pytest.skip("not a RowScorer")
        return fitted

    def test_row_scorer_has_no_id_space(self, fitted: Estimator[Any]) -> None:
        self._row_scorer(fitted)
        assert not isinstance(fitted, ItemScorer | RatingPredictor | Recommender)
        for name in ("predict", "score_users", "recommend", "evaluate", "score"):
            assert not hasattr(fitted, name), name

    def test_validation_drives_early_stopping(self, fit_result: tuple[Estimator[Any], FitReport]) -> None:
        self._row_scorer(fit_result[0])
        model, report = fit_result
        assert {"auc", "logloss", "n"} <= set(report.best_valid)
        # the rule the fit ran: a config naming no metric gets the CTR default (select on logloss, AUC extends)
        cfg = model.make_trainer_config(self.trainer_config())
        assert cfg.valid_metric is not None and cfg.valid_mode is not None
        curve = [row[f"valid_{cfg.valid_metric}"] for row in report.history]
        best = min(curve) if cfg.valid_mode == "min" else max(curve)
        assert report.best_valid[cfg.valid_metric] == best
        assert report.best_epoch is not None and curve[report.best_epoch - 1] == best
        # patience stops the run: `patience` epochs after the last one that improved any watched metric, or the cap
        watched = {cfg.valid_metric: cfg.valid_mode, **cfg.valid_also}
        bests: dict[str, float] = {}
        last = 0
        for epoch, row in enumerate(report.history, 1):
            for name, mode in watched.items():
                v, old = row[f"valid_{name}"], bests.get(name)
                if old is None or (v < old if mode == "min" else v > old):
                    bests[name], last = v, epoch
        assert report.epochs_run == cfg.epochs or (
            cfg.patience is not None and report.epochs_run - last == cfg.patience
        )

    def test_wrong_data_is_a_clear_error(self, fitted: Estimator[Any]) -> None:
        from attnrec.data.ctr import CTRData
        from attnrec.data.schema import FeatureSchema

        model = self._row_scorer(fitted)
        _, _, test = self.data()
        narrow_schema = FeatureSchema(fields=[f for f in test.schema.fields if f.name != "c"])
        narrow = CTRData(test.labels, test.categorical[:, :2], test.numeric, test.multi, narrow_schema)
        with pytest.raises(DataError, match="categorical"):
            model.predict_proba(narrow)
        bad = test.subset(slice(0, 10))
        bad.categorical = bad.categorical.copy()
        bad.categorical[3, 1] = 7  # field b has vocab_size 7: indices 0..6
        with pytest.raises(DataError, match="'b'.*0..6"):
            model.predict_proba(bad)
        with pytest.raises(ConfigError, match="CTRData"):
            self.make().fit(checkerboard()[0])  # type: ignore[arg-type]
