"""The shipped cross-domain run files (benchmarks/configs/cdsr/*.toml): each parses, its model settings and trainer
options are ones the model accepts, it sets every backbone option on RecBole's side (the recipe its header quotes
numbers for), and it trains from `attnrec train --config` on a small ABXI-format folder."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from attnrec.experiments.config import RunConfig
from attnrec.models.base import get_model_class
from attnrec.models.sequential.base import RECBOLE_SASREC
from attnrec.testing.cli import run_cli
from attnrec.training.trainer import TrainerConfig

CONFIGS = sorted((Path(__file__).parents[1] / "benchmarks" / "configs" / "cdsr").glob("*.toml"))


def test_the_run_files_are_found() -> None:
    assert {p.name for p in CONFIGS} >= {"sasrec-recbole.toml", "gca-recbole.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_run_file_validates_against_its_model(path: Path) -> None:
    cfg = RunConfig.from_toml(path)
    cls = get_model_class(cfg.model)
    # refuses an unknown or ill-typed setting
    model_cfg = cls.config_class.parse(cfg.model_params, source=str(path))
    assert {k: getattr(model_cfg, k) for k in RECBOLE_SASREC} == RECBOLE_SASREC
    trainer = TrainerConfig(**{**cls.default_trainer, **cfg.trainer})
    assert (trainer.lr, trainer.batch_size, trainer.epochs, trainer.patience) == (1e-3, 205, 80, 5)
    # the measured runs' depth, written out for `attnrec train` and `cdsr_study.py --config` alike
    assert model_cfg.n_blocks == 2
    assert "n_blocks" in cfg.model_params
    # a single-domain sasrec selects its epochs on its own domain
    domain = cfg.model_params.get("domain")
    assert trainer.valid_metric == (f"{domain}/ndcg@10" if domain else None)
    assert cfg.split.method == "leave_last_out"


def _abxi_folder(root: Path, n_users: int = 40, length: int = 8) -> Path:
    """An ABXI-format folder: items 1-30 in domain A, 31-60 in B, random sequences of ``length`` items (no user
    holds a whole domain, so every row can draw sampled negatives)."""
    d = root / "abxi"
    d.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for u in range(n_users):
        items = rng.integers(1, 61, length)
        lines.append(f"{u} " + " ".join(f"{i}|{t}" for t, i in enumerate(items, 1)))
    (d / "x_50_preprocessed.txt").write_text("\n".join(lines) + "\n")
    (d / "map_item_50.txt").write_text(json.dumps({f"i{i}": [i, int(i > 30)] for i in range(1, 61)}))
    return d


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_run_file_trains_from_the_cli(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["train", "--config", str(path), "--data", str(_abxi_folder(tmp_path)), "--out", str(out)]
    args += ["--epochs", "1", "--no-progress", "--threads", "1", "--set", "dim=8"]
    code, text, _ = run_cli(args, monkeypatch, capsys)
    assert code == 0, text
    metrics = json.loads((out / "metrics.json").read_text())
    stored = tomllib.loads(path.read_text())["model_params"]
    assert metrics["test"]["n_rows"] > 0
    stored["dim"] = 8  # the flag overrides the file
    assert all(metrics["config"][k] == v for k, v in stored.items()), metrics["config"]
    assert metrics["trainer"]["lr"] == 1e-3 and metrics["trainer"]["batch_size"] == 205
