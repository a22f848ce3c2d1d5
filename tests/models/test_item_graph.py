"""Item-item kNN graphs, their normalisation and combination, and FREEDOM's edge pruning, on hand-made graphs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from attnrec.errors import ConfigError, DataError
from attnrec.models.layers.graph import bipartite_normalized
from attnrec.models.layers.item_graph import (
    ItemGraph,
    edge_weights,
    knn_graph,
    modality_graph,
    normalize_symmetric,
    prune_edges,
    sample_edges,
    spmm,
    to_sparse,
    union_values,
    weighted_sum,
)

# cosines: (0,1) .894, (0,2) 0, (0,3) .316, (1,2) .447, (1,3) .707, (2,3) .949
X = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0], [1.0, 3.0]], dtype=np.float32)


def _graph(entries: dict[tuple[int, int], float], n: int) -> ItemGraph:
    rows = torch.tensor([r for r, _ in entries])
    cols = torch.tensor([c for _, c in entries])
    order = torch.argsort(rows * n + cols)
    vals = torch.tensor(list(entries.values()), dtype=torch.float32)
    return ItemGraph(torch.stack([rows[order], cols[order]]), vals[order], n)


def _edges(g: ItemGraph) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in g.indices.T}


def test_knn_graph_keeps_self_and_the_most_similar_items():
    g = knn_graph(X, k=2)
    assert _edges(g) == {(0, 0), (0, 1), (1, 1), (1, 0), (2, 2), (2, 3), (3, 3), (3, 2)}
    g3 = knn_graph(X, k=3)
    assert _edges(g3) == {
        (0, 0),
        (0, 1),
        (0, 3),
        (1, 1),
        (1, 0),
        (1, 3),
        (2, 2),
        (2, 3),
        (2, 1),
        (3, 3),
        (3, 2),
        (3, 1),
    }
    assert torch.equal(g3.values, torch.ones(12))
    no_self = knn_graph(X, k=1, include_self=False)
    assert _edges(no_self) == {(0, 1), (1, 0), (2, 3), (3, 2)}


def test_knn_graph_in_chunks_equals_one_block():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 5)).astype(np.float32)
    whole = knn_graph(x, k=4)
    chunked = knn_graph(x, k=4, block_elements=37 * 3)  # 3 rows per block
    assert torch.equal(whole.indices, chunked.indices)
    assert whole.nnz == 37 * 4


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any torch op produces inside the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_knn_graph_never_builds_an_items_by_items_tensor():
    # every op's output is at most one block of similarities (or the O(items × k) result): a dense
    # items × items similarity (one x @ x.T) would be 1000² = 10⁶ elements
    x = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    with _LargestTensor() as probe:
        g = normalize_symmetric(knn_graph(x, k=5, block_elements=1000 * 16))
    assert g.nnz == 1000 * 5
    assert probe.largest <= 1000 * 16
    with _LargestTensor() as dense:
        torch.topk(torch.from_numpy(x) @ torch.from_numpy(x).T, 5)
    assert dense.largest == 1000 * 1000  # the probe sees a dense build


def test_the_graph_builders_models_call_stay_within_one_default_block():
    # modality_graph (FREEDOM, BM3, mrcsaf) and LATTICE's weighted_knn at their default block size, on more items
    # than one block holds rows of: the largest tensor is one block, not the 5000² = 2.5·10⁷ dense matrix
    from attnrec.models.layers.item_graph import BLOCK_ELEMENTS
    from attnrec.models.multimodal.lattice import weighted_knn

    n = 5000
    assert n * n > BLOCK_ELEMENTS
    x = np.random.default_rng(1).normal(size=(n, 4)).astype(np.float32)
    for build in (lambda: modality_graph(x, 10), lambda: weighted_knn(torch.from_numpy(x), 10)):
        with _LargestTensor() as probe:
            g = build()
        assert g.nnz == n * 10
        assert probe.largest <= BLOCK_ELEMENTS


def test_featureless_item_keeps_only_a_self_loop_and_is_nobodys_neighbour():
    x = np.vstack([X, np.zeros((1, 2), dtype=np.float32)])
    g = knn_graph(x, k=4)
    assert g.featureless == 1
    assert {c for r, c in _edges(g) if r == 4} == {4}
    assert all(c != 4 for r, c in _edges(g) if r != 4)
    s = normalize_symmetric(g).dense()
    assert s[4, 4] == pytest.approx(1.0)
    # the other rows hold 4 real items each (k = 4 candidates among themselves): 1/√(4·4)
    assert s[0].sum() == pytest.approx(1.0)


def test_normalisation_by_hand():
    # D = row sums: d0 = 1 + 2 = 3, d1 = 1, d2 = 4
    g = _graph({(0, 0): 1.0, (0, 1): 2.0, (1, 2): 1.0, (2, 0): 4.0}, 3)
    s = normalize_symmetric(g).dense()
    want = torch.zeros(3, 3)
    want[0, 0] = 1 / 3
    want[0, 1] = 2 / math.sqrt(3 * 1)
    want[1, 2] = 1 / math.sqrt(1 * 4)
    want[2, 0] = 4 / math.sqrt(4 * 3)
    assert torch.allclose(s, want)


def test_modality_graph_of_a_knn_graph_is_one_over_k():
    s = modality_graph(X, k=3).dense()
    assert torch.allclose(s.sum(1), torch.ones(4))
    assert torch.allclose(s[s > 0], torch.full((12,), 1 / 3))


def test_union_and_weighted_sum():
    a = _graph({(0, 0): 1.0, (0, 1): 0.5}, 2)
    b = _graph({(0, 1): 0.25, (1, 0): 1.0}, 2)
    idx, vals = union_values([a, b])
    assert idx.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert vals.tolist() == [[1.0, 0.5, 0.0], [0.0, 0.25, 1.0]]
    s = weighted_sum([a, b], [0.1, 0.9]).dense()
    assert torch.allclose(s, torch.tensor([[0.1, 0.1 * 0.5 + 0.9 * 0.25], [0.9, 0.0]]))
    with pytest.raises(ConfigError):
        weighted_sum([a, b], [0.5])
    with pytest.raises(ConfigError):
        union_values([a, _graph({(0, 0): 1.0}, 3)])


def test_spmm_forward_and_backward_match_dense():
    g = _graph({(0, 1): 2.0, (1, 2): 3.0, (2, 0): 0.5, (2, 2): 1.0}, 3)
    a = to_sparse(g.indices, g.values, 3)
    at = to_sparse(g.indices.flip(0), g.values, 3)
    x = torch.randn(3, 2, requires_grad=True)
    y = spmm(a, at, x)
    dense = g.dense()
    assert torch.allclose(y, dense @ x.detach())
    w = torch.randn(3, 2)
    (y * w).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, dense.T @ w)


def test_bad_features_are_errors():
    with pytest.raises(DataError, match="NaN or inf"):
        knn_graph(np.array([[1.0, np.nan], [0.0, 1.0]]), k=1)
    with pytest.raises(DataError, match="matrix"):
        knn_graph(np.ones(3), k=1)
    with pytest.raises(ConfigError):
        knn_graph(X, k=0)


# ------------------------------------------------------------------------------------ degree-sensitive pruning
R = sp.csr_matrix(np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 1, 0, 1]], dtype=np.float32))


def test_prune_zero_dropout_is_the_full_graph():
    full = prune_edges(R, 0.0, torch.Generator().manual_seed(0)).to_dense()
    assert torch.allclose(full, torch.from_numpy(bipartite_normalized(R).toarray()).float())


def test_pruned_graph_is_renormalised_on_kept_edges_and_deterministic():
    adj = prune_edges(R, 0.5, torch.Generator().manual_seed(3)).to_dense()
    again = prune_edges(R, 0.5, torch.Generator().manual_seed(3)).to_dense()
    assert torch.equal(adj, again)
    assert torch.equal(adj, adj.T)
    ui = adj[:3, 3:]
    kept = (ui > 0).numpy()
    assert kept.sum() == int(R.nnz * 0.5)
    du, di = kept.sum(1), kept.sum(0)
    for u, i in zip(*np.nonzero(kept), strict=True):
        assert ui[u, i].item() == pytest.approx(1 / math.sqrt(du[u] * di[i]), rel=1e-6)
    with pytest.raises(ConfigError):
        prune_edges(R, 1.0, torch.Generator())


def test_edge_weights_are_one_over_root_degree_product_by_hand():
    # R's degrees: users 4, 1, 2; items 2, 2, 1, 2. FREEDOM keeps an edge with probability ∝ 1/√(d_u d_i), so
    # edges between low-degree nodes are kept more often (an inverted weight, √(d_u d_i), would prune them first)
    u, i, w = edge_weights(R)
    assert list(zip(u.tolist(), i.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
        (2, 1),
        (2, 3),
    ]
    want = [1 / math.sqrt(8), 1 / math.sqrt(8), 1 / 2, 1 / math.sqrt(8), 1 / math.sqrt(2), 1 / 2, 1 / 2]
    np.testing.assert_allclose(w, want, rtol=1e-12)


def test_sampling_prefers_heavy_edges_in_proportion():
    gen = torch.Generator().manual_seed(0)
    w = np.array([9.0] + [1.0] * 9)
    first = [int(sample_edges(w, 1, gen)[0]) for _ in range(2000)]
    share = np.mean(np.array(first) == 0)
    assert 0.45 < share < 0.55  # P = 9 / 18
    assert sample_edges(w, 20, gen).tolist() == list(range(10))
