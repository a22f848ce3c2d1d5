"""The run pipeline: model selection never reads the test split; the results record is complete."""

import json

import polars as pl

import attnrec.evaluation.protocols as protocols
import attnrec.experiments.run as run_module
from attnrec.experiments.run import RunConfig, run_experiment
from attnrec.testing import checkerboard


def _write_split(tmp_path, implicit):
    paths = {}
    for name, part in zip(("train", "valid", "test"), checkerboard(implicit=implicit), strict=True):
        paths[name] = tmp_path / f"{name}.csv"
        part.decode().write_csv(paths[name])
    return paths


def test_selection_reads_validation_only_and_test_once(tmp_path, monkeypatch):
    paths = _write_split(tmp_path, implicit=True)
    calls = []
    original = protocols.evaluate

    def spy(model, data, protocol=None, **kw):
        calls.append(data)
        return original(model, data, protocol, **kw)

    # validation during fit (Estimator.validator) and the run's own reports both go through protocols.evaluate
    monkeypatch.setattr(protocols, "evaluate", spy)
    monkeypatch.setattr(run_module, "evaluate", spy)
    cfg = RunConfig(
        model="bpr",
        **paths,
        model_params={"dim": 8},
        trainer={"epochs": 4, "patience": None, "progress": False, "device": "cpu"},
        out=tmp_path / "run",
    )
    result = run_experiment(cfg, progress=False)
    test_frame, valid_frame = result.data.test.frame, result.data.valid.frame
    is_test = [c.frame.equals(test_frame) for c in calls]
    # 4 validation passes during training, the final validation report, then test exactly once, last
    assert len(calls) == 6
    assert is_test == [False] * 5 + [True]
    assert all(c.frame.equals(valid_frame) for c in calls[:5])

    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("valid", "test", "config", "trainer", "data", "seed", "versions", "timings", "fit"):
        assert key in record
    assert record["data"]["fingerprint"] and record["data"]["sizes"]["test"] == len(result.data.test)
    assert len(record["fit"]["history"]) == 4
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2, 3, 4]
    assert (tmp_path / "run" / "model" / "weights.safetensors").exists()


def test_unknown_ids_in_presplit_test_are_dropped_and_counted(tmp_path):
    paths = _write_split(tmp_path, implicit=False)
    test = pl.read_csv(paths["test"], infer_schema=False)
    extra = pl.DataFrame({"user_id": ["stranger"], "item_id": ["i0"], "rating": ["3.0"], "timestamp": ["1"]})
    pl.concat([test, extra]).write_csv(paths["test"])
    result = run_experiment(RunConfig(model="svd", **paths, model_params={"factors": 4}), progress=False)
    assert result.metrics["data"]["split"]["dropped"]["test"]["rows"] == 1
    assert result.metrics["test"]["n"] == test.height
