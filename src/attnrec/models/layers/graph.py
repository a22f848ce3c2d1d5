"""Bipartite user-item graphs: the symmetric normalised adjacency and LightGCN-style propagation.

Shared by LightGCN now and by the multimodal graph models (LATTICE, FREEDOM, mrcsaf) later.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def normalized_adjacency(interactions: sp.csr_matrix) -> torch.Tensor:
    """Â = D^{-1/2} A D^{-1/2} for the bipartite graph A = [[0, R], [Rᵀ, 0]] of a users × items matrix R.

    Returns a coalesced sparse COO float32 tensor (COO: stable on CPU and CUDA) of shape (n_users + n_items, n_users + n_items); nodes without edges get
    zero rows (no division by zero). Entries of R are treated as binary.
    """
    r = interactions.tocsr().astype(np.float32)
    r.data = np.ones_like(r.data)
    n_users, n_items = r.shape
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    if a.shape != (
        n_users + n_items,
        n_users + n_items,
    ):  # bmat drops empty blocks' shape when R has no entries
        a = sp.csr_matrix((n_users + n_items, n_users + n_items), dtype=np.float32)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    np.power(deg, -0.5, out=inv_sqrt, where=deg > 0)
    d = sp.diags(inv_sqrt)
    norm = (d @ a @ d).tocoo()
    indices = torch.from_numpy(np.vstack([norm.row, norm.col]).astype(np.int64))
    return torch.sparse_coo_tensor(
        indices, torch.from_numpy(norm.data.astype(np.float32)), size=norm.shape, check_invariants=True
    ).coalesce()


def propagate_mean(adj: torch.Tensor, e0: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN's layer combination: mean over k = 0..K of E^{(k)}, with E^{(k+1)} = Â E^{(k)}.

    The sparse products run in float32 with autocast off: CUDA has no bf16/fp16 sparse matmul, and the
    propagation is memory-bound anyway, so mixed precision gains nothing here.
    """
    e = e0.float()
    out = e
    with torch.autocast(e0.device.type, enabled=False):
        for _ in range(n_layers):
            e = torch.sparse.mm(adj, e)
            out = out + e
    return out / (n_layers + 1)
