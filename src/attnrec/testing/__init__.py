"""Test support shipped with the library: planted synthetic data and the conformance suite every model passes.

``from attnrec.testing import ConformanceTests, checkerboard, planted_ctr``; see :mod:`attnrec.testing.data` and
:mod:`attnrec.testing.conformance`.
"""

from attnrec.testing.conformance import ConformanceTests, assert_same_outputs
from attnrec.testing.data import checkerboard, planted_ctr, planted_item_features, review_checkerboard
from attnrec.testing.sequences import planted_sequence_items, planted_sequences

__all__ = [
    "ConformanceTests",
    "assert_same_outputs",
    "checkerboard",
    "planted_ctr",
    "planted_item_features",
    "planted_sequence_items",
    "planted_sequences",
    "review_checkerboard",
]
