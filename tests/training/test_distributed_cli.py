"""``python -m attnrec train --nproc 2`` end to end: the launcher, every rank running the run, rank 0 alone writing
``--out``, and the same metrics as one process (within the tolerance of ``test_distributed.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnrec.experiments.config import RunConfig
from attnrec.experiments.run import run_experiment
from attnrec.testing.data import checkerboard

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

METRIC_ATOL = 1e-6


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, part in zip(("train", "valid", "test"), checkerboard(implicit=True), strict=True):
        out[name] = tmp_path / f"{name}.csv"
        part.decode().write_csv(out[name])
    return out


def test_cli_nproc_2_matches_one_process_and_rank_0_writes(files: dict[str, Path], tmp_path: Path) -> None:
    flags = {"epochs": 2, "batch_size": 97, "lr": 0.01}
    one = run_experiment(
        RunConfig.parse(
            {
                "model": "lightgcn",
                **{k: str(v) for k, v in files.items()},
                "model_params": {"dim": 8},
                "trainer": flags,
                "threads": 1,
            }
        ),
        progress=False,
    ).metrics
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "attnrec", "train", "--model", "lightgcn", "--set", "dim=8", "--nproc", "2"]
    cmd += [f"--{k}={v}" for k, v in files.items()]
    cmd += ["--epochs", "2", "--batch-size", "97", "--lr", "0.01", "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ndcg@20" in proc.stdout  # rank 0's metrics printed by the launching process
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "metrics.json",
        "model",
        "train_log.jsonl",
    ]
    two = json.loads((out / "metrics.json").read_text())
    assert [json.loads(line)["epoch"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [
        1,
        2,
    ]
    for part in ("valid", "test"):
        for k, v in one[part].items():
            assert abs(v - two[part][k]) <= METRIC_ATOL, (
                f"{part} {k}: {v} (1 process) vs {two[part][k]} (2 ranks)"
            )
