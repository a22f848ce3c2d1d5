"""CTR data layer: schema, encoder (vocabularies, OOV, log2 buckets, hashing), CTRData, batches, shards."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from pydantic import ValidationError

from attnrec.data.batches import CTRBatch
from attnrec.data.ctr import CTRData, FeatureEncoder, ctr_batches, fnv1a64, log2_bucket
from attnrec.data.ctr_shards import ShardedCTRData, preprocess_to_shards
from attnrec.data.readers.ctr import read_criteo
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.errors import ConfigError, DataError


def small_schema() -> FeatureSchema:
    return FeatureSchema(
        fields=[
            FieldSpec(name="color", min_count=2),
            FieldSpec(name="count", kind="numeric", bucketize="log2"),
            FieldSpec(name="price", kind="numeric"),
            FieldSpec(name="tags", kind="multi", sep="|", max_len=2, pooling="sum"),
        ],
        label="label",
    )


def small_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "label": [1, 0, 1, 0, 1],
            "color": ["red", "blue", "red", None, "green"],
            "count": [0.0, 3.0, 100.0, None, 3.0],
            "price": [1.5, None, 2.0, 4.0, 0.5],
            "tags": ["a|b|c", "b", "", None, "c|a"],
        }
    )


def test_schema_properties_and_json_roundtrip() -> None:
    s = small_schema()
    assert [f.name for f in s.categorical] == ["color", "count"]
    assert [f.name for f in s.numeric] == ["price"]
    assert [f.name for f in s.multi] == ["tags"]
    assert s.multi_len == 2
    assert FeatureSchema.from_json(s.to_json()) == s
    with pytest.raises(ValidationError):
        FieldSpec(name="x", unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        FieldSpec(name="x", kind="categorical", bucketize="log2")
    with pytest.raises(ValidationError):
        FeatureSchema(fields=[FieldSpec(name="a"), FieldSpec(name="a")])
    with pytest.raises(ValidationError):
        FeatureSchema(fields=[FieldSpec(name="label")], label="label")


def test_log2_bucket_values() -> None:
    v = pl.Series("v", [0.0, 1.0, 2.0, 3.0, 10.0, 100.0, -1.0, None])
    got = pl.select(log2_bucket(pl.lit(v))).to_series().to_list()
    # floor(ln(v)^2) for v > 2: ln3^2=1.207, ln10^2=5.302, ln100^2=21.208
    assert got == [0, 1, 2, 1, 5, 21, -1, None]
    assert got[4] == math.floor(math.log(10) ** 2)


def test_encoder_vocab_min_count_oov_and_values() -> None:
    df = small_frame()
    enc = FeatureEncoder().fit(df, small_schema())
    s = enc.schema
    # color: red x2 kept, blue/green seen once < min_count 2 -> OOV; index 0 reserved
    assert enc.vocabulary("color") == ["red"]
    assert s.field("color").vocab_size == 2
    # count buckets: 0 -> "0", 3 -> "1" (twice), 100 -> "21"; sorted as strings
    assert enc.vocabulary("count") == ["0", "1", "21"]
    assert enc.vocabulary("tags") == ["a", "b", "c"]
    data = enc.transform(df)
    assert data.labels.dtype == np.float32 and data.labels.tolist() == [1, 0, 1, 0, 1]
    assert data.categorical.dtype == np.int64
    assert data.categorical.tolist() == [[1, 1], [0, 2], [1, 3], [0, 0], [0, 2]]
    assert data.numeric.tolist() == [[1.5], [0.0], [2.0], [4.0], [0.5]]
    # tags truncated to max_len 2, 0 = padding
    assert data.multi.tolist() == [[[1, 2]], [[2, 0]], [[0, 0]], [[0, 0]], [[3, 1]]]
    # blue and green are unseen (below min_count), the None is missing, not OOV
    assert enc.last_oov_counts["color"] == 2 and enc.last_missing_counts["color"] == 1
    assert enc.last_oov_counts["count"] == 0

    test = pl.DataFrame(
        {
            "label": [0, 1],
            "color": ["red", "purple"],
            "count": [10.0, 3.0],
            "price": [1.0, 1.0],
            "tags": ["z|a", "b"],
        }
    )
    out = enc.transform(test)
    assert out.categorical.tolist() == [[1, 0], [0, 2]]  # purple and bucket "5" are unseen
    assert enc.last_oov_counts == {"color": 1, "count": 1, "tags": 1}
    assert out.multi.tolist() == [[[0, 1]], [[2, 0]]]


def test_encoder_json_roundtrip_and_unfitted() -> None:
    df = small_frame()
    enc = FeatureEncoder(small_schema()).fit(df)
    again = FeatureEncoder.from_json(enc.to_json())
    assert again.schema == enc.schema
    a, b = enc.transform(df), again.transform(df)
    for name in ("labels", "categorical", "numeric", "multi"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    with pytest.raises(ConfigError):
        FeatureEncoder().transform(df)


def test_fit_on_stream_equals_fit_on_frame() -> None:
    rng = np.random.default_rng(0)
    df = pl.DataFrame({"label": rng.integers(0, 2, 1000), "c": rng.zipf(1.5, 1000).astype(str)})
    schema = FeatureSchema(fields=[FieldSpec(name="c", min_count=3)])
    whole = FeatureEncoder().fit(df, schema)
    streamed = FeatureEncoder().fit((df.slice(i, 97) for i in range(0, 1000, 97)), schema)
    assert whole.vocabulary("c") == streamed.vocabulary("c")
    counts = df["c"].value_counts()
    assert whole.vocabulary("c") == sorted(counts.filter(pl.col("count") >= 3)["c"].to_list())


def test_hash_buckets() -> None:
    df = pl.DataFrame({"label": [0, 1, 0], "h": ["x", "y", None]})
    schema = FeatureSchema(fields=[FieldSpec(name="h", hash_buckets=7)])
    enc = FeatureEncoder().fit(df, schema)
    assert enc.schema.field("h").vocab_size == 8
    data = enc.transform(df)
    values = ["x", "y", "", "héllo wörld"]
    assert fnv1a64(pl.Series(values)).tolist() == [_fnv1a_reference(v.encode()) for v in values]
    assert _fnv1a_reference(b"") == 0xCBF29CE484222325  # the FNV-1a 64 offset basis
    hx, hy = _fnv1a_reference(b"x"), _fnv1a_reference(b"y")
    assert data.categorical[:, 0].tolist() == [1 + hx % 7, 1 + hy % 7, 0]


def _fnv1a_reference(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:  # the textbook definition, byte by byte
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def test_label_errors() -> None:
    enc = FeatureEncoder().fit(small_frame(), small_schema())
    bad = small_frame().with_columns(pl.Series("label", [0, 1, 2, 0, 1]))
    with pytest.raises(DataError) as err:
        enc.transform(bad, source="x.csv")
    assert (err.value.line, err.value.field, err.value.value) == (3, "label", 2)


def test_ctrdata_subset_concat_and_shapes() -> None:
    data = FeatureEncoder().fit(small_frame(), small_schema()).transform(small_frame())
    assert len(data) == 5
    sub = data.subset([4, 0])
    assert sub.labels.tolist() == [1, 1] and sub.categorical.tolist() == [[0, 2], [1, 1]]
    both = CTRData.concat([data, sub])
    assert len(both) == 7 and both.multi.shape == (7, 1, 2)
    np.testing.assert_array_equal(both.categorical[5:], sub.categorical)
    with pytest.raises(DataError):
        CTRData(data.labels, data.categorical[:, :1], data.numeric, data.multi, data.schema)


def test_ctr_batches_cover_every_row_once() -> None:
    rng = np.random.default_rng(1)
    n = 103
    df = pl.DataFrame({"label": rng.integers(0, 2, n), "c": np.arange(n).astype(str), "x": rng.random(n)})
    schema = FeatureSchema(fields=[FieldSpec(name="c"), FieldSpec(name="x", kind="numeric")])
    data = FeatureEncoder().fit(df, schema).transform(df)
    batches = list(ctr_batches(data, 10, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    seen = torch.cat([b.categorical[:, 0] for b in batches])
    assert sorted(seen.tolist()) == sorted(data.categorical[:, 0].tolist())
    assert seen.tolist() != data.categorical[:, 0].tolist()  # shuffled
    b = batches[0]
    assert isinstance(b, CTRBatch)
    assert b.labels.dtype == torch.float32 and b.categorical.dtype == torch.int64
    assert b.numeric.shape == (10, 1) and b.multi.shape == (10, 0, 0)
    # rows stay aligned across fields
    row = int(b.categorical[0, 0]) - 1  # vocabulary sorted as strings
    j = data.categorical[:, 0].tolist().index(int(b.categorical[0, 0]))
    assert row >= 0 and float(b.numeric[0, 0]) == pytest.approx(float(data.numeric[j, 0]))
    moved = b.to("cpu")
    assert isinstance(moved, CTRBatch) and torch.equal(moved.multi, b.multi)
    in_order = list(ctr_batches(data, 50, shuffle=False))
    assert torch.cat([x.labels for x in in_order]).tolist() == data.labels.tolist()


def _criteo_file(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):  # test fixture only: builds a small file
        ints = ["" if rng.random() < 0.3 else str(int(rng.integers(-1, 500))) for _ in range(13)]
        cats = ["" if rng.random() < 0.1 else f"{int(rng.zipf(1.3)) % 50:08x}" for _ in range(26)]
        lines.append("\t".join([str(i % 3 == 0 and 1 or 0), *ints, *cats]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shards_roundtrip_equals_in_memory(tmp_path: Path) -> None:
    src = _criteo_file(tmp_path / "train.txt", 500)
    df, schema = read_criteo(src)
    mem = FeatureEncoder().fit(df, schema).transform(df)
    sharded = preprocess_to_shards(src, "criteo", tmp_path / "shards", rows_per_shard=120, block_bytes=4096)
    assert sharded.shard_rows == [120, 120, 120, 120, 20] and len(sharded) == 500
    assert (tmp_path / "shards" / "schema.json").is_file() and (
        tmp_path / "shards" / "encoder.json"
    ).is_file()
    back = ShardedCTRData(tmp_path / "shards").load()
    assert back.schema == mem.schema
    for name in ("labels", "categorical", "numeric", "multi"):
        np.testing.assert_array_equal(getattr(back, name), getattr(mem, name))
    # batches over shards: every row once, fixed batch size except the last
    batches = list(sharded.iter_batches(64, torch.Generator().manual_seed(3)))
    assert [len(b) for b in batches] == [64] * 7 + [52]
    rows = torch.cat([torch.cat([b.labels[:, None], b.categorical.float()], 1) for b in batches])
    want = np.concatenate([mem.labels[:, None], mem.categorical.astype(np.float32)], 1)
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, want.tolist()))
    # a validation file encoded with the training vocabularies counts its unseen values
    dev = _criteo_file(tmp_path / "dev.txt", 50, seed=9)
    dev_sh = preprocess_to_shards(dev, "criteo", tmp_path / "dev", encoder=sharded.encoder)
    dev_df, _ = read_criteo(dev)
    enc = sharded.encoder
    np.testing.assert_array_equal(dev_sh.load().categorical, enc.transform(dev_df).categorical)
    assert dev_sh.manifest["oov_counts"] == enc.last_oov_counts


def test_shards_with_multi_field_and_skipped_lines(tmp_path: Path) -> None:
    from attnrec.data.readers.ctr import CTRReaderSpec

    schema = FeatureSchema(
        fields=[
            FieldSpec(name="c"),
            FieldSpec(name="x", kind="numeric"),
            FieldSpec(name="tags", kind="multi"),
        ],
        label="y",
    )
    src = tmp_path / "t.csv"
    src.write_text("y,c,x,tags\n1,a,1.5,p|q\n0,b,2\n0,b,,q\n1,,3,p|p|q\n")
    spec = CTRReaderSpec(format="table", feature_schema=schema)
    with pytest.raises(DataError) as err:
        preprocess_to_shards(src, spec, tmp_path / "out")
    assert err.value.line == 3
    sh = preprocess_to_shards(src, spec, tmp_path / "out", on_bad_lines="skip", rows_per_shard=2)
    assert sh.manifest["skipped_rows"] == 1 and sh.manifest["skipped_lines"] == [3]
    data = sh.load()
    assert data.labels.tolist() == [1, 0, 1]
    assert data.categorical[:, 0].tolist() == [1, 2, 0]
    assert data.numeric[:, 0].tolist() == [1.5, 0.0, 3.0]
    assert data.multi[:, 0, :].tolist() == [[1, 2, 0], [2, 0, 0], [1, 1, 2]]
