"""Hardening, text rows: metadata markup, text-query ranking, and log lines that say what happens (issue 13).

- Amazon 2018 metadata carries page markup: titles that are only ``<span class="a-size-medium a-color-secondary"``,
  features in ``<span>``, descriptions in ``<div class="aplus">``, entities (``&#39;``, ``&amp;``). The reader gives
  plain text, a markup-only title is missing and counted, checked on fixtures in the real shapes and on the real
  Gift Cards metadata when ``../shared/data`` is present.
- A clear text query finds its best text match in the top k (the blend of relevance and rating, the candidate pool
  sized to the catalogue), with the blend weight chosen on validation and kept in the bundle.
- The item-text log line is printed once and counts what happens (metadata, review fallback, empty).
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import polars as pl
import pytest

from attnrec.data.readers.amazon import read_amazon, read_amazon_meta
from attnrec.data.readers.markup import strip_markup, strip_markup_list

GIFT_CARDS_META = (
    Path(__file__).resolve().parents[3] / "shared/data/amazon2018-gift-cards-5core/meta_Gift_Cards.json.gz"
)
SPAN_TITLE = '<span class="a-size-medium a-color-secondary"'

# the shapes of the 2018 metadata dumps, as they are in the published files
META_2018 = [
    {
        "asin": "B001",
        "title": SPAN_TITLE,
        "description": [
            '<div class="aplus"> <br>Redeemable at <a href="http://x">our stores</a>.<br /> </div>'
        ],
        "category": ["Gift Cards", "Gift Cards", "</span></span></span>"],
        "brand": "Dave &amp; Buster&#39;s",
        "feature": ['<span class="a-size-base a-color-secondary">\n   No expiration, no fees.\n  </span>'],
        "main_cat": '<img src="https://x/amazon-fashion.png" class="nav-categ-image" alt="AMAZON FASHION"/>',
        "price": '\n\t\t   \n\r\n   <div class="a-section a-spacing-none"',
    },
    {
        "asin": "B002",
        "title": " Maggiano&#39;s Gift Card",
        "description": ["Gift card &amp;amp; greeting card", "size < 5 inches, <3 from us"],
        "category": ["Gift Cards"],
        "brand": "Noodles & Company",
        "feature": [],
        "main_cat": "Gift Cards",
        "price": "$25.00",
    },
    {
        "asin": "B003",
        "title": "Vacuum Cleaner --- 12 Month Warranty &gt;&gt;&gt; THT Trading",
        "description": [],
        "category": ["Gift Cards", "<b>Restaurants</b>"],
        "brand": "",
        "feature": ["<!-- promo -->Fast&nbsp;shipping", "Fast shipping"],
        "main_cat": "Gift Cards",
        "price": "",
    },
    {
        "asin": "B004",
        "title": '<span class="a-size-medium a-color-secondary">Starbucks &lt;b&gt;Card&lt;/b&gt;</span>',
        "description": ["<script>var t = '<b>';</script><style>.a{color:red}</style>Coffee"],
        "category": ["Gift Cards"],
        "brand": "Starbucks",
        "feature": ["<br/>"],
        "main_cat": "Gift Cards",
        "price": "$10.00",
    },
]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def markup_left(frame: pl.DataFrame) -> dict[str, int]:
    """Per text column, how many values (list elements counted) still hold a tag opening or an escaped entity."""
    out = {}
    for col in ("title", "description", "categories", "main_category", "brand", "features"):
        values = frame[col].explode() if isinstance(frame.schema[col], pl.List) else frame[col]
        values = values.drop_nulls()
        out[col] = int(values.str.contains(r"<[A-Za-z/!]|&amp;|&#[0-9]+;|&[a-z]+;").sum())
    return out


# ------------------------------------------------------------------------------------------ metadata markup
def test_amazon_2018_metadata_is_plain_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    meta = write_jsonl(tmp_path / "meta_Gift_Cards.json.gz", META_2018)
    with caplog.at_level(logging.INFO, logger="attnrec.data.readers.amazon"):
        items = read_amazon_meta(meta)
    assert markup_left(items) == dict.fromkeys(markup_left(items), 0)
    rows = {r["item_id"]: r for r in items.iter_rows(named=True)}
    assert rows["B001"]["title"] is None  # markup only: missing, not shown as a title or embedded
    assert rows["B001"]["description"] == "Redeemable at our stores ."
    assert rows["B001"]["categories"] == ["Gift Cards"]
    assert rows["B001"]["brand"] == "Dave & Buster's"
    assert rows["B001"]["features"] == ["No expiration, no fees."]
    assert rows["B001"]["main_category"] == "AMAZON FASHION"  # the <img>'s alt text
    assert rows["B001"]["price"] is None
    assert rows["B002"]["title"] == "Maggiano's Gift Card"
    assert rows["B002"]["description"] == "Gift card & greeting card\nsize < 5 inches, <3 from us"
    assert rows["B002"]["brand"] == "Noodles & Company" and rows["B002"]["price"] == 25.0
    assert rows["B003"]["title"] == "Vacuum Cleaner --- 12 Month Warranty >>> THT Trading"
    assert rows["B003"]["categories"] == ["Gift Cards", "Restaurants"]
    assert rows["B003"]["features"] == ["Fast shipping"]  # the same feature once markup is gone
    assert rows["B003"]["brand"] is None
    assert rows["B004"]["title"] == "Starbucks Card"  # escaped markup inside markup
    assert rows["B004"]["description"] == "Coffee" and rows["B004"]["features"] == []
    # counted and logged: which fields were cleaned, how many titles were markup only
    assert "1 of 4 titles were HTML markup only" in caplog.text
    assert "title 4" in caplog.text and "features 3" in caplog.text


def test_a_markup_only_title_falls_back_to_the_other_fields_in_the_item_text(tmp_path: Path) -> None:
    from attnrec.models.rating.hybrid_csa.inputs import meta_text

    items = read_amazon_meta(write_jsonl(tmp_path / "meta.json.gz", META_2018))
    text = dict(meta_text(items).iter_rows())
    assert text["B001"] == "Redeemable at our stores. Categories: Gift Cards. Brand: Dave & Buster's"
    assert all("<" not in t.replace("< 5", "").replace("<3", "") for t in text.values())
    # what hybrid_csa embeds and shows: the item texts and titles it keeps (in its bundle) for recommendations
    from attnrec.data.vocab import Vocabulary
    from attnrec.models.rating.hybrid_csa.inputs import item_texts

    vocab = Vocabulary(["B001", "B002", "B003", "B004"], kind="item")
    train = pl.DataFrame({"item_id": ["B001"], "review": ["a fine card"]})
    texts, titles = item_texts(train, items, vocab, max_chars=100)
    assert titles == [
        "",
        "Maggiano's Gift Card",
        "Vacuum Cleaner --- 12 Month Warranty >>> THT Trading",
        "Starbucks Card",
    ]
    assert (
        texts[0] == text["B001"]
        and texts[3] == "Starbucks Card. Coffee. Categories: Gift Cards. Brand: Starbucks"
    )


def test_reviews_with_metadata_read_clean_metadata(tmp_path: Path) -> None:
    reviews = [
        {
            "reviewerID": f"U{u}",
            "asin": f"B00{i}",
            "overall": 5.0,
            "unixReviewTime": 1_500_000_000 + u,
            "reviewText": "ok",
        }
        for u in range(3)
        for i in range(1, 5)
    ]
    data = read_amazon(
        write_jsonl(tmp_path / "Gift_Cards_5.json.gz", reviews),
        meta=write_jsonl(tmp_path / "meta.json.gz", META_2018),
    )
    assert data.items is not None and markup_left(data.items) == dict.fromkeys(markup_left(data.items), 0)


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        (SPAN_TITLE, None),
        ("<span", None),
        ("</span></span></span>", None),
        ("  \n\t ", None),
        ("a&nbsp;b\r\nc", "a b c"),
        ("AT&T <3 & co", "AT&T <3 & co"),  # not entities, not tags
        ("&amp;amp;lt;", "<"),  # escaped three times: decoded up to MAX_ROUNDS
        ("<!-- never closed", None),
        ("x<script>if (a<b) {}", "x"),  # an unterminated script runs to the end
        ("&#x27;q&#39;", "'q'"),
        (None, None),
    ],
)
def test_strip_markup_shapes(raw: str | None, plain: str | None) -> None:
    assert strip_markup(pl.Series([raw], dtype=pl.String)).to_list() == [plain]


def test_strip_markup_list_keeps_nulls_and_empties() -> None:
    values = pl.Series([["<b>x</b>", "x", "<br/>"], None, [], ["<i></i>"]], dtype=pl.List(pl.String))
    assert strip_markup_list(values).to_list() == [["x"], None, [], []]


@pytest.mark.skipif(
    not GIFT_CARDS_META.exists(), reason=f"real Amazon 2018 metadata absent: {GIFT_CARDS_META}"
)
def test_real_gift_cards_metadata_has_no_markup_left() -> None:
    items = read_amazon_meta(GIFT_CARDS_META)
    assert items.height == 1547
    titles = items["title"].drop_nulls()
    assert int(titles.str.contains("<").sum()) == 0
    assert int(titles.str.contains("&amp;").sum()) == 0
    assert markup_left(items) == dict.fromkeys(markup_left(items), 0)
    assert "Maggiano's Gift Card" in titles.to_list()


# ------------------------------------------------------------------------------------------ text queries
COLOURS = [
    "crimson",
    "amber",
    "olive",
    "teal",
    "navy",
    "violet",
    "ivory",
    "coral",
    "slate",
    "mint",
    "ochre",
    "plum",
]
THINGS = [
    "scarf",
    "mug",
    "lamp",
    "notebook",
    "candle",
    "blanket",
    "teapot",
    "wallet",
    "poster",
    "clock",
    "vase",
]
THINGS += ["kite", "puzzle", "apron"]
N_ITEMS = 157  # the catalogue of the probe
NO_META = 6  # items with no metadata row: their text is their training reviews
TARGET = "crimson wool scarf"  # the clear query's best text match, which users rate low


def catalogue() -> tuple[object, object, pl.DataFrame]:
    """(train, valid, items) of a 157-item catalogue with distinct titles ("<colour> <thing>"), the target item's
    title being the query; its ratings are 2, every other item's 4-5, so ranking by predicted rating alone buries it.
    The ``NO_META`` items before the target have no metadata row; every training row has a review."""
    import numpy as np

    from attnrec.data.table import Interactions
    from attnrec.data.vocab import Vocabulary

    titles = [f"{c} {t}" for t in THINGS for c in COLOURS][: N_ITEMS - 1] + [TARGET]
    titles[0] = "crimson silk tie"  # the target's words appear elsewhere only one at a time
    rng = np.random.default_rng(0)
    n_users = 60
    quality = rng.uniform(4.0, 5.0, N_ITEMS)
    quality[-1] = 2.0
    mask = rng.random((n_users, N_ITEMS)) < 0.2
    u, i = np.nonzero(mask)
    r = np.clip(np.round(quality[i] + rng.normal(0, 0.3, len(u))), 1, 5)
    users = Vocabulary([f"u{k}" for k in range(n_users)], kind="user")
    items = Vocabulary([f"i{k}" for k in range(N_ITEMS)], kind="item")
    part = rng.random(len(u))

    def make(sel: np.ndarray) -> Interactions:
        df = pl.DataFrame(
            {
                "user_id": users.ids[u[sel]],
                "item_id": items.ids[i[sel]],
                "rating": r[sel].astype(np.float32),
                "review": [f"about the {titles[k]}: fine" for k in i[sel]],
            }
        )
        return Interactions.encode(df, users, items)[0]

    train, valid = make(part >= 0.15), make(part < 0.15)
    valid = valid.with_frame(
        valid.frame.drop("review")
    )  # what a model may see of validation (side.strip_text)
    keep = [k for k in range(N_ITEMS) if not N_ITEMS - 1 - NO_META <= k < N_ITEMS - 1]
    meta = pl.DataFrame({"item_id": items.ids[keep], "title": [titles[k] for k in keep]})
    return train, valid, meta


@pytest.fixture(scope="module")
def fitted_catalogue() -> tuple[object, str]:
    """hybrid_csa fitted on :func:`catalogue` with a hashing encoder (fast, offline); and the fit's log text."""
    import torch

    from attnrec.data.side import SideInputs
    from attnrec.models.rating.hybrid_csa import HybridCSA
    from attnrec.text import HashingTextModel, SentenceEncoder
    from attnrec.training.trainer import TrainerConfig

    train, valid, meta = catalogue()
    model = HybridCSA(svd_factors=8, svd_iterations=3, d_model=16, heads=2, mlp_hidden=8, seed=0)
    handler = _Collect()
    logging.getLogger("attnrec").addHandler(handler)
    old_level, old_threads = logging.getLogger("attnrec").level, torch.get_num_threads()
    logging.getLogger("attnrec").setLevel(logging.INFO)
    torch.set_num_threads(1)
    try:
        model.fit(
            train,  # type: ignore[arg-type]
            valid,  # type: ignore[arg-type]
            side=SideInputs(items=meta),
            trainer=TrainerConfig(epochs=2, lr=1e-2, batch_size=128, progress=False, device="cpu"),
            encoder=SentenceEncoder(HashingTextModel(dim=64), progress=False),
        )
    finally:
        logging.getLogger("attnrec").removeHandler(handler)
        logging.getLogger("attnrec").setLevel(old_level)
        torch.set_num_threads(old_threads)
    return model, "\n".join(handler.lines)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def target_rank(recs: pl.DataFrame) -> int | None:
    ids = recs["item_id"].to_list()
    return ids.index(f"i{N_ITEMS - 1}") + 1 if f"i{N_ITEMS - 1}" in ids else None


def test_the_best_text_match_of_a_clear_query_is_in_the_top_k(fitted_catalogue) -> None:
    model, _ = fitted_catalogue
    recs = model.recommend_by_text(TARGET, k=5)
    rel = recs["relevance"].to_list()
    assert target_rank(recs) is not None, recs
    assert recs.filter(pl.col("item_id") == f"i{N_ITEMS - 1}")["relevance"][0] == pytest.approx(1.0, abs=1e-5)
    assert max(rel) == pytest.approx(1.0, abs=1e-5)
    assert recs["score"].is_sorted(descending=True)
    # the same for a known user, whose seen items are excluded, and in a batch
    assert target_rank(model.recommend_by_text(TARGET, user="u1", k=5, exclude_seen=False)) is not None
    batch = model.recommend_by_texts([TARGET, "teal lamp"], k=5)
    assert target_rank(batch.filter(pl.col("query") == 0)) is not None
    assert "teal lamp" in batch.filter(pl.col("query") == 1)["title"].to_list()
    # the estimator path (model.recommend(Query(text=...)), as the README shows it) ranks the same way
    from attnrec.models.query import Query

    assert target_rank(model.recommend(Query(text=[TARGET]), k=5)) is not None


def test_ranking_by_rating_alone_is_what_lost_it(fitted_catalogue) -> None:
    """The failure of the probe, kept reachable as text_weight=0: the predicted rating buries the match."""
    model, _ = fitted_catalogue
    by_rating = model.recommend_by_text(TARGET, k=5, text_weight=0.0)
    assert target_rank(by_rating) is None
    assert by_rating["predicted_rating"].is_sorted(descending=True)
    by_text = model.recommend_by_text(TARGET, k=5, text_weight=1.0)
    assert target_rank(by_text) == 1 and by_text["relevance"].is_sorted(descending=True)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(Exception, match="text_weight"):
            model.recommend_by_text(TARGET, k=5, text_weight=bad)


def test_the_candidate_pool_is_sized_to_the_catalogue() -> None:
    from attnrec.models.rating.hybrid_csa.text_blend import pool_size

    assert pool_size(157, 157, 5) == 50  # ten candidates a slot, a third of this catalogue, not 100 of 157
    assert pool_size(157, 157, 10) == 100
    assert pool_size(157, 30, 10) == 30  # never more than the user has not seen
    assert pool_size(100_000, 100_000, 10) == 1000  # a tenth of the catalogue, at most 1,000
    assert pool_size(100_000, 100_000, 200) == 2000


def test_the_weight_is_chosen_on_validation_and_kept_in_the_bundle(fitted_catalogue, tmp_path: Path) -> None:
    from attnrec.models.rating.hybrid_csa.text_blend import WEIGHT_GRID
    from attnrec.serving.bundle import load_bundle, save_bundle
    from attnrec.text import HashingTextModel, SentenceEncoder

    model, log_text = fitted_catalogue
    report = model.text_weight_report
    assert report is not None and report["queries"] > 50
    assert list(report["mrr"]) == [f"{w:.1f}" for w in WEIGHT_GRID]
    best = max(report["mrr"].values())
    # the one-standard-error rule: within one SE of the best, the weight closest to an even blend
    close = [w for w in WEIGHT_GRID if report["mrr"][f"{w:.1f}"] >= best - report["se"] - 1e-4]
    assert model.text_weight == report["chosen"] == min(close, key=lambda w: (abs(w - 0.5), w))
    assert 0 < report["se"] < 0.1
    # titles are distinct here, so text carries the queries: rating alone does worse than the chosen blend
    assert report["mrr"]["0.0"] < best and 0.0 < model.text_weight
    assert (
        f"text-query weight {model.text_weight:.1f} chosen on {report['queries']} validation queries"
        in log_text
    )
    save_bundle(model, tmp_path / "model")
    loaded = load_bundle(tmp_path / "model")
    assert loaded.text_weight == model.text_weight and loaded.text_weight_report == report
    loaded.set_encoder(SentenceEncoder(HashingTextModel(dim=64), progress=False))
    assert loaded.recommend_by_text(TARGET, k=5).equals(model.recommend_by_text(TARGET, k=5))


def test_a_fixed_weight_skips_the_choice_and_a_bad_stored_weight_is_refused(fitted_catalogue) -> None:
    from attnrec.errors import DataError

    model, _ = fitted_catalogue
    extra = model.bundle_json()
    for bad in (1.5, "0.3", True, None):
        with pytest.raises(DataError, match="text_weight"):
            model._load_text_weight({**extra, "text_weight": bad})
    old = {
        k: v for k, v in extra.items() if not k.startswith("text_weight")
    }  # a bundle from before the blend
    model._load_text_weight(old)
    assert model.text_weight == 0.5 and model.text_weight_report is None
    model._load_text_weight(extra)


# ------------------------------------------------------------------------------------------ log lines
def test_the_item_text_log_line_says_what_happens_once(fitted_catalogue) -> None:
    _, log_text = fitted_catalogue
    assert "texts_for_vocab" not in log_text  # the old line: twice, and wrong (those items had reviews)
    lines = [ln for ln in log_text.splitlines() if "item text for" in ln]
    assert lines == [
        f"hybrid_csa item text for {N_ITEMS} items: {N_ITEMS - NO_META} from metadata, {NO_META} from their "
        f"training reviews (no metadata text), 0 with no text (encoded as ''), {NO_META} without a title"
    ]


def test_recommend_query_on_the_cli_finds_the_match_and_checks_the_weight(
    fitted_catalogue, cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import attnrec.models.rating.hybrid_csa.core as core  # where a loaded bundle builds its encoder
    from attnrec.serving.bundle import save_bundle
    from attnrec.text import HashingTextModel, SentenceEncoder

    from .conftest import assert_clean_error, assert_ok

    class Offline(SentenceEncoder):  # the bundle's encoder, without the real sentence model
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(HashingTextModel(dim=64), progress=False)

    monkeypatch.setattr(core, "SentenceEncoder", Offline)
    model, _ = fitted_catalogue
    bundle, out = tmp_path / "model", tmp_path / "recs.csv"
    save_bundle(model, bundle)
    base = ["recommend", "--model-dir", bundle, "--query", TARGET, "--k", "5", "--out", out]
    assert_ok(cli(base))
    assert target_rank(pl.read_csv(out)) is not None
    assert_ok(cli([*base, "--text-weight", "0"]))
    assert target_rank(pl.read_csv(out)) is None  # the rating alone, as before the blend
    assert_clean_error(cli([*base, "--text-weight", "1.5"]), "--text-weight", "less than or equal to 1")
    assert_clean_error(cli([*base, "--text-weight", "nan"]), "--text-weight")
    assert_clean_error(
        cli([*base[:3], "--users", "u1", "--text-weight", "0.5"]), "--text-weight goes with --query"
    )


def test_the_weights_choice_is_the_same_in_small_blocks(
    fitted_catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The validation queries are ranked in blocks that bound memory on a large catalogue; blocks change nothing."""
    import attnrec.models.rating.hybrid_csa.queries as queries
    from attnrec.models.rating.hybrid_csa.inputs import item_texts

    model, _ = fitted_catalogue
    train, valid, meta = catalogue()
    texts, _ = item_texts(train.decode(), meta, train.item_vocab, max_chars=2000)  # type: ignore[attr-defined]
    whole = model._choose_text_weight(valid, texts)
    assert whole == (model.text_weight, model.text_weight_report)
    monkeypatch.setattr(queries, "VALID_BLOCK", N_ITEMS * 7)  # 7 queries a block
    assert model._choose_text_weight(valid, texts) == whole


def test_choose_weight_moves_from_an_even_blend_only_as_far_as_the_evidence_asks() -> None:
    import numpy as np

    from attnrec.models.rating.hybrid_csa.text_blend import choose_weight

    noisy = {
        0.0: np.array([0.1, 0.1, 0.1, 0.1]),
        0.5: np.array([0.8, 0.8, 0.8, 0.8]),
        1.0: np.array([1.0, 0.7, 1.0, 0.7]),
    }
    # 1.0: mean 0.85, standard error 0.173 / 2 = 0.087; 0.5 (mean 0.8) is within it, and is the even blend
    w, se = choose_weight(noisy)
    assert (w, se) == (0.5, pytest.approx(np.std([1, 0.7, 1, 0.7], ddof=1) / 2))
    sharp = {0.0: np.full(4, 0.1), 0.5: np.full(4, 0.8), 1.0: np.full(4, 0.85)}
    assert choose_weight(sharp) == (1.0, 0.0)  # no spread: the best mean wins
    tie = {0.3: np.full(3, 0.5), 0.7: np.full(3, 0.5)}
    assert choose_weight(tie) == (0.3, 0.0)  # equally close to 0.5: the smaller


def test_2014_and_2023_metadata_are_cleaned_the_same_way(tmp_path: Path) -> None:
    old = tmp_path / "meta_Musical_Instruments.json"
    old.write_text(
        "{'asin': 'A1', 'title': 'Fender &amp; Co <b>Strings</b>', 'description': 'Bright.<br/>Long-lasting &quot;tone&quot;', "
        "'categories': [['Musical Instruments', '<span>Strings</span>']], 'brand': 'D&#39;Addario'}\n",
        encoding="utf-8",
    )
    row = read_amazon_meta(old).row(0, named=True)
    assert row["title"] == "Fender & Co Strings"
    assert row["description"] == 'Bright. Long-lasting "tone"'
    assert row["categories"] == ["Musical Instruments", "Strings"] and row["brand"] == "D'Addario"
    new = write_jsonl(
        tmp_path / "meta_2023.jsonl.gz",
        [
            {
                "parent_asin": "P1",
                "title": SPAN_TITLE,
                "description": ["<p>Warm &amp; soft</p>"],
                "features": ["<li>Wool</li>"],
                "categories": ["Home", "&lt;3 Kitchen", "&lt;i&gt;&lt;/i&gt;"],
                "main_category": "Home",
                "store": "Acme &amp; Sons",
            }
        ],
    )
    row = read_amazon_meta(new).row(0, named=True)
    assert row["title"] is None and row["description"] == "Warm & soft" and row["features"] == ["Wool"]
    assert (
        row["categories"] == ["Home", "<3 Kitchen"] and row["brand"] == "Acme & Sons"
    )  # escaped tags are tags


def test_without_validation_positives_the_weight_is_the_documented_default(fitted_catalogue) -> None:
    from attnrec.models.rating.hybrid_csa.inputs import item_texts

    model, _ = fitted_catalogue
    train, valid, meta = catalogue()
    texts, _ = item_texts(train.decode(), meta, train.item_vocab, max_chars=2000)  # type: ignore[attr-defined]
    chosen, report = model.text_weight, model.text_weight_report
    try:
        model._fit_text_weight(None, texts)  # no validation split
        assert (model.text_weight, model.text_weight_report) == (0.5, None)
        lows = valid.with_frame(valid.frame.with_columns(pl.lit(1.0, dtype=pl.Float32).alias("rating")))
        model._fit_text_weight(lows, texts)  # no positive to make a query from
        assert model.text_weight == 0.5 and model.text_weight_report["queries"] == 0
        blank = pl.Series([""] * len(texts), dtype=pl.String)  # positives, but no text to make a query
        titles, model.titles = model.titles, None
        try:
            model._fit_text_weight(valid, blank)
        finally:
            model.titles = titles
        assert model.text_weight == 0.5 and model.text_weight_report["queries"] == 0
    finally:
        model.text_weight, model.text_weight_report = chosen, report
