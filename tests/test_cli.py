"""End-to-end CLI tests on tiny generated data in the real MovieLens-100k file format."""

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.testing.cli import run_cli


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

    # the graded NDCG@10 of SAFMR's eq. 16, in metrics.json and evaluate's table: graded_ndcg_at_k on the
    # bundle's predictions of the test rows, over the users with two test rows or more
    from attnrec.data.splits import read_interactions_file
    from attnrec.data.table import Interactions
    from attnrec.evaluation.metrics import graded_ndcg_at_k
    from attnrec.serving.bundle import load_bundle

    model = load_bundle(run / "model")
    test, _ = Interactions.encode(
        read_interactions_file(split_dir / "test.csv", {}), *model._vocabs(), unknown="drop"
    )
    pred = np.asarray(model.predict(test.users, test.items), dtype=np.float64)
    users, counts = np.unique(test.users, return_counts=True)
    keep = np.isin(test.users, users[counts >= 2])
    _, ndcg = graded_ndcg_at_k(test.users[keep], test.ratings[keep], pred[keep], 10)
    assert metrics["test"]["graded_ndcg@10"] == pytest.approx(ndcg.mean(), rel=1e-9)
    assert metrics["test"]["graded_ndcg_users"] == len(ndcg) and "graded_ndcg@10" in metrics["valid"]
    assert _metric(out, "graded_ndcg@10") == pytest.approx(ndcg.mean(), abs=1e-4)


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


# ------------------------------------------------------------------------------------------ CTR models
def _write_criteo(path: Path, n: int, rng: np.random.Generator) -> None:
    """Kaggle/Criteo format: TAB separated, no header, label, I1..I13 (empty = missing), C1..C26 (hex);
    clicks planted on C1."""
    lines = []
    for _ in range(n):
        c1 = int(rng.integers(0, 6))
        label = int(rng.random() < (0.9 if c1 < 3 else 0.1))
        ints = [str(rng.integers(0, 50)) if rng.random() > 0.1 else "" for _ in range(13)]
        cats = [f"{c1:08x}"] + [f"{rng.integers(0, 4):08x}" for _ in range(25)]
        lines.append("\t".join([str(label), *ints, *cats]))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def criteo_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("criteo")
    rng = np.random.default_rng(5)
    for part, n in (("train", 800), ("valid", 200), ("test", 200)):
        _write_criteo(d / f"{part}.txt", n, rng)
    return d


def test_ctr_model_trains_evaluates_and_predicts_on_criteo_files(criteo_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "deepfm"
    files = [
        f"--{p}" if i % 2 == 0 else str(criteo_dir / f"{p}.txt")
        for p in ("train", "valid", "test")
        for i in (0, 1)
    ]
    args = ["train", "--model", "deepfm", *files, "--format", "criteo", "--out", str(run), "--no-progress"]
    code, out, err = run_cli(
        [*args, "--epochs", "4", "--lr", "0.02", "--set", "embedding_dim=4"], monkeypatch, capsys
    )
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "ctr" and metrics["data"]["sizes"] == {"train": 800, "valid": 200, "test": 200}
    assert metrics["test"]["auc"] > 0.8  # 0.9 / 0.1 click rates by C1
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 4
    assert "auc" in out and "logloss" in out

    # evaluate: the bundle's own encoder reads the raw rows; the same AUC as the run's test report
    code, out, err = run_cli(
        [
            "evaluate",
            "--model-dir",
            str(run / "model"),
            "--test",
            str(criteo_dir / "test.txt"),
            "--format",
            "criteo",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert f"{metrics['test']['auc']:.4f}" in out

    # predict: one probability per row, higher where the planted click rate is higher
    preds = tmp_path / "p.csv"
    code, out, err = run_cli(
        [
            "predict",
            "--model-dir",
            str(run / "model"),
            "--data",
            str(criteo_dir / "test.txt"),
            "--format",
            "criteo",
            "--out",
            str(preds),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    p = pl.read_csv(preds)
    assert p.columns == ["row", "probability"] and p.height == 200
    c1 = [int(line.split("\t")[14], 16) for line in (criteo_dir / "test.txt").read_text().splitlines()]
    hi = p["probability"].to_numpy()[np.array(c1) < 3]
    lo = p["probability"].to_numpy()[np.array(c1) >= 3]
    assert 0.0 <= p["probability"].min() and p["probability"].max() <= 1.0 and hi.mean() > lo.mean() + 0.3

    # recommend on a CTR bundle says it scores rows and points to predict
    code, out, err = run_cli(
        ["recommend", "--model-dir", str(run / "model"), "--users", "1"], monkeypatch, capsys
    )
    assert code == 2 and "scores CTR rows" in err and "attnrec predict" in err


def test_ctr_files_without_format_name_the_flag(criteo_dir, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(
        [
            "train",
            "--model",
            "fm",
            "--train",
            str(criteo_dir / "train.txt"),
            "--test",
            str(criteo_dir / "test.txt"),
            "--no-progress",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "--format" in err


# ------------------------------------------------------------------------------------------ the newcomer's data
def _renamed(ml_dir: Path, tmp_path: Path) -> Path:
    """u.data as a MovieLens ratings.csv-style file with its own column names."""
    df = pl.read_csv(ml_dir / "u.data", separator="\t", has_header=False, new_columns=["u", "i", "r", "t"])
    path = tmp_path / "my_ratings.csv"
    df.rename({"u": "userId", "i": "movieId", "r": "rating", "t": "timestamp"}).write_csv(path)
    return path


COLUMNS = "userId=user_id,movieId=item_id,rating=rating,timestamp=timestamp"


def test_renamed_columns_need_and_take_columns(ml_dir, tmp_path, monkeypatch, capsys):
    path = _renamed(ml_dir, tmp_path)
    code, out, err = run_cli(
        ["train", "--model", "svd", "--data", str(path), "--no-progress"], monkeypatch, capsys
    )
    assert code == 2 and "user_id" in err  # the file's columns are not the canonical ones
    code, out, err = run_cli(
        [
            "train",
            "--model",
            "svd",
            "--data",
            str(path),
            "--columns",
            COLUMNS,
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["rmse"] < 1.0 and metrics["run"]["columns"]["userId"] == "user_id"
    # pre-split files with the same names
    df = pl.read_csv(path).sample(fraction=1.0, shuffle=True, seed=0)
    parts = {
        "train": df[: int(0.8 * df.height)],
        "valid": df[int(0.8 * df.height) : int(0.9 * df.height)],
        "test": df[int(0.9 * df.height) :],
    }
    flags = []
    for name, part in parts.items():
        part.write_csv(tmp_path / f"{name}.csv")
        flags += [f"--{name}", str(tmp_path / f"{name}.csv")]
    code, out, err = run_cli(
        ["train", "--model", "pop", *flags, "--columns", COLUMNS, "--no-progress"], monkeypatch, capsys
    )
    assert code == 0, err
    code, out, err = run_cli(
        ["train", "--model", "pop", *flags, "--columns", "userId=user", "--no-progress"], monkeypatch, capsys
    )
    assert code == 2 and "'user' is not a canonical column" in err


@pytest.fixture
def hashing_encoder(monkeypatch):
    """hybrid_csa's sentence encoder replaced by the offline hashing stand-in."""
    from attnrec.models.rating.hybrid_csa import HybridCSA
    from attnrec.text.encoder import HashingTextModel, SentenceEncoder

    enc = SentenceEncoder(HashingTextModel(dim=16))
    monkeypatch.setattr(HybridCSA, "encoder", property(lambda self: enc))
    return enc


def test_items_file_gives_hybrid_csa_its_text_and_is_checked_before_fitting(
    ml_dir, tmp_path, monkeypatch, capsys, hashing_encoder
):
    from attnrec.models.rating.svd import SVD

    split_dir = tmp_path / "split"
    assert run_cli(["data", "split", str(ml_dir), "--out", str(split_dir)], monkeypatch, capsys)[0] == 0
    flags = [x for p in ("train", "valid", "test") for x in (f"--{p}", str(split_dir / f"{p}.csv"))]
    svd_fits = []
    original = SVD.fit
    monkeypatch.setattr(SVD, "fit", lambda self, *a, **kw: svd_fits.append(1) or original(self, *a, **kw))

    # no item text, no reviews: refused before the SVD stage, naming --items
    code, out, err = run_cli(["train", "--model", "hybrid_csa", *flags, "--no-progress"], monkeypatch, capsys)
    assert code == 2 and "--items" in err and svd_fits == []

    items = tmp_path / "movies.csv"
    pl.DataFrame(
        {
            "item_id": [str(i) for i in range(1, 51)],
            "title": [f"Movie {i}" for i in range(1, 51)],
            "genres": ["Comedy|Animation" if i % 2 else "Horror" for i in range(1, 51)],
        }
    ).write_csv(items)
    run = tmp_path / "hybrid"
    code, out, err = run_cli(
        [
            "train",
            "--model",
            "hybrid_csa",
            *flags,
            "--items",
            str(items),
            "--out",
            str(run),
            "--epochs",
            "2",
            "--set",
            "d_model=16",
            "--no-progress",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert svd_fits and json.loads((run / "metrics.json").read_text())["test"]["rmse"] < 2.0

    # recommendations carry the items file's titles; a history query is refused, naming --history
    code, out, err = run_cli(
        [
            "recommend",
            "--model-dir",
            str(run / "model"),
            "--users",
            "1",
            "--k",
            "3",
            "--out",
            str(tmp_path / "r.csv"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert pl.read_csv(tmp_path / "r.csv")["title"].str.starts_with("Movie ").all()
    code, out, err = run_cli(
        ["recommend", "--model-dir", str(run / "model"), "--history", "1,2"], monkeypatch, capsys
    )
    assert code == 2 and "--history" in err and "hybrid_csa" in err


def test_recommend_by_history_for_a_new_user(ml_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "bpr"
    code, out, err = run_cli(
        [
            "train",
            "--model",
            "bpr",
            "--data",
            str(ml_dir),
            "--out",
            str(run),
            "--epochs",
            "5",
            "--set",
            "dim=8",
            "--no-progress",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    recs_path = tmp_path / "recs.csv"
    history = ["2", "4", "6", "8", "10"]  # even items: the even user group's
    code, out, err = run_cli(
        [
            "recommend",
            "--model-dir",
            str(run / "model"),
            "--history",
            ",".join(history),
            "--k",
            "10",
            "--out",
            str(recs_path),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    recs = pl.read_csv(recs_path, infer_schema=False)
    assert recs.height == 10 and recs["user_id"].null_count() == 10  # a new user: no id
    assert not set(recs["item_id"]) & set(history)  # the history is excluded
    # the same list as the Python API's query with that history
    from attnrec.models.base import Query
    from attnrec.serving.bundle import load_bundle

    model = load_bundle(run / "model")
    uv, iv = model._vocabs()
    expected = model.recommend(Query.from_ids(uv, iv, history_ids=[history], exclude="history"), k=10)
    assert recs["item_id"].to_list() == expected["item_id"].to_list()
    code, out, err = run_cli(
        ["recommend", "--model-dir", str(run / "model"), "--history", "1,no-such-item"], monkeypatch, capsys
    )
    assert code == 2 and "no-such-item" in err


def test_metric_table_is_readable_in_80_columns_through_a_pipe(ml_dir, tmp_path):
    import subprocess

    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "attnrec.cli",
            "train",
            "--model",
            "pop",
            "--data",
            str(ml_dir),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in proc.stdout
    # every metric on its own row with both values in full
    for metric in ("recall@10", "ndcg@20", "precision@20", "hit@10", "mrr@20", "map@20"):
        row = next(line for line in lines if f" {metric} " in line)
        values = [v for v in row.replace("│", " ").split() if v.startswith("0.") or v.startswith("1.")]
        assert len(values) == 2 and all(len(v) == 6 for v in values), row


def test_no_progress_turns_off_hugging_face_bars(monkeypatch):
    transformers = pytest.importorskip("transformers")
    hub = pytest.importorskip("huggingface_hub")
    from attnrec.cli import _quiet_progress

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    try:
        _quiet_progress()
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # for a library imported later
        assert not transformers.utils.logging.is_progress_bar_enabled()  # the sentence encoder's loading bar
        assert hub.utils.are_progress_bars_disabled()
    finally:
        os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)  # it has priority over enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
        hub.utils.enable_progress_bars()


def test_a_wide_result_frame_fits_80_columns_with_every_number_whole(monkeypatch):
    import io

    from rich.console import Console

    import attnrec.cli as cli

    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=80))
    frame = pl.DataFrame(
        {
            "item_id": ["1533", "1"],
            "title": ["I Don't Want to Talk About It (Deseo no se habla)", "Toy Story"],
            "predicted_rating": [4.2971, 3.0],
            "share_user": [0.2154, 0.1],
            "share_item": [0.519, 0.6],
            "share_text": [0.266, 0.3],
            "relevance": [0.5531, 0.4],
            "new_user": [True, False],
        }
    )
    cli._print_frame(frame, "a text query")
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    for value in ("4.297", "0.215", "0.519", "0.266", "0.553", "True", "False", "1533", "Toy Story"):
        assert value in text


# ------------------------------------------------------------------------------------------ review fixes
def _metric(out: str, name: str) -> float:
    """The value of metric ``name`` in a printed metrics table."""
    m = re.search(rf"\b{re.escape(name)}\s*\S\s*(-?[0-9.]+)", out)
    assert m, out
    return float(m.group(1))


def test_ctr_bundle_reads_rows_with_its_runs_threshold_and_separator(tmp_path, monkeypatch, capsys):
    # MovieLens as CTR with threshold 3: rating 3 (every third item) is a click, 1 is not; threshold 4 has none
    ml = tmp_path / "ml"
    ml.mkdir()
    rng = np.random.default_rng(3)
    rows = [
        f"{u}\t{i}\t{3 if i % 3 == 0 else 1}\t{880000000 + u * 100 + i}"
        for u in range(1, 61)
        for i in range(1, 41)
        if rng.random() < 0.4
    ]
    (ml / "u.data").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "ml.toml"
    cfg.write_text(f'model = "lr"\ndata = "{ml}"\nout = "{tmp_path / "lr"}"\n[ctr]\nthreshold = 3.0\n')
    fast = ["--epochs", "6", "--lr", "0.05", "--batch-size", "64", "--no-progress"]
    code, out, err = run_cli(["train", "--config", str(cfg), *fast], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "lr" / "metrics.json").read_text())["test"]["auc"] > 0.95
    # no --format: the bundle's run read MovieLens with threshold 3, and so does evaluate
    code, out, err = run_cli(
        ["evaluate", "--model-dir", str(tmp_path / "lr" / "model"), "--test", str(ml)], monkeypatch, capsys
    )
    assert code == 0, err
    assert _metric(out, "auc") > 0.95
    code, out, err = run_cli(
        [
            "evaluate",
            "--model-dir",
            str(tmp_path / "lr" / "model"),
            "--test",
            str(ml),
            "--format",
            "movielens",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert _metric(out, "auc") > 0.95

    # a ';'-separated CSV run: evaluate and predict read the files with ';' (no --sep needed)
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for part, n in (("train", 600), ("test", 200)):
        sites = rng.choice(list("abcdef"), n)
        labels = (rng.random(n) < np.where(np.isin(sites, ["a", "b"]), 0.9, 0.1)).astype(int)
        lines = ["label;site"] + [f"{y};{s}" for y, s in zip(labels, sites, strict=True)]
        (csv_dir / f"{part}.csv").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "csv.toml"
    cfg.write_text(
        f'model = "lr"\ntrain = "{csv_dir / "train.csv"}"\ntest = "{csv_dir / "test.csv"}"\n'
        f'out = "{tmp_path / "csvrun"}"\n[ctr]\nformat = "csv"\nsep = ";"\n'
    )
    code, out, err = run_cli(["train", "--config", str(cfg), *fast], monkeypatch, capsys)
    assert code == 0, err
    run_auc = json.loads((tmp_path / "csvrun" / "metrics.json").read_text())["test"]["auc"]
    bundle = str(tmp_path / "csvrun" / "model")
    test_csv = str(csv_dir / "test.csv")
    code, out, err = run_cli(["evaluate", "--model-dir", bundle, "--test", test_csv], monkeypatch, capsys)
    assert code == 0, err
    assert f"{run_auc:.4f}" in out
    code, out, err = run_cli(
        ["predict", "--model-dir", bundle, "--data", test_csv, "--out", str(tmp_path / "p.csv")],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert pl.read_csv(tmp_path / "p.csv").height == 200
    # flags that a CTR bundle does not use are refused
    for flag in (["--columns", "site=item_id"], ["--k", "5"]):
        code, out, err = run_cli(
            ["evaluate", "--model-dir", bundle, "--test", test_csv, *flag], monkeypatch, capsys
        )
        assert code == 2 and flag[0] in err and "CTR rows" in err


def test_evaluate_says_what_it_masks_and_reproduces_the_run_with_exclude_valid(
    ml_dir, tmp_path, monkeypatch, capsys
):
    split_dir = tmp_path / "split"
    assert run_cli(["data", "split", str(ml_dir), "--out", str(split_dir)], monkeypatch, capsys)[0] == 0
    flags = [x for p in ("train", "valid", "test") for x in (f"--{p}", str(split_dir / f"{p}.csv"))]
    for model in ("pop", "svd"):
        code, out, err = run_cli(
            ["train", "--model", model, *flags, "--out", str(tmp_path / model), "--no-progress"],
            monkeypatch,
            capsys,
        )
        assert code == 0, err
    run_ndcg = json.loads((tmp_path / "pop" / "metrics.json").read_text())["test"]["ndcg@10"]
    evaluate = [
        "evaluate",
        "--model-dir",
        str(tmp_path / "pop" / "model"),
        "--test",
        str(split_dir / "test.csv"),
    ]
    code, out, err = run_cli(evaluate, monkeypatch, capsys)
    assert code == 0, err
    assert "masked: training items" in out and "--exclude valid.csv" in out
    valid = str(split_dir / "valid.csv")
    code, out, err = run_cli([*evaluate, "--exclude", valid], monkeypatch, capsys)
    assert code == 0, err
    assert "".join(f"masked: training items + {valid}".split()) in "".join(out.split())
    assert _metric(out, "ndcg@10") == pytest.approx(run_ndcg, abs=1e-4)
    code, out, err = run_cli(["evaluate", "--help"], monkeypatch, capsys)
    assert "--exclude valid.csv" in " ".join(out.split()).replace("│ ", "").replace(" │", "")

    # a rating bundle's NDCG cut-off is fixed (10) and it masks nothing: --k / --exclude are refused
    svd_eval = [
        "evaluate",
        "--model-dir",
        str(tmp_path / "svd" / "model"),
        "--test",
        str(split_dir / "test.csv"),
    ]
    code, out, err = run_cli([*svd_eval, "--k", "5"], monkeypatch, capsys)
    assert code == 2 and "--k does not apply" in err and "predicts ratings" in err
    # --split / --seed with pre-split files are refused, not ignored
    code, out, err = run_cli(["train", "--model", "pop", *flags, "--seed", "3"], monkeypatch, capsys)
    assert code == 2 and "split.seed" in err


def test_recommend_refuses_what_it_would_ignore_in_one_line(ml_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "pop"
    assert (
        run_cli(
            ["train", "--model", "pop", "--data", str(ml_dir), "--out", str(run), "--no-progress"],
            monkeypatch,
            capsys,
        )[0]
        == 0
    )
    bundle = str(run / "model")
    code, out, err = run_cli(
        ["recommend", "--model-dir", bundle, "--users-file", str(tmp_path / "nope.txt")], monkeypatch, capsys
    )
    assert code == 2 and "nope.txt" in err and "Traceback" not in err
    code, out, err = run_cli(
        ["recommend", "--model-dir", bundle, "--users", "1", "--candidates", "5"], monkeypatch, capsys
    )
    assert code == 2 and "--candidates goes with --query" in err


def test_a_wide_frame_with_long_text_keeps_every_value_at_80_columns(monkeypatch):
    """Six columns with a long title: rich must wrap the text, not crop the last column of a piped table."""
    import io

    import polars as pl
    from rich.console import Console

    from attnrec import cli

    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=80, force_terminal=False))
    df = pl.DataFrame(
        {
            "item_id": ["408", "114"],
            "title": ["Close Shave, A", "Wallace & Gromit: The Best of Aardman Animation"],
            "predicted_rating": [4.477, 4.391],
            "share_user": [0.509, 0.477],
            "share_item": [0.387, 0.434],
            "share_text": [0.104, 0.089],
        }
    )
    cli._print_frame(df, "a text query")
    out = buf.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 80
    for value in ("4.477", "4.391", "0.509", "0.477", "0.387", "0.434", "0.104", "0.089", "Aardman"):
        assert value in out, (value, out)
