"""Graph layers: the normalised bipartite adjacency and linear propagation, against hand-computed matrices."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from attnrec.errors import DataError
from attnrec.models.layers.graph import (
    bipartite_normalized,
    normalized_adjacency,
    propagate,
    propagate_mean,
    sparse_to_torch,
    symmetric_spmm,
)

# users u0: {i0, i1}, u1: {i1, i2}; node order u0 u1 i0 i1 i2; degrees 2 2 1 2 1
R = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
s2, h = 1 / math.sqrt(2), 0.5
A_HAND = np.array(
    [
        #  u0   u1   i0   i1   i2
        [0.0, 0.0, s2, h, 0.0],  # u0: 1/sqrt(2*1), 1/sqrt(2*2)
        [0.0, 0.0, 0.0, h, s2],  # u1
        [s2, 0.0, 0.0, 0.0, 0.0],  # i0
        [h, h, 0.0, 0.0, 0.0],  # i1
        [0.0, s2, 0.0, 0.0, 0.0],  # i2
    ]
)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_normalized_adjacency_hand_case(layout):
    a = normalized_adjacency(R, layout=layout)
    assert a.layout == (torch.sparse_csr if layout == "csr" else torch.sparse_coo)
    assert a.dtype == torch.float32 and tuple(a.shape) == (5, 5)
    np.testing.assert_allclose(a.to_dense().numpy(), A_HAND, rtol=1e-6)


def test_values_and_duplicates_are_ignored():
    # a rating matrix with a duplicated entry and an explicit zero: edges are the distinct non-zeros only
    rows, cols = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 2, 0])
    vals = np.array([5.0, 3.0, 2.0, 1.0, 4.0, 0.0])
    coo = sp.coo_matrix((vals, (rows, cols)), shape=(2, 3))
    np.testing.assert_allclose(bipartite_normalized(coo).toarray(), A_HAND, rtol=1e-12)
    np.testing.assert_allclose(bipartite_normalized(R.toarray()).toarray(), A_HAND, rtol=1e-12)


def test_isolated_nodes_have_zero_rows():
    r = sp.csr_matrix(np.array([[1, 0], [0, 0]], dtype=np.float32))  # user 1 and item 1 have no edges
    a = normalized_adjacency(r).to_dense().numpy()
    assert np.isfinite(a).all()
    assert a[1].sum() == 0 and a[:, 3].sum() == 0 and a[3].sum() == 0
    assert a[0, 2] == a[2, 0] == 1.0
    empty = normalized_adjacency(sp.csr_matrix((2, 3)))
    assert tuple(empty.shape) == (5, 5) and empty.to_dense().abs().sum() == 0


def test_symmetric_and_spectral_radius_one():
    rng = np.random.default_rng(0)
    r = sp.random(30, 20, density=0.2, random_state=rng, format="lil")
    r[0, :] = 1.0  # make sure no row is empty, so the top eigenvalue of D^-1/2 A D^-1/2 is exactly 1
    a = bipartite_normalized(r).toarray()
    np.testing.assert_allclose(a, a.T, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.linalg.eigvalsh(a)).max(), 1.0, atol=1e-9)


def test_bad_input_is_a_clear_error():
    with pytest.raises(DataError, match="interactions"):
        normalized_adjacency([[1, 0]])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="non-finite"):
        normalized_adjacency(sp.csr_matrix(np.array([[np.nan, 1.0]])))


def test_propagation_hand_case_k1_is_mean_of_e0_and_ae0():
    e0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # Â E0 by hand from A_HAND: u0 = s2*i0 + h*i1, u1 = h*i1 + s2*i2, i0 = s2*u0, i1 = h*(u0+u1), i2 = s2*u1
    ae0 = torch.tensor(
        [
            [2 * s2, h * 2],
            [s2, h * 2 + s2],
            [s2, 0.0],
            [h, h],
            [0.0, s2],
        ]
    )
    adj = normalized_adjacency(R)
    torch.testing.assert_close(propagate_mean(adj, e0, 1), (e0 + ae0) / 2)
    layers = propagate(adj, e0, 2)
    assert len(layers) == 3
    a = torch.tensor(A_HAND, dtype=torch.float32)
    torch.testing.assert_close(layers[2], a @ a @ e0)
    torch.testing.assert_close(propagate_mean(adj, e0, 2), (e0 + a @ e0 + a @ a @ e0) / 3)
    torch.testing.assert_close(propagate_mean(adj, e0, 0), e0)


def test_symmetric_spmm_gradient_matches_dense():
    rng = np.random.default_rng(1)
    r = sp.random(6, 5, density=0.4, random_state=rng, format="csr")
    adj = normalized_adjacency(r)
    dense = adj.to_dense()
    x = torch.randn(11, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    w = torch.randn(11, 3, generator=torch.Generator().manual_seed(1))
    (symmetric_spmm(adj, symmetric_spmm(adj, x)) * w).sum().backward()
    expect = dense.T @ (dense.T @ w)
    torch.testing.assert_close(x.grad, expect)


def test_sparse_to_torch_layouts_agree():
    m = sp.random(7, 4, density=0.5, random_state=np.random.default_rng(2), format="coo")
    for layout in ("csr", "coo"):
        np.testing.assert_allclose(
            sparse_to_torch(m, layout=layout).to_dense().numpy(), m.toarray(), rtol=1e-6
        )
    with pytest.raises(ValueError, match="layout"):
        sparse_to_torch(m, layout="bsr")  # type: ignore[arg-type]
