"""svd's batched ALS solve (ALSSide.solve): every row's ridge system, short rows in the dual form, long rows in
the primal one, against a dense per-row solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnrec.models.rating.svd import ALSSide, _length_blocks


def _problem(seed: int = 0, m: int = 9) -> tuple[ALSSide, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # row lengths from 0 to 40: empty rows, rows shorter than m (dual form) and longer ones (primal form)
    lengths = np.r_[0, 1, 2, 3, 5, 8, 9, 12, 20, 40, rng.integers(0, 30, 20)]
    rows = np.repeat(np.arange(len(lengths)), lengths)
    n_cols = 50
    cols = rng.integers(0, n_cols, len(rows))
    values = rng.normal(size=len(rows)).astype(np.float32)
    side = ALSSide(rows, cols, values, (len(lengths), n_cols))
    fixed = torch.from_numpy(rng.normal(size=(n_cols, m)).astype(np.float32))
    return side, fixed, torch.from_numpy(values[np.argsort(rows, kind="stable")]), rows, lengths


def _dense(side: ALSSide, fixed: torch.Tensor, y: torch.Tensor, diag: torch.Tensor) -> np.ndarray:
    out = []
    indptr, indices = side.indptr.numpy(), side.indices.numpy()
    for u in range(side.shape[0]):
        f = fixed.numpy().astype(np.float64)[indices[indptr[u] : indptr[u + 1]]]
        a = f.T @ f + np.diag(diag[u].numpy())
        b = f.T @ y.numpy()[indptr[u] : indptr[u + 1]]
        out.append(np.linalg.pinv(a, hermitian=True) @ b)
    return np.array(out)


@pytest.mark.parametrize("zero_penalty", [False, True])
def test_solve_matches_a_dense_solve_per_row(zero_penalty: bool) -> None:
    side, fixed, y, _, lengths = _problem()
    rhs = torch.sparse.mm(side.residual(torch.zeros(side.shape[1])), fixed)
    diag = torch.rand(side.shape[0], fixed.shape[1]) + 0.5
    if zero_penalty:  # some rows singular: no dual form, minimum-norm least squares
        diag[:, :3] = 0.0
    x = side.solve(fixed, y, rhs, diag)
    np.testing.assert_allclose(x.numpy(), _dense(side, fixed, y, diag), rtol=2e-3, atol=2e-4)
    assert np.all(x.numpy()[lengths == 0] == 0)


def test_blocks_cover_every_nonempty_row_once() -> None:
    counts = np.array([0, 1, 3, 4, 5, 0, 17, 64, 65, 2])
    indptr = np.r_[0, np.cumsum(counts)]
    blocks = _length_blocks(counts, indptr, torch.device("cpu"))
    rows = np.concatenate([r.numpy() for r, _ in blocks])
    assert sorted(rows) == [i for i in range(len(counts)) if counts[i]]
    for r, pos in blocks:
        for row, p in zip(r.numpy(), pos.numpy(), strict=True):
            real = p[p < indptr[-1]]
            assert real.tolist() == list(range(indptr[row], indptr[row + 1]))  # CSR order, padding last
