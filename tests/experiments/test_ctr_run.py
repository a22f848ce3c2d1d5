"""CTR runs: rows read in each format, the encoder fitted on train only, the CTR protocol, a bundle that scores rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnrec.errors import ConfigError, DataError
from attnrec.experiments.ctr_run import PreparedCTR
from attnrec.experiments.run import RunConfig, run_experiment
from attnrec.serving.bundle import load_bundle

FAST = {"epochs": 6, "lr": 0.05, "batch_size": 64, "patience": None, "device": "cpu"}


def write_csv_parts(d: Path, seed: int = 0) -> dict[str, Path]:
    """Generic CTR CSV files (header ``label,site,hour,price``): clicks planted on ``site`` in {a, b}."""
    rng = np.random.default_rng(seed)
    paths = {}
    for part, n in (("train", 800), ("valid", 200), ("test", 200)):
        sites = rng.choice(list("abcdef"), n)
        labels = (rng.random(n) < np.where(np.isin(sites, ["a", "b"]), 0.9, 0.1)).astype(int)
        hours = rng.integers(0, 24, n)
        price = rng.random(n).round(3)
        lines = ["label,site,hour,price"] + [
            f"{y},{s},{h},{p}" for y, s, h, p in zip(labels, sites, hours, price, strict=True)
        ]
        paths[part] = d / f"{part}.csv"
        paths[part].write_text("\n".join(lines) + "\n")
    return paths


def test_csv_rows_default_schema_learn_the_planted_clicks(tmp_path):
    paths = write_csv_parts(tmp_path)
    cfg = RunConfig(
        model="lr",
        **paths,
        ctr={"format": "csv"},
        model_params={"seed": 1},
        trainer={**FAST, "progress": False},
        out=tmp_path / "run",
    )
    result = run_experiment(cfg, progress=False)
    assert isinstance(result.data, PreparedCTR)
    # the default schema: every column but the label is a categorical field, in file order
    assert result.data.encoder.schema.names == ["site", "hour", "price"]
    assert result.metrics["task"] == "ctr"
    assert result.metrics["test"]["auc"] > 0.85  # 0.9 / 0.1 click rates by site: AUC ~0.9 is reachable
    assert result.metrics["data"]["sizes"] == {"train": 800, "valid": 200, "test": 200}
    assert len(result.metrics["fit"]["history"]) == 6
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 6 and "valid_auc" in json.loads(log[0])
    # the bundle carries the encoder: it scores raw rows by itself, identically
    model = load_bundle(tmp_path / "run" / "model")
    again = model.predict_proba(model.encoder.transform(_frame(paths["test"])))
    np.testing.assert_allclose(again, result.model.predict_proba(result.data.test), rtol=1e-6)


def _frame(path: Path):
    from attnrec.data.readers.ctr import read_ctr_table
    from attnrec.experiments.ctr_run import default_csv_schema

    return read_ctr_table(path, default_csv_schema(path)).frame


def test_run_file_schema_names_the_label_and_a_numeric_field(tmp_path):
    paths = write_csv_parts(tmp_path)
    for p in paths.values():  # the label under another name
        p.write_text(p.read_text().replace("label,site", "clicked,site", 1))
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'model = "fm"\ntrain = "{paths["train"]}"\nvalid = "{paths["valid"]}"\ntest = "{paths["test"]}"\n'
        '[ctr]\nformat = "csv"\n[ctr.feature_schema]\nlabel = "clicked"\n'
        '[[ctr.feature_schema.fields]]\nname = "site"\n'
        '[[ctr.feature_schema.fields]]\nname = "price"\nkind = "numeric"\n'
        "[trainer]\nepochs = 2\nprogress = false\n"
    )
    result = run_experiment(RunConfig.from_toml(toml), progress=False)
    schema = result.data.encoder.schema  # type: ignore[union-attr]
    assert schema.label == "clicked" and schema.names == ["site", "price"]
    assert [f.kind for f in schema.fields] == ["categorical", "numeric"]
    assert 0.0 <= result.metrics["test"]["auc"] <= 1.0


def test_files_without_a_format_or_without_a_label_are_refused_before_fitting(tmp_path):
    paths = write_csv_parts(tmp_path)
    with pytest.raises(ConfigError, match="--format"):
        run_experiment(RunConfig(model="deepfm", **paths), progress=False)
    with pytest.raises(ConfigError, match="--items"):
        run_experiment(
            RunConfig(model="deepfm", **paths, ctr={"format": "csv"}, items=paths["test"]), progress=False
        )
    with pytest.raises(ConfigError, match="--format is for CTR models"):
        run_experiment(RunConfig(model="svd", **paths, ctr={"format": "csv"}), progress=False)
    paths["train"].write_text(paths["train"].read_text().replace("label,", "y,", 1))
    with pytest.raises(DataError, match="label"):
        run_experiment(RunConfig(model="deepfm", **paths, ctr={"format": "csv"}), progress=False)


def test_movielens_as_ctr_from_a_dataset_folder(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    rng = np.random.default_rng(3)
    rows = []
    for u in range(1, 61):
        for i in range(1, 41):
            if rng.random() < 0.4:
                rows.append(f"{u}\t{i}\t{5 if i % 3 == 0 else 2}\t{880000000 + len(rows)}")
    (d / "u.data").write_text("\n".join(rows) + "\n")
    result = run_experiment(
        RunConfig(model="lr", data=str(d), trainer={**FAST, "progress": False}), progress=False
    )
    data = result.data
    assert isinstance(data, PreparedCTR)
    assert data.encoder.schema.names[:2] == ["user", "item"]
    assert result.metrics["data"]["split"]["threshold"] == 4.0
    # the label depends on the item alone (rating 5 for every third item): a per-item weight learns it
    assert result.metrics["test"]["auc"] > 0.95
    sizes = result.metrics["data"]["sizes"]
    assert sizes["train"] + sizes["valid"] + sizes["test"] == len(rows)


def test_avazu_rows_and_unlabelled_csv_rows_from_a_bundle(tmp_path):
    from attnrec.data.readers.ctr import AVAZU_COLUMNS
    from attnrec.experiments.ctr_run import read_ctr_rows

    rng = np.random.default_rng(2)
    paths = {}
    for part, n in (("train", 600), ("valid", 150), ("test", 150)):
        lines = [",".join(AVAZU_COLUMNS)]
        for k in range(n):
            site = str(rng.integers(0, 6))
            click = int(rng.random() < (0.9 if site in "012" else 0.1))
            rest = [str(rng.integers(0, 3)) for _ in AVAZU_COLUMNS[5:]]
            lines.append(
                ",".join([str(k), str(click), f"1410{21 + k % 7:02d}{k % 24:02d}", "1005", site, *rest])
            )
        paths[part] = tmp_path / f"{part}.csv"
        paths[part].write_text("\n".join(lines) + "\n")
    cfg = RunConfig(model="lr", **paths, ctr={"format": "avazu"}, trainer={**FAST, "progress": False})
    result = run_experiment(cfg, progress=False)
    assert result.data.encoder.schema.names[:3] == ["hour_of_day", "weekday", "C1"]  # type: ignore[union-attr]
    assert result.metrics["test"]["auc"] > 0.85

    # a generic CSV bundle scores rows without their label column (attnrec predict)
    (tmp_path / "csv").mkdir()
    csv = write_csv_parts(tmp_path / "csv")
    run_experiment(
        RunConfig(
            model="lr", **csv, ctr={"format": "csv"}, trainer={**FAST, "progress": False}, out=tmp_path / "r"
        ),
        progress=False,
    )
    model = load_bundle(tmp_path / "r" / "model")
    unlabelled = tmp_path / "new.csv"
    unlabelled.write_text("site,hour,price\na,3,0.5\nf,3,0.5\n")
    frame, _ = read_ctr_rows(unlabelled, "csv", model.encoder, need_label=False)
    p = model.predict_frame(frame)
    assert p.shape == (2,) and p[0] > p[1] + 0.5  # site a clicks, site f does not
    with pytest.raises(DataError, match="label"):
        read_ctr_rows(unlabelled, "csv", model.encoder, need_label=True)
