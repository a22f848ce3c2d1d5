"""k-core, deduplication and binarisation: hand-computed cases and hypothesis properties."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnrec.data.filters import binarize, deduplicate, kcore
from attnrec.errors import ConfigError, DataError


def frame(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({"user_id": [u for u, _ in pairs], "item_id": [i for _, i in pairs]})


def test_kcore_needs_two_rounds() -> None:
    # 2-core: item c has one row -> removed; then user z has one row left -> removed; then item b has one row
    pairs = [("x", "a"), ("y", "a"), ("x", "b"), ("z", "b"), ("z", "c"), ("y", "d"), ("x", "d")]
    out, rep = kcore(frame(pairs), 2, 2)
    assert sorted(out.rows()) == [("x", "a"), ("x", "d"), ("y", "a"), ("y", "d")]
    assert rep.removed == 3 and rep.details["rounds"] == 4
    assert rep.details["users_after"] == 2 and rep.details["items_after"] == 2


def test_kcore_bad_args() -> None:
    with pytest.raises(ConfigError):
        kcore(frame([("a", "b")]), -1, 2)
    with pytest.raises(DataError, match="item_id"):
        kcore(pl.DataFrame({"user_id": ["a"]}), 1, 1)


pairs_strategy = st.lists(
    st.tuples(st.integers(0, 7).map(lambda x: f"u{x}"), st.integers(0, 7).map(lambda x: f"i{x}")), max_size=60
)


@settings(max_examples=60, deadline=None)
@given(pairs=pairs_strategy, user_k=st.integers(0, 4), item_k=st.integers(0, 4))
def test_kcore_properties(pairs: list[tuple[str, str]], user_k: int, item_k: int) -> None:
    df = frame(pairs)
    out, rep = kcore(df, user_k, item_k, allow_empty=True)
    if out.height == 0 and df.height:
        with pytest.raises(DataError, match="removes every one of the"):
            kcore(df, user_k, item_k)
    if out.height:
        assert out.group_by("user_id").len()["len"].min() >= user_k  # type: ignore[operator]
        assert out.group_by("item_id").len()["len"].min() >= item_k  # type: ignore[operator]
    again, rep2 = kcore(out, user_k, item_k, allow_empty=True)
    assert again.equals(out) and rep2.removed == 0
    assert rep.removed == df.height - out.height
    # the k-core is a sub-multiset of rows in the original order
    idx = df.with_row_index("r").join(out.unique(), on=["user_id", "item_id"], how="semi")["r"]
    assert idx.is_sorted()


def test_deduplicate_policies() -> None:
    df = pl.DataFrame(
        {
            "user_id": ["u", "u", "v", "u"],
            "item_id": ["a", "a", "a", "a"],
            "rating": [1.0, 5.0, 3.0, 3.0],
            "timestamp": [30, 10, 5, 20],
        },
        schema_overrides={"rating": pl.Float32},
    )
    last, rep = deduplicate(df, "last")
    assert last.rows() == [("u", "a", 1.0, 30), ("v", "a", 3.0, 5)] and rep.removed == 2
    first, _ = deduplicate(df, "first")
    assert first.rows() == [("u", "a", 5.0, 10), ("v", "a", 3.0, 5)]
    mean, _ = deduplicate(df, "mean")
    assert mean.rows() == [("u", "a", 3.0, 30), ("v", "a", 3.0, 5)] and mean.schema["rating"] == pl.Float32
    by_order, _ = deduplicate(df.drop("timestamp"), "last")
    assert by_order.rows() == [("v", "a", 3.0), ("u", "a", 3.0)]
    with pytest.raises(ConfigError):
        deduplicate(df, "max")  # type: ignore[arg-type]


def test_binarize() -> None:
    df = pl.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "rating": [3.5, 4.0, 5.0]})
    out, rep = binarize(df, 4.0)
    assert out["user_id"].to_list() == ["b", "c"] and rep.removed == 1
    assert rep.as_dict()["threshold"] == 4.0
