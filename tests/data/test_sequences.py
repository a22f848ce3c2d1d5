"""Sequences: left padding, order, truncation, per-domain views, append (test-time context), call-time histories."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnrec.data.sequences import PAD_DOMAIN, Sequences, item_domains_of
from attnrec.data.table import Interactions
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError


def _data(rows: list[tuple[str, str, int, str]], items: list[str] | None = None) -> Interactions:
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "domain"], orient="row")
    uv = Vocabulary.from_ids(df["user_id"], kind="user")
    iv = Vocabulary.from_ids(items if items is not None else df["item_id"], kind="item")
    return Interactions.encode(df, uv, iv)[0]


# items a0..a2 in domain A, b0..b1 in B; vocabulary sorted: a0=0 a1=1 a2=2 b0=3 b1=4
ROWS = [
    ("u1", "b0", 5, "B"),
    ("u1", "a0", 1, "A"),
    ("u1", "a1", 5, "A"),  # same timestamp as b0, later in the frame: after b0
    ("u1", "b1", 9, "B"),
    ("u2", "a2", 3, "A"),
]


def test_left_padding_order_and_fields() -> None:
    data = _data(ROWS)
    seq = Sequences.from_interactions(data, max_len=5)
    assert seq.domain_names == ("A", "B")
    assert seq.items.shape == (2, 5)
    # u1: a0 (t1), b0 (t5), a1 (t5, later row), b1 (t9); +1 shift, 0 pad on the left
    assert seq.items[0].tolist() == [0, 1, 4, 2, 5]
    assert seq.domains[0].tolist() == [PAD_DOMAIN, 0, 1, 0, 1]
    assert seq.order[0].tolist() == [-1, 0, 1, 2, 3]
    assert seq.timestamps is not None and seq.timestamps[0].tolist() == [0, 1, 5, 5, 9]
    assert seq.items[1].tolist() == [0, 0, 0, 0, 3]
    assert seq.lengths.tolist() == [4, 1]
    assert seq.users.tolist() == [0, 1]
    assert seq.mask.sum() == 5
    assert seq.last_items().tolist() == [4, 2]
    assert seq.item_domains.tolist() == [0, 0, 0, 1, 1]


def test_truncation_keeps_the_latest() -> None:
    seq = Sequences.from_interactions(_data(ROWS), max_len=2)
    assert seq.items[0].tolist() == [2, 5]  # a1, b1
    assert seq.order[0].tolist() == [0, 1]
    assert seq.lengths.tolist() == [2, 1]
    assert seq.items[1].tolist() == [0, 3]


def test_without_timestamps_frame_order() -> None:
    data = _data(ROWS)
    data = data.with_frame(data.frame.drop("timestamp"))
    seq = Sequences.from_interactions(data, max_len=4)
    assert seq.items[0].tolist() == [4, 1, 2, 5]  # b0, a0, a1, b1 as in the frame
    assert seq.timestamps is None


def test_view_keeps_mixed_order_ranks() -> None:
    seq = Sequences.from_interactions(_data(ROWS), max_len=5)
    a, b = seq.view("A"), seq.view(1)
    assert a.items[0].tolist() == [0, 0, 0, 1, 2]
    assert a.order[0].tolist() == [-1, -1, -1, 0, 2]
    assert a.domains[0].tolist() == [-1, -1, -1, 0, 0]
    assert b.items[0].tolist() == [0, 0, 0, 4, 5]
    assert b.order[0].tolist() == [-1, -1, -1, 1, 3]
    assert a.lengths.tolist() == [2, 1] and b.lengths.tolist() == [2, 0]
    assert b.items[1].tolist() == [0] * 5
    assert b.timestamps is not None and b.timestamps[0].tolist() == [0, 0, 0, 5, 9]
    with pytest.raises(ConfigError, match="unknown domain 'C'"):
        seq.view("C")


def test_append_validation_item_for_test_time() -> None:
    data = _data(ROWS)
    train = data.with_frame(data.frame.filter(pl.col("timestamp") < 9))
    valid = data.with_frame(data.frame.filter(pl.col("timestamp") == 9))
    full = Sequences.from_interactions(data, max_len=3)
    ctx = Sequences.from_interactions(train, data_domains := item_domains_of(data)[0], ("A", "B"), max_len=3)
    assert len(data_domains) == 5
    out = ctx.append(valid)
    assert np.array_equal(out.items, full.items)
    assert np.array_equal(out.order, full.order)
    assert np.array_equal(out.domains, full.domains)
    assert out.timestamps is not None and full.timestamps is not None
    assert np.array_equal(out.timestamps, full.timestamps)
    # appended items go after every stored position even with an earlier timestamp
    early = data.with_frame(pl.DataFrame({"user": [1], "item": [0], "timestamp": [0], "domain": ["A"]}))
    assert ctx.append(early).items[1].tolist() == [0, 3, 1]


def test_from_history_and_take() -> None:
    doms = np.array([0, 0, 1])
    seq = Sequences.from_history(np.array([2, 0, 1, 1]), np.array([0, 3, 3, 4]), doms, ("A", "B"), max_len=2)
    assert seq.items.tolist() == [[1, 2], [0, 0], [0, 2]]
    assert seq.domains.tolist() == [[0, 0], [-1, -1], [-1, 0]]
    assert seq.users.tolist() == [-1, -1, -1]
    sub = seq.take(np.array([2, 0]))
    assert sub.items.tolist() == [[0, 2], [1, 2]]
    assert sub.lengths.tolist() == [1, 2]
    with pytest.raises(DataError, match="item index out of range"):
        Sequences.from_history(np.array([3]), np.array([0, 1]), doms, ("A", "B"))


def test_vectorised_build_matches_a_python_reference() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, n = 40, 30, 600
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    doms = rng.integers(0, 2, n_items)
    seq = Sequences.from_arrays(users, items, n_users, doms, ("A", "B"), max_len=7)
    for u in range(n_users):
        ref = (items[users == u] + 1).tolist()[-7:]
        assert seq.items[u].tolist() == [0] * (7 - len(ref)) + ref
        view = seq.view("B").items[u]
        ref_b = [i for i in ref if doms[i - 1] == 1]
        assert view.tolist() == [0] * (7 - len(ref_b)) + ref_b


def test_item_domains_errors() -> None:
    clash = _data([("u1", "x", 1, "A"), ("u2", "x", 2, "B")])
    with pytest.raises(DataError, match="item in two domains"):
        item_domains_of(clash)
    partial = _data([("u1", "x", 1, "A")], items=["x", "y"])
    with pytest.raises(DataError, match="have no row"):
        item_domains_of(partial)
    data = _data(ROWS)
    with pytest.raises(ConfigError, match="item_domains has 2 entries"):
        Sequences.from_interactions(data, np.array([0, 1]), ("A", "B"))
    with pytest.raises(ConfigError, match="max_len"):
        Sequences.from_interactions(data, max_len=0)
    no_dom = data.with_frame(data.frame.drop("domain"))
    assert Sequences.from_interactions(no_dom).domain_names == ("all",)


def test_item_domains_from_the_catalogue() -> None:
    data = _data(ROWS, items=["a0", "a1", "a2", "b0", "b1", "c9"])  # c9 only in the catalogue
    cat = pl.DataFrame(
        {"item_id": ["zz", "c9", "b1", "b0", "a2", "a1", "a0"], "domain": ["A", "B", "B", "B", "A", "A", "A"]}
    )
    doms, names = item_domains_of(data, cat)
    assert names == ("A", "B") and doms.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(
        DataError, match=r"1 item\(s\) of the vocabulary have no domain in the catalogue"
    ) as e:
        item_domains_of(data, cat.filter(pl.col("item_id") != "c9"))
    assert "'c9'" in str(e.value)
    empty = cat.with_columns(
        pl.when(pl.col("item_id") == "a1").then(None).otherwise(pl.col("domain")).alias("domain")
    )
    with pytest.raises(
        DataError, match=r"no domain in the catalogue \(no row, or an empty domain\): \['a1'\]"
    ):
        item_domains_of(data, empty)
    with pytest.raises(DataError, match="have no row"):  # no catalogue domain: from the rows, c9 has none
        item_domains_of(data, cat.drop("domain"))
    # an item listed twice: the first row is used (read_items' rule), whatever the later rows say
    twice = pl.concat(
        [cat, pl.DataFrame({"item_id": ["a1", "b0"], "domain": [None, "A"]}, schema=cat.schema)]
    )
    doms, names = item_domains_of(data, twice)
    assert names == ("A", "B") and doms.tolist() == [0, 0, 0, 1, 1, 1]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 7)), max_size=60),
    max_len=st.integers(1, 9),
    cut=st.integers(0, 60),
)
def test_property_against_python_reference(rows: list[tuple[int, int]], max_len: int, cut: int) -> None:
    """from_arrays keeps each row's last max_len items in order, left-padded; view(d) is the reference filtered to
    d; building in two steps (append) equals building at once."""
    doms = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    users = np.array([r[0] for r in rows], dtype=np.int64)
    items = np.array([r[1] for r in rows], dtype=np.int64)
    seq = Sequences.from_arrays(users, items, 6, doms, ("A", "B"), max_len=max_len)
    for u in range(6):
        ref = [i for uu, i in rows if uu == u][-max_len:]
        pad = max_len - len(ref)
        assert seq.items[u].tolist() == [0] * pad + [i + 1 for i in ref]
        assert seq.order[u].tolist() == [-1] * pad + list(range(len(ref)))
        assert seq.lengths[u] == len(ref)
        for d in (0, 1):
            sub = [i + 1 for i in ref if doms[i] == d]
            assert seq.view(d).items[u].tolist() == [0] * (max_len - len(sub)) + sub
    # append: the first `cut` rows as stored sequences, the rest appended after them
    head, tail = rows[:cut], rows[cut:]
    first = Sequences.from_arrays(
        np.array([r[0] for r in head], dtype=np.int64),
        np.array([r[1] for r in head], dtype=np.int64),
        6,
        doms,
        ("A", "B"),
        max_len=max_len,
    )
    uv = Vocabulary([str(u) for u in range(6)], kind="user")
    iv = Vocabulary([str(i) for i in range(8)], kind="item")
    extra = Interactions(
        pl.DataFrame(
            {"user": [r[0] for r in tail], "item": [r[1] for r in tail]},
            schema={"user": pl.Int64, "item": pl.Int64},
        ),
        uv,
        iv,
    )
    both = first.append(extra)
    # what the stored sequences kept of `head` (each user's last max_len), then every appended row
    truncated_first = [
        (u, i) for k, (u, i) in enumerate(head) if sum(1 for x, _ in head[k:] if x == u) <= max_len
    ]
    direct = Sequences.from_arrays(
        np.array([r[0] for r in truncated_first + tail], dtype=np.int64),
        np.array([r[1] for r in truncated_first + tail], dtype=np.int64),
        6,
        doms,
        ("A", "B"),
        max_len=max_len,
    )
    assert np.array_equal(both.items, direct.items) and np.array_equal(both.domains, direct.domains)
