"""The run path of the multimodal family: --modalities builds item features from metadata and .npy files, and a
freedom model trains, evaluates and recommends from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.errors import ConfigError
from attnrec.experiments.modalities_run import parse_modalities
from attnrec.testing import checkerboard
from attnrec.testing.cli import recommend_share_in_group, run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("mm")
    paths = {}
    for name, part in zip(("train", "valid", "test"), checkerboard(implicit=True), strict=True):
        paths[name] = d / f"{name}.csv"
        part.decode().write_csv(paths[name])
    ids = [f"i{k}" for k in range(40)]
    pl.DataFrame({"item_id": ids, "genres": [f"g{k % 2}|s{k % 5}" for k in range(40)]}).write_csv(
        d / "items.csv"
    )
    paths["items"] = d / "items.csv"
    # an image-like matrix for items 0..37 only (rows follow i_id_mapping.csv): i38, i39 have no features
    rng = np.random.default_rng(0)
    img = np.eye(2)[np.arange(38) % 2] + rng.normal(0, 0.2, (38, 2))
    np.save(d / "img_feat.npy", img.astype(np.float32))
    pl.DataFrame({"item_id": ids[:38], "itemID": np.arange(38)}).write_csv(
        d / "i_id_mapping.csv", separator="\t"
    )
    paths["img"] = d / "img_feat.npy"
    return paths


def test_parse_modalities(files):  # type: ignore[no-untyped-def]
    assert parse_modalities(["text", f"img={files['img']}"]) == (["text"], {"img": files["img"]})
    for bad, needle in (
        (["pixels"], "expected one of"),
        (["text", "text"], "twice"),
        ([f"1x={files['img']}"], "not a new name"),
        (["img=/no/such.npy"], "no such file"),
    ):
        with pytest.raises(ConfigError, match=needle):
            parse_modalities(bad)


def train_on_the_planted_files(model: str, sets: list[str], files, run, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """``attnrec train --model MODEL`` on the planted files with both modalities, 8 epochs at lr 0.02, small
    sizes plus ``sets`` (``key=value``): ``(exit code, stdout, stderr)``."""
    base = ["--train", str(files["train"]), "--valid", str(files["valid"]), "--test", str(files["test"])]
    base += ["--items", str(files["items"]), "--modalities", f"meta,img={files['img']}", "--out", str(run)]
    kv = [x for pair in ["dim=8", "feat_dim=8", "knn_k=4", *sets] for x in ("--set", pair)]
    args = ["train", "--model", model, *base, "--epochs", "8", "--lr", "0.02", *kv, "--no-progress"]
    return run_cli(args, monkeypatch, capsys)


def test_freedom_trains_evaluates_and_recommends_from_the_cli(files, tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    code, out, err = train_on_the_planted_files("freedom", [], files, run, monkeypatch, capsys)
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    mods = metrics["data"]["notes"]["modalities"]
    assert mods["img"]["featureless"] == 2 and mods["img"]["dim"] == 2
    assert mods["meta"]["featureless"] == 0 and mods["meta"]["dim"] == 7  # g0, g1, s0..s4
    assert metrics["test"]["recall@20"] > 0.5  # the planted two-group pattern
    code, out, err = run_cli(
        ["evaluate", "--model-dir", str(run / "model"), "--test", str(files["test"])], monkeypatch, capsys
    )
    assert code == 0, err
    assert "recall@20" in out
    assert recommend_share_in_group(run / "model", tmp_path, monkeypatch, capsys) >= 0.8


@pytest.mark.parametrize("variant", ["full", "selector_only", "csa_only"])
def test_mrcsaf_and_its_ablations_train_evaluate_and_recommend_from_the_cli(
    variant, files, tmp_path, monkeypatch, capsys
):  # type: ignore[no-untyped-def]
    from attnrec.models.multimodal.mrcsaf import MRCSAF
    from attnrec.serving.bundle import load_bundle

    run = tmp_path / "run"
    code, _, err = train_on_the_planted_files(
        "mrcsaf", [f"variant={variant}"], files, run, monkeypatch, capsys
    )
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["notes"]["modalities"]["img"]["featureless"] == 2
    assert metrics["test"]["recall@20"] > 0.5  # the planted two-group pattern
    code, out, err = run_cli(
        [
            "evaluate",
            "--model-dir",
            str(run / "model"),
            "--test",
            str(files["test"]),
            "--exclude",
            str(files["valid"]),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "recall@20" in out
    assert recommend_share_in_group(run / "model", tmp_path, monkeypatch, capsys) >= 0.8
    # the bundle the CLI wrote is the variant asked for, and exposes its diagnostics
    model = load_bundle(run / "model")
    assert isinstance(model, MRCSAF) and model.config.variant == variant
    diag = model.diagnostics()
    assert diag["modalities"] == ["img", "meta"]
    np.testing.assert_allclose(diag["modality_weights"].sum(1), 1.0, rtol=1e-5)
    assert ("abs_cos" in diag) == (variant != "selector_only")
    # the selector weighs items differently; the fixed weights (csa_only) do not
    per_item = diag["modality_weights"].std(0).max() > 0
    assert per_item == (variant != "csa_only")
    # ... and the run logged them: every validated epoch in train_log.jsonl, the best epoch's in metrics.json
    # (the bundle holds the best epoch's weights, so its diagnostics are those numbers)
    best = metrics["fit"]["best_valid"]
    for j, m in enumerate(diag["modalities"]):
        want = float(diag["modality_weights"][:, j].mean())
        assert best[f"modality_weight[{m}]"] == pytest.approx(want, rel=1e-5)
        if variant != "selector_only":
            assert best[f"abs_cos[{m}]"] == pytest.approx(diag["abs_cos"][m], rel=1e-5)
    assert variant != "selector_only" or not any(k.startswith("abs_cos") for k in best)
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    validated = [r for r in rows if "valid_recall@20" in r]
    assert len(validated) == 8 and all("valid_modality_weight[img]" in r for r in validated)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "freedom"], "needs item features"),
        (["--model", "freedom", "--modalities", "text"], "has none"),
        (["--model", "bpr", "--modalities", "meta"], "reads no item features"),
    ],
)
def test_missing_or_misplaced_modalities_are_one_clear_line(files, args, needle, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    base = ["--train", str(files["train"]), "--test", str(files["test"]), "--epochs", "1", "--no-progress"]
    code, _, err = run_cli(["train", *args, *base], monkeypatch, capsys)
    assert code != 0 and needle in err


def test_tuning_trials_get_the_item_features(files):  # type: ignore[no-untyped-def]
    from attnrec.experiments.config import RunConfig
    from attnrec.experiments.tune import SearchData

    cfg = RunConfig(
        model="freedom",
        train=files["train"],
        valid=files["valid"],
        test=files["test"],
        items=files["items"],
        modalities=["meta"],
    )
    data = SearchData.from_run(cfg)
    assert data.item_features is not None and data.item_features["meta"].shape == (40, 7)
    assert data.notes["modalities"]["meta"]["dim"] == 7
