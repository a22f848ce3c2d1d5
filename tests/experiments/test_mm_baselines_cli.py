"""vbpr, lattice and bm3 train, evaluate and recommend from the CLI with a metadata modality built by the run."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from attnrec.testing import checkerboard
from attnrec.testing.cli import recommend_share_in_group, run_cli


@pytest.fixture(scope="module")
def split_files(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("mm_cli")
    paths = {}
    for name, part in zip(("train", "valid", "test"), checkerboard(implicit=True), strict=True):
        paths[name] = d / f"{name}.csv"
        part.decode().write_csv(paths[name])
    # genres carry the checkerboard's item group (index % 2), plus a shared tag so no row is alone
    genres = [f"g{k % 2}|s{k % 3}" for k in range(40)]
    pl.DataFrame({"item_id": [f"i{k}" for k in range(40)], "genres": genres}).write_csv(d / "items.csv")
    paths["items"] = d / "items.csv"
    return paths


@pytest.mark.parametrize(
    ("model", "extra", "epochs"),
    # bootstrapping without negatives separates the two groups more slowly
    [("vbpr", [], 25), ("lattice", ["knn_k=4"], 25), ("bm3", [], 60)],
)
def test_trains_evaluates_and_recommends(model, extra, epochs, split_files, tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    f = split_files
    run = tmp_path / "run"
    sets = [x for kv in ["dim=8", "feat_dim=8", *extra] for x in ("--set", kv)]
    code, _, err = run_cli(
        [
            "train",
            "--model",
            model,
            "--train",
            str(f["train"]),
            "--valid",
            str(f["valid"]),
            "--test",
            str(f["test"]),
            "--items",
            str(f["items"]),
            "--modalities",
            "meta",
            "--out",
            str(run),
            "--epochs",
            str(epochs),
            "--lr",
            "0.05",
            "--no-progress",
            *sets,
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["notes"]["modalities"]["meta"]["dim"] == 5  # g0, g1, s0, s1, s2
    assert metrics["test"]["recall@20"] > 0.5  # the planted two-group pattern
    code, out, err = run_cli(
        ["evaluate", "--model-dir", str(run / "model"), "--test", str(f["test"])], monkeypatch, capsys
    )
    assert code == 0 and "recall@20" in out, err
    assert recommend_share_in_group(run / "model", tmp_path, monkeypatch, capsys) >= 0.7  # chance: 0.5
