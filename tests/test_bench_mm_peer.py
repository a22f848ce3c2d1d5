"""benchmarks/mm_peer_mmrec.py: MMRec's log is parsed into per-epoch seconds and best-valid-epoch metrics."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from attnrec.testing.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "mm_peer_mmrec.py"

LOG = """06 Dec 03:02    INFO epoch 0 training [time: 0.50s, train loss: 0.6721]
06 Dec 03:02    INFO epoch 0 evaluating [time: 0.02s, valid_score: 0.200000]
06 Dec 03:02    INFO test result:
recall@10: 0.9    ndcg@10: 0.9
06 Dec 03:02    INFO epoch 1 training [time: 0.70s, train loss: 0.6742]
06 Dec 03:02    INFO epoch 1 evaluating [time: 0.02s, valid_score: 0.300000]
06 Dec 03:02    INFO epoch 2 training [time: 0.60s, train loss: 0.6748]
06 Dec 03:02    INFO epoch 2 evaluating [time: 0.02s, valid_score: 0.300000]
06 Dec 03:02    INFO best valid result: recall@10: 0.2000    recall@20: 0.3000    ndcg@20: 0.1131    map@20: 0.06
06 Dec 03:02    INFO test result: recall@10: 0.1167    recall@20: 0.2833    ndcg@10: 0.0451    precision@5: 0.0067
"""


@pytest.fixture(scope="module")
def peer():  # type: ignore[no-untyped-def]
    return load_script(BENCH)


def test_parse_log_reads_epochs_and_the_best_valid_epoch_metrics(peer):  # type: ignore[no-untyped-def]
    out = peer.parse_log(LOG)
    assert out["epoch_seconds"] == [0.5, 0.7, 0.6]
    assert out["valid_recall@20"] == [0.2, 0.3, 0.3]
    assert out["best_epoch"] == 2  # 1-based, the first of the tied best epochs
    assert out["valid"] == {"recall@10": 0.2, "recall@20": 0.3, "ndcg@20": 0.1131}
    # the per-epoch 'test result:' header line has no metrics on it; the final one is read
    assert out["test"] == {"recall@10": 0.1167, "recall@20": 0.2833, "ndcg@10": 0.0451}


def test_every_peer_setting_is_a_one_point_grid(peer):  # type: ignore[no-untyped-def]
    # MMRec picks its "BEST" line on test across a grid: every grid key must hold exactly one value
    for model, settings in peer.MMREC_SETTINGS.items():
        for key, value in settings.items():
            assert not isinstance(value, list) or len(value) == 1, (model, key)


def test_best_epoch_comes_from_the_log_line_when_validation_is_sparse(peer):  # type: ignore[no-untyped-def]
    # eval_step 5: validations at 0-based epochs 4 and 9 only; the best is epoch 10 (1-based), not the 2nd line
    log = (
        "INFO epoch 4 training [time: 1.00s, train loss: 0.5]\n"
        "INFO epoch 4 evaluating [time: 2.00s, valid_score: 0.100000]\n"
        "INFO epoch 9 training [time: 1.00s, train loss: 0.4]\n"
        "INFO epoch 9 evaluating [time: 2.00s, valid_score: 0.250000]\n"
    )
    out = peer.parse_log(log)
    assert out["best_epoch"] == 10
    assert out["valid_recall@20"] == [0.1, 0.25]


def test_run_mmrec_passes_eval_step(peer, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    seen = {}

    class Done:
        returncode = 0
        stdout = LOG
        stderr = ""

    def fake_run(cmd, **kw):  # type: ignore[no-untyped-def]
        seen["arg"] = cmd[-1]
        return Done()

    monkeypatch.setattr(peer.subprocess, "run", fake_run)
    rec = peer.run_mmrec("MMGCN", tmp_path / "x", "x", 3, epochs=10, patience=4, eval_step=5)
    config = json.loads(seen["arg"])["config"]
    assert (config["eval_step"], config["epochs"], config["stopping_step"], config["seed"]) == (5, 10, 4, [3])
    assert config["reg_weight"] == [1e-4] and rec["best_epoch"] == 2


def test_probe_record_estimates_an_epoch_from_the_median_batch(peer):  # type: ignore[no-untyped-def]
    info = {"batch_seconds": [9.0, 2.0, 3.0], "batches_per_epoch": 159, "build_s": 1.0, "pre_epoch_s": 0.5}
    rec = peer.probe_record("MMGCN", 1, info)
    assert rec["probe"] is True and (rec["library"], rec["model"], rec["seed"]) == ("mmrec", "MMGCN", 1)
    assert rec["epoch_estimate_s"] == 3.0 * 159 + 0.5  # the median batch, not the slow first one
    with pytest.raises(RuntimeError, match="no batch"):
        peer.probe_record("MMGCN", 1, {**info, "batch_seconds": []})


def test_probe_mmrec_runs_the_probe_driver_with_the_models_settings(peer, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    seen = {}

    def fake_run(cmd, **kw):  # type: ignore[no-untyped-def]
        seen["arg"] = json.loads(cmd[-1])
        seen["driver"] = cmd[-2]
        out = {"batch_seconds": [1.0, 2.0], "batches_per_epoch": 10, "build_s": 0.1, "pre_epoch_s": 0.0}
        return type("P", (), {"returncode": 0, "stdout": json.dumps(out) + "\n", "stderr": ""})()

    monkeypatch.setattr(peer.subprocess, "run", fake_run)
    rec = peer.probe_mmrec("GRCN", tmp_path / "fk", "fk", 2, batches=4)
    assert seen["driver"] == peer._PROBE_DRIVER and seen["arg"]["batches"] == 4
    assert seen["arg"]["config"]["reg_weight"] == [1e-4] and seen["arg"]["config"]["seed"] == [2]
    assert rec["epoch_estimate_s"] == 20.0 and "<probe driver>" in rec["command"]


def test_a_failed_probe_is_recorded_and_the_next_model_still_probed(peer, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    def fake_probe(model, folder, name, seed, *, batches):  # type: ignore[no-untyped-def]
        if model == "GRCN":
            raise RuntimeError("MMRec GRCN probe failed (rc 1): TypeError")
        return {"library": "mmrec", "model": model, "seed": seed, "probe": True, "epoch_estimate_s": 1.0}

    monkeypatch.setattr(peer, "probe_mmrec", fake_probe)
    out = tmp_path / "p.jsonl"
    argv = ["x", "--folder", str(tmp_path), "--name", "fk", "--models", "GRCN,MMGCN", "--probe-batches", "2"]
    monkeypatch.setattr(peer.sys, "argv", [*argv, "--out", str(out)])
    with pytest.raises(SystemExit):
        peer.main()
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["model"] for r in recs] == ["GRCN", "MMGCN"]
    assert (
        "TypeError" in recs[0]["failed"] and recs[0]["probe"] is True and recs[1]["epoch_estimate_s"] == 1.0
    )


def test_a_timed_out_or_failed_fit_is_recorded_and_the_next_model_still_runs(peer, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """A peer fit past its subprocess timeout (GRCN on Food-Kitchen: ~3 h a seed against the 2 h limit) is a
    failure record, like a non-zero exit, in a full run as in a probe; an interrupt is not swallowed."""

    def fake_run(model, folder, name, seed, *, epochs, patience):  # type: ignore[no-untyped-def]
        if model == "GRCN":
            raise subprocess.TimeoutExpired(cmd="mmrec", timeout=7200)
        return {"library": "mmrec", "model": model, "seed": seed, "test": {}}

    monkeypatch.setattr(peer, "run_mmrec", fake_run)
    out = tmp_path / "r.jsonl"
    argv = ["x", "--folder", str(tmp_path), "--name", "fk", "--models", "GRCN,MMGCN", "--out", str(out)]
    monkeypatch.setattr(peer.sys, "argv", argv)
    with pytest.raises(SystemExit):
        peer.main()
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["model"] for r in recs] == ["GRCN", "MMGCN"]
    assert (
        recs[0]["failed"].startswith("TimeoutExpired")
        and len(recs[0]["load"]) == 2
        and "failed" not in recs[1]
    )
    with pytest.raises(KeyboardInterrupt):
        peer.fit_or_failure("mmrec", "GRCN", 0, lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
