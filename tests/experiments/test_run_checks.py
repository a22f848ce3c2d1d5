"""What a run checks before it touches ``out`` or fits anything, and what it records: inputs that would be silently
ignored are errors, --overwrite costs the old run only once every input is good, metrics.json holds the trainer
config the fit really used."""

from __future__ import annotations

import json
import logging

import polars as pl
import pytest

from attnrec.errors import ConfigError, DataError
from attnrec.experiments.inputs import check_item_text
from attnrec.experiments.run import RunConfig, run_experiment
from attnrec.testing import checkerboard

QUIET = {"progress": False}


def _write_split(tmp_path, implicit: bool) -> dict:
    paths = {}
    for name, part in zip(("train", "valid", "test"), checkerboard(implicit=implicit), strict=True):
        paths[name] = tmp_path / f"{name}.csv"
        part.decode().write_csv(paths[name])
    return paths


def test_overwrite_keeps_the_old_run_when_an_input_is_bad(tmp_path):
    paths = _write_split(tmp_path, implicit=True)
    out = tmp_path / "run"
    run_experiment(RunConfig(model="pop", **paths, trainer=QUIET, out=out), progress=False)
    before = (out / "metrics.json").read_text()
    bad_runs = [
        {"model_params": {"no_such_param": 1}},  # a typo in --set
        {"train": tmp_path / "missing.csv"},  # a typo in --train
        {"trainer": {**QUIET, "epochs": 3}},  # a trainer field pop does not use
    ]
    for bad in bad_runs:
        cfg = RunConfig.parse(
            {"model": "pop", **paths, "trainer": QUIET, "out": out, "overwrite": True, **bad}
        )
        with pytest.raises((ConfigError, DataError)):
            run_experiment(cfg, progress=False)
        assert (out / "metrics.json").read_text() == before, bad
        assert (out / "model" / "manifest.json").is_file(), bad
    # a good --overwrite run replaces it
    run_experiment(
        RunConfig(model="pop", **paths, trainer=QUIET, out=out, overwrite=True, ks=(5,)), progress=False
    )
    assert "ndcg@5" in json.loads((out / "metrics.json").read_text())["test"]


def test_metrics_record_the_trainer_the_solver_used(tmp_path):
    rating = _write_split(tmp_path, implicit=False)
    r = run_experiment(
        RunConfig(model="svd", **rating, model_params={"iterations": 3, "patience": 1}, trainer=QUIET),
        progress=False,
    )
    assert (r.metrics["trainer"]["epochs"], r.metrics["trainer"]["patience"]) == (3, 1)
    assert r.metrics["fit"]["epochs_run"] <= 3
    r = run_experiment(RunConfig(model="pop", **rating, trainer={**QUIET, "epochs": 1}), progress=False)
    assert (r.metrics["trainer"]["epochs"], r.metrics["trainer"]["device"]) == (1, "cpu")
    # svd's SGD solver fills what the caller leaves unset from its own defaults
    r = run_experiment(
        RunConfig(model="svd", **rating, model_params={"solver": "sgd"}, trainer={**QUIET, "epochs": 2}),
        progress=False,
    )
    assert (r.metrics["trainer"]["epochs"], r.metrics["trainer"]["lr"]) == (2, 0.02)


@pytest.mark.parametrize(
    ("model", "params", "trainer", "needle"),
    [
        ("svd", {}, {"epochs": 5}, "--set iterations=N"),
        ("svd", {}, {"patience": 9}, "--set patience=N"),
        ("pop", {}, {"epochs": 3}, "--epochs does not apply"),
        ("pop", {}, {"device": "cuda"}, "--device does not apply"),
    ],
)
def test_a_trainer_field_the_solver_overrides_is_an_error(tmp_path, model, params, trainer, needle):
    paths = _write_split(tmp_path, implicit=False)
    cfg = RunConfig(model=model, **paths, model_params=params, trainer={**QUIET, **trainer})
    with pytest.raises(ConfigError, match=needle) as info:
        run_experiment(cfg, progress=False)
    assert repr(next(iter(trainer))) in str(info.value)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"split": {"seed": 3}}, "split.seed"),
        ({"split": {"method": "temporal"}}, "split.method"),
        ({"filters": {"user_k": 2}}, "filters.user_k"),
    ],
)
def test_split_and_filters_with_presplit_files_are_errors(tmp_path, extra, needle):
    paths = _write_split(tmp_path, implicit=True)
    with pytest.raises(ConfigError, match=needle):
        RunConfig.parse({"model": "pop", **paths, **extra})
    # the protocol does apply to pre-split files
    assert RunConfig.parse({"model": "pop", **paths, "split": {"protocol": "cold_start"}}).train is not None


def test_items_for_a_model_that_reads_none_need_a_bundle_to_go_to(tmp_path):
    paths = _write_split(tmp_path, implicit=True)
    items = tmp_path / "items.csv"
    pl.DataFrame(
        {"item_id": [f"i{k}" for k in range(40)], "title": [f"film {k}" for k in range(40)]}
    ).write_csv(items)
    with pytest.raises(ConfigError, match="reads no item metadata"):
        run_experiment(RunConfig(model="pop", **paths, items=items, trainer=QUIET), progress=False)
    # with a bundle the table is honoured: kept for titles
    r = run_experiment(
        RunConfig(model="pop", **paths, items=items, trainer=QUIET, out=tmp_path / "run"), progress=False
    )
    assert r.out is not None and (r.out / "model" / "items.parquet").is_file()


def test_item_metadata_that_matches_no_training_item_is_refused_before_fitting(tmp_path, monkeypatch):
    from attnrec.models.rating.hybrid_csa import HybridCSA

    paths = _write_split(tmp_path, implicit=False)
    fits = []
    monkeypatch.setattr(HybridCSA, "fit", lambda self, *a, **kw: fits.append(1))
    items = tmp_path / "items.csv"
    pl.DataFrame({"item_id": ["zzz", "yyy"], "title": ["x", "y"]}).write_csv(items)
    out = tmp_path / "run"
    with pytest.raises(DataError) as info:
        run_experiment(
            RunConfig(model="hybrid_csa", **paths, items=items, trainer=QUIET, out=out), progress=False
        )
    msg = str(info.value)
    assert str(items) in msg and "0 of 40 training items" in msg and "'i0'" in msg and "'zzz'" in msg
    assert fits == [] and not out.exists()


def test_partial_item_text_coverage_is_a_warning_with_its_share(caplog):
    items = pl.DataFrame({"item_id": ["a", "b", "c", "x"], "title": ["A", "B", "", "X"]})
    with caplog.at_level(logging.WARNING, logger="attnrec.experiments.inputs"):
        share = check_item_text(items, ["a", "b", "c", "d"], source="items.csv", has_reviews=False)
    assert share == 0.5
    assert "items.csv: 2 of 4 training items (50.0%) have metadata text" in caplog.text
    assert "empty text" in caplog.text
    # with training reviews to fall back on, no text at all is allowed (the reviews give it)
    assert check_item_text(items, ["d", "e"], source="items.csv", has_reviews=True) == 0.0
    with pytest.raises(DataError, match="0 of 2 training items"):
        check_item_text(items, ["d", "e"], source="items.csv", has_reviews=False)


def test_hybrid_csa_fit_refuses_metadata_that_matches_no_training_item(monkeypatch):
    """The Python API (no run to check the items file first): refused before the SVD stage."""
    import attnrec.models.rating.hybrid_csa.model as hybrid_model
    from attnrec.data.side import SideInputs

    stages = []
    monkeypatch.setattr(hybrid_model, "prepare_inputs", lambda *a, **kw: stages.append(1))
    train, valid, _ = checkerboard()
    bad = pl.DataFrame({"item_id": ["zzz"], "title": ["x"]})
    with pytest.raises(DataError, match=r"0 of 40 match .*'i0'.*'zzz'"):
        hybrid_model.HybridCSA().fit(train, valid, side=SideInputs(items=bad))
    assert stages == []
