"""The serving core in-process: every path of ModelSlot against the model's own API on bundles from real runs,
cold start flagged (never an exception), capabilities refused with the field named, and the atomic swap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.errors import DataError
from attnrec.models.query import Query
from attnrec.serving.schemas import ExplainRequest, Pair, PredictRequest, RecommendRequest
from attnrec.serving.service import ModelSlot, NotFoundError, ServiceError, ServiceState, UnsupportedError


@pytest.fixture(scope="module")
def state(serve_bundles: dict[str, Path]) -> ServiceState:
    st = ServiceState(serve_bundles, default="svd")
    st.warmup()
    return st


def ids(resp) -> list[str]:
    return [it.item_id for it in resp.items]


def test_known_user_is_the_models_recommend(state: ServiceState) -> None:
    for name in ("svd", "bpr", "hybrid"):
        slot = state.slot(name)
        got = slot.recommend(RecommendRequest(user_id="1", k=5))
        want = slot.recommender.recommend(["1"], k=5)
        assert got.path == "known_user" and not got.new_user and not got.cold_start
        assert ids(got) == want["item_id"].to_list()
        np.testing.assert_allclose([it.score for it in got.items], want["score"].to_numpy(), rtol=1e-6)
        assert [it.rank for it in got.items] == [1, 2, 3, 4, 5]
        assert got.items[0].title is not None and got.items[0].title.endswith(f" {got.items[0].item_id}")
        # a rating model's answer carries its clipped rating beside the ranking score, as the library's frame does
        if "predicted_rating" in want.columns:
            np.testing.assert_allclose(
                [it.predicted_rating for it in got.items], want["predicted_rating"].to_numpy(), rtol=1e-6
            )
        elif name == "bpr":
            assert all(it.predicted_rating is None for it in got.items)


def test_seen_items_are_excluded_unless_asked(state: ServiceState) -> None:
    slot = state.slot("bpr")
    seen = set(slot.item_ids[slot.recommender.seen[slot._users["1"]].indices].tolist())
    assert seen
    every = slot.recommend(RecommendRequest(user_id="1", k=1000))
    assert not seen & set(ids(every)) and len(every.items) == slot.recommender.n_items - len(seen)
    with_seen = slot.recommend(RecommendRequest(user_id="1", k=1000, exclude_seen=False))
    assert seen <= set(ids(with_seen))


def test_unknown_user_gets_the_popular_items_flagged(state: ServiceState) -> None:
    slot = state.slot("svd")
    got = slot.recommend(RecommendRequest(user_id="nobody", k=4))
    assert (got.path, got.new_user, got.cold_start) == ("new_user", True, True)
    counts = np.bincount(slot.recommender.seen.indices, minlength=slot.recommender.n_items)
    assert [it.score for it in got.items] == sorted(counts, reverse=True)[:4]
    assert any("nobody" in n for n in got.notes)


def test_history_path_folds_in_and_lists_unknown_items(state: ServiceState) -> None:
    slot = state.slot("bpr")
    got = slot.recommend(RecommendRequest(items=["1", "3", "no-such-item"], k=5))
    rec = slot.recommender
    want = rec.recommend(Query.from_ids(rec.user_vocab, rec.item_vocab, history_ids=[["1", "3"]]), k=5)
    assert got.path == "history" and got.new_user and not got.cold_start
    assert ids(got) == want["item_id"].to_list() and not {"1", "3"} & set(ids(got))
    assert got.unknown_items == ["no-such-item"]
    # only unknown items, no user: the cold-start answer, flagged
    cold = slot.recommend(RecommendRequest(items=["zz"], k=3))
    assert cold.cold_start and cold.path == "new_user" and cold.unknown_items == ["zz"]


def test_allow_and_deny_lists(state: ServiceState) -> None:
    slot = state.slot("svd")
    top = ids(slot.recommend(RecommendRequest(user_id="2", k=3)))
    denied = slot.recommend(RecommendRequest(user_id="2", k=3, deny=[top[0], "unknown-id"]))
    assert ids(denied) == [*top[1:], ids(denied)[2]] and top[0] not in ids(denied)
    assert denied.unknown_items == ["unknown-id"]
    allowed = slot.recommend(RecommendRequest(user_id="2", k=10, allow=["4", "6", "8"], exclude_seen=False))
    assert sorted(ids(allowed)) == ["4", "6", "8"]
    assert [it.score for it in allowed.items] == sorted((it.score for it in allowed.items), reverse=True)


def test_text_query_takes_hybrid_csas_path_with_shares(state: ServiceState) -> None:
    slot = state.slot("hybrid")
    got = slot.recommend(RecommendRequest(query="a comedy film", user_id="3", k=4))
    want = slot.recommender.recommend_by_text("a comedy film", user="3", k=4)
    assert got.path == "text" and not got.new_user and got.query_truncated is False
    assert ids(got) == want["item_id"].to_list()
    for it in got.items:
        assert it.shares is not None and it.predicted_rating is not None
        assert it.shares.user + it.shares.item + it.shares.text == pytest.approx(1.0, abs=1e-4)
    new = slot.recommend(RecommendRequest(query="a comedy film", user_id="stranger", k=2))
    assert new.path == "text" and new.new_user and not new.cold_start
    # with an allow list the generic path ranks by the model's text score, within the list
    allowed = slot.recommend(RecommendRequest(query="space", k=5, allow=["2", "4"]))
    assert sorted(ids(allowed)) == ["2", "4"]


def test_a_part_the_model_does_not_take_is_refused_naming_the_field(state: ServiceState) -> None:
    with pytest.raises(UnsupportedError, match="does not take text") as e:
        state.slot("svd").recommend(RecommendRequest(query="anything"))
    assert e.value.field == "query"
    with pytest.raises(UnsupportedError) as e:
        state.slot("hybrid").recommend(RecommendRequest(items=["1"]))
    assert e.value.field == "items"
    with pytest.raises(UnsupportedError) as e:
        state.slot("svd").recommend(RecommendRequest(user_id="1", domain="books"))
    assert e.value.field == "domain"
    with pytest.raises(UnsupportedError, match="CTR rows"):
        state.slot("lr").recommend(RecommendRequest(user_id="1"))


def test_predict_pairs_rows_and_unknown_ids(state: ServiceState) -> None:
    svd = state.slot("svd")
    pairs = [Pair(user_id="1", item_id="3"), Pair(user_id="x", item_id="3"), Pair(user_id="2", item_id="y")]
    got = svd.predict(PredictRequest(pairs=pairs))
    assert got.kind == "rating"
    rec = svd.recommender
    want = rec.predict(rec.user_vocab.lookup(["1"]), rec.item_vocab.lookup(["3"]))[0]
    assert got.predictions[0].value == pytest.approx(float(want), rel=1e-6)
    assert [p.cold_start for p in got.predictions] == [None, "unknown_user", "unknown_item"]
    assert got.predictions[1].value is None
    assert state.slot("bpr").predict(PredictRequest(pairs=pairs[:1])).kind == "score"
    lr = state.slot("lr")
    rows = [{"site": "a", "hour": 3}, {"site": "never-seen", "hour": None}]
    probs = lr.predict(PredictRequest(rows=rows))
    want_p = lr.model.predict_frame(pl.DataFrame({"site": ["a", "never-seen"], "hour": ["3", None]}))
    assert probs.kind == "probability"
    # the JSON number 3 is the token "3" the CSV reader gave the categorical field at training
    np.testing.assert_allclose([p.value for p in probs.predictions], want_p, rtol=1e-6)
    as_text = lr.predict(PredictRequest(rows=[{"site": "a", "hour": "3"}])).predictions[0].value
    assert as_text == pytest.approx(probs.predictions[0].value, rel=1e-6)
    with pytest.raises(UnsupportedError):
        svd.predict(PredictRequest(rows=rows))


def test_similar_items_by_cosine(state: ServiceState) -> None:
    slot = state.slot("svd")
    got = slot.similar("3", k=3)
    q = slot.recommender.item_factors
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    cos = q @ q[slot._items["3"]]
    cos[slot._items["3"]] = -np.inf
    want = slot.item_ids[np.argsort(-cos, kind="stable")[:3]].tolist()
    assert ids(got) == want and got.space == "svd item factors"
    np.testing.assert_allclose([it.score for it in got.items], np.sort(cos)[::-1][:3], rtol=1e-5)
    assert state.slot("bpr").similar("3", k=2).space == "bpr item embeddings"
    with pytest.raises(NotFoundError):
        slot.similar("no-such-item")
    with pytest.raises(UnsupportedError, match="no item vectors"):
        state.slot("pop").similar("3")


def test_explain_is_hybrid_csas_attention(state: ServiceState) -> None:
    slot = state.slot("hybrid")
    got = slot.explain(ExplainRequest(user_id="2", item_ids=["1", "2"]))
    want = slot.recommender.explain(["2", "2"], ["1", "2"])
    np.testing.assert_allclose(
        [e.predicted_rating for e in got.explanations], want["predicted_rating"].to_numpy(), rtol=1e-6
    )
    assert [e.shares.text for e in got.explanations] == pytest.approx(want["share_text"].to_list())
    with pytest.raises(NotFoundError) as e:
        slot.explain(ExplainRequest(user_id="ghost", item_ids=["1"]))
    assert e.value.field == "user_id"
    with pytest.raises(UnsupportedError, match="no attention"):
        state.slot("svd").explain(ExplainRequest(user_id="1", item_ids=["1"]))


def test_metadata_names_model_bundle_and_data(state: ServiceState, serve_bundles: dict[str, Path]) -> None:
    meta = state.slot("bpr").metadata()
    assert meta["model"] == "bpr" and meta["config"]["dim"] == 8 and meta["warmed"]
    assert meta["query_inputs"] == ["history", "users"] and meta["similar_items"] and not meta["explain"]
    assert meta["explain_kind"] is None
    assert len(meta["bundle"]["fingerprint"]) == 64 and meta["bundle"]["written_with"]["attnrec"]
    assert isinstance(meta["data_fingerprint"], str) and meta["data_fingerprint"]
    assert meta["versions"]["torch"]


def test_reload_swaps_a_new_slot_and_the_old_one_keeps_serving(serve_bundles: dict[str, Path]) -> None:
    st = ServiceState({"svd": serve_bundles["svd"]})
    old = st.slot()
    before = ids(old.recommend(RecommendRequest(user_id="1", k=3)))
    (fresh,) = st.reload()
    assert st.slot() is fresh and fresh is not old and st.reloads == 1 and fresh.warmed
    assert ids(old.recommend(RecommendRequest(user_id="1", k=3))) == before
    assert ids(fresh.recommend(RecommendRequest(user_id="1", k=3))) == before
    with pytest.raises(NotFoundError):
        st.reload("other")


def test_a_broken_bundle_on_reload_leaves_the_old_one(serve_bundles: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(serve_bundles["svd"], tmp_path / "svd"))
    st = ServiceState({"svd": folder})
    old = st.slot()
    (folder / "weights.safetensors").write_bytes(b"corrupt")
    with pytest.raises(Exception, match="weights"):
        st.reload()
    assert st.slot() is old and isinstance(old, ModelSlot)


def test_a_bad_manifest_or_a_gone_folder_on_reload_is_a_service_error(
    serve_bundles: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    folder = Path(shutil.copytree(serve_bundles["pop"], tmp_path / "pop"))
    st = ServiceState({"pop": folder})
    old = st.slot()
    good = (folder / "manifest.json").read_bytes()
    for bad, reason in ((b"{not json", "invalid JSON"), (b"[1, 2]", "a JSON list")):
        (folder / "manifest.json").write_bytes(bad)
        with pytest.raises(ServiceError, match=reason) as err:
            st.reload()
        assert err.value.status == 422 and "manifest.json" in str(err.value)
        assert st.slot() is old
    (folder / "manifest.json").write_bytes(good)
    folder.rename(tmp_path / "moved")
    with pytest.raises(ServiceError, match="no such directory"):
        st.reload()
    assert st.slot() is old and st.reloads == 0


def test_a_fifo_manifest_is_refused_not_waited_on(serve_bundles: dict[str, Path], tmp_path: Path) -> None:
    import os
    import shutil
    import threading

    folder = Path(shutil.copytree(serve_bundles["pop"], tmp_path / "pop"))
    st = ServiceState({"pop": folder})
    good = (folder / "manifest.json").read_bytes()
    (folder / "manifest.json").unlink()
    os.mkfifo(folder / "manifest.json")
    # a plain open() of a FIFO blocks until a writer comes: run each load in a thread with a deadline
    outcome: list[BaseException] = []

    def attempt(load: Callable[[], object]) -> None:
        def run() -> None:
            try:
                load()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(timeout=10)
        assert not t.is_alive(), "the load blocked on the FIFO"

    attempt(lambda: ServiceState({"pop": folder}))
    attempt(st.reload)
    assert [type(e) for e in outcome] == [DataError, ServiceError]
    assert all("manifest.json: is a FIFO" in str(e) for e in outcome)
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").write_bytes(good)
    assert len(st.reload()) == 1  # the reload lock was let go


def test_warmup_builds_the_lazy_state_before_any_request(serve_bundles: dict[str, Path]) -> None:
    st = ServiceState({"hybrid": serve_bundles["hybrid"]})
    rec = st.slot().recommender
    assert rec._encoder is None and not st.ready()["hybrid"]  # the text encoder is built on first use
    st.warmup()
    assert rec._encoder is not None and st.ready() == {"hybrid": True}


def test_concurrent_requests_get_what_sequential_ones_get(state: ServiceState) -> None:
    """Requests share one model object: none may see another's state (text queries, histories, users)."""
    from concurrent.futures import ThreadPoolExecutor

    hybrid, bpr = state.slot("hybrid"), state.slot("bpr")
    calls = [
        *(
            lambda q=q: hybrid.recommend(RecommendRequest(query=q, user_id="4", k=5))
            for q in ("comedy", "space")
        ),
        *(lambda u=u: bpr.recommend(RecommendRequest(user_id=u, k=5)) for u in ("1", "2", "3")),
        *(lambda h=h: bpr.recommend(RecommendRequest(items=h, k=5)) for h in (["1"], ["2", "4"])),
    ] * 4
    want = [c().model_dump() for c in calls]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: c().model_dump(), calls))
    assert got == want


def test_lightgcn_history_and_similar_items(tmp_path: Path) -> None:
    from attnrec.models.topk.lightgcn import LightGCN
    from attnrec.serving.bundle import save_bundle
    from attnrec.testing import checkerboard
    from attnrec.training.trainer import TrainerConfig

    train, valid, _ = checkerboard(implicit=True)
    model = LightGCN(dim=8)
    model.fit(train, valid, trainer=TrainerConfig(epochs=2, progress=False, device="cpu"))
    slot = ModelSlot("lightgcn", save_bundle(model, tmp_path / "lightgcn"))
    slot.warmup()
    assert slot.warmed and slot.titles is None
    got = slot.recommend(RecommendRequest(items=["i0", "i2"], k=5))
    want = model.recommend(
        Query.from_ids(model.user_vocab, model.item_vocab, history_ids=[["i0", "i2"]]), k=5
    )
    assert got.path == "history" and ids(got) == want["item_id"].to_list()
    sim = slot.similar("i0", k=3)
    assert sim.space == "lightgcn item embeddings" and len(sim.items) == 3 and sim.items[0].title is None


def test_explain_is_safmrs_attention_over_its_cnn_features(tmp_path: Path) -> None:
    """safmr's per-prediction attention (SAFMR.explain) through the service: one share per CNN feature (summing to
    1), |cos| and has_text; no text query; a safmr without attention has none to explain."""
    from attnrec.data.side import ReviewCorpus, SideInputs
    from attnrec.models.review.safmr import SAFMR
    from attnrec.serving.bundle import save_bundle
    from attnrec.testing import review_checkerboard
    from attnrec.testing.data import TINY_REVIEW_MODEL
    from attnrec.training.trainer import TrainerConfig

    train, _, _ = review_checkerboard()
    for attention in (True, False):
        model = SAFMR(**TINY_REVIEW_MODEL, attention=attention)
        trainer = TrainerConfig(epochs=1, progress=False, device="cpu")
        model.fit(train, side=SideInputs(reviews=ReviewCorpus.from_split(train)), trainer=trainer)
        save_bundle(model, tmp_path / f"safmr_{attention}")
    slot = ServiceState({"safmr": tmp_path / "safmr_True"}).slot()
    assert slot.metadata()["explain"] and slot.metadata()["explain_kind"] == "features"
    uv, iv = slot.recommender._vocabs()
    user, items = str(uv.ids[0]), [str(i) for i in iv.ids[:3]]
    got = slot.explain(ExplainRequest(user_id=user, item_ids=items))
    want = slot.recommender.explain([user] * 3, items)
    assert [e.item_id for e in got.explanations] == items and all(e.shares is None for e in got.explanations)
    np.testing.assert_allclose(
        [e.predicted_rating for e in got.explanations], want["predicted_rating"], rtol=1e-6
    )
    shares = np.array([e.feature_shares for e in got.explanations])
    assert shares.shape == (3, TINY_REVIEW_MODEL["cnn_out"])
    np.testing.assert_allclose(shares, np.stack(want["attention"].to_list()), rtol=1e-6)
    np.testing.assert_allclose(shares.sum(1), 1.0, rtol=1e-5)
    assert [e.abs_cos for e in got.explanations] == pytest.approx(want["abs_cos"].to_list())
    assert [e.has_text for e in got.explanations] == want["has_text"].to_list()
    with pytest.raises(UnsupportedError, match="takes no text query"):
        slot.explain(ExplainRequest(user_id=user, item_ids=items, query="a funny film"))
    plain = ServiceState({"safmr": tmp_path / "safmr_False"}).slot()
    assert not plain.metadata()["explain"] and plain.metadata()["explain_kind"] is None
    with pytest.raises(UnsupportedError, match="no attention to explain"):
        plain.explain(ExplainRequest(user_id=user, item_ids=items))


def test_explain_kind_is_what_the_model_declares() -> None:
    """/metadata's explain_kind comes from the model's Explainer declaration (STYLE 15), not from its class."""
    from attnrec.models.capabilities import Explainer, ExplainKind
    from attnrec.models.rating.hybrid_csa import HybridCSA
    from attnrec.models.rating.svd import SVD
    from attnrec.models.review.safmr import SAFMR
    from attnrec.serving.service import explain_kind

    class ExplainingSVD(SVD, Explainer):  # a new explaining model: the service is not edited for it
        @property
        def explain_kind(self) -> ExplainKind | None:
            return "features"

    class SilentHybrid(HybridCSA):  # a hybrid_csa that declares no explanation gets none
        @property
        def explain_kind(self) -> ExplainKind | None:
            return None

    assert explain_kind(ExplainingSVD()) == "features" and explain_kind(SVD()) is None
    assert explain_kind(SilentHybrid()) is None and explain_kind(HybridCSA()) == "tokens"
    assert explain_kind(SAFMR()) == "features" and explain_kind(SAFMR(attention=False)) is None
    assert isinstance(HybridCSA(), Explainer) and isinstance(SAFMR(), Explainer)
