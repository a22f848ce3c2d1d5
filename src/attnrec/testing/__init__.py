"""Test support shipped with the library: planted synthetic data and the conformance suite every model passes.

``from attnrec.testing import ConformanceTests, checkerboard, planted_ctr``; see :mod:`attnrec.testing.data` and
:mod:`attnrec.testing.conformance`.
"""

from attnrec.testing.conformance import ConformanceTests, assert_same_outputs
from attnrec.testing.data import checkerboard, planted_ctr, review_checkerboard

__all__ = [
    "ConformanceTests",
    "assert_same_outputs",
    "checkerboard",
    "planted_ctr",
    "review_checkerboard",
]
