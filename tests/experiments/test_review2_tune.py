"""REVIEW2 F2: ``attnrec tune`` on a sequential model searches on the run's data and validation protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from attnrec.experiments.config import RunConfig  # noqa: E402
from attnrec.experiments.run import run_experiment  # noqa: E402
from attnrec.experiments.seq_run import prepare_sequences  # noqa: E402
from attnrec.experiments.tune import SearchData, SearchSpace, run_trial  # noqa: E402

SASREC = {"dim": 8, "heads": 2, "n_blocks": 1, "dropout": 0.0, "n_negatives": 8, "max_len": 8, "seed": 1}


def _planted(path: Path) -> Path:
    """30 users x 8 time-ordered items over two domains (items i0-i19: A, i20-i39: B)."""
    lines = ["user_id,item_id,domain,timestamp"]
    for u in range(30):
        for t in range(8):
            it = (u * 3 + t * 7) % 40
            lines.append(f"u{u},i{it},{'A' if it < 20 else 'B'},{t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tune_validates_sequential_models_on_the_runs_split_and_protocol(tmp_path: Path) -> None:
    cfg = RunConfig(
        model="sasrec",
        data=str(_planted(tmp_path / "t.csv")),
        model_params=SASREC,
        trainer={"epochs": 1, "batch_size": 16},
        threads=1,
    )
    search = SearchData.from_run(cfg)
    run_data = prepare_sequences(cfg, progress=False)
    tune_valid = search.valid.decode().sort("user_id")
    assert tune_valid.equals(run_data["valid"].decode().sort("user_id"))
    assert tune_valid.height == 30 and set(tune_valid["timestamp"]) == {6}  # the second-to-last of each user
    assert search.train.n_items == run_data["train"].n_items == 40
    # one trial with the run's settings scores what the run reports on validation
    space = SearchSpace.model_validate(
        {"study": {"pruner": "none"}, "model": {"dim": {"type": "categorical", "choices": [8]}}}
    )
    _, metrics, _ = run_trial(optuna.trial.FixedTrial({"model.dim": 8}), cfg, search, space, "ndcg@10")
    ran = run_experiment(cfg, progress=False).metrics["valid"]
    assert metrics.keys() == ran.keys()
    for k, v in ran.items():
        assert metrics[k] == pytest.approx(v, abs=1e-6), k
