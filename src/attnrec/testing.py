"""The conformance suite every model passes, and the synthetic data it runs on.

Use it by inheriting :class:`ConformanceTests` in a pytest class and setting ``model_class`` (and, to keep the
test fast, ``config`` overrides and ``trainer`` settings)::

    class TestSVD(ConformanceTests):
        model_class = SVD
        config = {"factors": 8}
        trainer = {"epochs": 30}

The planted pattern is a checkerboard (after implicit's test): users and items fall into two groups; users rate
(or interact with) items of their own group highly and the others lowly. A model that learns anything about users
and items must recover it on held-out pairs.
"""

from __future__ import annotations

import tempfile
from functools import cache
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
import torch

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, UnknownIdError
from attnrec.models.base import Recommender, TaskKind, TorchRecommender


@cache
def checkerboard(
    n_users: int = 60, n_items: int = 40, density: float = 0.5, seed: int = 0, implicit: bool = False
) -> tuple[Interactions, Interactions, Interactions]:
    """(train, valid, test) of a two-group checkerboard.

    Rating data: every user rates a random ``density`` share of all items; rating 5 in-group, 1 out-of-group, plus
    noise. Implicit data: users interact only with in-group items (``density`` of them). Valid and test are 10% each,
    drawn so that every user and item of valid/test appears in train.
    """
    rng = np.random.default_rng(seed)
    ug = np.arange(n_users) % 2
    ig = np.arange(n_items) % 2
    same = ug[:, None] == ig[None, :]
    mask = rng.random((n_users, n_items)) < density
    if implicit:
        mask &= same
    u, i = np.nonzero(mask)
    r = np.where(same[u, i], 5.0, 1.0) + rng.normal(0, 0.3, len(u))
    part = rng.random(len(u))
    uvocab = Vocabulary([f"u{k}" for k in range(n_users)], kind="user")
    ivocab = Vocabulary([f"i{k}" for k in range(n_items)], kind="item")

    def make(sel: np.ndarray) -> Interactions:
        df = pl.DataFrame(
            {
                "user_id": uvocab.ids[u[sel]],
                "item_id": ivocab.ids[i[sel]],
                "rating": r[sel].astype(np.float32),
                "timestamp": np.arange(len(u))[sel].astype(np.int64),
            }
        )
        return Interactions.encode(df, uvocab, ivocab)[0]

    return make(part < 0.8), make((part >= 0.8) & (part < 0.9)), make(part >= 0.9)


class ConformanceTests:
    """Shared tests every registered model passes. Subclasses set the class attributes."""

    model_class: ClassVar[type[Recommender]]
    config: ClassVar[dict[str, Any]] = {}
    trainer: ClassVar[dict[str, Any]] = {"epochs": 20}
    #: set False for models that cannot, by design, personalise (e.g. popularity)
    recovers_planted_pattern: ClassVar[bool] = True

    # ------------------------------------------------------------------ helpers
    @classmethod
    def data(cls) -> tuple[Interactions, Interactions, Interactions]:
        return checkerboard(implicit=cls.model_class.task is not TaskKind.RATING)

    @classmethod
    def make(cls, **overrides: Any) -> Recommender:
        return cls.model_class(**{**cls.config, **overrides})

    @classmethod
    def fit(cls, **overrides: Any) -> Recommender:
        train, valid, _ = cls.data()
        model = cls.make(**overrides)
        kw: dict[str, Any] = {}
        if issubclass(cls.model_class, TorchRecommender):
            from attnrec.training.trainer import TrainerConfig

            kw["trainer"] = TrainerConfig(**{"progress": False, "device": "cpu", **cls.trainer})
        model.fit(train, valid, **kw)
        return model

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls) -> Recommender:
        return cls.fit()

    # ------------------------------------------------------------------ the tests
    def test_registered_metadata(self) -> None:
        from attnrec.models.base import get_model_class

        assert get_model_class(self.model_class.name) is self.model_class
        assert isinstance(self.model_class.task, TaskKind)

    def test_config_roundtrip_and_typo(self) -> None:
        import tomllib

        cfg = self.make().config
        again = self.model_class.config_class.parse(tomllib.loads(cfg.to_toml()))
        assert again == cfg
        with pytest.raises(ConfigError, match="no_such_option"):
            self.model_class(no_such_option=1)

    def test_scores_finite_and_shaped(self, fitted: Recommender) -> None:
        _, _, test = self.data()
        pred = fitted.predict(test.users, test.items)
        assert pred.shape == (len(test),)
        assert np.isfinite(pred).all()
        full = fitted.score_users(np.arange(3))
        assert tuple(full.shape) == (3, fitted.n_items)
        assert torch.isfinite(full).all()
        # score_users and predict agree
        np.testing.assert_allclose(
            full[1].cpu().numpy(),
            fitted.predict(np.full(fitted.n_items, 1), np.arange(fitted.n_items)),
            rtol=1e-4,
            atol=1e-4,
        )

    def test_deterministic_under_seed(self, fitted: Recommender) -> None:
        again = self.fit()
        _, _, test = self.data()
        np.testing.assert_allclose(
            fitted.predict(test.users, test.items),
            again.predict(test.users, test.items),
            rtol=1e-5,
            atol=1e-5,
        )

    def test_loss_decreases(self) -> None:
        if not issubclass(self.model_class, TorchRecommender):
            pytest.skip("not trained by gradient descent")
        train, valid, _ = self.data()
        from attnrec.training.trainer import TrainerConfig

        model = self.make()
        report = model.fit(
            train, None, trainer=TrainerConfig(**{"progress": False, "device": "cpu", **self.trainer})
        )
        losses = [row["loss"] for row in report.history]
        assert losses[-1] < losses[0]

    def test_bundle_roundtrip_exact(self, fitted: Recommender) -> None:
        from attnrec.serving.bundle import load_bundle, save_bundle

        _, _, test = self.data()
        with tempfile.TemporaryDirectory() as tmp:
            save_bundle(fitted, tmp)
            loaded = load_bundle(tmp)
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        np.testing.assert_array_equal(
            loaded.predict(test.users, test.items), fitted.predict(test.users, test.items)
        )
        users = np.arange(5)
        assert torch.equal(loaded.score_users(users).cpu(), fitted.score_users(users).cpu())
        assert loaded.seen is not None and fitted.seen is not None
        assert (loaded.seen != fitted.seen).nnz == 0  # type: ignore[union-attr]

    def test_recommend_excludes_seen_and_ranks(self, fitted: Recommender) -> None:
        train, _, _ = self.data()
        users = ["u0", "u1", "u7"]
        recs = fitted.recommend(users, k=5)
        assert recs.columns == ["user_id", "rank", "item_id", "score"]
        seen = set(zip(train.decode()["user_id"].to_list(), train.decode()["item_id"].to_list(), strict=True))
        assert not any((u, i) in seen for u, i in zip(recs["user_id"], recs["item_id"], strict=True))
        for _, grp in recs.group_by("user_id"):
            assert grp["rank"].to_list() == list(range(1, grp.height + 1))
            s = grp.sort("rank")["score"].to_numpy()
            assert np.all(np.diff(s) <= 1e-6)

    def test_unknown_id_is_a_clear_error(self, fitted: Recommender) -> None:
        with pytest.raises(UnknownIdError, match="nobody"):
            fitted.recommend(["nobody"], k=3)
        with pytest.raises(UnknownIdError, match="no-such-item"):
            fitted.predict_ids(["u0"], ["no-such-item"])

    def test_planted_pattern_recovered(self, fitted: Recommender) -> None:
        if not self.recovers_planted_pattern:
            pytest.skip("model does not personalise by design")
        _, _, test = self.data()
        n_items = fitted.n_items
        ig = np.arange(n_items) % 2
        if fitted.task is TaskKind.RATING:
            pred = fitted.predict(test.users, test.items)
            same = (test.users % 2) == (test.items % 2)
            # in-group pairs are predicted clearly above out-of-group ones (truth: 5 vs 1)
            assert pred[same].mean() - pred[~same].mean() > 2.0
        else:
            users = np.arange(fitted.n_users)
            scores = fitted.score_users(users).cpu().numpy()
            in_group = ig[None, :] == (users % 2)[:, None]
            # every user's mean in-group score beats the mean out-of-group score
            gap = (scores * in_group).sum(1) / in_group.sum(1) - (scores * ~in_group).sum(1) / (
                ~in_group
            ).sum(1)
            assert (gap > 0).mean() >= 0.95


# ---------------------------------------------------------------------------------------------------------------
# CTR models: planted synthetic CTR data and the conformance suite every CTR model passes

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from attnrec.data.ctr import CTRData


@cache
def planted_ctr(
    n_rows: int = 5000, pattern: str = "interaction", seed: int = 0, strength: float = 2.5
) -> tuple[CTRData, CTRData, CTRData]:
    """(train, valid, test) :class:`~attnrec.data.ctr.CTRData` (70/15/15%) with a planted click pattern.

    Fields: categorical ``a``, ``b`` (6 values + missing), ``c`` (10 values, noise), numeric ``x`` (N(0,1),
    noise), multi-valued ``tags`` (up to 3 of 8 tokens, mean-pooled, noise). The click logit is
    ``strength * s`` with ``s = +1`` when ``a`` and ``b`` have the same parity and -1 otherwise
    (``pattern="interaction"``: no field alone carries any signal, so a first-order model scores AUC ~0.5), or
    ``s = +1`` when ``a`` is odd (``pattern="first_order"``). A missing ``a``/``b`` (index 0, 5% of rows) counts
    as even. The Bayes AUC is about 0.92 for ``strength=2.5``.
    """
    from attnrec.data.ctr import CTRData
    from attnrec.data.schema import FeatureSchema, FieldSpec

    if pattern not in ("interaction", "first_order"):
        raise ConfigError(f"planted_ctr pattern must be 'interaction' or 'first_order', not {pattern!r}")
    rng = np.random.default_rng(seed)
    schema = FeatureSchema(
        fields=[
            FieldSpec(name="a", vocab_size=7),
            FieldSpec(name="b", vocab_size=7),
            FieldSpec(name="x", kind="numeric"),
            FieldSpec(name="c", vocab_size=11),
            FieldSpec(name="tags", kind="multi", vocab_size=9, max_len=3, pooling="mean"),
        ]
    )
    a = np.where(rng.random(n_rows) < 0.05, 0, rng.integers(1, 7, n_rows))
    b = np.where(rng.random(n_rows) < 0.05, 0, rng.integers(1, 7, n_rows))
    c = rng.integers(0, 11, n_rows)
    x = rng.normal(0, 1, n_rows).astype(np.float32)
    lens = rng.integers(0, 4, n_rows)
    tags = rng.integers(1, 9, (n_rows, 1, 3)) * (np.arange(3)[None, None, :] < lens[:, None, None])
    s = np.where(a % 2 == b % 2, 1.0, -1.0) if pattern == "interaction" else np.where(a % 2 == 1, 1.0, -1.0)
    labels = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-strength * s))).astype(np.float32)
    data = CTRData(
        labels,
        np.stack([a, b, c], axis=1).astype(np.int64),
        x[:, None],
        tags.astype(np.int64),
        schema,
    )
    cut1, cut2 = int(0.7 * n_rows), int(0.85 * n_rows)
    return data.subset(slice(0, cut1)), data.subset(slice(cut1, cut2)), data.subset(slice(cut2, None))


class CTRConformanceTests:
    """Shared tests every CTR model passes (fit on :func:`planted_ctr`). Subclasses set ``model_class`` and,
    to keep the run fast, ``config`` (tiny dims) and ``trainer``; ``pattern="first_order"`` for models that
    cannot represent interactions (LR)."""

    model_class: ClassVar[type[Recommender]]
    config: ClassVar[dict[str, Any]] = {}
    trainer: ClassVar[dict[str, Any]] = {"epochs": 8, "batch_size": 256, "lr": 0.01, "patience": 3}
    pattern: ClassVar[str] = "interaction"
    min_auc: ClassVar[float] = 0.75

    # ------------------------------------------------------------------ helpers
    @classmethod
    def data(cls) -> tuple[CTRData, CTRData, CTRData]:
        return planted_ctr(pattern=cls.pattern)

    @classmethod
    def make(cls, **overrides: Any) -> Any:
        return cls.model_class(**{**cls.config, **overrides})

    @classmethod
    def fit(cls, **trainer: Any) -> tuple[Any, Any]:
        from attnrec.training.trainer import TrainerConfig

        train, valid, _ = cls.data()
        model = cls.make()
        cfg = TrainerConfig(**{"progress": False, "device": "cpu", **cls.trainer, **trainer})
        report = model.fit(train, valid, trainer=cfg)
        return model, report

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls) -> tuple[Any, Any]:
        return cls.fit()

    # ------------------------------------------------------------------ the tests
    def test_registered_metadata(self) -> None:
        from attnrec.models.base import get_model_class

        assert get_model_class(self.model_class.name) is self.model_class
        assert self.model_class.task is TaskKind.CTR

    def test_config_roundtrip_and_typo(self) -> None:
        import tomllib

        cfg = self.make().config
        assert self.model_class.config_class.parse(tomllib.loads(cfg.to_toml())) == cfg
        with pytest.raises(ConfigError, match="no_such_option"):
            self.model_class(no_such_option=1)

    def test_planted_pattern_recovered(self, fitted: tuple[Any, Any]) -> None:
        model, _ = fitted
        _, _, test = self.data()
        metrics = model.evaluate(test)
        assert metrics["n"] == len(test)
        assert metrics["auc"] > self.min_auc, metrics
        assert np.isfinite(metrics["logloss"]) and metrics["logloss"] < np.log(2), metrics

    def test_validation_drives_early_stopping(self, fitted: tuple[Any, Any]) -> None:
        _, report = fitted
        assert {"auc", "logloss", "n"} <= set(report.best_valid)
        aucs = [row["valid_auc"] for row in report.history]
        assert report.best_valid["auc"] == max(aucs)
        assert report.history[report.best_epoch - 1]["valid_auc"] == max(aucs)

    def test_loss_decreases(self, fitted: tuple[Any, Any]) -> None:
        _, report = fitted
        losses = [row["loss"] for row in report.history]
        assert losses[-1] < losses[0]

    def test_probabilities_in_range_and_batch_independent(self, fitted: tuple[Any, Any]) -> None:
        model, _ = fitted
        _, _, test = self.data()
        p = model.predict_proba(test, batch_size=97)
        assert p.shape == (len(test),) and p.dtype == np.float32
        assert np.all((p >= 0) & (p <= 1))
        rows = np.array([5, 0, 17, 3])
        np.testing.assert_allclose(model.predict_proba(test.subset(rows), batch_size=2), p[rows], atol=1e-6)

    def test_deterministic_under_seed(self) -> None:
        _, _, test = self.data()
        first, _ = self.fit(epochs=2)
        again, _ = self.fit(epochs=2)
        np.testing.assert_allclose(first.predict_proba(test), again.predict_proba(test), rtol=0, atol=1e-6)

    def test_bundle_roundtrip_exact(self, fitted: tuple[Any, Any]) -> None:
        from attnrec.serving.bundle import load_bundle, save_bundle

        model, _ = fitted
        _, _, test = self.data()
        with tempfile.TemporaryDirectory() as tmp:
            save_bundle(model, tmp)
            loaded = load_bundle(tmp)
        from attnrec.models.ctr.base import CTRRecommender

        assert isinstance(loaded, CTRRecommender)
        assert type(loaded) is type(model)
        assert loaded.config == model.config
        assert loaded.schema == model.schema
        np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))

    def test_wrong_data_is_a_clear_error(self, fitted: tuple[Any, Any]) -> None:
        from attnrec.data.ctr import CTRData
        from attnrec.data.schema import FeatureSchema
        from attnrec.errors import DataError

        model, _ = fitted
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

    def test_no_user_item_space(self, fitted: tuple[Any, Any]) -> None:
        model, _ = fitted
        for call in (
            lambda: model.predict(np.zeros(2, np.int64), np.zeros(2, np.int64)),
            lambda: model.score_users(np.zeros(2, np.int64)),
            lambda: model.recommend(["u0"]),
        ):
            with pytest.raises(ConfigError, match="CTR model"):
                call()
