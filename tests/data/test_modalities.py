"""Item modalities: builders (text, multi-hot, .npy), bad-input checks, and the MMRec folder format."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.data.modalities import (
    check_modality,
    multihot_modality,
    npy_modality,
    select_modalities,
    text_modality,
)
from attnrec.data.readers.mmrec import read_mmrec, write_mmrec
from attnrec.data.side import ItemFeatures
from attnrec.data.vocab import Vocabulary
from attnrec.errors import ConfigError, DataError
from attnrec.testing import checkerboard
from attnrec.text import HashingTextModel, SentenceEncoder

VOCAB = Vocabulary(["a", "b", "c", "d"], kind="item")


def test_check_modality_errors_name_the_modality_and_file():
    with pytest.raises(DataError, match=r"field 'img'.*3 feature rows for 4 items"):
        check_modality("img", np.ones((3, 2)), 4, file="x.npy")
    bad = np.arange(8, dtype=np.float32).reshape(4, 2)
    bad[2, 1] = np.inf
    with pytest.raises(DataError, match="first at item row 2"):
        check_modality("img", bad, 4)
    with pytest.raises(DataError, match="zero-variance"):
        check_modality("img", np.zeros((4, 3)), 4)
    m = np.eye(4, 3, dtype=np.float32)  # row 3 is all zeros
    assert check_modality("img", m, 4).featureless == 1


def test_select_modalities_aligns_by_id_and_counts_missing(caplog):
    other = Vocabulary(["c", "a", "zz"], kind="item")
    feats = ItemFeatures(other, {"t": np.array([[3.0, 0], [1.0, 1], [9.0, 9]], dtype=np.float32)})
    with caplog.at_level(logging.WARNING):
        out = select_modalities(feats, VOCAB)
    np.testing.assert_array_equal(out["t"], [[1, 1], [0, 0], [3, 0], [0, 0]])
    assert "2 of 4 items have no features" in caplog.text
    with pytest.raises(ConfigError, match="unknown modality"):
        select_modalities(feats, VOCAB, ["image"])


def test_text_modality_zero_rows_for_empty_text():
    enc = SentenceEncoder(HashingTextModel(dim=8), progress=False)
    m = text_modality(pl.Series(["red shoe", "", "blue shoe", None]), enc)
    assert m.shape == (4, 8)
    assert not m[1].any() and not m[3].any()
    assert np.linalg.norm(m[0]) == pytest.approx(1.0)
    assert m[0] @ m[2] > 0  # they share "shoe"


def test_multihot_of_lists_strings_and_year_buckets():
    items = pl.DataFrame(
        {
            "item_id": ["a", "b", "c", "zz"],
            "genres": [["Drama", "Comedy"], ["Drama"], [], ["Drama"]],
            "brand": ["x|y", "x", None, "x"],
            "year": [1995, 1999, 2003, 1990],
        }
    )
    m, cols = multihot_modality(items, VOCAB, ["genres", "brand", "year"], min_count=1)
    want = {
        "a": {"genres:Drama", "genres:Comedy", "brand:x", "brand:y", "year:1990"},
        "b": {"genres:Drama", "brand:x", "year:1990"},
        "c": {"year:2000"},
        "d": set(),
    }
    for row, item in enumerate(VOCAB.ids):
        assert {cols[j] for j in np.flatnonzero(m[row])} == want[item]
    # min_count drops values only one item holds (zz is not in the vocabulary: it counts for nothing)
    m2, cols2 = multihot_modality(items, VOCAB, ["genres", "brand", "year"], min_count=2)
    assert set(cols2) == {"genres:Drama", "brand:x", "year:1990"}
    assert m2.shape == (4, 3)
    with pytest.raises(DataError, match="missing column"):
        multihot_modality(items, VOCAB, ["categories"])


def test_npy_modality_rows_by_id(tmp_path: Path):
    p = tmp_path / "img.npy"
    np.save(p, np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32))
    m = npy_modality(p, VOCAB, ids=["c", "a", "q"])
    np.testing.assert_array_equal(m, [[3, 4], [0, 0], [1, 2], [0, 0]])
    ints = npy_modality(p, Vocabulary(["2", "0"]))  # MMRec layout: row r is item "r"
    np.testing.assert_array_equal(ints, [[5, 6], [1, 2]])
    with pytest.raises(DataError, match="3 rows for 2 ids"):
        npy_modality(p, VOCAB, ids=["a", "b"])
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(DataError, match="bad.npy"):
        npy_modality(tmp_path / "bad.npy", VOCAB)


def test_npy_modality_whose_rows_match_no_item_is_an_error_naming_the_id_layout(tmp_path: Path):
    # string ids and no id list: rows read as ids "0".."2" match none of a..d — an error naming the layout and
    # the file, not a modality of zeros (which the zero-variance check would report under a wrong cause)
    p = tmp_path / "img.npy"
    np.save(p, np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32))
    with pytest.raises(DataError, match=r"img.npy.*no item of the vocabulary has a row.*0\.\.n-1.*'a'"):
        npy_modality(p, VOCAB)
    with pytest.raises(DataError, match="rows are read as the ids given"):
        npy_modality(p, VOCAB, ids=["x", "y", "z"])
    # one matching row is enough: the others are featureless (counted), not an error
    assert npy_modality(p, VOCAB, ids=["x", "b", "z"])[1].tolist() == [3.0, 4.0]


def test_mmrec_folder_roundtrip(tmp_path: Path):
    train, valid, test = checkerboard(n_users=12, n_items=8, implicit=True)
    n = train.n_items
    text = np.random.default_rng(0).normal(size=(n, 5)).astype(np.float32)
    image = np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32)
    (tmp_path / "mm_adj_freedomdsp_10_1.pt").write_bytes(b"stale")
    path = write_mmrec(tmp_path, "toy", train, valid, test, {"text": text, "image": image})
    assert not (tmp_path / "mm_adj_freedomdsp_10_1.pt").exists()
    inter = pl.read_csv(path, separator="\t")
    assert inter.columns[:2] == ["userID", "itemID"] and inter.columns[-1] == "x_label"
    assert inter["x_label"].value_counts().sort("x_label")["count"].to_list() == [
        len(train),
        len(valid),
        len(test),
    ]
    assert int(inter["itemID"].max()) < n and np.load(tmp_path / "text_feat.npy").shape == (n, 5)
    back = read_mmrec(tmp_path)
    for ours, theirs in ((train, back.train), (valid, back.valid), (test, back.test)):
        got = theirs.select("user_id", "item_id").rows()
        want = ours.decode().select("user_id", "item_id").rows()
        assert got == want
    assert back.item_ids == train.item_vocab.ids.tolist()
    np.testing.assert_array_equal(back.features["text"], text)
    np.testing.assert_array_equal(back.features["image"], image)


def test_mmrec_reader_errors(tmp_path: Path):
    (tmp_path / "x.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n1\t1\t5\n")
    with pytest.raises(DataError, match=r"x.inter:3.*x_label"):
        read_mmrec(tmp_path)
    (tmp_path / "x.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n1\t1\t2\n")
    np.save(tmp_path / "text_feat.npy", np.ones((3, 2), dtype=np.float32))
    with pytest.raises(DataError, match="text_feat.npy.*row i = itemID i"):
        read_mmrec(tmp_path)
    (tmp_path / "text_feat.npy").unlink()
    (tmp_path / "y.inter").write_text("userID\titem\n0\t1\n")
    with pytest.raises(DataError, match="2 .inter files"):
        read_mmrec(tmp_path)
    with pytest.raises(DataError, match="field 'itemID'"):
        read_mmrec(tmp_path, "y")
    assert read_mmrec(tmp_path, "x").test.rows() == [("1", "1")]
