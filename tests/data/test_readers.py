"""Readers on small fixtures in each real file format (plain and gzip), and on ../shared/data if present."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from attnrec.data.readers import (
    read_amazon,
    read_amazon_meta,
    read_movielens,
    read_movielens_1m,
    read_movielens_100k,
    read_movielens_csv,
    read_movielens_recbole,
    read_recbole_atomic,
    read_table,
)
from attnrec.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def write(path: Path, text: str, *, encoding: str = "utf-8", gz: bool = False) -> Path:
    data = text.encode(encoding)
    if gz:
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------ MovieLens

U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)"
    "|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|Café Society (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
    "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)
U_DATA = "196\t1\t3\t881250949\n186\t2\t5\t891717742\n196\t267\t1\t878887116\n"
U_USER = "196|49|M|writer|55105\n186|39|F|executive|00000\n"


def ml100k(d: Path, *, gz: bool = False) -> Path:
    write(d / ("u.data.gz" if gz else "u.data"), U_DATA, gz=gz)
    write(d / "u.item", U_ITEM, encoding="latin-1")
    write(d / "u.user", U_USER, encoding="latin-1")
    return d


@pytest.mark.parametrize("gz", [False, True])
def test_movielens_100k_values(tmp_path: Path, gz: bool) -> None:
    ds = read_movielens_100k(ml100k(tmp_path, gz=gz))
    df = ds.interactions
    assert df["user_id"].to_list() == ["196", "186", "196"]
    assert df["item_id"].to_list() == ["1", "2", "267"]
    assert df["rating"].to_list() == [3.0, 5.0, 1.0]
    assert df["timestamp"].to_list() == [881250949, 891717742, 878887116]
    assert df.schema["rating"] == pl.Float32 and df.schema["timestamp"] == pl.Int64
    items = ds.items
    assert items is not None
    assert items["title"].to_list() == ["Toy Story", "Café Society", "unknown"]  # latin-1 decoded
    assert items["year"].to_list() == [1995, 1995, None]
    assert items["genres"].to_list() == [["Animation", "Children's", "Comedy"], ["Drama"], ["unknown"]]
    users = ds.users
    assert users is not None
    assert users.rows() == [("196", 49, "M", "writer", "55105"), ("186", 39, "F", "executive", "00000")]
    assert ds.notes == {}


def test_movielens_1m_values(tmp_path: Path) -> None:
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n")
    write(tmp_path / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Père (1996)::"
          "Animation|Children's|Musical\n", encoding="latin-1")  # fmt: skip
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    ds = read_movielens_1m(tmp_path)
    assert ds.interactions.rows() == [("1", "1193", 5.0, 978300760), ("2", "661", 3.0, 978302109)]
    assert ds.items is not None and ds.users is not None
    assert ds.items.rows() == [
        ("1193", "One Flew Over the Cuckoo's Nest", 1975, ["Drama"]),
        ("661", "Père", 1996, ["Animation", "Children's", "Musical"]),
    ]
    assert ds.users.rows() == [
        ("1", 1, "F", "K-12 student", "48067"),
        ("2", 56, "M", "self-employed", "70072"),
    ]


def test_movielens_csv_values(tmp_path: Path) -> None:
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n")
    write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,"American President, The (1995)",'
        "Comedy\n5,Unreleased,(no genres listed)\n",
    )
    ds = read_movielens_csv(tmp_path)
    assert ds.interactions.rows() == [("1", "1", 4.0, 964982703), ("1", "3", 0.5, 964981247)]
    assert ds.items is not None
    assert ds.items.rows() == [
        ("1", "Toy Story", 1995, ["Adventure", "Animation"]),
        ("3", "American President, The", 1995, ["Comedy"]),
        ("5", "Unreleased", None, []),
    ]


def test_read_movielens_detects_variant(tmp_path: Path) -> None:
    ml100k(tmp_path / "a" / "ml-100k")  # nested one level, as the archive extracts
    write(tmp_path / "b" / "ratings.dat", "1::2::3::4\n")
    write(tmp_path / "c" / "ratings.csv", "userId,movieId,rating,timestamp\n7,8,2.5,9\n")
    assert len(read_movielens(tmp_path / "a")) == 3
    assert read_movielens(tmp_path / "b" / "ratings.dat").interactions.rows() == [("1", "2", 3.0, 4)]
    assert read_movielens(tmp_path / "c").interactions.rows() == [("7", "8", 2.5, 9)]
    with pytest.raises(DataError, match="not a MovieLens folder"):
        read_movielens(tmp_path / "nothing-here")


def test_bad_field_count_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "1\t2\t3\t4\n\n1\t2\t3\n")  # the blank line 2 is ignored, line 3 is short
    with pytest.raises(DataError) as err:
        read_movielens_100k(tmp_path)
    assert err.value.line == 3 and err.value.file is not None and err.value.file.endswith("u.data")
    assert "wrong number of fields" in str(err.value) and "4 fields" in str(err.value)


def test_non_numeric_rating_and_skip(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "1\t2\t3\t4\n1\t3\tfive\t4\n2\t2\t4\t5\n2\t9\t1\tnoon\n")
    with pytest.raises(DataError) as err:
        read_movielens_100k(tmp_path)
    assert (err.value.line, err.value.field, err.value.value) == (2, "rating", "five")
    ds = read_movielens_100k(tmp_path, on_bad_lines="skip")
    assert ds.interactions.rows() == [("1", "2", 3.0, 4), ("2", "2", 4.0, 5)]
    assert ds.notes["skipped_rows"] == 2 and ds.notes["skipped_lines"] == [2, 4]


def test_empty_file(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "\n\n")
    with pytest.raises(DataError, match="empty file"):
        read_movielens_100k(tmp_path)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_bytes(b"user_id,item_id\nu1,i1\nu\xff2,i2\n")
    with pytest.raises(DataError) as err:
        read_table(tmp_path / "r.csv")
    assert err.value.line == 3 and "utf-8" in str(err.value)


# ------------------------------------------------------------ Amazon

REVIEW_2014 = {
    "reviewerID": "A2IBPI20UZIR0U",
    "asin": "1384719342",
    "reviewerName": "cassandra",
    "helpful": [3, 4],
    "reviewText": 'Not much to write about, "crisp".',
    "overall": 5.0,
    "summary": "good",
    "unixReviewTime": 1393545600,
    "reviewTime": "02 28, 2014",
}
REVIEW_2014_B = {
    **REVIEW_2014,
    "reviewerID": "A14VAT5EAX3D9S",
    "overall": 3.0,
    "helpful": [0, 0],
    "reviewText": "",
}


@pytest.mark.parametrize("style", ["json", "python"])
def test_amazon_2014_json_and_python_literal(tmp_path: Path, style: str) -> None:
    dump = json.dumps if style == "json" else repr
    text = f"{dump(REVIEW_2014)}\n{dump(REVIEW_2014_B)}\n"
    path = write(tmp_path / "reviews_Musical_Instruments_5.json.gz", text, gz=True)
    ds = read_amazon(path, domain="music")
    df = ds.interactions
    assert ds.name == "Musical_Instruments_5"
    assert ds.notes["encoding"] == style
    assert df["user_id"].to_list() == ["A2IBPI20UZIR0U", "A14VAT5EAX3D9S"]
    assert df["item_id"].to_list() == ["1384719342"] * 2
    assert df["rating"].to_list() == [5.0, 3.0]
    assert df["timestamp"].to_list() == [1393545600] * 2
    assert df["review"].to_list() == ['Not much to write about, "crisp".', ""]
    assert df["summary"].to_list() == ["good", "good"]
    assert df["vote"].to_list() == [3, 0]
    assert df["domain"].to_list() == ["music", "music"]


def test_amazon_2018_fields(tmp_path: Path) -> None:
    rows = [
        {"overall": 4.0, "verified": True, "reviewerID": "U1", "asin": "B1", "style": {"Size:": " 7 oz"},
         "reviewText": "ok", "summary": "Four", "unixReviewTime": 1472688000, "vote": "1,234"},
        {"overall": 1.0, "verified": False, "reviewerID": "U2", "asin": "B1", "summary": "bad",
         "unixReviewTime": 1472688001},
    ]  # fmt: skip
    path = write(tmp_path / "All_Beauty_5.json", "\n".join(json.dumps(r) for r in rows) + "\n")
    df = read_amazon(path).interactions
    assert df["vote"].to_list() == [1234, None]
    assert df["verified"].to_list() == [True, False]
    assert json.loads(df["style"][0]) == {"Size:": " 7 oz"} and df["style"][1] is None
    assert df["review"].to_list() == ["ok", None]


def test_amazon_2023(tmp_path: Path) -> None:
    row = {"rating": 5.0, "title": "Nice", "text": "Works.", "images": [], "asin": "B0V",
           "parent_asin": "B0P", "user_id": "AGK", "timestamp": 1588687728923, "helpful_vote": 2,
           "verified_purchase": True}  # fmt: skip
    path = write(tmp_path / "All_Beauty.jsonl.gz", json.dumps(row) + "\n", gz=True)
    ds = read_amazon(path)
    assert ds.interactions.row(0, named=True) | {} == {
        "user_id": "AGK", "item_id": "B0P", "rating": 5.0, "timestamp": 1588687728, "review": "Works.",
        "summary": "Nice", "vote": 2, "verified": True, "asin": "B0V", "timestamp_ms": 1588687728923,
    }  # fmt: skip


def test_amazon_meta_2014_python_literal(tmp_path: Path) -> None:
    meta = {"asin": "0006428320", "title": "Six Sonatas", "price": 17.95, "brand": "Yamaha",
            "description": "A book of sonatas.",
            "related": {"also_bought": ["B1", "B2"], "also_viewed": ["B3"]},
            "categories": [["Musical Instruments", "Sheet Music"], ["Books", "Sheet Music"]],
            "salesRank": {"Musical Instruments": 1}}  # fmt: skip
    path = write(tmp_path / "meta_Musical_Instruments.json.gz", repr(meta) + "\n", gz=True)
    items = read_amazon_meta(path)
    row = items.row(0, named=True)
    assert row["item_id"] == "0006428320" and row["title"] == "Six Sonatas" and row["brand"] == "Yamaha"
    assert row["price"] == pytest.approx(17.95)
    assert row["description"] == "A book of sonatas."
    assert row["categories"] == ["Musical Instruments", "Sheet Music", "Books"]
    assert row["also_buy"] == ["B1", "B2"] and row["also_view"] == ["B3"]


def test_amazon_meta_2018_joined_to_reviews(tmp_path: Path) -> None:
    metas = [
        {"category": ["Gift Cards", "Gift Cards"], "description": ["First part.", "Second part."],
         "title": "Card", "also_buy": ["B9"], "brand": "Amazon", "feature": ["f1"], "main_cat": "Gift Cards",
         "price": "$1,012.50", "asin": "B1"},
        {"category": [], "description": [], "title": "Other", "also_buy": [], "brand": "", "price": "",
         "asin": "B2"},
    ]  # fmt: skip
    meta = write(tmp_path / "meta_Gift_Cards.json.gz", "\n".join(json.dumps(m) for m in metas), gz=True)
    review = {"reviewerID": "U", "asin": "B1", "overall": 5.0, "unixReviewTime": 1}
    reviews = write(tmp_path / "Gift_Cards_5.json", json.dumps(review) + "\n")
    ds = read_amazon(reviews, meta=meta)
    assert ds.items is not None
    assert ds.items.rows() == [
        ("B1", "Card", "First part.\nSecond part.", ["Gift Cards"], "Gift Cards", "Amazon", 1012.5, ["B9"],
         None, ["f1"]),
        ("B2", "Other", None, [], None, None, None, [], None, None),
    ]  # fmt: skip


def test_amazon_meta_2023(tmp_path: Path) -> None:
    meta = {"main_category": "All Beauty", "title": "Brush", "average_rating": 4.8, "features": ["soft"],
            "description": ["Great brush."], "price": 9.5, "store": "Acme", "categories": ["Beauty", "Tools"],
            "details": {"Color": "Red"}, "parent_asin": "P1", "bought_together": None}  # fmt: skip
    items = read_amazon_meta(write(tmp_path / "meta_All_Beauty.jsonl", json.dumps(meta) + "\n"))
    row = items.row(0, named=True)
    assert (row["item_id"], row["title"], row["brand"], row["price"]) == ("P1", "Brush", "Acme", 9.5)
    assert row["categories"] == ["Beauty", "Tools"] and row["main_category"] == "All Beauty"
    assert row["description"] == "Great brush." and row["also_buy"] is None


def test_amazon_bad_lines(tmp_path: Path) -> None:
    good = json.dumps({"reviewerID": "U", "asin": "I", "overall": 4, "unixReviewTime": 10})
    text = "\n".join([good, '{"reviewerID": "U", "asin"', good.replace("4", '"four"'), good]) + "\n"
    path = write(tmp_path / "r.json.gz", text, gz=True)
    with pytest.raises(DataError) as err:
        read_amazon(path)
    assert err.value.line == 2 and "not a JSON object" in str(err.value)
    ds = read_amazon(path, on_bad_lines="skip")
    assert len(ds) == 2 and ds.notes["skipped_rows"] == 2 and ds.notes["skipped_lines"] == [2, 3]
    path2 = write(tmp_path / "r2.json", "\n".join([good, good.replace("4", '"four"')]))
    with pytest.raises(DataError) as err:
        read_amazon(path2)
    assert (err.value.line, err.value.field, err.value.value) == (2, "rating", "four")


def test_amazon_python_literal_bad_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.json", repr(REVIEW_2014) + "\n{'reviewerID': oops}\n" + repr(REVIEW_2014_B) + "\n"
    )
    with pytest.raises(DataError) as err:
        read_amazon(path)
    assert err.value.line == 2 and "Python dict literal" in str(err.value)
    assert read_amazon(path, on_bad_lines="skip").notes["skipped_lines"] == [2]


def test_amazon_missing_field_and_bad_utf8(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.json", json.dumps({"reviewerID": "U", "asin": "I", "unixReviewTime": 1}) + "\n"
    )
    with pytest.raises(DataError, match="overall"):
        read_amazon(path)
    (tmp_path / "b.json").write_bytes(b'{"reviewerID": "U"}\n{"reviewerID": "\xe9"}\n')
    with pytest.raises(DataError) as err:
        read_amazon(tmp_path / "b.json")
    assert err.value.line == 2
    write(tmp_path / "e.json.gz", "", gz=True)
    with pytest.raises(DataError, match="empty file"):
        read_amazon(tmp_path / "e.json.gz")


# ------------------------------------------------------------ generic / RecBole


def test_read_table_csv_with_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv.gz", "uid,iid,score,ts,extra\na,b,4.5,100,z\nc,d,2,200,y\n", gz=True)
    ds = read_table(path, columns={"user_id": "uid", "item_id": "iid", "rating": "score", "timestamp": "ts"})
    assert ds.interactions.rows() == [("a", "b", 4.5, 100, "z"), ("c", "d", 2.0, 200, "y")]
    assert ds.interactions.columns == ["user_id", "item_id", "rating", "timestamp", "extra"]
    with pytest.raises(DataError, match="'uid'"):
        read_table(write(tmp_path / "y.csv", "user,iid\na,b\n"), columns={"user_id": "uid", "item_id": "iid"})
    with pytest.raises(DataError, match="item_id"):
        read_table(write(tmp_path / "z.csv", "user_id,thing\na,b\n"))


def test_read_table_tsv_positions_quotes_dates_parquet(tmp_path: Path) -> None:
    tsv = write(tmp_path / "x.tsv", "a\tb\t5\nc\td\tbad\n")
    with pytest.raises(DataError) as err:
        read_table(tsv, columns={"user_id": 0, "item_id": 1, "rating": 2}, sep="\t", has_header=False)
    assert (err.value.line, err.value.field, err.value.value) == (2, "rating", "bad")
    quoted = write(tmp_path / "q.csv", 'user_id,item_id,review,when\nu,i,"hello, world",2020-01-02\n')
    ds = read_table(quoted, columns={"user_id": "user_id", "item_id": "item_id", "timestamp": "when"},
                    timestamp_format="%Y-%m-%d")  # fmt: skip
    assert ds.interactions["review"].to_list() == ["hello, world"]
    assert ds.interactions["timestamp"].to_list() == [1577923200]
    pq = tmp_path / "x.parquet"
    pl.DataFrame({"u": [1, 2], "i": ["x", "y"], "r": [1.0, 2.0]}).write_parquet(pq)
    ds = read_table(pq, columns={"user_id": "u", "item_id": "i", "rating": "r"})
    assert ds.interactions.select("user_id", "item_id", "rating").rows() == [("1", "x", 1.0), ("2", "y", 2.0)]


RB_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t1\t3\t881250949\n186\t2\t5\t891717742\n"
)
RB_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tCafé Society\t1995\tDrama\n"
)
RB_USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n196\t49\tM\twriter\t55105\n"
)


def test_recbole_atomic_and_movielens_shape(tmp_path: Path) -> None:
    for ext, text in (("inter", RB_INTER), ("item", RB_ITEM), ("user", RB_USER)):
        write(tmp_path / f"ml-100k.{ext}", text)
    raw = read_recbole_atomic(tmp_path, "ml-100k")
    assert raw.interactions.rows() == [("196", "1", 3.0, 881250949), ("186", "2", 5.0, 891717742)]
    assert raw.items is not None and raw.items["class"].to_list()[0] == ["Animation", "Children's", "Comedy"]
    ds = read_movielens_recbole(tmp_path)
    ref = read_movielens_100k(ml100k(tmp_path / "gl"))
    assert ds.interactions.equals(ref.interactions.head(2))
    assert ds.items is not None and ref.items is not None and ds.users is not None and ref.users is not None
    assert ds.items.equals(ref.items.select(ds.items.columns).head(2))
    assert ds.users.equals(ref.users.head(1))


# ------------------------------------------------------------ real shared data

REAL = [
    ("amazon2014-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz", 10261, 1429, 900, 10254),
    ("amazon2018-all-beauty-5core/All_Beauty_5.json.gz", 5269, 991, 85, 5264),
    ("amazon2018-appliances-5core/Appliances_5.json.gz", 2277, 47, 48, 2277),
    ("amazon2018-fashion-5core/AMAZON_FASHION_5.json.gz", 3176, 406, 31, 3160),
    ("amazon2018-gift-cards-5core/Gift_Cards_5.json.gz", 2972, 458, 148, 2966),
]


@pytest.mark.shared_data
@pytest.mark.parametrize(("rel", "rows", "users", "items", "texts"), REAL)
def test_real_amazon_counts(rel: str, rows: int, users: int, items: int, texts: int) -> None:
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"{path} not present")
    df = read_amazon(path).interactions
    assert (df.height, df["user_id"].n_unique(), df["item_id"].n_unique()) == (rows, users, items)
    assert int((df["review"].fill_null("") != "").sum()) == texts
    assert set(df["rating"].unique().to_list()) == {1.0, 2.0, 3.0, 4.0, 5.0}


@pytest.mark.shared_data
def test_real_gift_cards_meta() -> None:
    folder = SHARED / "amazon2018-gift-cards-5core"
    if not folder.is_dir():
        pytest.skip("gift cards data not present")
    ds = read_amazon(folder / "Gift_Cards_5.json.gz", meta=folder / "meta_Gift_Cards.json.gz")
    assert ds.items is not None and ds.items.height == 1547
    assert int((ds.items["title"].fill_null("") != "").sum()) == 1547
    assert int((ds.items["description"].fill_null("") != "").sum()) == 805
    assert ds.interactions["item_id"].is_in(ds.items["item_id"].implode()).all()
