"""The three review models from the command line: `attnrec train` on an Amazon review file, then `evaluate`,
`recommend` and `predict` from the bundle alone (issue 14's "train, evaluate and predict from the CLI"), with the
no-text fallback and unknown ids flagged in `predict`'s output."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.evaluation.metrics import graded_ndcg_at_k
from attnrec.testing.cli import run_cli
from attnrec.testing.data import TINY_REVIEW_MODEL

#: U3 writes only empty reviews (an all-padding document); U5's first rows have no reviewText field at all
BLANK_USER, PARTLY_MISSING_USER = "U3", "U5"


def amazon_review_file(path: Path) -> Path:
    """A 5-core-like Amazon 2014 review file: 40 users x 30 items, ratings 5 where the user's and item's parities
    match, else 1; each review names the user's and the item's group."""
    rng = np.random.default_rng(0)
    lines = []
    for u in range(40):
        for i in range(30):
            if rng.random() < 0.5:
                same = u % 2 == i % 2
                row = {"reviewerID": f"U{u}", "asin": f"B{i}", "overall": 5.0 if same else 1.0,
                       "unixReviewTime": 1400000000 + len(lines)}  # fmt: skip
                if f"U{u}" == BLANK_USER:
                    row["reviewText"] = ""
                elif not (f"U{u}" == PARTLY_MISSING_USER and i < 10):
                    row["reviewText"] = (
                        f"{'ga' if u % 2 == 0 else 'gb'} {'ha' if i % 2 == 0 else 'hb'} strings"
                    )
                lines.append(json.dumps(row))
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


@pytest.mark.parametrize("name", ["deepconn", "transnet", "safmr"])
def test_cli_trains_evaluates_recommends_and_predicts(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from attnrec.serving.bundle import load_bundle

    data = amazon_review_file(tmp_path / "reviews_Musical_Instruments_5.json.gz")
    small = [f"--set={k}={v}" for k, v in TINY_REVIEW_MODEL.items()]

    def cli(*args: str) -> str:
        code, out, err = run_cli(list(args), monkeypatch, capsys)
        assert code == 0, err
        return out

    run = tmp_path / "run"
    out = cli("train", "--model", name, "--data", str(data), "--out", str(run), "--epochs", "2", "--no-progress",
              *small)  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == name and np.isfinite(metrics["test"]["rmse"]) and "rmse" in out
    assert 0 < metrics["test"]["graded_ndcg@10"] <= 1 and "graded_ndcg@10" in out  # eq. 16 of SAFMR
    extra = json.loads((run / "model" / "extra.json").read_text())
    assert set(extra["words"]) == {"ga", "gb", "ha", "hb", "strings"}  # the training reviews were read
    stats = extra["text_stats"]  # empty and missing texts kept as padding, and counted
    assert stats["users_without_text"] == 1 and stats["empty_reviews"] > 0

    pairs = tmp_path / "pairs.csv"
    pl.DataFrame(
        {
            "user_id": ["U0", "U0", "U1", BLANK_USER, "nobody", "U0"],
            "item_id": ["B0", "B1", "B0", "B0", "B0", "no-item"],
            "rating": [5.0, 1.0, 1.0, 1.0, 3.0, 3.0],
        }
    ).write_csv(pairs)
    evaluated = cli("evaluate", "--model-dir", str(run / "model"), "--test", str(pairs))
    assert "rmse" in evaluated and "2 row(s) with unknown user or item were skipped" in evaluated
    recs = tmp_path / "recs.csv"
    cli("recommend", "--model-dir", str(run / "model"), "--users", "U0,U1", "--k", "3", "--out", str(recs))
    top = pl.read_csv(recs)
    assert top.height == 6 and set(top["user_id"]) == {"U0", "U1"}

    preds = tmp_path / "preds.csv"
    out = cli("predict", "--model-dir", str(run / "model"), "--data", str(pairs), "--out", str(preds))
    got = pl.read_csv(preds, schema_overrides={"user_id": pl.String, "item_id": pl.String})
    assert got.columns == ["user_id", "item_id", "predicted_rating", "cold_start", "has_text"]
    assert got["user_id"].to_list() == ["U0", "U0", "U1", BLANK_USER, "nobody", "U0"]  # the file's order
    assert got["cold_start"].to_list() == [None, None, None, None, "unknown_user", "unknown_item"]
    assert got["has_text"].to_list() == [True, True, True, False, None, None]
    assert got["predicted_rating"].null_count() == 2
    model = load_bundle(run / "model")
    uv, iv = model._vocabs()
    known = got.head(4)
    expected = model.predict(uv.lookup(known["user_id"]), iv.lookup(known["item_id"]))  # type: ignore[attr-defined]
    np.testing.assert_allclose(known["predicted_rating"].to_numpy(), expected, rtol=1e-6)
    # evaluate's graded NDCG@10: U0 is the one user with two known rows (B0 rated 5, B1 rated 1)
    _, ndcg = graded_ndcg_at_k(
        np.zeros(2), np.array([5.0, 1.0]), np.asarray(expected[:2], dtype=np.float64), 10
    )
    shown = re.search(r"graded_ndcg@10\s*\S\s*([0-9.]+)", evaluated)
    assert shown and float(shown.group(1)) == pytest.approx(ndcg[0], abs=1e-4)
    said = " ".join(out.split())  # the console wraps long lines
    assert (
        "of 6 pairs: 2 with an unknown user or item" in said
        and "1 rated from the all-padding fallback" in said
    )

    code, _, err = run_cli(
        ["predict", "--model-dir", str(run / "model"), "--data", str(pairs), "--format", "csv"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "--format/--sep read CTR rows" in err
