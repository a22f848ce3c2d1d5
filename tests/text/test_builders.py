"""Text builders: exact texts from small frames, training-only reviews, empty-text reporting."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from attnrec.data.vocab import Vocabulary
from attnrec.errors import DataError
from attnrec.text.builders import (
    item_text_from_meta,
    item_text_from_reviews,
    movielens_item_text,
    texts_for_vocab,
    user_text_from_reviews,
)

SHARED = Path("/work/shared/data/amazon2014-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz")


def _meta() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": ["a", "b", "c", "a"],
            "title": ["Guitar  ", "Strings.", None, "second row for a"],
            "description": ["Solid spruce top", None, "", "x"],
            "categories": [["Music", "Guitars"], [], None, ["z"]],
            "brand": ["Fender", None, None, None],
            "price": [1.0, 2.0, 3.0, 4.0],
        }
    )


def test_item_text_from_meta(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="attnrec.text.builders"):
        out = item_text_from_meta(_meta())
    assert out.columns == ["item_id", "text"]
    assert out.rows() == [
        ("a", "Guitar. Solid spruce top. Categories: Music, Guitars. Brand: Fender"),
        ("b", "Strings"),
        ("c", ""),
    ]
    assert "1 duplicate" in caplog.text and "1 of 3 item_id have no text (['c'])" in caplog.text
    assert item_text_from_meta(_meta(), on_empty="drop")["item_id"].to_list() == ["a", "b"]
    with pytest.raises(DataError, match="have no text") as err:
        item_text_from_meta(_meta(), on_empty="error")
    assert err.value.value == "c"


def test_item_text_from_meta_fields_and_types() -> None:
    df = pl.DataFrame(
        {
            "item_id": ["a", "b"],
            "categories": pl.Series(
                [[["Music", "Bass"], ["Sale"]], [[None, " "]]], dtype=pl.List(pl.List(pl.String))
            ),
            "price": [9.5, None],
        }
    )
    out = item_text_from_meta(df, ["categories", "price"], labels={"price": "Price"}, max_chars=30)
    assert out.rows() == [("a", "Music, Bass, Sale. Price: 9.5"), ("b", "")]
    with pytest.raises(DataError, match="missing column") as err:
        item_text_from_meta(df, ["title"])
    assert err.value.field == "title"
    with pytest.raises(DataError, match="no text fields"):
        item_text_from_meta(df.select("item_id", "price"))


def test_movielens_item_text() -> None:
    items = pl.DataFrame(
        {
            "item_id": ["1", "2", "3"],
            "title": ["Toy Story", "Heat", "Unknown"],
            "year": pl.Series([1995, None, 2000], dtype=pl.Int32),
            "genres": [["Animation", "Children's", "Comedy"], ["Action"], []],
        }
    )
    assert movielens_item_text(items)["text"].to_list() == [
        "Toy Story (1995). Genres: Animation, Children's, Comedy",
        "Heat. Genres: Action",
        "Unknown (2000)",
    ]
    piped = items.with_columns(pl.Series("genres", ["Animation|Comedy", "Action", None]))
    assert movielens_item_text(piped)["text"][0] == "Toy Story (1995). Genres: Animation, Comedy"


def _train() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u3", "u2"],
            "item_id": ["i1", "i1", "i2", "i2", "i3"],
            "timestamp": [30, 10, 20, 0, 5],
            "review": ["great strings", "bad  ", "   ", "ok " * 10, None],
        }
    )


def test_item_text_from_reviews_orders_joins_and_cuts(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="attnrec.text.builders"):
        out = item_text_from_reviews(_train())
    # first-appearance order of keys; reviews oldest first; blank/null reviews left out; i3 has none
    assert out.rows() == [("i1", "bad\ngreat strings"), ("i2", ("ok " * 10).strip()), ("i3", "")]
    assert "1 of 3 item_id have no text (['i3'])" in caplog.text
    short = item_text_from_reviews(_train(), max_chars=5, sep=" | ")
    assert short["text"].to_list() == ["bad", "ok ok", ""]  # "great strings" would start at 6
    assert item_text_from_reviews(_train(), order_by=None)["text"][0] == "great strings\nbad"


def test_reviews_past_max_chars_are_skipped_before_joining() -> None:
    many = pl.DataFrame({"item_id": ["i"] * 1000, "timestamp": list(range(1000)), "review": ["abcd"] * 1000})
    assert item_text_from_reviews(many, max_chars=12)["text"].to_list() == ["abcd\nabcd\nab"]


def test_user_text_from_reviews_and_encoded_keys() -> None:
    out = user_text_from_reviews(_train())
    assert dict(out.rows()) == {"u1": "great strings", "u2": "bad", "u3": ("ok " * 10).strip()}
    encoded = _train().with_columns(pl.col("item_id").str.slice(1).cast(pl.Int64).alias("item"))
    assert item_text_from_reviews(encoded, key="item")["item"].to_list() == [1, 2, 3]


def test_only_training_reviews_reach_item_text() -> None:
    """Reviews of the held-out split must never appear, so callers pass train only; check nothing else leaks."""
    train, test = (
        _train(),
        pl.DataFrame({"user_id": ["u9"], "item_id": ["i1"], "timestamp": [99], "review": ["LEAK"]}),
    )
    text = " ".join(item_text_from_reviews(train)["text"].to_list())
    assert "LEAK" not in text
    assert "LEAK" in " ".join(item_text_from_reviews(pl.concat([train, test]))["text"].to_list())


def test_missing_review_column() -> None:
    with pytest.raises(DataError, match="missing column") as err:
        item_text_from_reviews(_train().drop("review"))
    assert err.value.field == "review"


def test_texts_for_vocab(caplog) -> None:
    vocab = Vocabulary(["i3", "i1", "zz"], kind="item")
    texts = pl.DataFrame({"item_id": ["i1", "i3", "extra"], "text": ["one", "three", "x"]})
    with caplog.at_level(logging.WARNING, logger="attnrec.text.builders"):
        aligned = texts_for_vocab(texts, vocab)
    assert aligned.to_list() == ["three", "one", ""]
    assert "1 of 3 item ids have no text" in caplog.text


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED.exists(), reason="shared data not present")
def test_reviews_of_real_amazon_file() -> None:
    from attnrec.data.readers.amazon import read_amazon

    ds = read_amazon(SHARED)
    out = item_text_from_reviews(ds.interactions, max_chars=500)
    assert out.height == ds.interactions["item_id"].n_unique() == 900
    assert out["text"].str.len_chars().max() <= 500
    assert (out["text"].str.len_chars() > 0).mean() > 0.99
