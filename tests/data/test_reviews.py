"""The review models' text pipeline: tokenizer, word vocabulary, documents (hand-computed cases)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from attnrec.data.reviews import OOV, PAD, ReviewDocuments, WordVocab, tokenize
from attnrec.data.side import ReviewCorpus
from attnrec.errors import ConfigError, DataError


def test_tokenize_lowercases_and_splits_on_non_word_characters() -> None:
    out = tokenize(pl.Series(["Don't STOP, 3 stars!", None, "", "ünï co-op"])).to_list()
    assert out == [["don't", "stop", "3", "stars"], [], [], ["n", "co", "op"]]


def test_vocab_orders_by_frequency_then_alphabet_and_caps() -> None:
    tokens = tokenize(pl.Series(["b a c", "a b", "a d"]))
    assert WordVocab.build(tokens, 10).words == ("a", "b", "c", "d")  # a:3, b:2, c and d: 1 each
    vocab = WordVocab.build(tokens, 2)
    assert vocab.words == ("a", "b") and len(vocab) == 4  # + padding and out-of-vocabulary
    enc = vocab.encode(tokenize(pl.Series(["a b c d e", "", "b"])), 3)
    assert enc.dtype == np.int32
    np.testing.assert_array_equal(enc, [[2, 3, OOV], [PAD, PAD, PAD], [3, PAD, PAD]])
    with pytest.raises(ConfigError, match="max_words"):
        WordVocab.build(tokens, 0)
    empty = WordVocab.build(tokenize(pl.Series(["", None])), 5)
    assert empty.words == () and len(empty) == 2
    np.testing.assert_array_equal(empty.encode(tokenize(pl.Series(["x y"])), 3), [[OOV, OOV, PAD]])


def _corpus(users: list[int], items: list[int], texts: list[str | None]) -> ReviewCorpus:
    frame = pl.DataFrame(
        {"user": users, "item": items, "review": texts}, schema_overrides={"review": pl.String}
    )
    return ReviewCorpus(frame, "fp")


def test_documents_keep_the_latest_reviews_in_time_order_with_slots() -> None:
    # rows: (user, item, text, time); user 0 has three reviews, review_count 2 keeps its two latest
    corpus = _corpus([0, 0, 1, 0, 1], [0, 1, 1, 1, 0], ["a b", "b", None, "c a", "a"])
    vocab = WordVocab.build(tokenize(corpus.frame["review"]), 10)  # a:3 -> 2, b:2 -> 3, c:1 -> 4
    assert vocab.words == ("a", "b", "c")
    docs = ReviewDocuments.build(
        corpus,
        vocab,
        n_users=3,
        n_items=2,
        review_count=2,
        review_length=2,
        timestamps=np.array([5, 1, 2, 9, 3]),
    )
    np.testing.assert_array_equal(docs.row_tokens, [[2, 3], [3, 0], [0, 0], [4, 2], [2, 0]])
    # user 0 in time order: row 1 (t=1), row 0 (t=5), row 3 (t=9): the two latest are rows 0, 3
    np.testing.assert_array_equal(docs.user_docs[0], [[2, 3], [4, 2]])
    np.testing.assert_array_equal(docs.user_docs[1], [[0, 0], [2, 0]])  # row 2 (empty, t=2), row 4 (t=3)
    np.testing.assert_array_equal(docs.user_docs[2], 0)  # no training review: all padding
    np.testing.assert_array_equal(docs.item_docs[0], [[2, 0], [2, 3]])  # rows 4 (t=3), then 0 (t=5)
    np.testing.assert_array_equal(docs.user_slot, [0, -1, 0, 1, 1])
    np.testing.assert_array_equal(docs.item_slot[[0, 4]], [1, 0])
    assert docs.user_docs.dtype == docs.item_docs.dtype == np.int32
    assert docs.stats() == {
        "reviews": 5,
        "empty_reviews": 1,
        "users_without_text": 1,
        "items_without_text": 0,
    }
    users, items = docs.has_text()
    np.testing.assert_array_equal(users, [True, True, False])


def test_documents_check_indices_and_alignment() -> None:
    corpus = _corpus([0, 4], [0, 0], ["a", "b"])
    vocab = WordVocab.build(tokenize(corpus.frame["review"]), 10)
    with pytest.raises(DataError, match="field 'user'.*value 4"):
        ReviewDocuments.build(corpus, vocab, n_users=2, n_items=1)
    ok = _corpus([0, 1], [0, 0], ["a", "b"])
    with pytest.raises(DataError, match="timestamp"):
        ReviewDocuments.build(ok, vocab, n_users=2, n_items=1, timestamps=np.array([1]))
    with pytest.raises(ConfigError, match="review_count"):
        ReviewDocuments.build(ok, vocab, n_users=2, n_items=1, review_count=0)


def test_skipgram_vectors_align_to_the_vocabulary_and_repeat_under_a_seed() -> None:
    pytest.importorskip("gensim", reason="gensim (the 'reviews' extra) is not installed")
    from attnrec.text.word2vec import skipgram_vectors

    texts = ["good strings sound good", "bad strings buzz", "good sound", "cheap bad buzz"] * 20
    tokens = tokenize(pl.Series(texts))
    vocab = WordVocab.build(tokens, 4)  # one word (cheap) is out of the vocabulary
    a = skipgram_vectors(tokens, vocab, 6, seed=3, epochs=2)
    b = skipgram_vectors(tokens, vocab, 6, seed=3, epochs=2)
    assert a.shape == (len(vocab), 6) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # one worker, seeded: deterministic
    np.testing.assert_array_equal(a[PAD], 0)
    assert np.abs(a[2:]).min(axis=1).max() > 0 and not np.allclose(a[2], a[3])
    c = skipgram_vectors(tokens, vocab, 6, seed=4, epochs=2)
    assert not np.allclose(a[2:], c[2:])
