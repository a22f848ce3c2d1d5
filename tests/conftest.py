"""Session-wide test settings: every test runs with one compute thread.

The tests work on tiny tensors, where thread hand-offs cost more than the work; on a shared machine under load a
multi-threaded run of the CTR tests took 30x longer than a one-thread run. The OpenMP/MKL/OpenBLAS variables are
set before anything imports torch or NumPy (pytest loads this file first), and torch is pinned again before each
test so that a test which changes its thread count cannot change the next one's.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    # allowed once per process and only before inter-op work started (e.g. torch already used by a plugin)
    pass


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """Re-pin torch's intra-op pool to one thread before each test."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
