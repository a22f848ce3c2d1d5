"""serving/ann.py: exact top-k against a brute-force argsort (with exclusion and tiny blocks), FAISS recall@10 on a
generated clustered set, and each model's retrieval space reproducing its own scores (real bundles)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from attnrec.errors import ConfigError
from attnrec.models.base import Recommender
from attnrec.models.query import Query
from attnrec.serving.ann import (
    ExactIndex,
    FaissIndex,
    ModelIndex,
    build_index,
    exact_top_k,
    recall_at_k,
    retrieval_space,
)
from attnrec.serving.bundle import load_bundle

needs_faiss = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None,
    reason="the ann extra is not installed (faiss-cpu): pip install 'attnrec[ann]'",
)

#: the recall@10 an index must reach on :func:`clustered` (measured there: IVF-Flat 0.998, HNSW 0.989)
RECALL_BOUND = 0.9


def brute(items: np.ndarray, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None) -> np.ndarray:
    s = queries.astype(np.float64) @ items.T.astype(np.float64)
    if exclude is not None:
        s[exclude.toarray() > 0] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def clustered(n: int, d: int, q: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` items in 50 Gaussian clusters (d dims) and ``q`` queries drawn near random items."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, d)).astype(np.float32)
    items = centres[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    queries = items[rng.integers(0, n, q)] + 0.1 * rng.normal(size=(q, d)).astype(np.float32)
    return items.astype(np.float32), queries.astype(np.float32)


@pytest.mark.parametrize("max_elements", [64, 1 << 24])
def test_exact_top_k_equals_brute_force_argsort(max_elements: int) -> None:
    rng = np.random.default_rng(3)
    items, queries = rng.normal(size=(257, 7)), rng.normal(size=(33, 7))
    excl = sp.random(33, 257, density=0.1, format="csr", random_state=4)
    excl.data[:] = 1
    for ex in (None, excl):
        vals, idx = exact_top_k(items, queries, 10, exclude=ex, max_elements=max_elements)
        want = brute(items, queries, 10, ex)
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_allclose(vals, np.take_along_axis(queries @ items.T, want, 1), rtol=1e-5, atol=1e-5)
        if ex is not None:  # nothing excluded comes back
            assert not any(excl[r, j] for r in range(33) for j in idx[r])


def test_exact_pads_when_too_few_items_remain_and_adds_offsets() -> None:
    items = np.eye(4, dtype=np.float32)
    queries = np.ones((2, 4), dtype=np.float32)
    excl = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 0, 0, 0]]))
    vals, idx = exact_top_k(items, queries, 6, exclude=excl, offset=np.array([10.0, 0.0]))
    assert idx[0].tolist() == [3, -1, -1, -1, -1, -1]
    assert vals[0, 0] == pytest.approx(11.0) and np.isneginf(vals[0, 1:]).all()
    assert sorted(idx[1, :4].tolist()) == [0, 1, 2, 3] and idx[1, 4:].tolist() == [-1, -1]


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ConfigError, match="must be"):
        exact_top_k(np.zeros((5, 3)), np.zeros((2, 4)), 3)
    with pytest.raises(ConfigError, match="exclude"):
        exact_top_k(np.zeros((5, 3)), np.zeros((2, 3)), 3, exclude=sp.csr_matrix((2, 4)))


def test_recall_at_k() -> None:
    exact = np.array([[1, 2, 3], [4, 5, -1]])
    approx = np.array([[3, 9, 1], [5, 4, 7]])
    assert recall_at_k(exact, approx, k=3) == pytest.approx(4 / 5)


@needs_faiss
@pytest.mark.parametrize("kind", ["ivf_flat", "hnsw"])
def test_faiss_recall_and_exclusion(kind: str) -> None:
    items, queries = clustered(20_000, 16, 200)
    index = FaissIndex(items, kind=kind, threads=1)  # type: ignore[arg-type]
    _, exact = exact_top_k(items, queries, 10)
    _, approx = index.search(queries, 10)
    assert recall_at_k(exact, approx, 10) >= RECALL_BOUND
    # exclude each query's exact top 5: none of them comes back, and k items still do
    rows = np.repeat(np.arange(len(queries)), 5)
    excl = sp.csr_matrix((np.ones(len(rows)), (rows, exact[:, :5].ravel())), shape=(len(queries), len(items)))
    _, got = index.search(queries, 10, exclude=excl)
    assert (got >= 0).all()
    assert all(not set(g) & set(e) for g, e in zip(got.tolist(), exact[:, :5].tolist(), strict=True))


@needs_faiss
def test_build_index_picks_by_size() -> None:
    items, _ = clustered(2_000, 8, 1)
    assert isinstance(build_index(items), ExactIndex)
    assert isinstance(build_index(items, ann_threshold=1_000, threads=1), FaissIndex)
    assert isinstance(build_index(items, ann=False, ann_threshold=1_000), ExactIndex)


@pytest.mark.parametrize("name", ["svd", "bpr"])
def test_retrieval_space_reproduces_the_models_scores(serve_bundles: dict[str, Path], name: str) -> None:
    model = load_bundle(serve_bundles[name])
    assert isinstance(model, Recommender)
    space = retrieval_space(model)
    assert space is not None and space.users is not None
    users = np.arange(model.n_users, dtype=np.int64)
    want = model.score(Query(users=users, exclude="none")).float().numpy()
    offset = np.zeros(len(users), np.float32) if space.offset is None else space.offset.numpy()
    got = (space.users @ space.items.T).numpy() + offset[:, None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # and the index's top-10 with the stored exclusion equals the model's own top_k, svd's offsets included
    index = ModelIndex.for_model(model, ann=False)
    assert index is not None and not index.approximate
    vals, idx = index.top_k(users, 10, exclude=model.exclusion(Query(users=users)))
    mvals, midx = model.top_k(Query(users=users), 10)
    np.testing.assert_allclose(vals, mvals, rtol=1e-4, atol=1e-4)
    assert (idx == midx).mean() > 0.99  # ties between near-equal float sums may swap


@needs_faiss
def test_model_index_with_faiss_honours_exclusion(serve_bundles: dict[str, Path]) -> None:
    model = load_bundle(serve_bundles["bpr"])
    assert isinstance(model, Recommender)
    index = ModelIndex.for_model(model, ann=True, threads=1)
    assert index is not None and index.approximate
    users = np.arange(model.n_users, dtype=np.int64)
    seen = model.exclusion(Query(users=users))
    _, idx = index.top_k(users, 5, exclude=seen)
    _, want = model.top_k(Query(users=users), 5)
    assert recall_at_k(want, idx, 5) >= RECALL_BOUND  # 40 items in one list: the search is exhaustive here
    assert not any(seen[r, j] for r in range(len(users)) for j in idx[r] if j >= 0)


def test_models_without_a_space(serve_bundles: dict[str, Path]) -> None:
    assert retrieval_space(load_bundle(serve_bundles["pop"])) is None
    assert ModelIndex.for_model(load_bundle(serve_bundles["hybrid"])) is None
    hybrid = retrieval_space(load_bundle(serve_bundles["hybrid"]))
    assert hybrid is not None and hybrid.users is None
    assert torch.allclose(hybrid.items.norm(dim=1), torch.ones(hybrid.items.shape[0]), atol=1e-5)
