"""EmbeddingCache: round trips, append-only shards, float16, compaction, corrupt input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnrec.errors import ConfigError, DataError
from attnrec.text.cache import EmbeddingCache, text_keys


def _vecs(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_text_keys_are_sha256_of_utf8() -> None:
    import hashlib

    keys = text_keys(["abc", "é"])
    assert keys.shape == (2, 32) and keys.dtype == np.uint8
    assert keys[0].tobytes() == hashlib.sha256(b"abc").digest()
    assert keys[1].tobytes() == hashlib.sha256("é".encode()).digest()


def test_no_io_at_construction(tmp_path) -> None:
    EmbeddingCache(tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_round_trip_and_partial_hits(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    v = _vecs(3)
    assert cache.put("m@1", ["a", "b", "c"], v) == 3
    found, got = cache.get("m@1", ["c", "zz", "a"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got, v[[2, 0]])
    assert got.dtype == np.float32
    # another model id sees nothing
    assert not cache.get("m@2", ["a"])[0].any()
    # a fresh instance (another process) reads the same shards
    found2, got2 = EmbeddingCache(tmp_path).get("m@1", ["b"])
    assert found2.tolist() == [True]
    np.testing.assert_array_equal(got2[0], v[1])


def test_append_only_shards_skip_known_keys(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    v = _vecs(4)
    cache.put("m", ["a", "b"], v[:2])
    # "b" is known: only "c" is written, and the first vector for "b" stays
    assert cache.put("m", ["b", "c", "c"], np.stack([v[3], v[2], v[2]])) == 1
    assert cache.count("m") == 3
    (space,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(list(space.glob("*.keys.npy"))) == 2 and len(list(space.glob("*.vecs.npy"))) == 2
    assert not list(space.glob(".tmp-*"))
    _, got = cache.get("m", ["b", "c"])
    np.testing.assert_array_equal(got, v[[1, 2]])
    assert json.loads((space / "meta.json").read_text()) == {"format": 1, "model_id": "m", "dim": 8}
    assert cache.models() == ["m"]


def test_reads_are_memory_mapped(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a"], _vecs(1))
    cache.get("m", ["a"])
    space = cache._spaces["m"]
    assert all(isinstance(v, np.memmap) for v in space.vecs)


def test_float16_storage(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path, dtype="float16")
    v = _vecs(5)
    cache.put("m", list("abcde"), v)
    (shard,) = list(next(p for p in tmp_path.iterdir() if p.is_dir()).glob("*.vecs.npy"))
    assert np.load(shard).dtype == np.float16
    found, got = cache.get("m", list("edcba"))
    assert found.all() and got.dtype == np.float32
    np.testing.assert_allclose(got, v[::-1], rtol=1e-3, atol=1e-3)
    assert not np.array_equal(got, v[::-1])  # it really went through float16
    with pytest.raises(DataError, match="overflow float16"):
        cache.put("m", ["big"], np.full((1, 8), 1e6, dtype=np.float32))


def test_compact_merges_shards_and_keeps_values(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    v = _vecs(6)
    for i, t in enumerate("abcdef"):
        cache.put("m", [t], v[i : i + 1])
    space = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(list(space.glob("*.keys.npy"))) == 6
    other = EmbeddingCache(tmp_path)  # has the old index loaded; must notice the compaction
    other.get("m", ["a"])
    assert cache.compact("m") == 6
    assert len(list(space.glob("*.keys.npy"))) == 1
    found, got = other.get("m", list("fedcba"))
    assert found.all()
    np.testing.assert_array_equal(got, v[::-1])


def test_dimension_mismatch_and_bad_values(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a"], _vecs(1, dim=8))
    with pytest.raises(DataError, match="dimension"):
        cache.put("m", ["b"], _vecs(1, dim=4))
    with pytest.raises(DataError, match="non-finite"):
        cache.put("m", ["c"], np.full((1, 8), np.nan, dtype=np.float32))
    with pytest.raises(DataError, match="line up"):
        cache.put("m", ["c", "d"], _vecs(1))
    with pytest.raises(ConfigError):
        EmbeddingCache(tmp_path, dtype="int8")  # type: ignore[arg-type]


def test_corrupt_keys_file_is_named(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a"], _vecs(1))
    space = next(p for p in tmp_path.iterdir() if p.is_dir())
    np.save(space / "zzz.keys.npy", np.zeros((1, 5), dtype=np.uint8))
    with pytest.raises(DataError, match="zzz.keys.npy"):
        EmbeddingCache(tmp_path).get("m", ["a"])


def test_stale_tmp_files_are_ignored(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a"], _vecs(1))
    space = next(p for p in tmp_path.iterdir() if p.is_dir())
    (space / ".tmp-crashed.vecs.npy").write_bytes(b"partial")
    (space / ".tmp-crashed.keys.npy").write_bytes(b"partial")
    assert EmbeddingCache(tmp_path).get("m", ["a"])[0].tolist() == [True]
