"""`attnrec recommend --all-users --out recs.parquet` (serving/batch.py): every user, the same rows as
``recommend --users``, streamed in blocks, written atomically; and `attnrec predict` on a rating bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import attnrec.serving.batch as batch_module
from attnrec.errors import ConfigError, OutputError
from attnrec.models.base import RatingPredictor, Recommender
from attnrec.serving.batch import predict_ratings, recommend_all_users
from attnrec.serving.bundle import load_bundle
from attnrec.testing import cli as testing_cli


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """The shared in-process CLI runner, stdout and stderr together."""
    code, out, err = testing_cli.run_cli(args, monkeypatch, capsys)
    return code, out + err


@pytest.mark.parametrize("name", ["bpr", "svd"])
def test_all_users_cli_equals_per_user_recommend(
    serve_bundles: dict[str, Path],
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = serve_bundles[name]
    out = tmp_path / "sub" / "recs.parquet"
    code, text = run_cli(
        ["recommend", "--model-dir", str(bundle), "--all-users", "--k", "5", "--out", str(out)],
        monkeypatch,
        capsys,
    )
    assert code == 0, text
    got = pl.read_parquet(out)
    model = load_bundle(bundle)
    assert isinstance(model, Recommender)
    users = [str(u) for u in model._vocabs()[0].ids]
    rating = ["predicted_rating"] if isinstance(model, RatingPredictor) else []  # clipped, beside the score
    assert got.columns == ["user_id", "rank", "item_id", "score", *rating, "title"]
    assert got["user_id"].unique(maintain_order=True).to_list() == users
    want = model.recommend(users, k=5)
    assert got["item_id"].to_list() == want["item_id"].to_list()
    assert got["rank"].to_list() == want["rank"].to_list()
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-6)
    for column in rating:
        np.testing.assert_allclose(got[column].to_numpy(), want[column].to_numpy(), rtol=1e-6)
    assert got["title"].null_count() == 0  # the bundle has u.item titles
    assert f"{got.height} recommendations for {len(users)} users" in text
    assert not list(out.parent.glob(".*.tmp"))


def test_blocks_stream_and_csv_matches(serve_bundles: dict[str, Path], tmp_path: Path) -> None:
    model = load_bundle(serve_bundles["bpr"])
    assert isinstance(model, Recommender)
    seen: list[tuple[int, int]] = []
    rep = recommend_all_users(
        model, tmp_path / "a.parquet", k=3, batch_size=7, on_batch=lambda d, n: seen.append((d, n))
    )
    n = model.n_users
    assert [d for d, _ in seen] == [*range(7, n, 7), n] and rep.users == n and rep.rows == 3 * n
    assert rep.short_users == 0
    whole = recommend_all_users(model, tmp_path / "b.parquet", k=3, batch_size=10_000)
    assert pl.read_parquet(tmp_path / "a.parquet").equals(pl.read_parquet(whole.path))
    recommend_all_users(model, tmp_path / "c.csv", k=3, batch_size=7)
    csv = pl.read_csv(tmp_path / "c.csv", schema_overrides={"user_id": pl.String, "item_id": pl.String})
    assert csv["item_id"].to_list() == pl.read_parquet(whole.path)["item_id"].to_list()


def test_short_users_counted_when_the_catalogue_runs_out(
    serve_bundles: dict[str, Path], tmp_path: Path
) -> None:
    model = load_bundle(serve_bundles["bpr"])
    assert isinstance(model, Recommender)
    rep = recommend_all_users(model, tmp_path / "r.parquet", k=model.n_items)
    seen_per_user = np.diff(model.seen.indptr)  # type: ignore[union-attr]
    assert rep.rows == int((model.n_items - seen_per_user).sum())
    assert rep.short_users == int((seen_per_user > 0).sum())


def test_failed_write_keeps_the_old_file(serve_bundles: dict[str, Path], tmp_path: Path) -> None:
    model = load_bundle(serve_bundles["bpr"])
    assert isinstance(model, Recommender)
    out = tmp_path / "recs.parquet"
    out.write_bytes(b"old")

    def boom(done: int, total: int) -> None:
        if done > 10:
            raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="recs.parquet"):
        recommend_all_users(model, out, k=3, batch_size=8, on_batch=boom)
    assert out.read_bytes() == b"old" and not list(tmp_path.glob(".*.tmp"))


def test_all_users_needs_out_and_is_alone(
    serve_bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    b = str(serve_bundles["bpr"])
    code, text = run_cli(["recommend", "--model-dir", b, "--all-users"], monkeypatch, capsys)
    assert code != 0 and "--all-users writes a file" in text
    code, text = run_cli(["recommend", "--model-dir", b, "--all-users", "--users", "1"], monkeypatch, capsys)
    assert code != 0 and "--all-users" in text and "--users" in text


def test_predict_ratings_of_pairs_from_a_rating_bundle(
    serve_bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`attnrec predict` on a rating bundle (not a review model: no has_text column): the rows in the file's order,
    unknown ids flagged with no rating; a bundle that predicts no rating, or pairs without ids, are refused."""
    model = load_bundle(serve_bundles["svd"])
    assert isinstance(model, RatingPredictor) and isinstance(model, Recommender)
    uv, iv = model._vocabs()
    u, i = [str(x) for x in uv.ids[:3]], [str(x) for x in iv.ids[:3]]
    pairs = pl.DataFrame({"user_id": [u[2], u[0], "nobody", u[1]], "item_id": [i[0], i[1], i[2], "no-item"]})
    got = predict_ratings(model, pairs)
    assert got.columns == ["user_id", "item_id", "predicted_rating", "cold_start"]
    assert got["cold_start"].to_list() == [None, None, "unknown_user", "unknown_item"]
    expected = model.predict(uv.lookup([u[2], u[0]]), iv.lookup([i[0], i[1]]))
    np.testing.assert_allclose(got["predicted_rating"].head(2).to_numpy(), expected, rtol=1e-6)
    assert got["predicted_rating"].tail(2).null_count() == 2
    # scored in blocks: one pair per model.predict call gives the same file
    monkeypatch.setattr(batch_module, "PREDICT_ROWS", 1)
    assert predict_ratings(model, pairs).equals(got)
    with pytest.raises(ConfigError, match="missing item_id"):
        predict_ratings(model, pairs.drop("item_id"))
    bpr = load_bundle(serve_bundles["bpr"])
    assert isinstance(bpr, Recommender)
    with pytest.raises(ConfigError, match="does not predict ratings"):
        predict_ratings(bpr, pairs)
    code, text = run_cli(
        ["predict", "--model-dir", str(serve_bundles["bpr"]), "--data", "x.csv"], monkeypatch, capsys
    )
    assert code == 2 and "scores CTR rows or rating pairs" in text
