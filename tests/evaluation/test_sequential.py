"""The per-target-domain next-item protocol: hand-computed ranks, exclusions, the test-time context, ties,
determinism, and the ragged history helpers."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError
from attnrec.evaluation.protocols import evaluate
from attnrec.evaluation.sequential import SequentialRanking, context_history, draw_negatives, take_history
from attnrec.models.capabilities import ItemScorer
from attnrec.models.query import History, Query

# items 0..4 in A, 5..8 in B
DOMS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])


class Fixed(ItemScorer):
    """Scores from a fixed (n_users, n_items) matrix; records every query."""

    name = "fixed"
    query_inputs = frozenset({"users", "history", "domain"})

    def __init__(self, scores: np.ndarray) -> None:
        self.matrix = scores.astype(np.float32)
        self.queries: list[Query] = []

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    def score(self, query: Query) -> torch.Tensor:
        self.check_query(query)
        self.queries.append(query)
        assert query.users is not None
        return torch.from_numpy(self.matrix[query.users].copy())


def _split(
    rows: list[tuple[int, int]], n_users: int = 3, n_items: int = 9, ts: list[int] | None = None
) -> Interactions:
    uv = Vocabulary([str(u) for u in range(n_users)], kind="user")
    iv = Vocabulary([str(i) for i in range(n_items)], kind="item")
    frame = pl.DataFrame(
        {"user": [r[0] for r in rows], "item": [r[1] for r in rows]},
        schema={"user": pl.Int64, "item": pl.Int64},
    )
    if ts is not None:
        frame = frame.with_columns(pl.Series("timestamp", ts, dtype=pl.Int64))
    return Interactions(frame, uv, iv)


def test_hand_computed_ranks_when_every_admissible_item_is_a_negative() -> None:
    # user 0: context {0}, target 1 (A) -> negatives = A items {2, 3, 4}; scores put target 2nd
    # user 1: context {5}, target 6 (B) -> negatives = {7, 8}; target best
    scores = np.zeros((3, 9))
    scores[0, :5] = [9.0, 5.0, 7.0, 1.0, 0.0]  # context item 0 scores highest: must not count
    scores[1, 5:] = [9.0, 3.0, 2.0, 1.0]
    train = _split([(0, 0), (1, 5)])
    test = _split([(0, 1), (1, 6)])
    model = Fixed(scores)
    proto = SequentialRanking(DOMS, ("A", "B"), n_negatives=2, ks=(1, 2))
    with pytest.raises(DataError, match="user '0' has only 3 item"):
        evaluate(model, test, SequentialRanking(DOMS, ("A", "B"), n_negatives=4), exclude=train.csr())
    m = evaluate(model, test, proto, exclude=train.csr())
    # A: 3 admissible negatives, 2 drawn: rank 2 if item 2 is drawn, else 1; B: rank 1
    assert m["B/hit@1"] == 1.0 and m["B/mrr"] == 1.0 and m["B/auc"] == 1.0 and m["B/n_rows"] == 1.0
    assert m["A/n_rows"] == 1.0
    # full ranking within A: candidates {1, 2, 3, 4} (0 masked): target rank 2
    assert m["A/full/hit@1"] == 0.0 and m["A/full/hit@2"] == 1.0
    assert m["A/full/ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert m["A/full/mrr"] == pytest.approx(0.5)
    assert m["A/full/auc"] == pytest.approx(2 / 3)  # 2 of the 3 other candidates below
    assert m["B/full/mrr"] == 1.0 and m["B/full/auc"] == 1.0
    # macro means over the two domains
    assert m["full/mrr"] == pytest.approx(0.75)
    assert m["n_rows"] == 2.0
    # three negatives: every admissible A item is drawn -> exact
    m3 = evaluate(
        model,
        _split([(0, 1)]),
        SequentialRanking(DOMS, ("A", "B"), n_negatives=3, ks=(1, 2)),
        exclude=train.csr(),
    )
    assert m3["A/mrr"] == pytest.approx(0.5) and m3["A/auc"] == pytest.approx(2 / 3)
    assert m3["A/ndcg@2"] == pytest.approx(1 / math.log2(3))


def test_negatives_never_context_target_or_other_domain() -> None:
    rng = np.random.default_rng(1)
    n_users, n_items = 40, 9
    ctx_rows = [(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, 2, replace=False)]
    train = _split(ctx_rows, n_users)
    test_rows = []
    for u in range(n_users):
        seen = {i for uu, i in ctx_rows if uu == u}
        test_rows.append((u, int(rng.choice([i for i in range(n_items) if i not in seen]))))
    test = _split(test_rows, n_users)
    # context and other-domain items score far above the target, admissible negatives far below
    scores = np.full((n_users, n_items), -10.0)
    for u, i in ctx_rows:
        scores[u, i] = 100.0
    for u, t in test_rows:
        scores[u, DOMS != DOMS[t]] = 100.0
        scores[u, t] = 0.0
    m = evaluate(
        Fixed(scores), test, SequentialRanking(DOMS, ("A", "B"), n_negatives=1, ks=(1,)), exclude=train.csr()
    )
    assert m["A/hit@1"] == 1.0 and m["B/hit@1"] == 1.0
    assert m["A/full/hit@1"] == 1.0 and m["B/full/hit@1"] == 1.0


def test_context_items_are_never_negatives_even_outside_exclude() -> None:
    """The context's items (here the validation item, given only through ``context``, not ``exclude``) are never
    sampled negatives and are masked in the full ranking, as ABXI draws from outside the whole input sequence."""
    rng = np.random.default_rng(2)
    n_users, n_items = 40, 9
    rows = [[int(i) for i in rng.choice(n_items, 3, replace=False)] for _ in range(n_users)]
    train = _split([(u, r[0]) for u, r in enumerate(rows)], n_users, ts=[1] * n_users)
    valid = _split([(u, r[1]) for u, r in enumerate(rows)], n_users, ts=[2] * n_users)
    test = _split([(u, r[2]) for u, r in enumerate(rows)], n_users, ts=[3] * n_users)
    scores = np.full((n_users, n_items), -10.0)
    for u, (tr, va, te) in enumerate(rows):
        scores[u, DOMS != DOMS[te]] = 100.0
        scores[u, [tr, va]] = 100.0  # the context scores above the target: it must never be a candidate
        scores[u, te] = 0.0
    ctx = context_history([train, valid], n_users)
    proto = SequentialRanking(DOMS, ("A", "B"), n_negatives=1, ks=(1,), context=ctx, on_short="cap")
    m = evaluate(Fixed(scores), test, proto, exclude=train.csr())
    assert m["A/hit@1"] == 1.0 and m["B/hit@1"] == 1.0
    assert m["A/full/hit@1"] == 1.0 and m["B/full/hit@1"] == 1.0


def test_ties_and_determinism_across_batch_sizes() -> None:
    n_users = 30
    test = _split([(u, u % 9) for u in range(n_users)], n_users)
    flat = Fixed(np.zeros((n_users, 9)))
    opt = evaluate(flat, test, SequentialRanking(DOMS, ("A", "B"), n_negatives=3))
    pes = evaluate(flat, test, SequentialRanking(DOMS, ("A", "B"), n_negatives=3, ties="pessimistic"))
    assert opt["hit@1"] == 1.0  # ABXI's rule: ties favour the target
    assert pes["A/mrr"] == pytest.approx(0.25) and pes["A/auc"] == 0.0
    rand = Fixed(np.random.default_rng(0).normal(size=(n_users, 9)))
    a = evaluate(rand, test, SequentialRanking(DOMS, ("A", "B"), n_negatives=3, batch_size=1, seed=5))
    b = evaluate(rand, test, SequentialRanking(DOMS, ("A", "B"), n_negatives=3, batch_size=512, seed=5))
    assert a == pytest.approx(b)
    c = evaluate(rand, test, SequentialRanking(DOMS, ("A", "B"), n_negatives=3, batch_size=512, seed=6))
    assert c != a  # another seed draws other negatives


def test_context_validation_item_in_test_input_never_test_item() -> None:
    train = _split([(0, 0), (0, 5), (1, 1), (1, 2)], ts=[1, 2, 1, 2])
    valid = _split([(0, 6), (1, 3)], ts=[3, 3])
    test = _split([(0, 7), (1, 4)], ts=[4, 4])
    ctx = context_history([train, valid], 3)
    assert ctx.row(0).tolist() == [0, 5, 6] and ctx.row(1).tolist() == [1, 2, 3] and ctx.row(2).tolist() == []
    model = Fixed(np.random.default_rng(0).normal(size=(3, 9)))
    evaluate(model, valid, SequentialRanking(DOMS, ("A", "B"), n_negatives=2), exclude=train.csr())
    assert all(q.history is None for q in model.queries)  # validation: the stored training state
    model.queries.clear()
    evaluate(
        model, test, SequentialRanking(DOMS, ("A", "B"), n_negatives=1, context=ctx), exclude=train.csr()
    )
    seen = {}
    for q in model.queries:
        assert q.history is not None and q.users is not None and q.domain in ("A", "B")
        for r, u in enumerate(q.users):
            seen[int(u)] = q.history.row(r).tolist()
    assert seen == {0: [0, 5, 6], 1: [1, 2, 3]}
    assert not any(7 in h or 4 in h for h in seen.values())


def test_take_history_and_errors() -> None:
    h = History.from_lists([[1, 2], [], [3, 4, 5]])
    t = take_history(h, np.array([2, 0, 2, 1]))
    assert [t.row(r).tolist() for r in range(4)] == [[3, 4, 5], [1, 2], [3, 4, 5], []]
    test = _split([(0, 1)])
    with pytest.raises(ConfigError, match="needs item_domains"):
        evaluate(Fixed(np.zeros((3, 9))), test, SequentialRanking())


def test_short_domain_caps_or_errors() -> None:
    train = _split([(0, 0), (0, 1), (1, 5)])
    test = _split([(0, 2), (1, 6)])
    scores = np.random.default_rng(0).normal(size=(3, 9))
    with pytest.raises(DataError, match="user '0' has only 2 item"):
        evaluate(Fixed(scores), test, SequentialRanking(DOMS, ("A", "B"), n_negatives=3), exclude=train.csr())
    m = evaluate(
        Fixed(scores),
        test,
        SequentialRanking(DOMS, ("A", "B"), n_negatives=3, on_short="cap"),
        exclude=train.csr(),
    )
    assert m["A/n_negatives"] == 2.0 and m["B/n_negatives"] == 2.0
    # every admissible item drawn: sampled == full ranking
    assert m["A/mrr"] == pytest.approx(m["A/full/mrr"]) and m["B/auc"] == pytest.approx(m["B/full/auc"])


@pytest.mark.parametrize(
    "n", [3, 40, 70]
)  # rejection (n small against the pool) and random keys (n > pool / 2)
def test_draw_negatives_distinct_admissible_uniform(n: int) -> None:
    rng = np.random.default_rng(0)
    n_items, b = 120, 400
    pool = np.arange(20, 120)  # 100 items
    excl = sp.random(b, n_items, density=0.1, random_state=1, format="csr")
    targets = rng.integers(20, 120, b)
    neg = draw_negatives(excl, targets, pool, n, np.random.default_rng(3))
    assert neg.shape == (b, n)
    dense = excl.toarray() > 0
    for r in range(b):
        row = neg[r]
        assert len(set(row.tolist())) == n
        assert np.all((row >= 20) & (row < 120)) and targets[r] not in row and not dense[r, row].any()
    # uniform over the admissible items: every item of an unconstrained row equally likely
    free = sp.csr_matrix((5000, n_items))
    counts = np.bincount(
        draw_negatives(free, np.full(5000, 20), pool, n, np.random.default_rng(4)).ravel(), minlength=n_items
    )
    expected = counts[21:120].sum() / 99
    assert counts[20] == 0 and np.abs(counts[21:120] - expected).max() < 5 * np.sqrt(expected)
    again = draw_negatives(excl, targets, pool, n, np.random.default_rng(3))
    assert np.array_equal(neg, again)
