"""End-to-end CLI tests on tiny generated data in the real MovieLens-100k file format."""

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.cli import main


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["attnrec", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory) -> Path:
    """A MovieLens-100k-format folder (u.data tab-separated, u.item pipe-separated latin-1) with a planted
    two-group pattern, 80 users x 50 items."""
    d = tmp_path_factory.mktemp("ml-tiny")
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, 81):
        for i in range(1, 51):
            if rng.random() < 0.35:
                r = 5 if (u % 2) == (i % 2) else 1
                rows.append(f"{u}\t{i}\t{r}\t{880000000 + len(rows)}")
    (d / "u.data").write_text("\n".join(rows) + "\n")
    genres = "|".join(["0"] * 19)
    items = [f"{i}|Movie {i} (1995)|01-Jan-1995||http://x/{i}|{genres}" for i in range(1, 51)]
    (d / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    return d


def test_models_lists_registered(monkeypatch, capsys):
    code, out, _ = run_cli(["models"], monkeypatch, capsys)
    assert code == 0
    for name in ("pop", "svd", "bpr", "lightgcn"):
        assert name in out


def test_split_then_presplit_training_and_recommend(ml_dir, tmp_path, monkeypatch, capsys):
    split_dir = tmp_path / "split"
    code, out, err = run_cli(
        ["data", "split", str(ml_dir), "--out", str(split_dir), "--seed", "7"], monkeypatch, capsys
    )
    assert code == 0, err
    train = pl.read_csv(split_dir / "train.csv", infer_schema=False)
    assert train.columns == ["user_id", "item_id", "rating", "timestamp"]
    report = json.loads((split_dir / "split.json").read_text())
    assert report["seed"] == 7

    run = tmp_path / "run"
    code, out, err = run_cli(
        [
            "train",
            "--model",
            "svd",
            "--train",
            str(split_dir / "train.csv"),
            "--valid",
            str(split_dir / "valid.csv"),
            "--test",
            str(split_dir / "test.csv"),
            "--out",
            str(run),
            "--no-progress",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"valid", "test", "config", "data", "seed", "versions", "timings"}
    # the planted pattern (5 vs 1) is learnable: far better than predicting the mean
    assert metrics["test"]["rmse"] < 1.0
    assert metrics["data"]["sizes"]["train"] == train.height
    assert "rmse" in out

    recs_path = tmp_path / "recs.csv"
    code, out, err = run_cli(
        [
            "recommend",
            "--model-dir",
            str(run / "model"),
            "--users",
            "1,2",
            "--k",
            "5",
            "--out",
            str(recs_path),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    recs = pl.read_csv(recs_path, infer_schema=False)
    assert recs.height == 10 and set(recs["user_id"]) == {"1", "2"}
    seen = set(zip(train["user_id"], train["item_id"], strict=True))
    assert not any((u, i) in seen for u, i in zip(recs["user_id"], recs["item_id"], strict=True))

    code, out, err = run_cli(
        ["evaluate", "--model-dir", str(run / "model"), "--test", str(split_dir / "test.csv")],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert f"{metrics['test']['rmse']:.4f}" in out


def test_train_from_toml_with_dataset_path(ml_dir, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'model = "pop"\ndata = "{ml_dir}"\nout = "{tmp_path / "pop"}"\n[split]\nmethod = "random_per_user"\nseed = 3\n'
    )
    code, out, err = run_cli(["train", "--config", str(cfg), "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "pop" / "metrics.json").read_text())
    assert metrics["data"]["split"]["method"] == "random_per_user"
    assert 0.0 <= metrics["test"]["recall@20"] <= 1.0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--model", "no-such-model", "--data", "x"], "unknown model 'no-such-model'"),
        (["train", "--model", "svd", "--data", "ml-tiny", "--set", "factorz=3"], "factorz"),
        (["train", "--model", "svd", "--data", "ml-tiny", "--set", "oops"], "KEY=VALUE"),
        (["recommend", "--model-dir", "/nonexistent", "--users", "1"], "manifest.json"),
        (["train", "--config", "/nonexistent.toml"], "config file not found"),
    ],
)
def test_bad_input_is_one_clear_line(args, needle, ml_dir, monkeypatch, capsys):
    args = [str(ml_dir) if a == "ml-tiny" else a for a in args]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_malformed_line_named_and_skippable(tmp_path, monkeypatch, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "u.data").write_text("1\t1\t5\t880000000\n1\t2\tfive\t880000001\n2\t1\t4\t880000002\n")
    code, out, err = run_cli(["data", "info", str(d)], monkeypatch, capsys)
    assert code == 2 and ":2" in err and "five" in err
    code, out, err = run_cli(["data", "info", str(d), "--on-bad-lines", "skip"], monkeypatch, capsys)
    assert code == 0, err
    assert "skipped_rows" in out and "2" in out
