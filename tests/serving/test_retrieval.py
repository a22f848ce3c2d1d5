"""serving/retrieval.py wired into the service: a slot started with ``ann="faiss"`` serves known users from a FAISS
index (equal to the exact answer where the index is exhaustive: 40 items give one IVF list, probed), says so in a
note and in /metadata; filtered requests stay exact; the default (auto) on a small catalogue builds no index."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from attnrec.errors import ConfigError
from attnrec.serving.ann import FaissIndex
from attnrec.serving.schemas import RecommendRequest
from attnrec.serving.service import ServiceState

needs_faiss = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None,
    reason="the ann extra is not installed (faiss-cpu): pip install 'attnrec[ann]'",
)


def _state(bundles: dict[str, Path], ann: str) -> ServiceState:
    st = ServiceState({n: bundles[n] for n in ("bpr", "svd")}, ann=ann)
    st.warmup()
    assert st.ready() == {"bpr": True, "svd": True}
    return st


@pytest.fixture(scope="module")
def exact(serve_bundles: dict[str, Path]) -> ServiceState:
    return _state(serve_bundles, "auto")


def _same(a, b) -> None:
    assert [it.item_id for it in a.items] == [it.item_id for it in b.items]
    np.testing.assert_allclose(
        [it.score for it in a.items], [it.score for it in b.items], rtol=1e-5, atol=1e-5
    )
    assert [it.predicted_rating for it in a.items] == pytest.approx([it.predicted_rating for it in b.items])


@needs_faiss
def test_forced_faiss_equals_exact_on_an_exhaustive_index(
    serve_bundles: dict[str, Path], exact: ServiceState
) -> None:
    st = _state(serve_bundles, "faiss")
    for name in ("bpr", "svd"):
        slot, ref = st.slot(name), exact.slot(name)
        assert slot.index is not None and isinstance(slot.index.index, FaissIndex)
        fi = slot.index.index
        assert fi.kind == "ivf_flat" and fi.nprobe == fi.nlist  # every list probed: recall 1
        assert slot.metadata()["index"] == f"faiss_ivf_flat (nlist={fi.nlist}, nprobe={fi.nprobe})"
        for user in ("1", "2", "7", "30"):
            for seen in (True, False):
                req = RecommendRequest(user_id=user, k=8, exclude_seen=seen)
                got, want = slot.recommend(req), ref.recommend(req)
                assert got.path == want.path == "known_user"
                assert f"approximate (FAISS IVF-Flat nlist={fi.nlist} nprobe={fi.nprobe})" in got.notes
                assert not any("approximate" in n for n in want.notes)
                _same(got, want)
        # seen items never come back from the index either
        seen, u = slot.recommender.seen, slot._users["1"]
        seen_ids = set(slot.item_ids[seen.indices[seen.indptr[u] : seen.indptr[u + 1]]].tolist())
        got = slot.recommend(RecommendRequest(user_id="1", k=40))
        assert (
            seen_ids
            and len(got.items) == 40 - len(seen_ids)
            and not seen_ids & {it.item_id for it in got.items}
        )


@needs_faiss
def test_filtered_and_other_paths_stay_exact(serve_bundles: dict[str, Path], exact: ServiceState) -> None:
    slot, ref = _state(serve_bundles, "faiss").slot("bpr"), exact.slot("bpr")
    for req in (
        RecommendRequest(user_id="1", k=5, deny=["2", "4"]),
        RecommendRequest(user_id="1", k=5, allow=["1", "2", "3", "4", "5", "6"]),
        RecommendRequest(items=["1", "3"], k=5),
        RecommendRequest(user_id="nobody", k=5),
    ):
        got = slot.recommend(req)
        assert not any("approximate" in n for n in got.notes)
        _same(got, ref.recommend(req))
    assert not {"2", "4"} & {
        it.item_id for it in slot.recommend(RecommendRequest(user_id="1", deny=["2", "4"])).items
    }


def test_auto_on_a_small_catalogue_builds_no_index_and_exact_builds_one(
    serve_bundles: dict[str, Path], exact: ServiceState
) -> None:
    for name in ("bpr", "svd"):
        assert exact.slot(name).index is None and exact.slot(name).metadata()["index"] == "none"
    st = _state(serve_bundles, "exact")
    slot = st.slot("svd")
    assert slot.metadata()["index"] == "exact"
    req = RecommendRequest(user_id="3", k=6)
    got = slot.recommend(req)
    assert "exact (chunked matrix product over the item vectors)" in got.notes
    _same(got, exact.slot("svd").recommend(req))


def test_an_unknown_ann_mode_is_named(serve_bundles: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="'ivf'"):
        ServiceState({"bpr": serve_bundles["bpr"]}, ann="ivf")


@needs_faiss
def test_create_app_passes_the_option_to_http(serve_bundles: dict[str, Path]) -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'attnrec[serve]'")
    from fastapi.testclient import TestClient

    from attnrec.serving.app import create_app

    with TestClient(create_app({"bpr": serve_bundles["bpr"]}, ann="faiss")) as c:
        for _ in range(600):  # warm-up (which builds the index) runs in the background
            if c.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        assert c.get("/metadata").json()["index"].startswith("faiss_ivf_flat")
        notes = c.post("/recommend", json={"user_id": "1", "k": 3}).json()["notes"]
        assert any(n.startswith("approximate (FAISS IVF-Flat") for n in notes)
